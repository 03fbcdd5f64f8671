"""Throughput of the whole job against two baselines, same clips, same model, same batch size, one process.

    python -m benchmarks.job_vs_transcribe [--clips 96] [--model path.nemo] [--batch-size 16] [--runs 2]
                                            [--att-context-size 56,13]

- `transcribe()` loop: NeMo's own single-process `model.transcribe(paths)` over the WAV files (its own loading and
  decoding included), warmed up. What a user gets without this project.
- model-only: the leaderboard's method. All audio decoded into memory first, sorted by duration, warmed up; only the
  model calls are timed (encoder forward with the prompt, greedy RNNT decoding), in batches of `batch_size`. The upper
  bound for any pipeline around this model.
- the job: manifest to Parquet on an embedded local Ray (Ray's start-up excluded: a cluster is up before a job is
  submitted).
Throughput is audio seconds per wall second; the ratios are job / baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks.common import machine


def make_clips(folder: Path, count: int, seed: int = 0) -> tuple[Path, float]:
    """`count` WAV clips of 2-20 s (speech-like tones at 16 kHz), and a manifest of them."""
    rng = random.Random(seed)
    total = 0.0
    lines = []
    for i in range(count):
        seconds = rng.uniform(2.0, 20.0)
        t = np.arange(int(seconds * 16000)) / 16000
        x = 0.2 * np.sin(2 * np.pi * rng.uniform(120, 400) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
        x += 0.01 * np.random.default_rng(i).standard_normal(len(t))
        path = folder / f"clip-{i:04d}.wav"
        sf.write(path, x.astype(np.float32), 16000, subtype="PCM_16")
        total += seconds
        lines.append(json.dumps({"audio_filepath": str(path), "duration": seconds}))
    manifest = folder / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, total


def baseline(model_path: str, paths: list[str], batch_size: int, att: list[int]) -> float:
    """Wall seconds of NeMo's own offline loop: restore, set latency, transcribe(paths) with a fixed language."""
    import torch
    from nemo.collections.asr.models import ASRModel
    from nemo.collections.asr.models.rnnt_bpe_models_prompt import RNNTPromptTranscribeConfig

    model = ASRModel.restore_from(model_path, map_location="cpu" if not torch.cuda.is_available() else "cuda")
    model.encoder.set_default_att_context_size(att)
    model.eval()
    # File paths need use_lhotse=False in the override config, or target_lang is ignored (see shared notes).
    trcfg = RNNTPromptTranscribeConfig(batch_size=batch_size, use_lhotse=False, target_lang="en-US", num_workers=0,
                                       verbose=False)
    model.transcribe(paths[:2], batch_size=batch_size, override_config=trcfg)  # warm-up
    started = time.monotonic()
    model.transcribe(paths, batch_size=batch_size, override_config=trcfg)
    return time.monotonic() - started


def model_only(model_path: str, paths: list[str], batch_size: int, att: list[int]) -> float:
    """Wall seconds of the model calls alone over presorted, preloaded audio (what leaderboards time)."""
    from pipeline.audio import decode_audio, select_channels
    from pipeline.models.base import AudioItem, ModelSettings
    from pipeline.models.nemo_rnnt import NemotronRNNT

    adapter = NemotronRNNT(ModelSettings(model_path=model_path, att_context_size=(att[0], att[1]),
                                         batch_size=batch_size))
    audio = [select_channels(decode_audio(open(p, "rb").read()), "mix")[0] for p in paths]
    items = sorted((AudioItem(samples=a, target_lang="en-US") for a in audio), key=lambda i: len(i.samples),
                   reverse=True)
    batches = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    adapter._run(batches[-1])  # warm-up
    started = time.monotonic()
    for batch in batches:
        adapter._run(batch)
    return time.monotonic() - started


def job(model_path: str, manifest: Path, out: Path, batch_size: int, att: list[int], extra: list[str]) -> float:
    from jobs.transcribe import connect_ray, plan, run

    p = plan([f"model_path={model_path}", f"dataset_manifest={manifest}", f"output_path={out}",
              f"batch_size={batch_size}", f"att_context_size=[{att[0]},{att[1]}]", "target_lang=en-US", *extra])
    connect_ray(p.cfg)
    summary = run(p)
    assert summary.failed_rows == 0, summary
    return summary.wall_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=96)
    parser.add_argument("--model", default=None, help=".nemo to use (default: build the tiny model)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--att-context-size", default="56,13")
    parser.add_argument("--runs", type=int, default=2, help="repeat both sides; the best of each is reported")
    parser.add_argument("--ray-cpus", type=int, default=None, help="logical CPUs of the embedded Ray (default: cores)")
    parser.add_argument("--job", nargs="*", default=[], help="extra job settings, e.g. cpus_per_actor=2")
    args = parser.parse_args()
    att = [int(v) for v in args.att_context_size.split(",")]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    work = Path(tempfile.mkdtemp(prefix="bench-"))
    model_path = args.model
    if model_path is None:
        from pipeline.models.tiny import build_checkpoint

        model_path = str(build_checkpoint(work / "tiny.nemo"))
    (work / "clips").mkdir()
    manifest, audio_seconds = make_clips(work / "clips", args.clips)
    paths = [json.loads(line)["audio_filepath"] for line in manifest.read_text().splitlines()]

    base_s = min(baseline(model_path, paths, args.batch_size, att) for _ in range(args.runs))
    model_s = min(model_only(model_path, paths, args.batch_size, att) for _ in range(args.runs))
    if args.ray_cpus:
        import ray

        ray.init(num_cpus=args.ray_cpus, include_dashboard=False, logging_level="WARNING")
    job_s = min(job(model_path, manifest, work / f"out-{i}", args.batch_size, att, args.job)
                for i in range(args.runs))
    result = {
        "machine": machine(),
        "model": model_path, "clips": args.clips, "audio_seconds": round(audio_seconds, 1),
        "batch_size": args.batch_size, "att_context_size": att, "job_settings": args.job,
        "ray_cpus": args.ray_cpus,
        "transcribe_loop_audio_s_per_s": round(audio_seconds / base_s, 1),
        "model_only_audio_s_per_s": round(audio_seconds / model_s, 1),
        "job_audio_s_per_s": round(audio_seconds / job_s, 1),
        "ratio_job_over_transcribe_loop": round(base_s / job_s, 3),
        "ratio_job_over_model_only": round(model_s / job_s, 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
