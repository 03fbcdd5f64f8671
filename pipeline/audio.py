"""Decode audio bytes into float32 arrays at the model's sample rate.

Pure functions on bytes and numpy: no Ray, no NeMo, no file system (the caller fetches the bytes). Every way a file
can fail to become audio raises `AudioDecodeError`, whose short message goes into the output row's `error` column, so
one bad file never stops a batch.

Decoders: soundfile (libsndfile) first, because it is fast and covers WAV (PCM, float, mu-law, A-law), FLAC,
OGG Vorbis, MP3 and OGG Opus; PyAV (FFmpeg) second, for what libsndfile cannot read (m4a/AAC, webm, ...) and for the
few files libsndfile misreads (see `_decode`). torchaudio is deliberately not used (it does not import here).
Resampling is soxr, from the rate the decoder actually returned (Opus, for one, comes back at the header's rate).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import NoReturn

import av
import numpy as np
import soundfile as sf
import soxr
from numpy.typing import NDArray

__all__ = [
    "TARGET_SAMPLE_RATE",
    "AudioDecodeError",
    "DecodedAudio",
    "probe_duration",
    "decode_audio",
    "select_channels",
    "to_pcm_bytes",
    "from_pcm_bytes",
]

TARGET_SAMPLE_RATE = 16_000

# libsndfile reports this frame count (SF_COUNT_MAX) when the header does not know the length, e.g. a FLAC
# STREAMINFO with total_samples = 0 as written by streaming encoders. It is "unknown", not 18 quintillion frames.
_SF_COUNT_MAX = 2**63 - 1

# soundfile is read in blocks of at most this many frames, so memory follows the data actually present and never a
# header's claim: `soundfile.read` allocates the header's full frame count up front, which a lying FLAC header
# turns into gigabytes. 2**20 frames is about 22 s at 48 kHz: one block for nearly every real file.
_SF_BLOCK_FRAMES = 1 << 20

# Decoder complaints are cut to this length so that the row's error message stays one short line.
_MAX_REASON_CHARS = 120


class AudioDecodeError(ValueError):
    """A file that cannot become audio; the message is short and specific, for the output row's `error` column."""


@dataclass(frozen=True)
class DecodedAudio:
    """Decoded, resampled audio with what was learned about the source."""

    samples: NDArray[np.float32]  # shape (channels, n_samples), at sample_rate, C-contiguous
    sample_rate: int  # the target rate after decode_audio
    source_sample_rate: int  # the rate the decoder returned (not necessarily what a container claimed)
    source_channels: int
    source_format: str  # 'WAV/PCM_16', 'OGG/OPUS', 'MP3/MPEG_LAYER_III', ... or 'pyav:aac', 'pyav:opus', ...
    decoder: str  # 'soundfile' or 'pyav'

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / self.sample_rate

    @property
    def num_channels(self) -> int:
        return self.samples.shape[0]


