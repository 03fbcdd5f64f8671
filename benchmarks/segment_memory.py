"""Memory one segment needs at full size: the released configuration (random weights), one clip per length, on CPU.

    python -m benchmarks.segment_memory [--seconds 30 60 120 240]

Each length runs in its own process (so memory freed by one forward cannot hide the next one's): build the
real-size model, run a 2 s warm-up forward, then sample the process's RSS every 5 ms through one forward
(`model.forward`: features, encoder at the widest right context, prompt kernel; greedy decoding needs little memory)
of one clip of that length. The figure is the peak RSS during the forward minus the RSS before it.

Beside it, the attention on paper (`attention_paper_mib`): NeMo's RelPositionMultiHeadAttention (use_pytorch_sdpa
false, the default) materialises T x T scores per head even under chunked_limited masking; at its peak, in
forward_attention, seven T x T x heads float32 buffers are alive (matrix_bd padded to 2T by rel_shift: 2, matrix_ac,
scores, masked scores, softmax, masked softmax). Float32 only: under bf16 autocast some of them are bf16.
T = 12.5 encoder frames per second.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time

from benchmarks.common import _rss_kib, machine

FRAMES_PER_SECOND = 12.5  # 10 ms hop x 8 subsampling
LIVE_SCORE_BUFFERS = 7


def attention_paper_mib(seconds: float, heads: int = 8) -> float:
    frames = int(seconds * FRAMES_PER_SECOND) + 1
    return LIVE_SCORE_BUFFERS * heads * frames * frames * 4 / 2**20


def child(seconds: float) -> dict:
    import os

    import numpy as np
    import torch

    from pipeline.models.tiny import TinyModelSpec, build_model

    started = time.monotonic()
    model = build_model(TinyModelSpec.real_size())
    build_s = time.monotonic() - started
    widest = max(model.encoder.att_context_size_all, key=lambda c: c[1])
    model.encoder.set_default_att_context_size(widest)
    model.preprocessor.featurizer.dither = 0.0
    model.preprocessor.featurizer.pad_to = 0

    def forward(n: int):
        signal = torch.from_numpy(np.random.default_rng(0).standard_normal(n).astype(np.float32) * 0.1)[None]
        with torch.inference_mode():
            encoded, _ = model.forward(input_signal=signal, input_signal_length=torch.tensor([n]),
                                       prompt_indices=torch.tensor([101]))
        return encoded.shape[-1]

    forward(32000)
    pid = os.getpid()
    baseline = _rss_kib(pid)
    peak = [baseline]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_kib(pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    frames = forward(int(seconds * 16000))
    forward_s = time.monotonic() - started
    stop.set()
    sampler.join()
    peak[0] = max(peak[0], _rss_kib(pid))
    return {"seconds": seconds, "encoder_frames": frames, "baseline_rss_mib": round(baseline / 1024),
            "peak_delta_mib": round((peak[0] - baseline) / 1024),
            "attention_paper_mib": round(attention_paper_mib(seconds)),
            "forward_s": round(forward_s, 1), "build_s": round(build_s, 1), "att_context_size": widest,
            "torch_threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[30, 60, 120, 240])
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print("RESULT " + json.dumps(child(args.child)), flush=True)
        return
    rows = []
    for seconds in args.seconds:
        done = subprocess.run([sys.executable, "-m", "benchmarks.segment_memory", "--child", str(seconds)],
                              capture_output=True, text=True, check=True)
        row = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(json.dumps({"machine": machine(), "rows": rows}))


if __name__ == "__main__":
    main()
