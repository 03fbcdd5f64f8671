"""Decode audio bytes into float32 arrays at the model's sample rate.

Pure functions on bytes and numpy: no Ray, no NeMo, no file system (the caller fetches the bytes). Every way a file
can fail to become audio raises `AudioDecodeError`, whose short message goes into the output row's `error` column, so
one bad file never stops a batch.

Decoders: soundfile (libsndfile) first, because it is fast and covers WAV (PCM, float, mu-law, A-law), FLAC,
OGG Vorbis, MP3 and OGG Opus; PyAV (FFmpeg) second, for what libsndfile cannot read (m4a/AAC, webm, ...) and for the
few files libsndfile misreads (see `_open` and `_resume_with_pyav`). torchaudio is deliberately not used (it does not
import here).
Resampling is soxr, from the rate the decoder actually returned (Opus, for one, comes back at the header's rate).

`stream_audio` is the decoder: it reads in blocks and resamples with one `soxr.ResampleStream` per recording, so
memory follows the block size, not the recording's length. `decode_audio` is a thin wrapper that joins its blocks.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import BinaryIO, NoReturn

import av
import numpy as np
import soundfile as sf
import soxr
from numpy.typing import NDArray

from pipeline.audio_report import DecodeReport, wav_header_duration

__all__ = [
    "TARGET_SAMPLE_RATE",
    "AudioDecodeError",
    "DecodedAudio",
    "AudioInfo",
    "DecodeReport",
    "probe_duration",
    "decode_audio",
    "stream_audio",
]

TARGET_SAMPLE_RATE = 16_000

# libsndfile reports this frame count (SF_COUNT_MAX) when the header does not know the length, e.g. a FLAC
# STREAMINFO with total_samples = 0 as written by streaming encoders. It is "unknown", not 18 quintillion frames.
_SF_COUNT_MAX = 2**63 - 1

# Decoders are read in blocks of about `block_seconds`, but never more than this many samples (frames x channels) at
# once, so memory follows the data actually present and never a header's claim (a header claiming an absurd rate or
# channel count cannot turn one block into gigabytes): 2**22 float32 samples are 16 MiB.
_MAX_BLOCK_SAMPLES = 1 << 22

# decode_audio's block size: any value gives the same samples; larger blocks mean fewer resampler calls.
_DECODE_BLOCK_SECONDS = 30.0

# Decoder complaints are cut to this length so that the row's error message stays one short line.
_MAX_REASON_CHARS = 120

# libsndfile ends a FLAC where STREAMINFO says the audio ends. When more than this many bytes of the source are left
# unread at that point, the header under-reports the length and PyAV decodes the rest (trailing tags are smaller).
_UNREAD_SLACK = 16 * 1024


# Codecs whose timestamps count samples exactly (lossless): a frame that starts later than the samples delivered so
# far means FFmpeg skipped data it could not decode (it resyncs at the next frame header and says so only in its log).
# Lossy codecs' timestamps jitter by a frame and their decoders resync silently too (see README "Limits").
_SAMPLE_EXACT_CODECS = ("flac", "alac", "wavpack", "tta", "ape", "mlp", "truehd")
_SKIP_TOLERANCE_SECONDS = 0.001


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
    report: DecodeReport | None = field(default=None, compare=False, repr=False)  # complete: see DecodeReport

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / self.sample_rate

    @property
    def num_channels(self) -> int:
        return self.samples.shape[0]


@dataclass(frozen=True)
class AudioInfo:
    """What `stream_audio` learned from the header probe, before any block is yielded."""

    source_sample_rate: int  # the rate the decoder returns (not necessarily what a container claimed)
    source_channels: int
    source_format: str  # as DecodedAudio.source_format
    decoder: str  # 'soundfile' or 'pyav': the decoder that started (see stream_audio about a midway switch)
    duration: float | None  # seconds according to the header, None if the header does not say
    # Filled in as the blocks are decoded, complete once the iterator is exhausted: read `report.warnings()` then.
    report: DecodeReport = field(default_factory=DecodeReport, compare=False, repr=False)


class _DecoderFailed(Exception):
    """One decoder could not produce audio; `decode_audio` tries the next or reports both reasons."""

    def __init__(self, reason: str, *, unrecognised: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        # True when the decoder did not even recognise the bytes as a format it knows (vs. recognised but broken).
        self.unrecognised = unrecognised


class _SkippedData(_DecoderFailed):
    """The decoder went past data it could not decode and carried on after it: corrupt data in the middle of the
    file, never to be passed off as a shorter recording (nor as a truncated one)."""


class _CorruptMidway(AudioDecodeError):
    """AudioDecodeError for corrupt data that the file continues after (as opposed to data that simply ends)."""


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
    samples are read (so a header claiming hours is refused without allocating them), and while decoding (for
    formats whose header does not say). A thin wrapper over `stream_audio` that joins its blocks; errors found past
    the first block name the second at which they were found.
    """
    info, blocks = stream_audio(
        data, target_sample_rate=target_sample_rate, max_duration=max_duration, block_seconds=_DECODE_BLOCK_SECONDS
    )
    parts = list(blocks)  # stream_audio yields at least one non-empty block or raises
    samples = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
    return DecodedAudio(
        samples=samples,
        sample_rate=target_sample_rate,
        source_sample_rate=info.source_sample_rate,
        source_channels=info.source_channels,
        source_format=info.source_format,
        decoder=info.decoder,
        report=info.report,
    )


