"""What word timestamps and confidence cost: the job with and without them, same clips, same process.

    python -m benchmarks.options_cost [--clips 48]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from benchmarks.common import machine
from benchmarks.job_vs_transcribe import make_clips


def job_seconds(model: str, manifest: Path, out: Path, extra: list[str]) -> float:
    from jobs.cluster import connect_ray
    from jobs.transcribe import plan, run

    p = plan([f"model_path={model}", f"dataset_manifest={manifest}", f"output_path={out}", "target_lang=en-US",
              *extra])
    connect_ray(p.spec.compute.ray_address)
    summary = run(p)
    assert summary.failed_rows == 0, summary
    return summary.wall_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from pipeline.models.tiny import build_checkpoint

    work = Path(tempfile.mkdtemp(prefix="bench-options-"))
    model = str(build_checkpoint(work / "tiny.nemo"))
    (work / "clips").mkdir()
    manifest, _paths, audio_s = make_clips(work / "clips", args.clips)
    job_seconds(model, manifest, work / "warmup", [])
    variants = {"plain": [], "timestamps": ["timestamps=true"], "confidence": ["confidence=true"],
                "timestamps+confidence": ["timestamps=true", "confidence=true"]}
    best = {name: min(job_seconds(model, manifest, work / f"{name}-{i}", extra) for i in range(args.runs))
            for name, extra in variants.items()}
    print(json.dumps({
        "machine": machine(), "clips": args.clips, "audio_seconds": round(audio_s, 1),
        "audio_s_per_s": {k: round(audio_s / v, 1) for k, v in best.items()},
        "throughput_vs_plain": {k: round(best["plain"] / v, 3) for k, v in best.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
