"""Transcribe audio manifests (or a folder) to Parquet.

    python -m jobs.transcribe dataset_manifest=s3://bucket/calls/*.jsonl output_path=s3://bucket/out target_lang=auto
    ray job submit --working-dir . -- python -m jobs.transcribe ...     # the same module on a cluster
    python -m jobs.transcribe --help                                     # every key, its default and its meaning

The whole configuration is parsed and checked (keys, types, ranges, manifests, output folder, checkpoint locales and
latency settings, settings of earlier runs into the same output) before any work starts; a bad one ends with one
message and exit code 2. Then one streaming pass: the driver holds no rows, only references to finished blocks,
which it commits as it goes (see connectors.parquet_sink), and prints one progress line at a steady interval.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from connectors.lease import Lease, LeaseHeld
from connectors.layout import OutputLayout
from connectors.manifests import iter_audio_dir, manifest_urls
from connectors.model_store import localize
from connectors.parquet_sink import TranscriptCommitter, clean_uncommitted
from connectors.resume import build_index, remove_rows
from connectors.storage import NoMatch, describe_fetch_error, ensure_output_folder, expand, filesystem, redact
from jobs.cluster import connect_ray
from jobs.config import ConfigError, run_command
from jobs.progress import Progress
from jobs.spec import TRANSCRIPT_SETTINGS, JobSpec, get, load_spec, render_help
from pipeline.assembly import RunInfo
from pipeline.decode import DecodeSettings
from pipeline.ledger import Ledger, LedgerTotals
from pipeline.locales import UnknownLocale
from pipeline.models import adapter_class
from pipeline.models.base import ModelCard
from pipeline.options import JobDefaults
from pipeline.records import RECORDINGS_SCHEMA, SEGMENTS_SCHEMA
from pipeline.source import SourceSettings

log = logging.getLogger("nemotron_batch")


@dataclass(frozen=True)
class Plan:
    """Everything decided before work starts. `spec` is resolved: `att_context_size` is the one that will run."""

    spec: JobSpec
    sources: list[str]  # normalised manifest URLs, or [audio_dir]
    is_audio_dir: bool
    card: ModelCard
    prompt_locale: str  # the job's target_lang as a canonical locale (or auto)

    def transcript_settings(self) -> dict:
        """The settings that change a transcript, as compared between runs (the target as its canonical locale)."""
        values = {key: get(self.spec, key) for key in TRANSCRIPT_SETTINGS}
        values["target_lang"] = self.prompt_locale
        return values


@dataclass
class RunSummary:
    run_id: str
    rows: int = 0  # committed by this run
    skipped_rows: int = 0  # already done
    replaced_rows: int = 0  # done again: an edited line, a failed row, other settings
    removed_rows: int = 0  # older copies and orphans removed from earlier files
    segments: int = 0
    failed_rows: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    files: int = 0
    errors_by_stage: dict[str, int] = field(default_factory=dict)

    @property
    def audio_seconds_per_second(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0

    def lines(self) -> list[str]:
        stages = ", ".join(f"{k} {v}" for k, v in sorted(self.errors_by_stage.items())) or "none"
        return [
            f"run {self.run_id}",
            f"rows        {self.rows} ({self.rows - self.failed_rows} transcribed, {self.failed_rows} failed, "
            f"{self.skipped_rows} already done, {self.replaced_rows} replacing earlier rows)",
            f"segments    {self.segments}",
            f"errors      {stages}",
            f"audio       {self.audio_seconds / 3600:.3f} h ({self.audio_seconds:.1f} s)",
            f"wall time   {self.wall_seconds:.1f} s",
            f"throughput  {self.audio_seconds_per_second:.1f} audio seconds per second",
            f"files       {self.files} pair(s) of Parquet files (recordings/ + segments/)",
        ]


# --- planning: everything checked before any work -----------------------------------------------------------------


def check_inputs(spec: JobSpec) -> list[str]:
    """The manifests (normalised, each once), checked to exist and be non-empty; or the audio folder. The output
    folder must be creatable (a bucket must already exist: the job never creates one)."""
    if spec.dataset_manifest:
        try:
            manifests = manifest_urls(expand(spec.dataset_manifest))
        except (NoMatch, OSError) as error:  # a part that names nothing or a folder; a listing that failed
            raise ConfigError(f"dataset_manifest {redact(str(error))}") from None
        for url in manifests:
            if not _has_content(url):
                raise ConfigError(f"manifest {redact(url)} is empty: nothing to transcribe")
        sources = manifests
    else:
        fs, path = filesystem(spec.audio_dir)
        if not fs.isdir(path):
            raise ConfigError(f"audio_dir {redact(spec.audio_dir)!r} is not a folder")
        if next(iter_audio_dir(spec.audio_dir), None) is None:
            raise ConfigError(f"audio_dir {redact(spec.audio_dir)} has no audio files: nothing to transcribe")
        sources = [spec.audio_dir]
    try:
        ensure_output_folder(spec.output_path)
    except Exception as error:  # noqa: BLE001
        raise ConfigError(f"cannot use output_path {redact(spec.output_path)!r}: {redact(str(error))}") from None
    return sources


def _has_content(url: str) -> bool:
    """Whether a manifest holds anything but blank lines (read only as far as the first other byte)."""
    fs, path = filesystem(url)
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(1 << 16):
            if chunk.strip():
                return True
    return False


def check_model(spec: JobSpec, card: ModelCard) -> tuple[tuple[int, int] | None, str]:
    """The att_context_size to use (the most accurate by default) and the job's target as a canonical locale, both
    checked against the checkpoint."""
    try:
        locale = card.languages.resolve(spec.target_lang)
    except UnknownLocale as unknown:
        raise ConfigError(str(unknown)) from None
    if spec.att_context_size is None:
        return card.most_accurate_att_context_size, locale
    wanted = (int(spec.att_context_size[0]), int(spec.att_context_size[1]))
    if card.att_context_sizes and wanted not in card.att_context_sizes:
        offered = " ".join(f"[{a},{b}]" for a, b in card.att_context_sizes)
        raise ConfigError(f"att_context_size [{wanted[0]},{wanted[1]}] is not offered by the checkpoint: {offered}")
    return wanted, locale


def plan(overrides: list[str]) -> Plan:
    spec = load_spec(overrides)
    sources = check_inputs(spec)
    try:
        card = adapter_class(spec.model_adapter).describe(localize(spec.model_path))
    except Exception as error:  # noqa: BLE001 - a checkpoint we cannot read is a config fault
        raise ConfigError(f"cannot read the checkpoint {redact(spec.model_path)!r}: {type(error).__name__}: "
                          f"{redact(str(error))}") from None
    att, locale = check_model(spec, card)
    spec = dataclasses.replace(spec, att_context_size=list(att) if att else None)
    return Plan(spec=spec, sources=sources, is_audio_dir=not spec.dataset_manifest, card=card, prompt_locale=locale)


# --- earlier runs ------------------------------------------------------------------------------------------------


def earlier_runs(output_path: str) -> dict[str, dict]:
    """run_id -> the run record of every earlier run into this output."""
    layout = OutputLayout(output_path)
    fs, folder = filesystem(layout.runs)
    fs.invalidate_cache(folder)
    if not fs.exists(folder):
        return {}
    records = {}
    for path in fs.ls(folder, detail=False):
        if path.endswith(".json"):
            try:
                with fs.open(path, "rb") as handle:
                    record = json.loads(handle.read())
                records[record["run_id"]] = record
            except (ValueError, KeyError, OSError):
                continue
    return records


def changed_settings(p: Plan, records: dict[str, dict], present: set[str]) -> dict[str, dict]:
    """run_id -> {setting: (then, now)} for the runs whose rows are in the output and whose transcript settings
    differ from this run's."""
    now = p.transcript_settings()
    changed = {}
    for run_id in sorted(present):
        then = (records.get(run_id) or {}).get("transcript_settings")
        if then is None:
            continue  # a run without a record (or from before records had them): nothing to compare
        diff = {k: (then.get(k), v) for k, v in now.items() if then.get(k) != v}
        if diff:
            changed[run_id] = diff
    return changed


