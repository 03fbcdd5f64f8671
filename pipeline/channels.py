"""Channel selection, in one place: which mono streams of a recording are transcribed.

- `channel` given (a row's `channel: N`, like NeMo's `channel_selector`; negative counts from the end): that channel
  only;
- `mix`: one stream, the mean of the channels;
- `split`: one stream per channel (on a mono file: the one stream, unnamed, as in mix).

Works on the decoder's block iterator, so a recording is never held whole: in split mode the channels share one pass
over the blocks (each channel pulls the next shared block only when its own queue is empty, so consuming the channels
in turn keeps every queue short).
"""

from __future__ import annotations

from collections import deque
from typing import Iterable, Iterator

import numpy as np
from numpy.typing import NDArray

from pipeline.audio import AudioDecodeError

Stream = tuple[int | None, Iterator[NDArray[np.float32]]]  # (channel number, or None when mixed; mono blocks)


def _fan_out(blocks: Iterator[NDArray[np.float32]], channels: int) -> list[Iterator[NDArray[np.float32]]]:
    queues: list[deque] = [deque() for _ in range(channels)]

    def channel(c: int) -> Iterator[NDArray[np.float32]]:
        while True:
            if not queues[c]:
                block = next(blocks, None)
                if block is None:
                    return
                for k in range(channels):
                    queues[k].append(block[k])
            yield queues[c].popleft()

    return [channel(c) for c in range(channels)]


def mono(block: NDArray[np.float32], channel: int | None = None) -> NDArray[np.float32]:
    """One stream of a (C, n) block: the given channel, or the mean of the channels (how a recording is mixed: the
    transcription and the export of training clips both use this, so a clip holds what the model heard)."""
    if channel is not None:
        return block[channel]
    return block[0] if block.shape[0] == 1 else block.mean(axis=0, dtype=np.float32)


def channel_streams(blocks: Iterable[NDArray[np.float32]], channels: int, mode: str,
                    channel: int | None = None) -> list[Stream]:
    """The streams to transcribe from (C, n) float32 blocks of a recording with `channels` channels. A channel the
    file does not have is an `AudioDecodeError` (a property of the file); an unknown mode is a `ValueError`."""
    blocks = iter(blocks)
    if channel is not None:
        if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)):
            raise ValueError(f"channel must be an int or None, got {channel!r}")
        if not -channels <= channel < channels:
            raise AudioDecodeError(f"channel {channel} requested but the file has {channels} "
                                   f"channel{'s' if channels != 1 else ''}")
        index = int(channel) % channels
        return [(index, (mono(b, index) for b in blocks))]
    if mode == "split":
        if channels > 1:
            return list(enumerate(_fan_out(blocks, channels)))
        return [(None, (b[0] for b in blocks))]
    if mode == "mix":
        return [(None, (mono(b) for b in blocks))]
    raise ValueError(f"channel_mode must be 'mix' or 'split', got {mode!r}")