def stream_audio(
    source: BinaryIO | bytes,
    *,
    target_sample_rate: int = TARGET_SAMPLE_RATE,
    max_duration: float | None = None,
    block_seconds: float = 10.0,
    offset: float | None = None,
    duration: float | None = None,
) -> tuple[AudioInfo, Iterator[NDArray[np.float32]]]:
    """Decode incrementally: (info, blocks), blocks being float32 (channels, n) C-contiguous arrays at
    `target_sample_rate` of about `block_seconds` each, so memory does not grow with the recording's length.

    `source` is bytes (or another bytes-like object) or a seekable binary file object opened for reading (e.g. an
    fsspec file opened 'rb'); it is read from position 0 and not closed. soundfile is tried first, PyAV second,
    exactly as `decode_audio` always did; the resampling is one `soxr.ResampleStream` per recording, which gives the
    same samples as resampling the whole recording at once, whatever the block size.

    The first call is the probe: it opens the source, checks the header duration against `max_duration` before any
    sample is read, and decodes the first block, so everything that means "cannot open" raises AudioDecodeError
    here, before the iterator exists: empty source, unrecognised or corrupt format, no channels, no samples, NaN/Inf
    in the first block, over `max_duration` by the header or within the first block. Errors found later ("failed
    midway") raise AudioDecodeError from the iterator, and their messages say at which second (of the source) they
    happened: NaN/Inf in a later block, decoding passing `max_duration` (for headers that do not tell the length;
    checked after each block, so memory stays bounded by one block), and decoder failures ("corrupt or unsupported
    audio: decoding failed at 12.3 s (soundfile: ...; pyav: ...)").

    When libsndfile fails midway (it does on some truncated or corrupt FLAC, and on FLAC headers that lie about the
    length), decoding goes on with PyAV, which restarts the file from its beginning and drops the frames already
    decoded (a fallback never seeks or skips inside a file); the join is exact for PCM and FLAC (codec delay could
    shift it for lossy formats), and `info.decoder` still names soundfile. Corrupt data that the file continues after
    is an error, never a shorter recording: for codecs whose timestamps count samples (FLAC, PCM, ALAC, ...), a frame
    that PyAV skipped (FFmpeg resyncs past what it cannot decode) shows as a timestamp ahead of the samples delivered,
    and raises "corrupt data at 7.9 s: 0.26 s of audio could not be decoded" (within the midway message). Data that
    simply ends (a truncated file) is not corrupt: decoded as far as it goes, with a `truncated` warning. Before a
    failure midway is raised, the audio decoded before it (the block in hand too) has been yielded, so a caller keeps
    what came before the failure. `max_duration` and `block_seconds` must be positive; block_seconds is capped so that one
    block holds at most 2**22 samples (about 43 s of 48 kHz stereo).

    `info.report` (a DecodeReport) is filled in as the iterator runs and is complete once it is exhausted: the
    header's promised length against the frames decoded (truncation), the source rate, a midway decoder switch,
    clipping and silence; `info.report.warnings(manifest_duration=...)` says them in words.

    A failure to READ the source (a file object whose read raises, e.g. a network error that outlived the fetch's
    retries) is raised unchanged, from the probe or the iterator, never turned into an AudioDecodeError nor into a
    silently shorter recording (libsndfile takes a failed read for the end of the file).

    `offset` / `duration` (seconds) decode a slice only (NeMo's manifest fields): blocks start `offset` seconds into
    the source and stop after `duration` seconds (None: to the end), and the source is read no further than the
    slice needs (see `_slice`). `max_duration` then bounds the slice, not the file.
    """
    if offset is not None or duration is not None:
        return _slice(source, target_sample_rate, max_duration, block_seconds, offset or 0.0, duration)
    info, blocks, _start = _stream_whole(source, target_sample_rate, max_duration, block_seconds)
    return info, blocks


