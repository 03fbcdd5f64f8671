"""Model adapters that take the model out of the picture, so a benchmark measures the job's own machinery.

- `ZeroCost` (`model_adapter=benchmarks.adapters:ZeroCost`) answers every item at once with an empty transcript:
  what is left of a job's time is reading, fetching, decoding, Ray's scheduling, assembling and writing.
- `SimulatedAccelerator` (`model_adapter=benchmarks.adapters:SimulatedAccelerator`) batches like the real adapter
  and, per batch, sleeps `padded audio seconds / rtfx` (env `SIM_RTFX`, default 200): a GPU running the model at that
  speed, leaving the CPUs free. It appends one line per batch to `SIM_BUSY_LOG` (`busy_log_lines` reads them back):
  start and end (wall clock), padded seconds, and where it ran: the actor's process id, its Ray node id and the GPUs
  Ray gave it (`CUDA_VISIBLE_DEVICES`, which Ray sets for an actor that reserves GPUs; `-` when none). So a benchmark
  can tell how busy each "accelerator" was over the job and between its first and last call, and a test where each
  actor ran. `SIM_ACTORS_LOG`, if set, gets one line per actor as it starts (time, pid, node id, GPUs). On a cluster
  every node must see the same log files (nodes on one machine do).

Both describe a checkpoint as the released model's config (prompt dictionary, 16 kHz, latency list), read from
`pipeline.models.released`, whatever `model_path` says.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Sequence

from pipeline.batching import plan_batches
from pipeline.models.base import AudioItem, ModelCard, ModelOutput, ModelSettings
from pipeline.models.released import PROMPT_DICTIONARY

SAMPLE_RATE = 16_000
MIN_CLIP_SECONDS = 1.0


def _card(model_path: str) -> ModelCard:
    return ModelCard(model_path=model_path, model_class="benchmark", sample_rate=SAMPLE_RATE,
                     prompt_dictionary=dict(PROMPT_DICTIONARY),
                     att_context_sizes=((56, 3), (56, 0), (56, 6), (56, 13)))


class ZeroCost:
    describe = staticmethod(_card)

    def __init__(self, settings: ModelSettings):
        self.settings = settings
        self.card = _card(settings.model_path)

    def transcribe(self, items: Sequence[AudioItem]) -> list[ModelOutput]:
        return [ModelOutput(raw_text="") for _ in items]


class SimulatedAccelerator:
    describe = staticmethod(_card)

    def __init__(self, settings: ModelSettings):
        self.settings = settings
        self.card = _card(settings.model_path)
        self.rtfx = float(os.environ.get("SIM_RTFX", "200"))
        self.log = os.environ.get("SIM_BUSY_LOG")
        self.where = f"{os.getpid()} {_node_id()} {os.environ.get('CUDA_VISIBLE_DEVICES') or '-'}"
        if os.environ.get("SIM_ACTORS_LOG"):  # every actor that started, called or not
            with open(os.environ["SIM_ACTORS_LOG"], "a") as handle:
                handle.write(f"{time.time():.6f} {self.where}\n")

    def transcribe(self, items: Sequence[AudioItem]) -> list[ModelOutput]:
        durations = [max(it.num_samples / SAMPLE_RATE, MIN_CLIP_SECONDS) for it in items]
        for batch in plan_batches(durations, self.settings.batch_size, self.settings.max_batch_seconds):
            padded = len(batch) * max(durations[i] for i in batch)
            start = time.time()
            time.sleep(padded / self.rtfx)
            if self.log:
                with open(self.log, "a") as handle:
                    # One short line per write (append mode): lines from actors on several nodes do not interleave.
                    handle.write(f"{start:.6f} {time.time():.6f} {padded:.3f} {self.where}\n")
        return [ModelOutput(raw_text="") for _ in items]


@dataclass(frozen=True)
class BusyLine:
    """One simulated batch as `SimulatedAccelerator` logs it."""

    start: float
    end: float
    padded_seconds: float
    pid: int
    node_id: str
    gpus: str  # CUDA_VISIBLE_DEVICES of the actor, "-" without GPUs


def busy_log_lines(text: str) -> list[BusyLine]:
    lines = []
    for line in text.splitlines():
        if line.strip():
            start, end, padded, pid, node_id, gpus = line.split()
            lines.append(BusyLine(float(start), float(end), float(padded), int(pid), node_id, gpus))
    return lines


def _node_id() -> str:
    """The Ray node this process runs on ("-" outside Ray, e.g. an adapter made in a unit test)."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else "-"

