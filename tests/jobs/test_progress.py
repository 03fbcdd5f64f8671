"""Tests for jobs.progress: one readable line, what it says while reading and once the total is known."""

from __future__ import annotations

from jobs.progress import Progress


def test_the_line_while_reading_and_after(monkeypatch) -> None:
    clock = iter([100.0, 160.0, 220.0])
    monkeypatch.setattr("jobs.progress.time.monotonic", lambda: next(clock))
    progress = Progress(interval=30, sources=4)
    reading = progress.line(committed=1200, failed=3, audio_seconds=3600.0, rows_read=5000, rows_done=1000,
                            sources_read=1)
    assert reading == ("progress  1,200 of >= 4,000 rows committed | 1.00 h audio | 60.0 audio-s/s | 3 failed | "
                       "reading 1/4 manifests")
    done = progress.line(committed=5000, failed=7, audio_seconds=36_000.0, rows_read=21_000, rows_done=1000,
                         sources_read=4)
    # 20,000 to do, 5,000 committed in 120 s: 15,000 more at that rate is 360 s.
    assert done == ("progress  5,000 of 20,000 rows committed (25.0%) | 10.00 h audio | 300.0 audio-s/s | 7 failed | "
                    "ETA 0:06:00")


def test_interval_zero_never_prints() -> None:
    assert Progress(interval=0, sources=1).due() is False
