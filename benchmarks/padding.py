"""Padding overhead (padded frames / real frames - 1) with and without duration bucketing.

    python -m benchmarks.padding

Durations are what the actors see: segments of real recordings after cutting (most near max_segment_seconds, the
last of each recording shorter) mixed with short clips (a log-normal around 5 s), in arrival order. Three ways:
batches in arrival order (what `transcribe()` does over a manifest); sorted within each actor call of
`4 x batch_size` rows (what the job does); and with a cap on padded seconds per batch (`max_batch_seconds`).
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


def chunked(seq: list[float], size: int) -> list[list[float]]:
    return [seq[i:i + size] for i in range(0, len(seq), size)]


def overhead_in_calls(ds: list[float], batch_size: int, call_rows: int, max_batch_seconds: float | None = None):
    padded = real = 0.0
    for call in chunked(ds, call_rows):
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
            "sorted_per_call_4x": round(overhead_in_calls(ds, batch_size, 4 * batch_size), 4),
            "sorted_per_call_16x": round(overhead_in_calls(ds, batch_size, 16 * batch_size), 4),
            "sorted_per_call_4x_max_batch_seconds": round(
                overhead_in_calls(ds, batch_size, 4 * batch_size, max_batch_seconds=batch_size * 15.0), 4),
        })
    print(json.dumps({"clips": len(ds), "mean_seconds": round(float(np.mean(ds)), 2), "results": rows}, indent=2))


if __name__ == "__main__":
    main()
