"""One progress line at a steady interval, for `ray job logs` and any log file:

    progress  4,200 of 20,000 rows committed (21.0%) | 4.61 h audio | 812.3 audio-s/s | 3 failed | ETA 0:05:58

Rows are counted when committed (so the line never runs ahead of what a rerun would find done); the total is known
once every manifest has been read, and shown as `of >= N` until then. With --verbose in a terminal Ray Data's own bars
show as well.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

log = logging.getLogger("nemotron_batch")


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@dataclass
class Progress:
    interval: float  # seconds between lines; 0: never
    sources: int  # manifests (or 1 for an audio folder)
    started: float = 0.0
    last: float = 0.0

    def __post_init__(self) -> None:
        self.started = self.last = time.monotonic()

    def line(self, committed: int, failed: int, audio_seconds: float, rows_read: int, rows_done: int,
             sources_read: int) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        to_do = rows_read - rows_done
        reading = sources_read < self.sources
        total = f"of >= {to_do:,}" if reading else f"of {to_do:,}"
        share = f" ({100.0 * committed / to_do:.1f}%)" if to_do and not reading else ""
        rate = audio_seconds / elapsed
        eta = ""
        if not reading and committed and to_do > committed:
            eta = f" | ETA {_clock((to_do - committed) * elapsed / committed)}"
        read = f" | reading {sources_read}/{self.sources} manifests" if reading else ""
        return (f"progress  {committed:,} {total} rows committed{share} | {audio_seconds / 3600:.2f} h audio | "
                f"{rate:.1f} audio-s/s | {failed:,} failed{eta}{read}")

    def due(self) -> bool:
        return bool(self.interval) and time.monotonic() - self.last >= self.interval

    def emit(self, text: str) -> None:
        self.last = time.monotonic()
        log.info("%s", text)
