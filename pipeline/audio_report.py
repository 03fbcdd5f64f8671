"""What decoding learned about a recording that did not fail but that a user should know: a truncated file, a header
that lies, audio resampled from a low rate, a decoder that had to take over midway, clipping, silence.

`stream_audio` fills a `DecodeReport` as its iterator runs (`info.report`); once the iterator is exhausted the report
is complete and `warnings()` gives short, stable sentences for the output row's `warnings` column. The checks cost a
few passes over blocks that are in memory anyway (peak and full-scale count per block) and, for WAV, a read of the
chunk headers, because libsndfile clamps a WAV header's data size to the bytes present (so it cannot see truncation).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray

# A sample at or over this magnitude is at full scale (int16's largest positive value is 32767/32768 = 0.99997).
FULL_SCALE = 0.999
# Thresholds of the warnings (module constants so tests and docs can name them).
CLIPPING_SHARE = 0.001  # warn when more than 0.1% of samples are at full scale
QUIET_DBFS = -60.0  # warn when the loudest sample is below -60 dBFS (but not 0: that is digital silence)
TRUNCATION_TOLERANCE = (0.25, 0.01)  # seconds, share of the promised length: whichever is larger
MANIFEST_TOLERANCE = (1.0, 0.10)  # the same, against the manifest's duration
MIN_SAMPLE_RATE = 8000  # Hz; under this, speech has lost most of its consonants before the model hears it

# WAV format tags whose block_align is exactly one frame (PCM, IEEE float, A-law, mu-law); others (ADPCM, GSM, MP3 in
# WAV) pack many frames per block and tell their length only in a 'fact' chunk.
_FRAME_PER_BLOCK_TAGS = {1, 3, 6, 7}
_EXTENSIBLE = 0xFFFE
_MAX_CHUNKS = 64  # a header with more chunks than this before 'data' is not worth walking


@dataclass
class DecodeReport:
    """What one recording's decoding found, filled in as `stream_audio`'s iterator runs."""

    source_sample_rate: int = 0
    source_channels: int = 0
    target_sample_rate: int = 0
    header_duration: float | None = None  # seconds the header promises (WAV: from the data chunk), None if unknown
    decoder: str = ""  # the decoder that started
    fallback_reason: str | None = None  # why soundfile could not open it and PyAV decoded it all (informational)
    decoder_switch: str | None = None  # set when soundfile failed midway and PyAV decoded the rest
    decoded_frames: int = 0  # source frames decoded so far
    complete: bool = False  # True once the iterator ended normally: the numbers cover the whole recording
    full_scale_samples: int = 0  # samples (all channels) at or over FULL_SCALE
    peaks: list[float] = field(default_factory=list)  # per channel, the largest magnitude

    @property
    def decoded_seconds(self) -> float:
        return self.decoded_frames / self.source_sample_rate if self.source_sample_rate > 0 else 0.0

    @property
    def clipped_share(self) -> float:
        total = self.decoded_frames * max(self.source_channels, 1)
        return self.full_scale_samples / total if total else 0.0

    @property
    def truncated(self) -> bool:
        """The file holds clearly less audio than its header promises (known only once complete)."""
        promised = self.header_duration
        return (self.complete and promised is not None
                and promised - self.decoded_seconds > _tolerance(promised, TRUNCATION_TOLERANCE))

    def observe(self, block: NDArray[np.float32]) -> None:
        """Account for one decoded source block of shape (frames, channels)."""
        if block.size == 0:
            return
        # Reductions over the flat (C-contiguous) block and no temporary array in the usual case: numpy's axis-0
        # reduction of an (n, 2) array is ~500x slower than a flat one, and decoding a WAV is itself little more
        # than a copy. Per-channel peaks (for a silent channel) only when there are several channels.
        flat = block.reshape(-1)
        high, low = float(flat.max()), float(flat.min())
        channels = block.shape[1]
        if channels == 1:
            peaks = [max(high, -low)]
        else:
            peaks = [max(float(block[:, c].max()), -float(block[:, c].min())) for c in range(channels)]
        self.peaks = [max(a, b) for a, b in zip(self.peaks, peaks)] if self.peaks else peaks
        if high >= FULL_SCALE:
            self.full_scale_samples += int(np.count_nonzero(flat >= FULL_SCALE))
        if low <= -FULL_SCALE:
            self.full_scale_samples += int(np.count_nonzero(flat <= -FULL_SCALE))
        self.decoded_frames += block.shape[0]

    def warnings(self, *, manifest_duration: float | None = None,
                 min_sample_rate: int = MIN_SAMPLE_RATE) -> list[str]:
        """Short sentences about what a user should know, for the row's `warnings` column; [] when all is well.
        `manifest_duration`: the manifest's `duration` of the row, if any. Checks that need the whole recording
        (length, clipping, silence) are made only once the report is complete."""
        found: list[str] = []
        if self.decoder_switch:
            found.append(self.decoder_switch)
        if 0 < self.source_sample_rate < min_sample_rate:
            found.append(f"low sample rate: resampled from {self.source_sample_rate} Hz (under {min_sample_rate} Hz, "
                         f"speech loses its high frequencies)")
        if not self.complete:
            return found
        decoded = self.decoded_seconds
        promised = self.header_duration
        if self.truncated:
            found.append(f"truncated: the header says {promised:.1f} s, the file holds {decoded:.1f} s")
        elif promised is not None and decoded - promised > _tolerance(promised, TRUNCATION_TOLERANCE):
            found.append(f"header duration wrong: the header says {promised:.1f} s, {decoded:.1f} s decoded")
        if (manifest_duration is not None and math.isfinite(manifest_duration) and manifest_duration > 0
                and abs(decoded - manifest_duration) > _tolerance(manifest_duration, MANIFEST_TOLERANCE)):
            found.append(f"duration {decoded:.1f} s differs from the manifest's {manifest_duration:.1f} s")
        if self.clipped_share > CLIPPING_SHARE:
            found.append(f"clipping: {100 * self.clipped_share:.1f}% of samples at full scale")
        if self.peaks and max(self.peaks) == 0.0:
            found.append("digital silence: every sample is 0")
        elif self.peaks:
            peak = max(self.peaks)
            if 20 * math.log10(peak) < QUIET_DBFS:
                found.append(f"very quiet: peak level {20 * math.log10(peak):.0f} dBFS")
            silent = [i for i, p in enumerate(self.peaks) if p == 0.0]
            for channel in silent:
                found.append(f"channel {channel} of {len(self.peaks)} is digital silence")
        return found


def wav_header_duration(fileobj: BinaryIO) -> float | None:
    """The duration a WAV (RIFF, RIFX, RF64, BW64) header promises, from its data chunk's size (or its 'fact' chunk
    for compressed formats), reading only chunk headers; None for other formats, streaming placeholders (a data size
    of 0 or 0xFFFFFFFF) and anything unreadable. Leaves the file position wherever it ends: the caller rewinds."""
    try:
        head = fileobj.read(12)
        if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX", b"RF64", b"BW64"):
            return None
        order = ">" if head[:4] == b"RIFX" else "<"
        rate = block_align = tag = 0
        fact_frames = ds64_data = None
        for _ in range(_MAX_CHUNKS):
            chunk = fileobj.read(8)
            if len(chunk) < 8:
                return None
            name, size = chunk[:4], struct.unpack(f"{order}I", chunk[4:])[0]
            if name == b"data":
                if ds64_data is not None and size == 0xFFFFFFFF:
                    size = ds64_data
                elif size in (0, 0xFFFFFFFF):
                    return None
                if tag in _FRAME_PER_BLOCK_TAGS and block_align > 0 and rate > 0:
                    return size // block_align / rate
                return fact_frames / rate if fact_frames and rate > 0 else None
            body = fileobj.read(min(size, 64)) if name in (b"fmt ", b"fact", b"ds64") else b""
            if name == b"fmt " and len(body) >= 14:
                tag, _, rate, _, block_align = struct.unpack(f"{order}HHIIH", body[:14])
                if tag == _EXTENSIBLE and len(body) >= 26:
                    tag = struct.unpack(f"{order}H", body[24:26])[0]  # the sub-format GUID's first two bytes
            elif name == b"fact" and len(body) >= 4:
                fact_frames = struct.unpack(f"{order}I", body[:4])[0]
            elif name == b"ds64" and len(body) >= 16:
                ds64_data = struct.unpack(f"{order}Q", body[8:16])[0]
            fileobj.seek(size + (size & 1) - len(body), 1)  # chunks are padded to an even size
        return None
    except (OSError, ValueError, struct.error):
        return None


def _tolerance(seconds: float, rule: tuple[float, float]) -> float:
    absolute, share = rule
    return max(absolute, share * seconds)
