"""Stage: fetch each recording of a work block, decode it as a stream, pick its channels, cut it into segments.

Runs as plain Ray tasks on CPUs, apart from the inference actors: if it ran inside the actor (Ray fuses a task stage
into the actor stage that follows it) the accelerator would wait while files download and decode one at a time.

A work block (recordings totalling about `compute.block_seconds` of audio) goes in, the same recordings come out,
each with its segments nested and their audio as 16-bit PCM at 16 kHz. A file is read through a stream, decoded and
resampled block by block and cut as it goes, so a task holds a recording's cut segments (16-bit: 115 MB an hour) but
never its file or a float copy of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np
import pyarrow as pa

from connectors.storage import FileTooLarge, open_file
from pipeline.audio import AudioDecodeError, stream_audio
from pipeline.channels import channel_streams
from pipeline.records import DECODED_SCHEMA, to_table, with_error
from pipeline.segmenter import SegmentPolicy, segment_stream
from pipeline.settings import setting

PCM_SCALE = 32768.0
LOW_SAMPLE_RATE = 8000  # below this, speech loses consonants: a warning, not an error
DURATION_TOLERANCE = (1.0, 0.1)  # a decoded duration this far (seconds, or share) from the manifest's is a warning


@dataclass(frozen=True)
class AudioSpec:
    """Fetching and decoding (the job's `audio` section)."""

    channel_mode: str = setting("mix", "mix: downmix the channels to one stream; split: each channel its own stream "
                                       "(a manifest row's channel_mode overrides; its channel: N picks one channel)")
    channel_names: list[str] = setting(doc="names of the channels in split mode, e.g. [agent,customer] "
                                           "(else channel_N)", factory=list)
    max_duration: float = setting(14400.0, "seconds of audio per recording; a longer one is an error row, refused "
                                           "from its header when the header tells")
    max_file_mb: float = setting(4096.0, "MiB per file; a bigger object is an error row, refused before download")
    fetch_timeout: float = setting(60.0, "seconds to connect to storage, and to wait for each read, before a "
                                         "fetch is retried and then fails as timed out")


@dataclass(frozen=True)
class DecodeSettings:
    """What the decode stage takes: its two sections of the job's spec, and the model's sample rate."""

    audio: AudioSpec = field(default_factory=AudioSpec)
    segmenting: SegmentPolicy = field(default_factory=SegmentPolicy)
    sample_rate: int = 16_000


def to_pcm16(samples: np.ndarray) -> bytes:
    """Mono float audio as little-endian 16-bit PCM bytes (clipped to full scale)."""
    return np.clip(np.rint(np.asarray(samples, dtype=np.float32) * PCM_SCALE), -32768, 32767).astype("<i2").tobytes()


def from_pcm16(data: bytes) -> np.ndarray:
    """16-bit PCM bytes back to float32 in [-1, 1)."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / PCM_SCALE


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


def _warnings(row: dict, header_duration: float | None, source_rate: int) -> list[str]:
    found = []
    if source_rate < LOW_SAMPLE_RATE:
        found.append(f"low sample rate: resampled from {source_rate} Hz (under {LOW_SAMPLE_RATE} Hz, speech loses "
                     f"its high frequencies)")
    decoded = row.get("duration")
    if decoded is not None and header_duration is not None and header_duration - decoded > DURATION_TOLERANCE[0]:
        found.append(f"truncated: the header says {header_duration:.1f} s, the file holds {decoded:.1f} s")
    expected = row.get("manifest_duration")
    if decoded is not None and expected is not None:
        allowed = max(DURATION_TOLERANCE[0], DURATION_TOLERANCE[1] * expected)
        if abs(decoded - expected) > allowed:
            found.append(f"duration {decoded:.1f} s differs from the manifest's {expected:.1f} s")
    return found


def decode_recording(row: dict, settings: DecodeSettings) -> dict:
    """One source row in, the same row out with `segments` (each with its 16-bit audio), `duration`, the source's
    rate and channels, `warnings`; or with its error (keeping the segments cut before a failure midway, so a
    recording is marked failed, never silently short)."""
    row = {**row, "segments": [], "warnings": None, "duration": None}
    if row.get("error"):
        return row
    url = row["audio_url"]
    audio, policy = settings.audio, settings.segmenting
    try:
        handle = open_file(url, max_mb=audio.max_file_mb)
    except Exception as error:  # noqa: BLE001 - every failure becomes this row's error
        return with_error(row, "fetch", fetch_error_message(error, url))
    header_duration = None
    with handle:
        try:
            info, blocks = stream_audio(handle, target_sample_rate=settings.sample_rate,
                                        max_duration=audio.max_duration)
            header_duration = info.duration
            row["source_sample_rate"] = info.source_sample_rate
            row["source_channels"] = info.source_channels
            streams = channel_streams(blocks, info.source_channels, row["channel_mode"], row.get("channel"))
            cutters = [(ch, segment_stream(b, settings.sample_rate, policy)) for ch, b in streams]
            counts = {ch: 0 for ch, _ in cutters}
            while cutters:  # round-robin over channels keeps the shared stream's queues short
                for item in list(cutters):
                    ch, cutter = item
                    segment = next(cutter, None)
                    if segment is None:
                        cutters.remove(item)
                        continue
                    row["segments"].append({
                        "segment_index": counts[ch], "channel": ch, "start": segment.start, "end": segment.end,
                        "overlap_before": segment.overlap_before, "samples": to_pcm16(segment.samples)})
                    counts[ch] += 1
        except AudioDecodeError as error:
            with_error(row, "decode", str(error))
        except Exception as error:  # noqa: BLE001 - a decoder bug must not take the job down
            with_error(row, "decode", f"{type(error).__name__}: {error}")
    if row["segments"]:
        row["duration"] = max(s["end"] for s in row["segments"])
    if not row.get("error") and row.get("source_sample_rate"):
        row["warnings"] = _warnings(row, header_duration, row["source_sample_rate"]) or None
    return row


def decode_block(batch: pa.Table, settings: DecodeSettings) -> pa.Table:
    """Ray `map_batches` UDF: one work block (a row holding its source rows) in, its decoded recordings out."""
    rows: list[dict] = []
    for block in batch["rows"].to_pylist():
        rows.extend(decode_recording(row, settings) for row in block)
    return to_table(rows, DECODED_SCHEMA)