def _stream_whole(
    source: BinaryIO | bytes,
    target_sample_rate: int,
    max_duration: float | None,
    block_seconds: float,
    start_seconds: float = 0.0,
) -> tuple[AudioInfo, Iterator[NDArray[np.float32]], int]:
    """stream_audio's body; `start_seconds` > 0 seeks there first where the format allows (see `_open`), and the
    third value is the source frame the first block starts at."""
    if target_sample_rate <= 0:
        raise ValueError(f"target_sample_rate must be positive, got {target_sample_rate}")
    if max_duration is not None and not max_duration > 0:
        raise ValueError(f"max_duration must be positive or None, got {max_duration}")
    if not block_seconds > 0:
        raise ValueError(f"block_seconds must be positive, got {block_seconds}")
    fileobj = _as_fileobj(source)
    promised = wav_header_duration(fileobj)  # libsndfile clamps a WAV's data size to the bytes present
    fileobj.seek(0)
    _raise_read_failure(fileobj)

    try:
        reader, first = _open(fileobj, max_duration, block_seconds, start_seconds)
    except AudioDecodeError:
        _raise_read_failure(fileobj)  # "not an audio file" because the bytes never came is a read failure
        raise
    try:
        _raise_read_failure(fileobj)
        if reader.rate <= 0:
            raise AudioDecodeError(f"invalid sample rate {reader.rate} Hz")
        if reader.channels <= 0:
            raise AudioDecodeError("no audio channels")
        if first.shape[0] == 0:
            raise AudioDecodeError("no audio samples (0 frames)")
        # Checked before resampling: soxr's filter would smear one NaN over its neighbours and the model would emit
        # garbage without complaint.
        if not np.isfinite(first).all():
            raise AudioDecodeError("audio contains NaN or Inf samples")
        if max_duration is not None and first.shape[0] > int(max_duration * reader.rate):
            _too_long_while_decoding(first.shape[0] / reader.rate, max_duration)
    except BaseException:
        reader.close()
        raise
    report = DecodeReport(
        source_sample_rate=reader.rate,
        source_channels=reader.channels,
        target_sample_rate=target_sample_rate,
        header_duration=promised if promised is not None else reader.header_duration,
        decoder=reader.decoder,
        fallback_reason=reader.prior_failure,
    )
    info = AudioInfo(
        source_sample_rate=reader.rate,
        source_channels=reader.channels,
        source_format=reader.source_format,
        decoder=reader.decoder,
        duration=reader.header_duration,
        report=report,
    )
    blocks = _stream_blocks(fileobj, reader, first, target_sample_rate, max_duration, block_seconds, report)
    return info, blocks, reader.start_frame


# --- internals ----------------------------------------------------------------------------------------------------


class _ReadLatch(io.RawIOBase):
    """The caller's file object as the decoders see it: a read that raises is kept in `failure` and shown to the
    decoder as the end of the data (libsndfile would take it for that anyway, after printing the traceback, secrets
    and all, to stderr), so that stream_audio can raise it rather than return a shorter recording."""

    def __init__(self, raw: BinaryIO, size: int) -> None:
        super().__init__()
        self._raw = raw
        self.size = size
        self.failure: BaseException | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def read(self, size: int | None = -1) -> bytes:
        if self.failure is not None:
            return b""
        try:
            return self._raw.read(-1 if size is None else size)
        except Exception as error:  # noqa: BLE001 - kept and raised by stream_audio, outside the decoder's callback
            self.failure = error
            return b""

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


