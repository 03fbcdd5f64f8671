"""Group clips into model batches so that padding stays small.

A batch costs as much as its longest clip times its size, so clips of similar length go together: sort by duration,
then cut the sorted list into batches bounded by a count (`batch_size`) and, optionally, by total padded audio
seconds (`max_batch_seconds`), so that a batch of long segments does not run out of memory while a batch of short
ones still fills the device.
"""

from __future__ import annotations

from typing import Sequence


def plan_batches(
    durations: Sequence[float], batch_size: int, max_batch_seconds: float | None = None
) -> list[list[int]]:
    """Indices into `durations`, grouped into batches, longest first (a too-large batch then fails early).

    Every index appears in exactly one batch. The padded cost of a batch is len(batch) * max(duration); a batch is
    closed when adding the next clip would exceed `batch_size` items or `max_batch_seconds` of padded audio. A single
    clip longer than `max_batch_seconds` still gets a batch of its own.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(durations)), key=lambda i: durations[i], reverse=True)
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0.0
    for i in order:
        candidate_longest = max(longest, durations[i])
        over_count = len(current) + 1 > batch_size
        over_seconds = max_batch_seconds is not None and (len(current) + 1) * candidate_longest > max_batch_seconds
        if current and (over_count or over_seconds):
            batches.append(current)
            current, candidate_longest = [], durations[i]
        current.append(i)
        longest = candidate_longest
    if current:
        batches.append(current)
    return batches


def padding_overhead(durations: Sequence[float], batches: Sequence[Sequence[int]]) -> float:
    """Padded frames over real frames, minus one: 0.0 means no padding at all."""
    real = sum(durations)
    padded = sum(len(b) * max(durations[i] for i in b) for b in batches if b)
    return padded / real - 1.0 if real > 0 else 0.0
