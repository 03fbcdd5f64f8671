"""Transcribe audio manifests (or a folder) to Parquet.

    python -m jobs.transcribe dataset_manifest=s3://bucket/calls/*.jsonl output_path=s3://bucket/out target_lang=auto
    ray job submit --working-dir . -- python -m jobs.transcribe ...     # the same module on a cluster
    python -m jobs.transcribe --help                                     # every key, its default and its meaning
    python -m jobs.transcribe --verbose ...                              # other libraries' messages on the console too

The whole configuration is parsed and checked (keys, types, ranges, manifests, output folder, checkpoint locales and
latency settings, settings of earlier runs into the same output) before any work starts; a bad one ends with one
message and exit code 2. Then one streaming pass: the driver holds no rows, only references to finished blocks,
which it commits as it goes (see connectors.parquet_sink), and prints one progress line at a steady interval.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
from collections import Counter

from connectors.lease import LeaseHeld
from connectors.output_store import NotOurs
from connectors.storage import describe_fetch_error, redact
from jobs import console
from jobs.cluster import actor_pool, connect_ray
from jobs.config import ConfigError, run_command
from jobs.plan import Plan, plan
from jobs.progress import Progress
from jobs.reruns import remove_stale, resume_state, tidy
from jobs.run_record import FINISHED, RUNNING, STOPPED, RunSummary, new_run_id, write_run_record
from jobs.stopping import StopRequest
from jobs.spec import render_help
from pipeline.assembly import RunInfo
from pipeline.decode import DecodeSettings
from pipeline.inference import InferenceSettings
from pipeline.ledger import Ledger, LedgerTotals
from pipeline.options import JobDefaults
from pipeline.pieces import PieceStore
from pipeline.records import RECORDINGS_SCHEMA, SEGMENTS_SCHEMA
from pipeline.source import SourceSettings

log = logging.getLogger("nemotron_batch")


def read_ahead_rows(p: Plan) -> int:
    """How many rows may be read but not yet committed: enough for several commits and for every actor to have work
    queued, few enough that the driver's memory does not grow with the archive."""
    return max(4 * p.spec.output.rows_per_file, 64 * p.spec.compute.block_rows)


def run(p: Plan) -> RunSummary:
    """Transcribe every input row not already in the output, in one streaming pass that commits as it goes."""
    run_id = new_run_id()
    lease = p.store.lease(run_id, p.spec.output.lease_seconds)
    try:
        p.store.claim(run_id)  # never touch a folder that is not ours (before the lease file is written)
        lease.acquire()
    except (LeaseHeld, NotOurs) as refused:
        raise ConfigError(str(refused)) from None
    except OSError as error:  # the marker and the lease are the first writes: a folder (or bucket) refusing writes
        raise ConfigError(f"cannot write to output_path {redact(p.spec.output_path)!r}: "
                          f"{redact(describe_fetch_error(error, p.spec.output_path))}") from None
    try:
        return _run(p, run_id)
    finally:
        lease.release()


def _run(p: Plan, run_id: str) -> RunSummary:
    import ray

    started = time.monotonic()
    removed = p.store.clean_uncommitted()
    if removed:
        log.info("removed %d file(s) left uncommitted by an earlier run", len(removed))
    embedded = connect_ray(p.spec.compute.ray_address)
    pool = actor_pool(p.spec.compute, can_grow=not embedded)  # before anything is written: a clear message, no hang
    # Ray's operator table every few seconds drowns a log and a quiet console; our progress line is one line.
    if not (sys.stderr.isatty() and console.verbose()):
        ray.data.DataContext.get_current().enable_progress_bars = False

    resume = resume_state(p)  # may refuse (settings changed): before anything is written
    summary = RunSummary(run_id=run_id)
    summary.removed_rows += remove_stale(p.store, resume.stale)
    write_run_record(p, summary, RUNNING)

    stop = StopRequest().install()
    try:
        committer, totals = _stream(p, run_id, resume.index_refs, stop, pool)
    finally:
        stop.restore()
    stages: Counter[str] = Counter()
    for written in committer.written:
        summary.rows += written.rows
        summary.failed_rows += written.failed_rows
        summary.audio_seconds += written.audio_seconds
        summary.segments += written.segments
        summary.pieced_rows += len(written.pieced)
        summary.files += 1
        stages.update(written.errors_by_stage)
    summary.errors_by_stage = dict(stages)
    summary.skipped_rows, summary.replaced_rows = totals.done, totals.replaced
    if stop.requested:  # committed what was finished; the books cannot balance, a rerun does the rest
        summary.stopped_by, summary.exit_code = signal.Signals(stop.signum).name, stop.exit_code
        summary.wall_seconds = time.monotonic() - started
        write_run_record(p, summary, STOPPED)
        return summary
    if summary.rows != totals.to_do:  # the promise: every input row in the output exactly once
        raise RuntimeError(f"wrote {summary.rows} row(s) for {totals.to_do} input row(s) to do")
    summary.removed_rows += tidy(p.store, totals)
    summary.wall_seconds = time.monotonic() - started
    write_run_record(p, summary, FINISHED)
    return summary


