"""Transcribe audio manifests (or a folder) to Parquet.

    python -m jobs.transcribe dataset_manifest=s3://bucket/calls/*.jsonl output_path=s3://bucket/out target_lang=auto
    ray job submit --working-dir . -- python -m jobs.transcribe ...     # the same module on a cluster

The whole configuration is parsed and checked (keys, types, manifests, output folder, checkpoint locales and
latency settings) before any work starts; a bad one ends with one message and exit code 2.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from omegaconf import OmegaConf

import pyarrow as pa
import pyarrow.compute as pc

from connectors.manifests import source_table
from connectors.model_store import localize
from connectors.parquet_sink import TranscriptSink, clean_uncommitted, committed_row_ids
from connectors.storage import filesystem, redact
from jobs.config import ConfigError, TranscribeConfig, check_inputs, check_model, load_config
from pipeline.assembly import RunInfo
from pipeline.decode import DecodeSettings
from pipeline.models import adapter_class
from pipeline.models.base import ModelCard, ModelSettings
from pipeline.records import RECORDINGS_SCHEMA, SEGMENTS_SCHEMA
from pipeline.segmenter import SegmentPolicy

log = logging.getLogger("nemotron_batch")


@dataclass(frozen=True)
class Plan:
    """Everything decided before work starts."""

    cfg: TranscribeConfig
    manifests: list[str]
    card: ModelCard
    att_context_size: tuple[int, int] | None


@dataclass
class RunSummary:
    run_id: str
    rows: int = 0
    skipped_rows: int = 0
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
            f"{self.skipped_rows} already done)",
            f"segments    {self.segments}",
            f"errors      {stages}",
            f"audio       {self.audio_seconds / 3600:.3f} h ({self.audio_seconds:.1f} s)",
            f"wall time   {self.wall_seconds:.1f} s",
            f"throughput  {self.audio_seconds_per_second:.1f} audio seconds per second",
            f"files       {self.files} pair(s) of Parquet files (recordings/ + segments/)",
        ]


def plan(overrides: list[str]) -> Plan:
    cfg = load_config(overrides)
    manifests = check_inputs(cfg)
    try:
        card = adapter_class(cfg.model_adapter).describe(localize(cfg.model_path))
    except Exception as error:  # noqa: BLE001 - a checkpoint we cannot read is a config fault
        raise ConfigError(f"cannot read the checkpoint {cfg.model_path!r}: {type(error).__name__}: {error}") from None
    return Plan(cfg, manifests, card, check_model(cfg, card))


def connect_ray(cfg: TranscribeConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    # No address: RAY_ADDRESS if set (ray job submit sets it), otherwise an embedded local Ray, without a dashboard
    # (it costs seconds at start and its agents outlive a killed driver).
    embedded = not cfg.ray_address and not os.environ.get("RAY_ADDRESS")
    ray.init(address=cfg.ray_address, log_to_driver=True, logging_level=logging.WARNING,
             **({"include_dashboard": False} if embedded else {}))


def compute_settings(cfg: TranscribeConfig):
    import ray

    from pipeline.graph import ComputeSettings

    gpus = ray.cluster_resources().get("GPU", 0)
    if cfg.device.startswith("cuda") and not gpus:
        raise ConfigError(f"device={cfg.device} but the Ray cluster has no GPUs")
    use_gpu = cfg.device != "cpu" and gpus > 0
    max_actors = cfg.max_actors or (max(1, int(gpus // cfg.gpus_per_actor)) if use_gpu else 1)
    return ComputeSettings(
        use_gpu=use_gpu, gpus_per_actor=cfg.gpus_per_actor, cpus_per_actor=cfg.cpus_per_actor,
        min_actors=min(cfg.min_actors, max_actors), max_actors=max(max_actors, cfg.min_actors),
        decode_cpus=cfg.decode_cpus, decode_memory_mb=cfg.decode_memory_mb, rows_per_block=cfg.rows_per_block,
        rows_per_call=cfg.batch_size * cfg.batches_per_call,
        rows_per_file=cfg.rows_per_file,
    )


def run(p: Plan) -> RunSummary:
    """Transcribe every source row not already in the output, wave by wave; each wave commits its own files."""
    from pipeline.graph import transcription_graph

    cfg = p.cfg
    run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    removed = clean_uncommitted(cfg.output_path)
    if removed:
        log.info("removed %d file(s) left uncommitted by an earlier run", len(removed))
    source = source_table(p.manifests, cfg.audio_dir)
    if not source.num_rows:  # a manifest of blank lines, a folder with no audio: a config fault, not a run
        where = ", ".join(redact(m) for m in p.manifests) if p.manifests else redact(cfg.audio_dir)
        raise ConfigError(f"{'manifest' if p.manifests else 'audio_dir'} {where} is empty: nothing to transcribe")
    done = committed_row_ids(cfg.output_path)
    todo = source.filter(pc.invert(pc.is_in(source["row_id"], pa.array(sorted(done), pa.string())))) \
        if done else source
    summary = RunSummary(run_id=run_id, skipped_rows=source.num_rows - todo.num_rows)
    if summary.skipped_rows:
        log.info("%d of %d row(s) already in %s: skipped", summary.skipped_rows, source.num_rows,
                 redact(cfg.output_path))

    connect_ray(cfg)
    compute = compute_settings(cfg)
    model = ModelSettings(model_path=cfg.model_path, att_context_size=p.att_context_size, device=cfg.device,
                          dtype=cfg.dtype, batch_size=cfg.batch_size, max_batch_seconds=cfg.max_batch_seconds,
                          timestamps=cfg.timestamps, confidence=cfg.confidence)
    info = RunInfo(run_id=run_id, model=cfg.model_path, att_context_size=p.att_context_size,
                   keep_raw_text=not cfg.strip_lang_tags, channel_names=tuple(cfg.channel_names))
    decode = DecodeSettings(
        sample_rate=p.card.sample_rate, max_duration=cfg.max_duration, max_file_mb=cfg.max_file_mb,
        channel_mode=cfg.channel_mode, rows_per_block=cfg.rows_per_block,
        segment=SegmentPolicy(max_seconds=cfg.max_segment_seconds, min_seconds=cfg.min_segment_seconds,
                              overlap_seconds=cfg.segment_overlap_seconds),
    )
    waves = math.ceil(todo.num_rows / cfg.wave_rows)
    stages: Counter[str] = Counter()
    for wave in range(waves):
        rows = todo.slice(wave * cfg.wave_rows, cfg.wave_rows)
        log.info("wave %d/%d: %d recording(s)", wave + 1, waves, rows.num_rows)
        sink = TranscriptSink(cfg.output_path, RECORDINGS_SCHEMA, SEGMENTS_SCHEMA, run_id=run_id,
                              rows_per_file=cfg.rows_per_file)
        transcription_graph(rows, decode, model, cfg.model_adapter, cfg.target_lang, info, compute) \
            .write_datasink(sink)
        for written in sink.written:
            summary.rows += written.rows
            summary.failed_rows += written.failed_rows
            summary.audio_seconds += written.audio_seconds
            summary.segments += written.segments
            summary.files += 1
            stages.update(written.errors_by_stage)
    summary.errors_by_stage = dict(stages)
    summary.wall_seconds = time.monotonic() - started
    if summary.rows != todo.num_rows:  # the promise: every input row in the output exactly once
        raise RuntimeError(f"wrote {summary.rows} row(s) for {todo.num_rows} input row(s)")
    write_run_record(cfg, p, summary)
    return summary


def write_run_record(cfg: TranscribeConfig, p: Plan, summary: RunSummary) -> None:
    """`<output_path>/runs/<run_id>.json`: the configuration and the summary, for reports and for audits."""
    config = {k: redact(v) if isinstance(v, str) else v
              for k, v in OmegaConf.to_container(OmegaConf.structured(cfg)).items()}
    record = {
        "run_id": summary.run_id,
        "config": config,
        "att_context_size": list(p.att_context_size) if p.att_context_size else None,
        "model_class": p.card.model_class,
        "summary": {**asdict(summary), "audio_seconds_per_second": summary.audio_seconds_per_second},
    }
    fs, folder = filesystem(f"{cfg.output_path.rstrip('/')}/runs")
    fs.makedirs(folder, exist_ok=True)
    with fs.open(f"{folder}/{summary.run_id}.json", "w") as handle:
        json.dump(record, handle, indent=2)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        print("Keys (conf/transcribe.yaml):", ", ".join(TranscribeConfig.__dataclass_fields__))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        p = plan(args)
        log.info("model %s (%s): att_context_size %s, locales %s", redact(p.cfg.model_path), p.card.model_class,
                 p.att_context_size, ", ".join(p.card.locales))
        summary = run(p)
    except ConfigError as error:
        print(f"error: {redact(str(error))}", file=sys.stderr)
        return 2
    print("\n".join(summary.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
