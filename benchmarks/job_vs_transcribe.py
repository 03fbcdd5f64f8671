"""The whole job against NeMo's own `transcribe()` loop, both as whole processes (start-up included, as a user sees
them), and against the model alone (the part no pipeline can beat).

    python -m benchmarks.job_vs_transcribe [--clips 2400] [--model path.nemo] [--batch-size 16] [job key=value ...]

- `transcribe()` loop: `python -c` that imports NeMo, restores the checkpoint, sets the latency and calls
  `model.transcribe(paths)` over the WAV files (NeMo's own loading and decoding; `use_lhotse=False` so the language is
  honoured). What a user gets without this project.
- the job: `python -m jobs.transcribe` from manifest to Parquet on an embedded local Ray (Ray's start-up included).
- model-only: the leaderboard's method, in this process: audio decoded and presorted in memory, warmed up; only the
  model calls are timed (encoder with the prompt, greedy RNNT decoding).
Throughput is audio seconds per wall second; the ratios are job / baseline, measured in one run of this script.
The default model is the tiny model of the real class with a raised blank bias, so its greedy decoding emits about as
sparsely as a trained model (random weights otherwise emit a token at almost every frame).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks.common import machine

ROOT = Path(__file__).resolve().parent.parent

LOOP = """
import json, sys, time
paths = json.load(open(sys.argv[1]))
from nemo.collections.asr.models import ASRModel
from nemo.collections.asr.models.rnnt_bpe_models_prompt import RNNTPromptTranscribeConfig
model = ASRModel.restore_from(sys.argv[2], map_location="cpu")
model.encoder.set_default_att_context_size([int(v) for v in sys.argv[3].split(",")])
model.eval()
config = RNNTPromptTranscribeConfig(batch_size=int(sys.argv[4]), use_lhotse=False, target_lang="en-US",
                                    num_workers=0, verbose=False)
hyps = model.transcribe(paths, batch_size=int(sys.argv[4]), override_config=config)
assert len(hyps) == len(paths)
"""


def make_clips(folder: Path, count: int, seed: int = 0) -> tuple[Path, list[str], float]:
    """`count` WAV clips of 2-20 s (speech-like tones at 16 kHz), their manifest, paths and total seconds."""
    rng = random.Random(seed)
    total, lines, paths = 0.0, [], []
    for i in range(count):
        seconds = rng.uniform(2.0, 20.0)
        path = folder / f"clip-{i:05d}.wav"
        if not path.exists():
            t = np.arange(int(seconds * 16000)) / 16000
            x = 0.2 * np.sin(2 * np.pi * rng.uniform(120, 400) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
            x += 0.01 * np.random.default_rng(i).standard_normal(len(t))
            sf.write(path, x.astype(np.float32), 16000, subtype="PCM_16")
        else:
            rng.uniform(120, 400)
        total += seconds
        paths.append(str(path))
        lines.append(json.dumps({"audio_filepath": str(path), "duration": round(seconds, 3)}))
    manifest = folder / f"manifest-{count}.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, paths, total


def timed(args: list[str], env: dict | None = None) -> float:
    started = time.monotonic()
    done = subprocess.run(args, cwd=ROOT, env={**os.environ, "RAY_AUTH_MODE": "disabled", **(env or {})},
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{args[:3]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return time.monotonic() - started


def model_only(model_path: str, paths: list[str], batch_size: int, att: list[int]) -> float:
    """Wall seconds of the model calls alone over presorted, preloaded audio (what leaderboards time)."""
    from pipeline.audio import decode_audio
    from pipeline.models.base import AudioItem, ModelSettings
    from pipeline.models.nemo_rnnt import NemotronRNNT

    adapter = NemotronRNNT(ModelSettings(model_path=model_path, att_context_size=tuple(att), batch_size=batch_size,
                                         device="cpu", threads=1))
    audio = [decode_audio(open(p, "rb").read()).samples.mean(axis=0) for p in paths]
    items = sorted((AudioItem(samples=a, prompt_locale="en-US") for a in audio), key=lambda i: len(i.samples),
                   reverse=True)
    batches = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    adapter._run(batches[-1])  # warm-up
    started = time.monotonic()
    for batch in batches:
        adapter._run(batch)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=2400)
    parser.add_argument("--model", default=None, help=".nemo to use (default: the tiny model, blank bias raised)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--att-context-size", default="56,13")
    parser.add_argument("--data", default=str(ROOT / "build" / "bench" / "clips16k"))
    parser.add_argument("job", nargs="*", help="extra job settings, e.g. compute.model_threads=2")
    args = parser.parse_args(argv)
    att = [int(v) for v in args.att_context_size.split(",")]
    folder = Path(args.data)
    folder.mkdir(parents=True, exist_ok=True)
    model_path = args.model
    if model_path is None:
        from pipeline.models.tiny import TinyModelSpec, build_checkpoint

        model_path = str(folder / "tiny-blank-bias.nemo")
        if not Path(model_path).exists():
            build_checkpoint(model_path, TinyModelSpec(blank_bias=0.18, tag_bias=-1.0, seed=4))
    manifest, paths, audio_seconds = make_clips(folder, args.clips)

    with tempfile.TemporaryDirectory() as tmp:
        path_list = Path(tmp) / "paths.json"
        path_list.write_text(json.dumps(paths))
        loop_s = timed([sys.executable, "-c", LOOP, str(path_list), model_path, args.att_context_size,
                        str(args.batch_size)])
        job_s = timed([sys.executable, "-m", "jobs.transcribe", f"model_path={model_path}",
                       f"dataset_manifest={manifest}", f"output_path={tmp}/out", f"batch_size={args.batch_size}",
                       f"att_context_size=[{att[0]},{att[1]}]", "target_lang=en-US", "output.progress_seconds=0",
                       *args.job])
    model_s = model_only(model_path, paths, args.batch_size, att)
    print(json.dumps({
        "machine": machine(), "model": model_path, "clips": args.clips, "audio_seconds": round(audio_seconds, 1),
        "batch_size": args.batch_size, "att_context_size": att, "job_settings": args.job,
        "transcribe_loop_seconds": round(loop_s, 1), "job_seconds": round(job_s, 1),
        "model_only_seconds": round(model_s, 1),
        "transcribe_loop_audio_s_per_s": round(audio_seconds / loop_s, 1),
        "job_audio_s_per_s": round(audio_seconds / job_s, 1),
        "model_only_audio_s_per_s": round(audio_seconds / model_s, 1),
        "job_over_transcribe_loop": round(loop_s / job_s, 3),
        "job_over_model_only": round(model_s / job_s, 3),
    }, indent=2))


if __name__ == "__main__":
    main()