class _DecoderFailed(Exception):
    """One decoder could not produce audio; `decode_audio` tries the next or reports both reasons."""

    def __init__(self, reason: str, *, unrecognised: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        # True when the decoder did not even recognise the bytes as a format it knows (vs. recognised but broken).
        self.unrecognised = unrecognised


@dataclass(frozen=True)
class _Raw:
    """What a decoder returns before any checks or resampling: (C, N) float32 at the decoder's rate."""

    samples: NDArray[np.float32]
    sample_rate: int
    source_format: str
    decoder: str


def probe_duration(data: bytes) -> float | None:
    """Duration in seconds from the header only, or None if unknown or unreadable.

    Opens the bytes with soundfile without reading samples, so it is cheap enough to refuse huge files before
    decoding. Formats soundfile cannot open (m4a, webm) give None. Note that for WAV libsndfile clamps the header's
    data size to the bytes actually present, so a WAV header cannot claim more audio than the file holds.
    """
    if not data:
        return None
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            return _header_duration(f)
    except Exception:  # noqa: BLE001 - any failure to open means "no header duration", which is the contract
        return None


def decode_audio(
    data: bytes,
    *,
    target_sample_rate: int = TARGET_SAMPLE_RATE,
    max_duration: float | None = None,
) -> DecodedAudio:
    """Decode `data` to float32 (channels, samples) at `target_sample_rate`, channels kept apart.

    Raises AudioDecodeError for empty bytes, data neither decoder can read, no channels or no samples, NaN/Inf
    samples, and audio longer than `max_duration` seconds. The duration limit is checked on the header before any
    samples are read (so a header claiming hours is refused without allocating them), while decoding (for formats
    whose header does not say), and again on the decoded length.
    """
    if target_sample_rate <= 0:
        raise ValueError(f"target_sample_rate must be positive, got {target_sample_rate}")
    if max_duration is not None and not max_duration > 0:
        raise ValueError(f"max_duration must be positive or None, got {max_duration}")
    if len(data) == 0:
        raise AudioDecodeError("empty file (0 bytes)")

    raw = _decode(bytes(data), max_duration)

    n_channels, n_frames = raw.samples.shape
    if n_channels == 0:
        raise AudioDecodeError("no audio channels")
    if n_frames == 0:
        raise AudioDecodeError("no audio samples (0 frames)")
    if raw.sample_rate <= 0:
        raise AudioDecodeError(f"invalid sample rate {raw.sample_rate} Hz")
    # Checked before resampling: soxr's filter would smear one NaN over its neighbours and the model would emit
    # garbage without complaint.
    if not np.isfinite(raw.samples).all():
        raise AudioDecodeError("audio contains NaN or Inf samples")
    _check_duration(n_frames / raw.sample_rate, max_duration)

    samples = _resample(raw.samples, raw.sample_rate, target_sample_rate)
    if samples.shape[1] == 0:
        raise AudioDecodeError(
            f"no audio samples after resampling {n_frames} frames from {raw.sample_rate} to {target_sample_rate} Hz"
        )
    return DecodedAudio(
        samples=samples,
        sample_rate=target_sample_rate,
        source_sample_rate=raw.sample_rate,
        source_channels=n_channels,
        source_format=raw.source_format,
        decoder=raw.decoder,
    )


def select_channels(audio: DecodedAudio, channel_mode: str, channel: int | None = None) -> list[NDArray[np.float32]]:
    """Turn (C, N) audio into the list of mono float32 streams to transcribe.

    'mix': one stream, the mean over channels. 'split': one stream per channel, in channel order.
    `channel` (like NeMo's channel_selector; negative counts from the end) overrides both with that one channel.
    The returned arrays may be views of `audio.samples` (no copy for one channel or 'split').
    """
    samples = audio.samples
    n_channels = samples.shape[0]
    if channel is not None:
        # bool is an int subclass; True as "channel 1" is certainly a config mistake.
        if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)):
            raise ValueError(f"channel must be an int or None, got {channel!r}")
        if not -n_channels <= channel < n_channels:
            plural = "channel" if n_channels == 1 else "channels"
            raise AudioDecodeError(f"channel {channel} requested but the file has {n_channels} {plural}")
        return [samples[int(channel)]]
    if channel_mode == "mix":
        if n_channels == 1:
            return [samples[0]]
        return [samples.mean(axis=0, dtype=np.float32)]
    if channel_mode == "split":
        return [samples[i] for i in range(n_channels)]
    # A configuration error, not a property of the file: plain ValueError, so it is not filed as a bad-audio row.
    raise ValueError(f"channel_mode must be 'mix' or 'split', got {channel_mode!r}")


def to_pcm_bytes(samples: NDArray[np.float32]) -> bytes:
    """Mono float audio to little-endian float32 bytes (to carry audio through Arrow as a binary column)."""
    arr = np.asarray(samples)
    if arr.ndim != 1:
        raise ValueError(f"to_pcm_bytes expects mono 1-D samples, got shape {arr.shape}")
    return arr.astype("<f4", copy=False).tobytes()