def _unread_bytes(fileobj: BinaryIO) -> int:
    size = fileobj.size if isinstance(fileobj, _ReadLatch) else len(fileobj.getbuffer())  # type: ignore[attr-defined]
    return size - fileobj.tell()


def _raise_read_failure(fileobj: BinaryIO) -> None:
    failure = getattr(fileobj, "failure", None)
    if failure is not None:
        raise failure


def _as_fileobj(source: BinaryIO | bytes) -> BinaryIO:
    """bytes-like -> BytesIO; a file object is checked to be seekable and non-empty, rewound to 0 and wrapped so
    that its read failures are kept (_ReadLatch)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioDecodeError("empty file (0 bytes)")
        return io.BytesIO(source)
    if not (hasattr(source, "read") and hasattr(source, "seek")):
        raise TypeError(f"source must be bytes or a binary file object, got {type(source).__name__}")
    seekable = getattr(source, "seekable", None)
    if seekable is not None and not seekable():
        raise ValueError("source must be a seekable file object (both decoders seek)")
    size = source.seek(0, io.SEEK_END)
    source.seek(0)
    if size == 0:
        raise AudioDecodeError("empty file (0 bytes)")
    return _ReadLatch(source, size)


class _SoundfileReader:
    """libsndfile, read in blocks of (n, C) float32; every failure is a _DecoderFailed."""

    decoder = "soundfile"

    def __init__(self, fileobj: BinaryIO, block_seconds: float) -> None:
        try:
            self._file = sf.SoundFile(fileobj)
        except sf.LibsndfileError as e:
            # SF_ERR_UNRECOGNISED_FORMAT (1): libsndfile has no idea what this is; anything else means a known but
            # malformed header.
            raise _DecoderFailed(_reason(e), unrecognised=e.code == 1) from None
        except Exception as e:  # noqa: BLE001 - a decoder's failure must become a row error, never a crashed batch
            raise _DecoderFailed(_reason(e)) from None
        f = self._file
        self.rate: int = f.samplerate
        self.channels: int = f.channels
        self.source_format = f"{f.format}/{f.subtype}"
        self.header_duration = _header_duration(f)
        self.prior_failure: str | None = None
        self.start_frame = 0  # where the first block begins (a slice's seek)
        self._block_frames = _block_frames(block_seconds, self.rate, self.channels)

    def seek_to(self, seconds: float) -> None:
        """Start at `seconds` (a slice), by frames, where the format's seek is exact and cheap; else stay at 0."""
        f = self._file
        if f.format not in _SEEKABLE_FORMATS or not f.seekable():
            return
        frame = int(round(seconds * self.rate))
        if self.header_duration is not None:
            frame = min(frame, f.frames)
        try:
            self.start_frame = f.seek(frame)
        except Exception as e:  # noqa: BLE001
            raise _DecoderFailed(_reason(e)) from None

    def read(self) -> NDArray[np.float32]:
        try:
            return self._file.read(self._block_frames, dtype="float32", always_2d=True)
        except Exception as e:  # noqa: BLE001 - e.g. 'Internal psf_fseek() failed.' when a FLAC header lies
            raise _DecoderFailed(_reason(e)) from None

    def close(self) -> None:
        self._file.close()