def _graph(p: Plan, run_id: str, index_refs: list, ledger, pieces, pool):
    from pipeline.graph import transcription_graph, work_block_seconds

    spec = p.spec
    source = SourceSettings(defaults=JobDefaults(spec.target_lang, spec.audio.channel_mode),
                            locales=p.card.languages,
                            block_seconds=work_block_seconds(spec.compute, spec.batch_size),
                            block_rows=spec.compute.block_rows)
    # A decode task hands on what it holds once it holds a work block of audio, and cuts a longer recording into
    # pieces of that much: memory is bounded by the block, not by a recording's length.
    decode = DecodeSettings(audio=spec.audio, segmenting=spec.segmenting, sample_rate=p.card.sample_rate,
                            block_seconds=source.block_seconds)
    inference = InferenceSettings(adapter=spec.model_adapter, model=p.model, fetch_timeout=spec.audio.fetch_timeout)
    info = RunInfo(run_id=run_id, model=spec.model_path, att_context_size=p.model.att_context_size,
                   keep_raw_text=not spec.strip_lang_tags, channel_names=tuple(spec.audio.channel_names),
                   model_fingerprint=p.model_fingerprint)
    return transcription_graph(p.inputs, source, decode, inference, spec.compute, info, pool,
                               index_refs, ledger, pieces)


def _iterate(ds, out: queue.Queue, stop: StopRequest) -> None:
    """Feed the dataset's finished blocks (references) to the driver loop, from a thread, so that the loop can keep
    committing by age and printing progress while it waits. On a stop request it closes the iteration, which shuts
    Ray Data's executor down before the process exits (else its thread outlives Ray and logs tracebacks)."""
    # What `ds.iter_internal_ref_bundles()` does (references only: the driver never fetches rows), keeping the
    # executor, which that public method drops, so that a stop can shut it down.
    bundles, _, executor = ds._execute_to_iterator(capture_executor=False)
    try:
        for bundle in bundles:
            if stop.requested:
                break
            out.put(bundle)
        out.put(None)
    except BaseException as error:  # noqa: BLE001 - re-raised on the driver's thread
        out.put(error)
    finally:
        if stop.requested and executor is not None:
            executor.shutdown(force=True)


def _stream(p: Plan, run_id: str, index_refs: list, stop: StopRequest, pool):
    """Run the graph; commit finished blocks by rows or age; print progress. Returns the committer and the books."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # On the driver's node: a worker node lost mid-job must not take the books with it (pipeline/ledger.py).
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    ledger = ray.remote(num_cpus=0)(Ledger).options(scheduling_strategy=here).remote(read_ahead_rows(p))
    # Puts long recordings' pieces back together (pipeline/pieces.py); there too: it holds transcripts not committed.
    pieces = ray.remote(num_cpus=0)(PieceStore).options(scheduling_strategy=here).remote()
    ds = _graph(p, run_id, index_refs, ledger, pieces, pool)
    committer = p.store.committer(run_id, RECORDINGS_SCHEMA, SEGMENTS_SCHEMA, p.spec.output)
    progress = Progress(p.spec.output.progress_seconds, len(p.inputs))
    bundles: queue.Queue = queue.Queue()
    feeder = threading.Thread(target=_iterate, args=(ds, bundles, stop), name="dataset-feeder", daemon=True)
    feeder.start()
    reported = 0  # commits told to the ledger (it paces reading by them)
    while not stop.requested:
        try:
            item = bundles.get(timeout=1.0)
        except queue.Empty:
            item = False
        if item is None:
            break
        if isinstance(item, BaseException):
            raise item
        if item is not False:
            committer.add(item)
        committer.tick()
        new_files = committer.written[reported:]
        newly = sum(w.rows for w in new_files)
        if newly:
            committed_pieced = [row_id for w in new_files for row_id in w.pieced]
            if committed_pieced:  # their sets are not needed again (pipeline/pieces.py)
                pieces.release.remote(committed_pieced)
            reported = len(committer.written)
            ledger.add_committed.remote(newly)
        if progress.due():
            progress.emit(progress_line(progress, committer, ray.get(ledger.get.remote())))
    committer.close()
    if stop.requested:
        feeder.join(timeout=30)  # the executor shuts down once the feeder closes the iteration
    if os.environ.get("NEMOTRON_BATCH_STATS"):  # Ray Data's per-stage timings, for tuning
        log.info("%s", ds.stats())
    totals: LedgerTotals = ray.get(ledger.get.remote())
    if progress.interval:
        progress.emit(progress_line(progress, committer, totals))
    return committer, totals


def progress_line(progress: Progress, committer, totals: LedgerTotals) -> str:
    written = committer.written
    return progress.line(committed=sum(w.rows for w in written), failed=sum(w.failed_rows for w in written),
                         audio_seconds=sum(w.audio_seconds for w in written), rows_read=totals.rows,
                         rows_done=totals.done, sources_read=totals.sources)


def main(argv: list[str] | None = None) -> int:
    args, verbose = console.split_verbose(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        print("Keys (defaults: conf/transcribe.yaml; override with key=value):")
        print(render_help())
        return 0

    def work() -> RunSummary:
        p = plan(args)
        log.info("model %s (%s): att_context_size %s, %d locales", redact(p.spec.model_path), p.card.model_class,
                 p.att_context_size, len(p.card.locales))
        return run(p)

    return run_command(work, job="transcribe", verbose=verbose)


if __name__ == "__main__":
    sys.exit(main())