def settings_message(changed: dict[str, dict]) -> str:
    run_id, diff = next(iter(changed.items()))
    parts = ", ".join(f"{k}={then!r} (now {now!r})" for k, (then, now) in diff.items())
    return (f"output_path holds rows of {len(changed)} earlier run(s) made with other settings that change the "
            f"transcript: run {run_id} used {parts}. Use another output_path, or resume.on_settings_change=redo "
            f"(transcribe those rows again, replacing them) or =keep (keep them; transcribe only new rows)")


# --- running -----------------------------------------------------------------------------------------------------


def actor_pool(spec: JobSpec):
    import ray

    from pipeline.graph import ActorPool

    c = spec.compute
    gpus = ray.cluster_resources().get("GPU", 0)
    if c.device.startswith("cuda") and not gpus:
        raise ConfigError(f"compute.device={c.device} but the Ray cluster has no GPUs")
    use_gpu = c.device != "cpu" and gpus > 0
    max_actors = c.max_actors or (max(1, int(gpus // c.gpus_per_actor)) if use_gpu else 1)
    return ActorPool(use_gpu=use_gpu, min_actors=min(c.min_actors, max_actors), max_actors=max(max_actors,
                                                                                                c.min_actors))


def read_ahead_rows(spec: JobSpec) -> int:
    """How many rows may be read but not yet committed: enough for several commits and for every actor to have work
    queued, few enough that the driver's memory does not grow with the archive."""
    return max(4 * spec.output.rows_per_file, 64 * spec.compute.block_rows)


def _iterate(ds, out: queue.Queue) -> None:
    """Feed the dataset's finished blocks (references) to the driver loop, from a thread, so that the loop can keep
    committing by age and printing progress while it waits."""
    try:
        for bundle in ds.iter_internal_ref_bundles():  # references only: the driver never fetches rows
            out.put(bundle)
        out.put(None)
    except BaseException as error:  # noqa: BLE001 - re-raised on the driver's thread
        out.put(error)


def new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def run(p: Plan) -> RunSummary:
    """Transcribe every source row not already in the output, in one streaming pass that commits as it goes."""
    spec = p.spec
    run_id = new_run_id()
    lease = Lease(spec.output_path, run_id, spec.output.lease_seconds)
    try:
        lease.acquire()
    except LeaseHeld as held:
        raise ConfigError(str(held)) from None
    except OSError as error:  # the lease is the first write: a folder (or bucket) that refuses writes ends here
        raise ConfigError(f"cannot write to output_path {redact(spec.output_path)!r}: "
                          f"{redact(describe_fetch_error(error, spec.output_path))}") from None
    try:
        return _run(p, run_id)
    finally:
        lease.release()


def _run(p: Plan, run_id: str) -> RunSummary:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    spec = p.spec
    started = time.monotonic()
    removed = clean_uncommitted(spec.output_path)
    if removed:
        log.info("removed %d file(s) left uncommitted by an earlier run", len(removed))
    connect_ray(spec.compute.ray_address)
    if not sys.stderr.isatty():  # Ray's operator table every few seconds drowns a log; our progress line is one line
        ray.data.DataContext.get_current().enable_progress_bars = False

    index_task = ray.remote(num_cpus=0, num_returns=3)(_index_task)
    index_refs: list = []  # the resume index, in the object store (none for an empty output)
    stale: dict = {}
    present: set = set()
    if OutputLayout(spec.output_path).committed_files()[1]:
        index_ref, stale_ref, runs_ref = index_task.remote(spec.output_path, spec.resume.retry_failed, frozenset())
        stale, present = ray.get([stale_ref, runs_ref])
        index_refs = [index_ref]
    records = earlier_runs(spec.output_path)
    changed = changed_settings(p, records, present)
    if changed and spec.resume.on_settings_change == "refuse":
        raise ConfigError(settings_message(changed))
    if changed and spec.resume.on_settings_change == "redo":
        log.warning("resume.on_settings_change=redo: rows of %d earlier run(s) made with other settings are "
                    "transcribed again", len(changed))
        index_refs = [index_task.remote(spec.output_path, spec.resume.retry_failed, frozenset(changed))[0]]
    elif changed:
        log.warning("resume.on_settings_change=keep: rows of %d earlier run(s) made with other settings are kept",
                    len(changed))
    summary = RunSummary(run_id=run_id)
    if stale:  # an earlier job died between committing a newer copy and removing the older one
        summary.removed_rows += remove_rows(spec.output_path, {f: set(ids) for f, ids in stale.items()})
    write_run_record(p, run_id, summary, status="running")

    from pipeline.graph import transcription_graph, work_block_seconds

    # On the driver's node: a worker node lost mid-job must not take the books with it (pipeline/ledger.py).
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    ledger = ray.remote(num_cpus=0)(Ledger).options(scheduling_strategy=here).remote(read_ahead_rows(spec))
    source = SourceSettings(defaults=JobDefaults(spec.target_lang, spec.audio.channel_mode),
                            locales=p.card.languages,
                            block_seconds=work_block_seconds(spec.compute, spec.batch_size),
                            block_rows=spec.compute.block_rows)
    decode = DecodeSettings(audio=spec.audio, segmenting=spec.segmenting, sample_rate=p.card.sample_rate)
    info = RunInfo(run_id=run_id, model=spec.model_path, att_context_size=tuple(spec.att_context_size or ()) or None,
                   keep_raw_text=not spec.strip_lang_tags, channel_names=tuple(spec.audio.channel_names))
    ds = transcription_graph(p.sources, p.is_audio_dir, source, decode, spec, info, actor_pool(spec), index_refs,
                             ledger)

    committer = TranscriptCommitter(spec.output_path, run_id, RECORDINGS_SCHEMA, SEGMENTS_SCHEMA, spec.output)
    progress = Progress(spec.output.progress_seconds, len(p.sources))
    bundles: queue.Queue = queue.Queue()
    feeder = threading.Thread(target=_iterate, args=(ds, bundles), name="dataset-feeder", daemon=True)
    feeder.start()
    reported = 0  # commits told to the ledger (it paces reading by them)
    while True:
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
        newly = sum(w.rows for w in committer.written[reported:])
        if newly:
            reported = len(committer.written)
            ledger.add_committed.remote(newly)
        if progress.due():
            progress.emit(progress_line(progress, committer, ray.get(ledger.get.remote())))
    committer.close()
    if os.environ.get("NEMOTRON_BATCH_STATS"):  # Ray Data's per-stage timings, for tuning
        log.info("%s", ds.stats())
    totals: LedgerTotals = ray.get(ledger.get.remote())

    stages: Counter[str] = Counter()
    for written in committer.written:
        summary.rows += written.rows
        summary.failed_rows += written.failed_rows
        summary.audio_seconds += written.audio_seconds
        summary.segments += written.segments
        summary.files += 1
        stages.update(written.errors_by_stage)
    summary.errors_by_stage = dict(stages)
    summary.skipped_rows, summary.replaced_rows = totals.done, totals.replaced
    if summary.rows != totals.to_do:  # the promise: every input row in the output exactly once
        raise RuntimeError(f"wrote {summary.rows} row(s) for {totals.to_do} input row(s) to do")
    summary.removed_rows += tidy(spec.output_path, totals)
    summary.wall_seconds = time.monotonic() - started
    if progress.interval:
        progress.emit(progress_line(progress, committer, totals))
    write_run_record(p, run_id, summary, status="finished")
    return summary


def _index_task(output_path: str, retry_failed: bool, redo_runs: frozenset):
    """Ray task: the resume index (stays in the object store), the stale copies and the runs present (to the driver,
    both small)."""
    index = build_index(output_path, retry_failed=retry_failed, redo_runs=redo_runs)
    return index, index.stale, set(index.runs)


def tidy(output_path: str, totals: LedgerTotals) -> int:
    """After the commits: remove the older copies of replaced rows, and the orphans. Returns the rows removed."""
    if not totals.replaced and not totals.orphans:
        return 0
    import ray

    index, stale, _ = ray.get(ray.remote(num_cpus=0, num_returns=3)(_index_task).remote(output_path, True,
                                                                                         frozenset()))
    drop = {f: set(ids) for f, ids in stale.items()}
    if totals.orphans:
        located = ray.get(ray.remote(num_cpus=0)(_locate).remote(output_path, list(totals.orphans)))
        for f, ids in located.items():
            drop.setdefault(f, set()).update(ids)
    removed = remove_rows(output_path, drop) if drop else 0
    if removed:
        log.info("removed %d older or orphaned row(s) from earlier files", removed)
    return removed


def _locate(output_path: str, ids: list[str]) -> dict[str, list[str]]:
    """Ray task: which committed recordings file holds each of `ids`."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    wanted = pa.array(sorted(set(ids)), pa.string())
    fs, paths = OutputLayout(output_path).committed_files()
    found: dict[str, list[str]] = {}
    for path in paths:
        with fs.open(path, "rb") as handle:
            column = pq.read_table(handle, columns=["row_id"])["row_id"]
        hits = column.filter(pc.is_in(column, wanted)).to_pylist()
        if hits:
            found[path] = hits
    return found


def progress_line(progress: Progress, committer: TranscriptCommitter, totals: LedgerTotals) -> str:
    written = committer.written
    return progress.line(committed=sum(w.rows for w in written), failed=sum(w.failed_rows for w in written),
                         audio_seconds=sum(w.audio_seconds for w in written), rows_read=totals.rows,
                         rows_done=totals.done, sources_read=totals.sources)


def write_run_record(p: Plan, run_id: str, summary: RunSummary, status: str) -> None:
    """`<output_path>/runs/<run_id>.json`: the settings (credentials redacted) and, at the end, the summary."""

    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return redact(value) if isinstance(value, str) else value

    record = {
        "run_id": run_id,
        "status": status,
        "config": clean(asdict(p.spec)),
        "transcript_settings": clean(p.transcript_settings()),
        "att_context_size": p.spec.att_context_size,
        "model_class": p.card.model_class,
        "summary": {**asdict(summary), "audio_seconds_per_second": summary.audio_seconds_per_second},
    }
    layout = OutputLayout(p.spec.output_path)
    fs, folder = filesystem(layout.runs)
    fs.makedirs(folder, exist_ok=True)
    with fs.open(f"{folder}/{run_id}.json", "w") as handle:
        json.dump(record, handle, indent=2)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        print("Keys (defaults: conf/transcribe.yaml; override with key=value):")
        print(render_help())
        return 0

    def work() -> RunSummary:
        p = plan(args)
        log.info("model %s (%s): att_context_size %s, %d locales", redact(p.spec.model_path), p.card.model_class,
                 p.spec.att_context_size, len(p.card.locales))
        return run(p)

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
