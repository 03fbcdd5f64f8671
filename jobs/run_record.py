"""A run's summary (what the job prints at the end) and its record (`<output_path>/runs/<run_id>.json`: the settings
with credentials redacted, the status, and at the end the summary). A later run reads the records to compare
transcript settings (jobs.reruns); the report lists them."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from connectors.storage import redact
from jobs.plan import Plan

RUNNING, FINISHED, STOPPED = "running", "finished", "stopped"


def new_run_id() -> str:
    """The run's UTC start time first, so that file names sort in commit order (connectors.output_store)."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


@dataclass
class RunSummary:
    run_id: str
    rows: int = 0  # committed by this run
    skipped_rows: int = 0  # already done
    replaced_rows: int = 0  # done again: an edited line, a failed row, other settings
    removed_rows: int = 0  # older copies and orphans removed from earlier files
    segments: int = 0
    pieced_rows: int = 0  # recordings longer than a work block: decoded and transcribed in pieces, then put together
    failed_rows: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    files: int = 0
    errors_by_stage: dict[str, int] = field(default_factory=dict)
    stopped_by: str | None = None  # the signal that stopped the run early (SIGTERM, SIGINT)
    exit_code: int = 0  # of the job's process: 0, or 128 + the signal's number

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
        ] + ([f"stopped     by {self.stopped_by} before the end: what was finished is committed; run the same "
              f"command again to do the rest"] if self.stopped_by else [])


def _clean(value):
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return redact(value) if isinstance(value, str) else value


def write_run_record(p: Plan, summary: RunSummary, status: str) -> None:
    record = {
        "run_id": summary.run_id,
        "status": status,
        "config": _clean(asdict(p.spec)),
        "transcript_settings": _clean(p.transcript_settings()),
        "att_context_size": p.att_context_size,
        "model_class": p.card.model_class,
        "summary": {**asdict(summary), "audio_seconds_per_second": summary.audio_seconds_per_second},
    }
    p.store.write_run_record(summary.run_id, record)