def from_pcm_bytes(data: bytes) -> NDArray[np.float32]:
    """Little-endian float32 bytes back to a writable, native float32 1-D array."""
    if len(data) % 4:
        raise ValueError(f"PCM float32 bytes must be a multiple of 4 long, got {len(data)}")
    # frombuffer is read-only over the bytes object; copy so that torch.from_numpy and in-place ops work.
    return np.frombuffer(data, dtype="<f4").astype(np.float32, copy=True)


# --- internals ----------------------------------------------------------------------------------------------------


def _decode(data: bytes, max_duration: float | None) -> _Raw:
    """soundfile first, PyAV if soundfile fails; AudioDecodeError naming both complaints if neither can."""
    try:
        raw = _decode_soundfile(data, max_duration)
    except _DecoderFailed as sf_failure:
        try:
            return _decode_pyav(data, max_duration)
        except _DecoderFailed as av_failure:
            both = f"soundfile: {sf_failure.reason}; pyav: {av_failure.reason}"
            if sf_failure.unrecognised and av_failure.unrecognised:
                raise AudioDecodeError(f"not an audio file: unrecognised format ({both})") from None
            raise AudioDecodeError(f"corrupt or unsupported audio ({both})") from None
    if raw.samples.shape[1] == 0:
        # libsndfile trusts a WAV data-chunk size of 0, which streaming writers leave as a placeholder in front of
        # real audio; FFmpeg reads such files to the end. Costs one extra open only for files that look empty.
        try:
            alt = _decode_pyav(data, max_duration)
        except _DecoderFailed:
            return raw
        if alt.samples.shape[1] > 0:
            return alt
    return raw


def _decode_soundfile(data: bytes, max_duration: float | None) -> _Raw:
    try:
        f = sf.SoundFile(io.BytesIO(data))
    except sf.LibsndfileError as e:
        # SF_ERR_UNRECOGNISED_FORMAT (1): libsndfile has no idea what this is; anything else means a known but
        # malformed header.
        raise _DecoderFailed(_reason(e), unrecognised=e.code == 1) from None
    except Exception as e:  # noqa: BLE001 - a decoder's failure must become a row error, never a crashed batch
        raise _DecoderFailed(_reason(e)) from None
    with f:
        rate, n_channels = f.samplerate, f.channels
        source_format = f"{f.format}/{f.subtype}"
        if max_duration is not None:
            # The header check: refuse before a single sample is read.
            claimed = _header_duration(f)
            if claimed is not None:
                _check_duration(claimed, max_duration)
        max_frames = None if max_duration is None or rate <= 0 else int(max_duration * rate)
        blocks: list[NDArray[np.float32]] = []
        n_read = 0
        try:
            while True:
                block = f.read(_SF_BLOCK_FRAMES, dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                blocks.append(block)
                n_read += block.shape[0]
                # For headers that do not know the length; bounds memory by max_duration rather than the file.
                if max_frames is not None and n_read > max_frames:
                    _too_long_while_decoding(n_read / rate, max_duration)
        except AudioDecodeError:
            raise
        except Exception as e:  # noqa: BLE001 - e.g. 'Internal psf_fseek() failed.' when a FLAC header lies
            raise _DecoderFailed(_reason(e)) from None
    if not blocks:
        interleaved = np.zeros((0, n_channels), dtype=np.float32)
    elif len(blocks) == 1:
        interleaved = blocks[0]
    else:
        interleaved = np.concatenate(blocks, axis=0)
    # soundfile gives (N, C); the contract is (C, N). Contiguity is restored after resampling (or here if none).
    return _Raw(samples=interleaved.T, sample_rate=rate, source_format=source_format, decoder="soundfile")


def _decode_pyav(data: bytes, max_duration: float | None) -> _Raw:
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except av.error.InvalidDataError as e:
        raise _DecoderFailed(_reason(e), unrecognised=True) from None
    except Exception as e:  # noqa: BLE001
        raise _DecoderFailed(_reason(e)) from None
    with container:
        if not container.streams.audio:
            raise _DecoderFailed(f"no audio stream in {container.format.name} container")
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        if max_duration is not None and container.duration is not None and container.duration > 0:
            # container.duration is in microseconds (AV_TIME_BASE); cheap, read from the container header.
            _check_duration(container.duration / 1_000_000, max_duration)
        planes: list[NDArray[np.float32]] = []
        rate = 0
        n_read = 0
        resampler: av.AudioResampler | None = None
        try:
            for frame in container.decode(stream):
                if resampler is None:
                    rate = frame.sample_rate
                    # Convert only the sample format (to float planar, (C, n) per frame); the layout and rate stay the
                    # source's, because channels are kept apart and soxr does the rate conversion.
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=rate)
                for out in resampler.resample(frame):
                    planes.append(out.to_ndarray())
                n_read += frame.samples
                if max_duration is not None and n_read > max_duration * rate:
                    _too_long_while_decoding(n_read / rate, max_duration)
            if resampler is not None:
                for out in resampler.resample(None):
                    planes.append(out.to_ndarray())
        except AudioDecodeError:
            raise
        except Exception as e:  # noqa: BLE001
            raise _DecoderFailed(_reason(e)) from None
    if not planes:
        samples = np.zeros((stream.codec_context.channels, 0), dtype=np.float32)
    else:
        samples = np.concatenate(planes, axis=1).astype(np.float32, copy=False)
    return _Raw(samples=samples, sample_rate=rate or stream.rate or 0, source_format=f"pyav:{codec}", decoder="pyav")


