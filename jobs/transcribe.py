"""Transcribe audio manifests (or a folder) to Parquet.

    python -m jobs.transcribe dataset_manifest=s3://bucket/calls/*.jsonl output_path=s3://bucket/out target_lang=auto
    ray job submit --working-dir . -- python -m jobs.transcribe ...     # the same module on a cluster

The whole configuration is parsed and checked (keys, types, manifests, output folder, checkpoint locales and
latency settings) before any work starts; a bad one ends with one message and exit code 2.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from omegaconf import OmegaConf

from connectors.model_store import localize
from connectors.parquet_sink import ParquetSink
from connectors.storage import filesystem
from jobs.config import ConfigError, TranscribeConfig, check_inputs, check_model, load_config
from pipeline.assembly import RunInfo
from pipeline.decode import DecodeSettings
from pipeline.models import adapter_class
from pipeline.models.base import ModelCard, ModelSettings
from pipeline.records import TRANSCRIPT_SCHEMA

log = logging.getLogger("nemotron_batch")
RECORDINGS_TABLE = "recordings"


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
            f"rows        {self.rows} ({self.rows - self.failed_rows} transcribed, {self.failed_rows} failed)",
            f"errors      {stages}",
            f"audio       {self.audio_seconds / 3600:.3f} h ({self.audio_seconds:.1f} s)",
            f"wall time   {self.wall_seconds:.1f} s",
            f"throughput  {self.audio_seconds_per_second:.1f} audio seconds per second",
            f"files       {self.files} Parquet file(s)",
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
    # No address: RAY_ADDRESS if set (ray job submit sets it), otherwise an embedded local Ray.
    ray.init(address=cfg.ray_address, log_to_driver=True, logging_level=logging.WARNING)


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
        decode_cpus=cfg.decode_cpus, rows_per_block=cfg.rows_per_block, rows_per_call=cfg.batch_size * 4,
    )


def run(p: Plan) -> RunSummary:
    from pipeline.graph import source_rows, transcription_graph

    cfg = p.cfg
    run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    connect_ray(cfg)
    compute = compute_settings(cfg)
    model = ModelSettings(model_path=cfg.model_path, att_context_size=p.att_context_size, device=cfg.device,
                          dtype=cfg.dtype, batch_size=cfg.batch_size)
    info = RunInfo(run_id=run_id, model=cfg.model_path, att_context_size=p.att_context_size,
                   keep_raw_text=not cfg.strip_lang_tags)
    decode = DecodeSettings(sample_rate=p.card.sample_rate, max_duration=cfg.max_duration, max_file_mb=cfg.max_file_mb)
    dataset = transcription_graph(
        source_rows(p.manifests, cfg.audio_dir, cfg.rows_per_block), decode, model, cfg.model_adapter,
        cfg.target_lang, info, compute,
    )
    sink = ParquetSink(f"{cfg.output_path.rstrip('/')}/{RECORDINGS_TABLE}", TRANSCRIPT_SCHEMA, run_id=run_id,
                       rows_per_file=cfg.rows_per_file)
    started = time.monotonic()
    dataset.write_datasink(sink)
    summary = RunSummary(run_id=run_id, wall_seconds=time.monotonic() - started, files=len(sink.written))
    stages: Counter[str] = Counter()
    for written in sink.written:
        summary.rows += written.rows
        summary.failed_rows += written.failed_rows
        summary.audio_seconds += written.audio_seconds
        stages.update(written.errors_by_stage)
    summary.errors_by_stage = dict(stages)
    write_run_record(cfg, p, summary)
    return summary


def write_run_record(cfg: TranscribeConfig, p: Plan, summary: RunSummary) -> None:
    """`<output_path>/runs/<run_id>.json`: the configuration and the summary, for reports and for audits."""
    record = {
        "run_id": summary.run_id,
        "config": OmegaConf.to_container(OmegaConf.structured(cfg)),
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
        log.info("model %s (%s): att_context_size %s, locales %s", p.cfg.model_path, p.card.model_class,
                 p.att_context_size, ", ".join(p.card.locales))
        summary = run(p)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(summary.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
