"""Stage: fetch each recording, decode it as a stream, and cut it into segments: one output row per segment.

Runs as plain Ray tasks on CPUs, apart from the inference actors: if it ran inside the actor (Ray fuses a task stage
into the actor stage that follows it) the accelerator would wait while files download and decode one at a time.

Memory does not grow with a recording's length: the file is read through a stream, decoded and resampled block by
block, cut as it goes, and the segments leave the task in small blocks (a generator UDF), so a one-hour call never
sits whole in a worker or in the object store.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pyarrow as pa

from connectors.storage import FileTooLarge, open_file
from pipeline.audio import AudioDecodeError, stream_audio, to_pcm_bytes
from pipeline.records import DECODED_SCHEMA, to_table, with_error
from pipeline.segmenter import SegmentPolicy, segment_stream

CHANNEL_MODES = ("mix", "split")


@dataclass(frozen=True)
class DecodeSettings:
    sample_rate: int = 16_000
    max_duration: float | None = 4 * 3600.0  # seconds; a longer recording is an error row, never a silent drop
    max_file_mb: float | None = 4096.0
    channel_mode: str = "mix"  # mix: one stream (mean of channels); split: one stream per channel
    segment: SegmentPolicy = field(default_factory=SegmentPolicy)
    rows_per_block: int = 16  # segments per output block


def fetch_error_message(error: BaseException, url: str) -> str:
    if isinstance(error, FileNotFoundError):
        return f"file not found: {url}"
    if isinstance(error, PermissionError):
        return f"access denied: {url}"
    if isinstance(error, IsADirectoryError):
        return f"is a directory, not a file: {url}"
    if isinstance(error, FileTooLarge):
        return str(error)
    return f"cannot read {url}: {type(error).__name__}: {error}"


def _fan_out(blocks: Iterator[np.ndarray], channels: int) -> list[Iterator[np.ndarray]]:
    """One mono block iterator per channel over a shared (C, n) block iterator; a channel pulls the next shared
    block only when its own queue is empty, so consuming the channels in turn keeps every queue short."""
    queues: list[deque] = [deque() for _ in range(channels)]

    def channel(c: int) -> Iterator[np.ndarray]:
        while True:
            if not queues[c]:
                block = next(blocks, None)
                if block is None:
                    return
                for k in range(channels):
                    queues[k].append(block[k])
            yield queues[c].popleft()

    return [channel(c) for c in range(channels)]


def _streams(blocks: Iterator[np.ndarray], channels: int, mode: str, channel: int | None):
    """(channel number or None, mono block iterator) for each stream to transcribe."""
    if channel is not None:
        if not -channels <= channel < channels:
            raise AudioDecodeError(f"channel {channel} requested but the file has {channels} "
                                   f"channel{'s' if channels != 1 else ''}")
        index = channel % channels
        return [(index, (b[index] for b in blocks))]
    if mode == "split" and channels > 1:
        return list(enumerate(_fan_out(blocks, channels)))
    return [(None, (b.mean(axis=0, dtype=np.float32) if b.shape[0] > 1 else b[0] for b in blocks))]


def segment_rows(row: dict, settings: DecodeSettings) -> Iterator[dict]:
    """The segment rows of one source row. A failure yields one row with the error (after any segments already cut,
    so the recording is marked failed, never silently short)."""
    row = {**row, "segment_index": None}
    mode = row.get("row_channel_mode") or settings.channel_mode
    row["channel_mode"] = mode
    if row.get("error"):
        yield row
        return
    if mode not in CHANNEL_MODES:
        yield with_error(row, "decode", f"unknown channel_mode {mode!r}; use mix or split")
        return
    url = row["audio_url"]
    try:
        handle = open_file(url, max_mb=settings.max_file_mb)
    except Exception as error:  # noqa: BLE001 - every failure becomes this row's error
        yield with_error(row, "fetch", fetch_error_message(error, url))
        return
    with handle:
        try:
            info, blocks = stream_audio(handle, target_sample_rate=settings.sample_rate,
                                        max_duration=settings.max_duration)
            row["source_sample_rate"] = info.source_sample_rate
            row["source_channels"] = info.source_channels
            streams = _streams(iter(blocks), info.source_channels, mode, row.get("row_channel"))
            cutters = [(ch, segment_stream(b, settings.sample_rate, settings.segment)) for ch, b in streams]
            counts = {ch: 0 for ch, _ in cutters}
            while cutters:  # round-robin over channels keeps the shared stream's queues short
                for item in list(cutters):
                    ch, cutter = item
                    segment = next(cutter, None)
                    if segment is None:
                        cutters.remove(item)
                        continue
                    yield {**row, "segment_index": counts[ch], "channel": ch, "start": segment.start,
                           "end": segment.end, "overlap_before": segment.overlap_before,
                           "samples": to_pcm_bytes(segment.samples)}
                    counts[ch] += 1
        except AudioDecodeError as error:
            yield with_error(row, "decode", str(error))
        except Exception as error:  # noqa: BLE001 - a decoder bug must not take the job down
            yield with_error(row, "decode", f"{type(error).__name__}: {error}")


def decode_batch(batch: pa.Table, settings: DecodeSettings) -> Iterator[pa.Table]:
    """Ray `map_batches` generator: source rows in, small blocks of segment rows out."""
    pending: list[dict] = []
    for row in batch.to_pylist():
        for segment in segment_rows(row, settings):
            pending.append(segment)
            if len(pending) >= settings.rows_per_block:
                yield to_table(pending, DECODED_SCHEMA)
                pending = []
    if pending:
        yield to_table(pending, DECODED_SCHEMA)
