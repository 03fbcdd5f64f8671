"""Stage: fetch each row's audio and decode it to 16 kHz mono float32.

Runs as plain Ray tasks on CPUs, apart from the inference actors: if it ran inside the actor (Ray fuses a task stage
into the actor stage that follows it) the GPU would wait while files download and decode one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from connectors.storage import read_bytes
from pipeline.audio import AudioDecodeError, decode_audio, select_channels, to_pcm_bytes
from pipeline.records import DECODED_SCHEMA, to_table, with_error


@dataclass(frozen=True)
class DecodeSettings:
    sample_rate: int = 16_000
    max_duration: float | None = 600.0  # seconds; a longer recording is an error row, never a silent drop
    max_file_mb: float | None = 2048.0


def fetch_error_message(error: BaseException, url: str) -> str:
    if isinstance(error, FileNotFoundError):
        return f"file not found: {url}"
    if isinstance(error, PermissionError):
        return f"access denied: {url}"
    if isinstance(error, IsADirectoryError):
        return f"is a directory, not a file: {url}"
    if isinstance(error, ValueError) and "max_file_mb" in str(error):
        return str(error)
    return f"cannot read {url}: {type(error).__name__}: {error}"


def decode_row(row: dict, settings: DecodeSettings) -> dict:
    """Fill `samples`, `duration` and the source's rate and channels, or set the row's error."""
    if row.get("error"):
        return row
    url = row["audio_url"]
    try:
        data = read_bytes(url, max_bytes=int(settings.max_file_mb * 2**20) if settings.max_file_mb else None)
    except Exception as error:  # noqa: BLE001 - every failure becomes this row's error
        return with_error(row, "fetch", fetch_error_message(error, url))
    try:
        audio = decode_audio(data, target_sample_rate=settings.sample_rate, max_duration=settings.max_duration)
        (mono,) = select_channels(audio, "mix")
    except AudioDecodeError as error:
        return with_error(row, "decode", str(error))
    except Exception as error:  # noqa: BLE001 - a decoder bug must not take the job down
        return with_error(row, "decode", f"{type(error).__name__}: {error}")
    row["samples"] = to_pcm_bytes(mono)
    row["duration"] = audio.duration
    row["source_sample_rate"] = audio.source_sample_rate
    row["source_channels"] = audio.source_channels
    return row


def decode_batch(batch: pa.Table, settings: DecodeSettings) -> pa.Table:
    return to_table([decode_row(row, settings) for row in batch.to_pylist()], DECODED_SCHEMA)
