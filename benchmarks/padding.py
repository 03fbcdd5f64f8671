"""Padding overhead (padded frames / real frames - 1) with and without duration bucketing.

    python -m benchmarks.padding

Durations are what the actors see: segments of real recordings after cutting (most near max_segment_seconds, the
last of each recording shorter) mixed with short clips (a log-normal around 5 s), in arrival order. The ways
compared: batches in arrival order (what `transcribe()` does over a manifest); sorted within each actor call, which
in the job is one work block of `compute.block_seconds` of audio (300 s, 1200 s, the default 240 s x batch_size at
most 7200 s, 7200 s); and with a cap on padded seconds per batch (`compute.max_batch_seconds`).
"""

from __future__ import annotations

import json

import numpy as np

from pipeline.batching import padding_overhead, plan_batches


def durations(n: int = 20_000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    out: list[float] = []
    while len(out) < n:
        if rng.random() < 0.5:  # a short clip
            out.append(float(np.clip(rng.lognormal(np.log(5.0), 0.6), 0.5, 30.0)))
        else:  # a recording cut into segments of 20-30 s, with a shorter remainder
            total = rng.uniform(30, 900)
            while total > 30:
                cut = rng.uniform(20, 30)
                out.append(cut)
                total -= cut
            out.append(total)
    return out[:n]


def blocks(seq: list[float], block_seconds: float) -> list[list[float]]:
    """Consecutive durations in blocks of about `block_seconds`, as the read stage cuts work blocks."""
    out, current, total = [], [], 0.0
    for d in seq:
        current.append(d)
        total += d
        if total >= block_seconds:
            out.append(current)
            current, total = [], 0.0
    return out + ([current] if current else [])


def overhead_in_calls(ds: list[float], batch_size: int, block_seconds: float,
                      max_batch_seconds: float | None = None) -> float:
    padded = real = 0.0
    for call in blocks(ds, block_seconds):
        batches = plan_batches(call, batch_size, max_batch_seconds)
        padded += sum(len(b) * max(call[i] for i in b) for b in batches)
        real += sum(call)
    return padded / real - 1.0


def main() -> None:
    ds = durations()
    rows = []
    for batch_size in (16, 64):
        arrival = [list(range(i, min(i + batch_size, len(ds)))) for i in range(0, len(ds), batch_size)]
        rows.append({
            "batch_size": batch_size,
            "arrival_order": round(padding_overhead(ds, arrival), 4),
            "sorted_per_block_300s": round(overhead_in_calls(ds, batch_size, 300.0), 4),
            "sorted_per_block_1200s": round(overhead_in_calls(ds, batch_size, 1200.0), 4),
            "sorted_per_block_240x_batch_size": round(
                overhead_in_calls(ds, batch_size, min(240.0 * batch_size, 7200.0)), 4),
            "sorted_per_block_7200s": round(overhead_in_calls(ds, batch_size, 7200.0), 4),
            "sorted_per_block_1200s_max_batch_seconds": round(
                overhead_in_calls(ds, batch_size, 1200.0, max_batch_seconds=batch_size * 15.0), 4),
        })
    print(json.dumps({"clips": len(ds), "mean_seconds": round(float(np.mean(ds)), 2), "results": rows}, indent=2))


if __name__ == "__main__":
    main()