class _PyAVReader:
    """FFmpeg through PyAV: frames converted to packed float at the first frame's rate and layout, gathered into
    blocks of (n, C) float32. Construction reads only the container header; `start` decodes the first frame."""

    decoder = "pyav"

    def __init__(self, fileobj: BinaryIO, block_seconds: float) -> None:
        try:
            self._container = av.open(fileobj, mode="r")
        except av.error.InvalidDataError as e:
            raise _DecoderFailed(_reason(e), unrecognised=True) from None
        except Exception as e:  # noqa: BLE001
            raise _DecoderFailed(_reason(e)) from None
        container = self._container
        if not container.streams.audio:
            name = container.format.name
            container.close()
            raise _DecoderFailed(f"no audio stream in {name} container")
        self._stream = container.streams.audio[0]
        if self._stream.codec_context is None:  # FFmpeg parsed the container but has no decoder for its codec
            tag = getattr(self._stream, "codec_tag", "") or "unknown"
            container.close()
            raise _DecoderFailed(f"no decoder for the audio codec ({tag}) in {container.format.name} container")
        self.source_format = f"pyav:{self._stream.codec_context.name}"
        # container.duration is in microseconds (AV_TIME_BASE); cheap, read from the container header.
        duration = container.duration
        self.header_duration = duration / 1_000_000 if duration is not None and duration > 0 else None
        self.rate: int = self._stream.rate or 0
        self.channels: int = self._stream.codec_context.channels
        self.prior_failure: str | None = None
        self.start_frame = 0  # PyAV decodes from the start: a slice drops what comes before its offset
        self._block_seconds = block_seconds
        self._block_frames = 1
        self._frames: Iterator[av.AudioFrame] | None = None
        self._resampler: av.AudioResampler | None = None
        self._pending: list[NDArray[np.float32]] = []
        self._pending_frames = 0
        self._eof = False
        codec = self._stream.codec_context.name
        self._sample_exact = codec in _SAMPLE_EXACT_CODECS or codec.startswith("pcm_")
        self._first_sample: int | None = None  # the first frame's timestamp, in samples
        self._received = 0  # samples the decoder has handed over
        self._skipped: _SkippedData | None = None  # found while reading a block; raised at the next read

    def start(self) -> None:
        """Decode the first frame: its rate and layout are what every later frame is converted to."""
        try:
            self._frames = self._container.decode(self._stream)
            first = next(self._frames, None)
            if first is None:
                self._eof = True
                return
            self.rate = first.sample_rate
            self.channels = len(first.layout.channels)
            # Only the sample format is converted (to packed float, ready for soxr as (n, C)); the layout and rate
            # stay the source's, because channels are kept apart and soxr does the rate conversion.
            self._resampler = av.AudioResampler(format="flt", layout=first.layout, rate=self.rate)
            self._block_frames = _block_frames(self._block_seconds, self.rate, self.channels)
            self._check_continuous(first)
            self._convert(first)
        except _DecoderFailed:
            raise
        except Exception as e:  # noqa: BLE001
            raise _DecoderFailed(_reason(e)) from None

    def read(self) -> NDArray[np.float32]:
        if self._skipped is not None:
            raise self._skipped
        try:
            while not self._eof and self._pending_frames < self._block_frames:
                frame = next(self._frames, None) if self._frames is not None else None
                if frame is None:
                    self._eof = True
                    if self._resampler is not None:
                        self._convert(None)  # flush what the converter holds back
                else:
                    self._check_continuous(frame)
                    self._convert(frame)
        except _SkippedData as skipped:
            if not self._pending:
                raise
            # The audio before the damage is good: handed over now, the failure at the next read (a row keeps the
            # segments decoded before a failure midway, even when the damage lies in the first block).
            self._skipped, self._eof = skipped, True
        except _DecoderFailed:
            raise
        except Exception as e:  # noqa: BLE001
            raise _DecoderFailed(_reason(e)) from None
        pending, self._pending, self._pending_frames = self._pending, [], 0
        if not pending:
            return np.zeros((0, max(self.channels, 0)), dtype=np.float32)
        return pending[0] if len(pending) == 1 else np.concatenate(pending, axis=0)

    def _check_continuous(self, frame: av.AudioFrame) -> None:
        """For sample-exact codecs: a frame must start where the samples delivered so far end. FFmpeg skips a frame
        it cannot decode (logging "invalid sync code", "decode_frame() failed") and goes on at the next one; the
        next frame's timestamp then lies ahead of the count, and the difference is the audio that was lost."""
        if not self._sample_exact or frame.pts is None or frame.time_base is None or self.rate <= 0:
            self._received += frame.samples
            return
        at = int(round(frame.pts * frame.time_base * self.rate))
        if self._first_sample is None:
            self._first_sample = at - self._received
        expected = self._first_sample + self._received
        if at - expected > max(2, int(_SKIP_TOLERANCE_SECONDS * self.rate)):
            raise _SkippedData(f"corrupt data at {self._received / self.rate:.1f} s: "
                               f"{(at - expected) / self.rate:.2f} s of audio could not be decoded")
        self._received += frame.samples

    def _convert(self, frame: av.AudioFrame | None) -> None:
        assert self._resampler is not None
        for out in self._resampler.resample(frame):
            # Packed float comes back as (1, n * C).
            block = out.to_ndarray().reshape(-1, self.channels).astype(np.float32, copy=False)
            self._pending.append(block)
            self._pending_frames += block.shape[0]

    def close(self) -> None:
        self._container.close()