def _resample(samples: NDArray[np.float32], in_rate: int, out_rate: int) -> NDArray[np.float32]:
    """(C, N) at in_rate to C-contiguous float32 (C, M) at out_rate."""
    if in_rate == out_rate:
        return np.ascontiguousarray(samples, dtype=np.float32)
    # soxr takes (N, C) and filters all channels in one call.
    resampled = soxr.resample(np.ascontiguousarray(samples.T, dtype=np.float32), in_rate, out_rate)
    if resampled.ndim == 1:
        resampled = resampled[:, None]
    return np.ascontiguousarray(resampled.T, dtype=np.float32)


def _header_duration(f: sf.SoundFile) -> float | None:
    frames, rate = f.frames, f.samplerate
    if rate <= 0 or frames < 0 or frames >= _SF_COUNT_MAX:
        return None
    return frames / rate


def _check_duration(seconds: float, max_duration: float | None) -> None:
    if max_duration is not None and seconds > max_duration:
        raise AudioDecodeError(f"recording is {seconds:.1f} s long, over max_duration={max_duration:g} s")


def _too_long_while_decoding(seconds: float, max_duration: float) -> NoReturn:
    # The header did not tell the length; decoding stops here so memory stays bounded by max_duration.
    raise AudioDecodeError(
        f"recording is longer than max_duration={max_duration:g} s (decoding stopped at {seconds:.1f} s)"
    )


def _reason(e: BaseException) -> str:
    """A decoder exception as a short phrase, without object reprs or errno noise."""
    if isinstance(e, sf.LibsndfileError):
        text = e.error_string  # the message without "Error opening <_io.BytesIO object at 0x...>: "
    elif isinstance(e, av.FFmpegError) and e.strerror:
        text = e.strerror  # without "[Errno 1094995529] ... '<none>'"
    else:
        text = f"{type(e).__name__}: {e}"
    text = " ".join(str(text).split()).rstrip(".")
    if len(text) > _MAX_REASON_CHARS:
        text = text[: _MAX_REASON_CHARS - 3] + "..."
    return text
