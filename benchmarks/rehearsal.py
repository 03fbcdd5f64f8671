"""The capacity model (README "Capacity model") checked against one run on the rehearsal cluster.

    python -m benchmarks.rehearsal --nodes 3 --clips 3000 --rtfx 20 --block-seconds 120

Starts the rehearsal cluster of the tests (`tests.jobs.test_rehearsal_cluster.Cluster`: a head with no CPU or GPU,
`--nodes` nodes declaring 2 GPUs and 4 CPUs each, every one a `ray start` process on this machine), submits
`python -m jobs.transcribe` with `ray job submit` and the simulated accelerator (`benchmarks.adapters`, one actor per
declared GPU) over `--clips` clips of 2-6 s (8 kHz μ-law, `benchmarks.machinery.make_clips`), and compares:

- predicted, before the run, from the model: accelerator seconds = padded audio / rtfx, where the padded audio is
  what the actors' batching makes of these clips (each work block sorted by duration and cut into batches of
  `batch_size`, as `pipeline.batching.plan_batches` does); the steady-state throughput with every actor busy,
  audio / (accelerator seconds / actors); the CPU that throughput needs, from `--cpu-seconds-per-audio-hour` (the
  zero-cost job's figure, `benchmarks.machinery zero-cost`);
- measured: the same from the actors' own logs: throughput between the first call's start and the last call's end,
  each actor's busy fraction between its own first and last call, the whole job's.

Absolute times on a shared 2-core machine vary with its load; the prediction is for the accelerators, so the run must
leave the CPUs idle enough (the report says how much CPU the predicted throughput needs).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine
from benchmarks.machinery import ROOT, make_clips
from pipeline.batching import plan_batches

MIN_CLIP_SECONDS = 1.0  # as benchmarks.adapters pads a clip


def padded_seconds(durations: list[float], block_seconds: float, block_rows: int, batch_size: int) -> float:
    """The audio seconds the actors will pad to: work blocks cut in manifest order by audio and rows, each sorted
    and batched."""
    padded, block, seconds = 0.0, [], 0.0

    def flush(items: list[float]) -> float:
        items = [max(d, MIN_CLIP_SECONDS) for d in items]
        return sum(len(b) * max(items[i] for i in b) for b in plan_batches(items, batch_size, None))

    for d in durations:  # as pipeline.source.cut_blocks cuts them
        block.append(d)
        seconds += d
        if seconds >= block_seconds or len(block) >= block_rows:
            padded += flush(block)
            block, seconds = [], 0.0
    return padded + (flush(block) if block else 0.0)


def run(args) -> dict:
    from tests.jobs.test_rehearsal_cluster import Cluster

    manifest, audio = make_clips(Path(args.data) / "clips", args.clips)
    durations = [json.loads(line)["duration"] for line in manifest.read_text().splitlines()]
    actors = 2 * args.nodes
    padded = padded_seconds(durations, args.block_seconds, 1024, args.batch_size)
    accelerator = padded / args.rtfx
    predicted_rate = audio / (accelerator / actors)
    prediction = {"actors": actors, "padded_audio_seconds": round(padded, 1),
                  "padding": round(padded / audio - 1, 3), "accelerator_seconds": round(accelerator, 1),
                  "steady_audio_seconds_per_second": round(predicted_rate, 1),
                  "steady_busy_fraction": 1.0,
                  "cpu_cores_needed": round(predicted_rate * args.cpu_seconds_per_audio_hour / 3600, 2)}

    with tempfile.TemporaryDirectory(prefix="rehearsal-", dir="/tmp") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            for i in range(args.nodes):
                cluster.add_gpu_node(f"gpu_{i}")
            started = time.time()
            job = cluster.submit("capacity", manifest,
                                 [f"compute.min_actors={actors}", f"compute.block_seconds={args.block_seconds}",
                                  f"batch_size={args.batch_size}"], rtfx=args.rtfx)
            status = job.wait(timeout=args.timeout)
            ended = time.time()
            if status != "SUCCEEDED":
                raise SystemExit(f"job {status}:\n{job.logs()[-4000:]}")
            calls = job.calls()
        finally:
            cluster.stop()

    busy = sum(c.end - c.start for c in calls)
    first, last = min(c.start for c in calls), max(c.end for c in calls)
    per_actor = {}
    for pid in sorted({c.pid for c in calls}):
        mine = [c for c in calls if c.pid == pid]
        span = max(c.end for c in mine) - min(c.start for c in mine)
        per_actor[pid] = round(sum(c.end - c.start for c in mine) / span, 3) if span else None
    measured = {"actors_that_called": len(per_actor), "accelerator_seconds": round(busy, 1),
                "padded_audio_seconds": round(sum(c.padded_seconds for c in calls), 1), "batches": len(calls),
                "steady_audio_seconds_per_second": round(audio / (last - first), 1),
                "steady_busy_fraction": round(busy / (actors * (last - first)), 3),
                "busy_per_actor_first_to_last_call": per_actor,
                "job_seconds_submit_to_end": round(ended - started, 1),
                "first_call_after_submit_seconds": round(first - started, 1),
                "whole_job_audio_seconds_per_second": round(audio / (ended - started), 1),
                "whole_job_busy_fraction": round(busy / (actors * (ended - started)), 3)}
    return {"benchmark": "rehearsal-capacity", "nodes": args.nodes, "clips": args.clips,
            "audio_seconds": round(audio, 1), "rtfx": args.rtfx, "block_seconds": args.block_seconds,
            "batch_size": args.batch_size, "predicted": prediction, "measured": measured,
            "steady_throughput_measured_vs_predicted": round(
                measured["steady_audio_seconds_per_second"] / predicted_rate, 3),
            "machine": machine()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--clips", type=int, default=3000)
    parser.add_argument("--rtfx", type=float, default=20.0)
    parser.add_argument("--block-seconds", type=float, default=120.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--cpu-seconds-per-audio-hour", type=float, default=3.4,
                        help="the job's CPU per audio hour (benchmarks.machinery zero-cost)")
    parser.add_argument("--timeout", type=float, default=1200)
    parser.add_argument("--data", default=str(ROOT / "build" / "bench"))
    print(json.dumps(run(parser.parse_args(argv)), indent=2))


if __name__ == "__main__":
    main()