_Reader = _SoundfileReader | _PyAVReader

# Formats whose libsndfile seek is exact and reads only headers (PCM by frame size, FLAC by its seek table or a
# search): a slice of them is read from its offset. Compressed formats (MP3, Ogg) are decoded from the start and what
# comes before the offset dropped, which is exact whatever their encoder delay.
_SEEKABLE_FORMATS = {"WAV", "WAVEX", "RF64", "W64", "AIFF", "AU", "FLAC"}
_MIN_SLICE_BLOCK_SECONDS = 0.25


def _slice(
    source: BinaryIO | bytes,
    target_rate: int,
    max_duration: float | None,
    block_seconds: float,
    offset: float,
    duration: float | None,
) -> tuple[AudioInfo, Iterator[NDArray[np.float32]]]:
    """stream_audio for a slice: seek where the format allows, drop target-rate samples before `offset` (all of
    them for formats decoded from the start), stop reading once `duration` seconds are out. A slice that starts past
    the end of the audio is an AudioDecodeError; one that ends past it is shorter, and the report says so."""
    if offset < 0 or (duration is not None and duration <= 0):
        raise ValueError(f"a slice needs offset >= 0 and duration > 0, got offset={offset}, duration={duration}")
    if duration is not None:
        if max_duration is not None:
            _check_duration(duration, max_duration)
            max_duration = None  # the slice's own length bounds it; the file may be longer
        # The decoder reads one block ahead: blocks of an eighth of the slice keep that look-ahead small.
        block_seconds = min(block_seconds, max(_MIN_SLICE_BLOCK_SECONDS, duration / 8))
    info, blocks, start_frame = _stream_whole(source, target_rate, max_duration, block_seconds, offset)
    report = info.report
    full_duration = info.duration

    def sliced() -> Iterator[NDArray[np.float32]]:
        # Target-rate samples to drop: what lies between where the decoder started and the offset.
        seeked = start_frame / info.source_sample_rate
        skip = int(round((offset - seeked) * target_rate))
        wanted = None if duration is None else int(round(duration * target_rate))
        out = 0
        try:
            for block in blocks:
                if skip >= block.shape[1]:
                    skip -= block.shape[1]
                    continue
                if skip:
                    block, skip = block[:, skip:], 0
                if wanted is not None and out + block.shape[1] >= wanted:
                    block = block[:, : wanted - out]
                    out += block.shape[1]
                    if block.shape[1]:
                        yield block
                    break
                out += block.shape[1]
                yield block
        finally:
            blocks.close()
        if out == 0:
            known = f" ({full_duration:.1f} s)" if full_duration is not None else ""
            raise AudioDecodeError(f"the slice at {offset:.2f} s starts past the end of the recording{known}")
        # The report speaks of the slice: its length against the slice's, not the file's.
        report.decoded_frames = int(round(out * info.source_sample_rate / target_rate))
        report.header_duration = duration if full_duration is None or duration is None else min(
            duration, max(full_duration - offset, 0.0))
        report.complete = True

    return replace(info, duration=duration), sliced()


def _block_frames(block_seconds: float, rate: int, channels: int) -> int:
    limit = max(1, _MAX_BLOCK_SAMPLES // max(channels, 1))
    return max(1, min(int(round(block_seconds * max(rate, 1))), limit))


def _open(fileobj: BinaryIO, max_duration: float | None, block_seconds: float,
          start_seconds: float = 0.0) -> tuple[_Reader, NDArray[np.float32]]:
    """The probe: soundfile first, PyAV if soundfile cannot open the source or read its first block (or reads no
    samples at all); returns the reader and its first block, or raises AudioDecodeError naming both complaints.
    `start_seconds` > 0 (a slice): soundfile seeks there by frames in the formats whose seek is exact and cheap
    (`_SEEKABLE_FORMATS`), and the reader's `start_frame` says where its first block begins; other readers start at
    0 and the slice drops what comes before."""
    try:
        reader: _Reader = _SoundfileReader(fileobj, block_seconds)
    except _DecoderFailed as failure:
        sf_failure = failure
    else:
        try:
            if max_duration is not None and reader.header_duration is not None:
                # The header check: refuse before a single sample is read.
                _check_duration(reader.header_duration, max_duration)
            if start_seconds > 0:
                reader.seek_to(start_seconds)
            first = reader.read()
        except _DecoderFailed as failure:
            reader.close()
            sf_failure = failure
        except BaseException:
            reader.close()
            raise
        else:
            if first.shape[0] > 0:
                return reader, first
            # libsndfile trusts a WAV data-chunk size of 0, which streaming writers leave as a placeholder in front
            # of real audio; FFmpeg reads such files to the end. Costs one extra open only for files that look empty.
            reader.close()
            try:
                alt, alt_first = _open_pyav(fileobj, max_duration, block_seconds)
            except _DecoderFailed:
                raise AudioDecodeError("no audio samples (0 frames)") from None
            if alt_first.shape[0] == 0:
                alt.close()
                raise AudioDecodeError("no audio samples (0 frames)")
            alt.prior_failure = "no audio samples (0 frames)"
            return alt, alt_first
    try:
        reader, first = _open_pyav(fileobj, max_duration, block_seconds)
    except _DecoderFailed as av_failure:
        both = f"soundfile: {sf_failure.reason}; pyav: {av_failure.reason}"
        if sf_failure.unrecognised and av_failure.unrecognised:
            raise AudioDecodeError(f"not an audio file: unrecognised format ({both})") from None
        raise AudioDecodeError(f"corrupt or unsupported audio ({both})") from None
    reader.prior_failure = sf_failure.reason
    return reader, first


def _open_pyav(fileobj: BinaryIO, max_duration: float | None, block_seconds: float) -> tuple[_PyAVReader, NDArray]:
    fileobj.seek(0)
    reader = _PyAVReader(fileobj, block_seconds)
    try:
        if max_duration is not None and reader.header_duration is not None:
            _check_duration(reader.header_duration, max_duration)
        reader.start()
        first = reader.read()
    except BaseException:
        reader.close()
        raise
    return reader, first


def _stream_blocks(
    fileobj: BinaryIO,
    reader: _Reader,
    first: NDArray[np.float32],
    target_rate: int,
    max_duration: float | None,
    block_seconds: float,
    report: DecodeReport,
) -> Iterator[NDArray[np.float32]]:
    """The iterator half of stream_audio: `first` has passed the probe's checks; later blocks are checked here, and
    every block is accounted in `report`."""
    rate, channels = reader.rate, reader.channels
    position = reader.start_frame  # source frames before `block` (a slice's seek skips some)
    max_frames = None if max_duration is None else position + int(max_duration * rate)
    resampler = None if rate == target_rate else soxr.ResampleStream(rate, target_rate, channels, dtype="float32")
    produced = 0
    block = first
    try:
        while True:
            # One raw block of look-ahead, so that the block before the end is resampled with last=True and
            # carries the resampler's tail (no tiny trailing block).
            end = position + block.shape[0]
            report.observe(block)
            try:
                try:
                    upcoming = reader.read()
                except _DecoderFailed as failure:
                    _raise_read_failure(fileobj)
                    if reader.decoder != "soundfile":
                        raise AudioDecodeError(_midway(end / rate, reader.prior_failure, failure.reason)) from None
                    reader.close()
                    reader, upcoming = _resume_with_pyav(fileobj, end, rate, channels, failure.reason,
                                                         block_seconds)
                    report.decoder_switch = (f"decoder switched midway: soundfile failed at {end / rate:.1f} s "
                                             f"({failure.reason}); pyav decoded the rest")
                _raise_read_failure(fileobj)
                if upcoming.shape[0] == 0 and reader.decoder == "soundfile" \
                        and reader.source_format.startswith("FLAC/") and _unread_bytes(fileobj) > _UNREAD_SLACK:
                    reader, upcoming = _past_the_header_end(fileobj, reader, end, block_seconds, report)
            except AudioDecodeError:
                # The block in hand was decoded before the failure: it is handed on (the resampler flushed), so the
                # row keeps every segment before the failure; then the failure ends the recording.
                out = block if resampler is None else resampler.resample_chunk(block, last=True)
                if out.shape[0] > 0:
                    yield _planar(out)
                raise
            last = upcoming.shape[0] == 0
            out = block if resampler is None else resampler.resample_chunk(block, last=last)
            position = end
            if out.shape[0] > 0:
                produced += out.shape[0]
                yield _planar(out)
            if last:
                break
            _check_block(upcoming, position, rate, max_frames, max_duration)
            block = upcoming
        if produced == 0:
            raise AudioDecodeError(
                f"no audio samples after resampling {position} frames from {rate} to {target_rate} Hz"
            )
        report.complete = True
    finally:
        reader.close()


def _past_the_header_end(
    fileobj: BinaryIO, reader: _Reader, position: int, block_seconds: float, report: DecodeReport
) -> tuple[_Reader, NDArray[np.float32]]:
    """libsndfile stopped at the length STREAMINFO gives while much of the file is unread: PyAV, which decodes frames
    to the end of the data, takes over from the same frame if it finds more; otherwise the recording ends here."""
    rate, channels = reader.rate, reader.channels
    try:
        alt, more = _resume_with_pyav(fileobj, position, rate, channels, "stopped at the header's length",
                                      block_seconds)
    except _CorruptMidway:
        raise  # data that PyAV skipped: corrupt in the middle, not the end of the recording
    except AudioDecodeError:
        return reader, np.zeros((0, channels), dtype=np.float32)  # nothing decodable after it: trailing data
    if more.shape[0] == 0:
        alt.close()
        return reader, more
    reader.close()
    report.decoder_switch = (f"decoder switched midway: soundfile stopped at {position / rate:.1f} s, where the "
                             f"header says the audio ends; pyav decoded the rest")
    return alt, more


def _check_block(
    block: NDArray[np.float32], position: int, rate: int, max_frames: int | None, max_duration: float | None
) -> None:
    if max_frames is not None and position + block.shape[0] > max_frames:
        assert max_duration is not None
        _too_long_while_decoding((position + block.shape[0]) / rate, max_duration)
    if not np.isfinite(block).all():
        bad = int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
        raise AudioDecodeError(f"audio contains NaN or Inf samples at {(position + bad) / rate:.1f} s")


def _resume_with_pyav(
    fileobj: BinaryIO, position: int, rate: int, channels: int, sf_reason: str, block_seconds: float
) -> tuple[_PyAVReader, NDArray[np.float32]]:
    """libsndfile failed after `position` good frames: go on with PyAV from the same frame, or raise the midway
    error naming both complaints."""
    try:
        fileobj.seek(0)
        alt = _PyAVReader(fileobj, block_seconds)
    except _DecoderFailed as failure:
        _raise_read_failure(fileobj)
        raise AudioDecodeError(_midway(position / rate, sf_reason, failure.reason)) from None
    alt.prior_failure = sf_reason
    try:
        alt.start()
        if (alt.rate, alt.channels) != (rate, channels):
            raise _DecoderFailed(f"decodes {alt.rate} Hz x {alt.channels}, not {rate} Hz x {channels}")
        skip = position
        while True:
            block = alt.read()
            if block.shape[0] > skip:
                return alt, block[skip:]
            if block.shape[0] == 0:
                return alt, block  # PyAV found no more than libsndfile did: the recording ends here
            skip -= block.shape[0]
    except _DecoderFailed as failure:
        alt.close()
        _raise_read_failure(fileobj)
        kind = _CorruptMidway if isinstance(failure, _SkippedData) else AudioDecodeError
        raise kind(_midway(position / rate, sf_reason, failure.reason)) from None
    except BaseException:
        alt.close()
        raise


def _midway(seconds: float, sf_reason: str | None, av_reason: str) -> str:
    reasons = f"pyav: {av_reason}" if sf_reason is None else f"soundfile: {sf_reason}; pyav: {av_reason}"
    return f"corrupt or unsupported audio: decoding failed at {seconds:.1f} s ({reasons})"


def _planar(block: NDArray[np.float32]) -> NDArray[np.float32]:
    """(n, C) as the contract's C-contiguous (C, n) float32 (no copy for mono)."""
    return np.ascontiguousarray(block.T, dtype=np.float32)


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
