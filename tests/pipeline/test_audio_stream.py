"""Tests for pipeline.audio.stream_audio: incremental decoding with bounded memory; all audio is generated here."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import soxr

from pipeline.audio import AudioDecodeError, AudioInfo, decode_audio, stream_audio
from pipeline.segmenter import SegmentPolicy, segment_stream

RATE = 16_000

# --- generators ---------------------------------------------------------------------------------------------------


def signal(rate: int, seconds: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    """(N,) or (N, C): a different tone per channel plus a little noise, so channel order and content both show."""
    n = int(round(rate * seconds))
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    cols = [0.3 * np.sin(2 * np.pi * (300.0 + 700.0 * c) * t) + 0.01 * rng.standard_normal(n) for c in range(channels)]
    x = np.stack(cols, axis=1).astype(np.float32)
    return x[:, 0] if channels == 1 else x


def sf_bytes(samples: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def m4a_bytes(samples: np.ndarray, rate: int) -> bytes:
    planar = samples[None, :] if samples.ndim == 1 else np.ascontiguousarray(samples.T)
    layout = "mono" if planar.shape[0] == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=rate)
        stream.layout = layout
        for start in range(0, planar.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(planar[:, start : start + 1024]), format="fltp", layout=layout
            )
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def with_flac_total_samples(flac: bytes, total_samples: int) -> bytes:
    """Rewrite STREAMINFO total_samples (36 bits at offset 18..25); 0 means 'unknown length'."""
    data = bytearray(flac)
    packed = int.from_bytes(data[18:26], "big")
    data[18:26] = ((packed & ~((1 << 36) - 1)) | total_samples).to_bytes(8, "big")
    return bytes(data)


def one_shot_reference(data: bytes, decoder: str, rate_out: int = RATE) -> np.ndarray:
    """The whole file decoded in one go (independently of pipeline.audio) and resampled in one call: (C, n)."""
    if decoder == "soundfile":
        x, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    else:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.audio[0]
            planes = [f.to_ndarray() for f in container.decode(stream)]
            rate = stream.rate
        x = np.ascontiguousarray(np.concatenate(planes, axis=1).T, dtype=np.float32)
    y = soxr.resample(x, rate, rate_out) if rate != rate_out else x
    return np.ascontiguousarray(y.reshape(len(y), -1).T)


def consume(blocks: object) -> tuple[np.ndarray, list[int]]:
    parts = list(blocks)  # type: ignore[call-overload]
    return np.concatenate(parts, axis=1), [p.shape[1] for p in parts]


# --- formats ------------------------------------------------------------------------------------------------------

SECONDS = 7.0  # with block_seconds=2: three full blocks and a part

FORMATS = [
    # id, factory, source rate, channels, decoder, source_format, duration tolerance
    ("wav-pcm16-44100-stereo", lambda: sf_bytes(signal(44_100, SECONDS, 2), 44_100, "WAV", "PCM_16"),
     44_100, 2, "soundfile", "WAV/PCM_16", 0.001),
    ("flac-48k", lambda: sf_bytes(signal(48_000, SECONDS), 48_000, "FLAC", "PCM_24"),
     48_000, 1, "soundfile", "FLAC/PCM_24", 0.001),
    ("wav-16k-no-resampling", lambda: sf_bytes(signal(RATE, SECONDS), RATE, "WAV", "FLOAT"),
     RATE, 1, "soundfile", "WAV/FLOAT", 0.001),
    ("ogg-vorbis-22050", lambda: sf_bytes(signal(22_050, SECONDS), 22_050, "OGG", "VORBIS"),
     22_050, 1, "soundfile", "OGG/VORBIS", 0.1),
    ("mp3-44100-stereo", lambda: sf_bytes(signal(44_100, SECONDS, 2), 44_100, "MP3", "MPEG_LAYER_III"),
     44_100, 2, "soundfile", "MP3/MPEG_LAYER_III", 0.1),
    ("m4a-aac-44100-stereo", lambda: m4a_bytes(signal(44_100, SECONDS, 2), 44_100),
     44_100, 2, "pyav", "pyav:aac", 0.1),
]  # fmt: skip


@pytest.mark.parametrize("as_file", [False, True], ids=["bytes", "file"])
@pytest.mark.parametrize(
    ("make", "source_rate", "channels", "decoder", "source_format", "tolerance"),
    [pytest.param(*f[1:], id=f[0]) for f in FORMATS],
)
def test_streams_format(
    tmp_path: Path,
    as_file: bool,
    make: Callable[[], bytes],
    source_rate: int,
    channels: int,
    decoder: str,
    source_format: str,
    tolerance: float,
) -> None:
    data = make()
    path = tmp_path / "audio.bin"
    path.write_bytes(data)
    with open(path, "rb") as f:
        info, blocks = stream_audio(f if as_file else data, block_seconds=2.0)
        assert isinstance(info, AudioInfo)
        assert (info.source_sample_rate, info.source_channels) == (source_rate, channels)
        assert (info.source_format, info.decoder) == (source_format, decoder)
        assert info.duration == pytest.approx(SECONDS, abs=tolerance)  # from the header, before decoding
        parts = list(blocks)
        assert not f.closed  # the caller's file object is the caller's to close

    for p in parts:
        assert p.dtype == np.float32 and p.ndim == 2 and p.shape[0] == channels and p.flags.c_contiguous
    sizes = [p.shape[1] for p in parts]
    # About block_seconds each: the resampler's delay and PyAV's frame granularity move them by well under 5 %.
    assert all(abs(n - 2.0 * RATE) < 0.05 * 2.0 * RATE for n in sizes[:-1]), sizes
    assert 0 < sizes[-1] < 1.1 * 2.0 * RATE
    samples = np.concatenate(parts, axis=1)
    assert samples.shape[1] / RATE == pytest.approx(SECONDS, abs=tolerance)

    # Same samples as decoding the whole file at once and resampling in one call, and as decode_audio.
    reference = one_shot_reference(data, decoder)
    assert samples.shape == reference.shape
    np.testing.assert_allclose(samples, reference, atol=1e-5)
    whole = decode_audio(data)
    assert whole.samples.shape == samples.shape and whole.decoder == decoder
    np.testing.assert_allclose(whole.samples, samples, atol=1e-5)


@pytest.mark.parametrize("block_seconds", [0.37, 3.0, 100.0])
def test_block_size_does_not_change_the_samples(block_seconds: float) -> None:
    data = sf_bytes(signal(44_100, 5.0, 2), 44_100, "FLAC", "PCM_16")
    reference, _ = consume(stream_audio(data, block_seconds=1.0)[1])
    samples, sizes = consume(stream_audio(data, block_seconds=block_seconds)[1])
    np.testing.assert_allclose(samples, reference, atol=1e-6)
    assert len(sizes) == max(1, int(np.ceil(5.0 / block_seconds - 1e-9)))


def test_twenty_minute_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    # 20 min of 44.1 kHz stereo: 423 MB as float32 at the source rate, 154 MB decoded at 16 kHz; the file (PCM_16) is
    # written a second at a time, so the test itself never holds it either.
    rate, minutes = 44_100, 20
    path = tmp_path / "long.wav"
    second = signal(rate, 1.0, 2)
    with sf.SoundFile(path, "w", samplerate=rate, channels=2, format="WAV", subtype="PCM_16") as out:
        for _ in range(60 * minutes):
            out.write(second)
    decoded_bytes = 60 * minutes * RATE * 2 * 4

    tracemalloc.start()
    try:
        with open(path, "rb") as f:
            info, blocks = stream_audio(f)  # 10 s blocks
            total = 0
            n_blocks = 0
            for block in blocks:
                total += block.shape[1]
                n_blocks += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert info.duration == pytest.approx(60.0 * minutes)
    assert total == 60 * minutes * RATE
    assert n_blocks == 6 * minutes
    assert peak < 30 * 2**20, f"peak {peak / 2**20:.1f} MiB for {decoded_bytes / 2**20:.0f} MiB decoded"


def test_stream_into_segmenter() -> None:
    x = signal(8_000, 75.0)
    data = sf_bytes(x, 8_000, "WAV", "ULAW")
    info, blocks = stream_audio(data, block_seconds=4.0)
    segments = list(segment_stream((b[0] for b in blocks), RATE, SegmentPolicy(method="energy")))
    assert info.source_format == "WAV/ULAW"
    assert segments[0].start == 0.0 and segments[-1].end == pytest.approx(75.0)
    assert all(s.end - s.start <= 30.0 for s in segments)


# --- errors -------------------------------------------------------------------------------------------------------


def test_empty_source(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError, match=r"^empty file \(0 bytes\)$"):
        stream_audio(b"")
    (tmp_path / "empty.wav").write_bytes(b"")
    with open(tmp_path / "empty.wav", "rb") as f, pytest.raises(AudioDecodeError, match=r"^empty file"):
        stream_audio(f)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(np.random.default_rng(0).bytes(4096), id="random-bytes"),
        pytest.param(b"Speaker 1: not audio.\n" * 40, id="text"),
    ],
)
def test_garbage_raises_from_the_first_call(data: bytes) -> None:
    # Before the iterator exists: the caller can tell "cannot open" from "failed midway".
    with pytest.raises(AudioDecodeError, match=r"^not an audio file: unrecognised format \(soundfile: .*; pyav: "):
        stream_audio(data)


def test_header_over_max_duration_raises_from_the_first_call() -> None:
    data = sf_bytes(signal(RATE, 3.0), RATE, "FLAC", "PCM_16")
    with pytest.raises(AudioDecodeError, match=r"^recording is 3\.0 s long, over max_duration=2 s$"):
        stream_audio(data, max_duration=2)


def test_nan_in_the_first_block_raises_from_the_first_call() -> None:
    x = signal(RATE, 3.0)
    x[RATE] = np.nan
    with pytest.raises(AudioDecodeError, match=r"^audio contains NaN or Inf samples$"):
        stream_audio(sf_bytes(x, RATE, "WAV", "FLOAT"), block_seconds=10.0)


def test_nan_in_a_later_block_raises_from_the_iterator_with_the_second() -> None:
    x = signal(44_100, 40.0)
    x[int(25.3 * 44_100)] = np.inf
    info, blocks = stream_audio(sf_bytes(x, 44_100, "WAV", "FLOAT"), block_seconds=10.0)
    assert info.source_sample_rate == 44_100
    seen = 0
    with pytest.raises(AudioDecodeError, match=r"^audio contains NaN or Inf samples at 25\.3 s$"):
        for block in blocks:
            seen += block.shape[1]
    assert 10 * RATE < seen <= 25 * RATE  # the good blocks before it came through


def test_max_duration_passed_while_decoding_when_the_header_does_not_tell() -> None:
    # FLAC with total_samples = 0 ('unknown length', as streaming encoders write it): nothing to refuse up front, so
    # the limit is checked after each block and the iterator stops as soon as decoding passes it.
    data = with_flac_total_samples(sf_bytes(signal(RATE, 30.0), RATE, "FLAC", "PCM_16"), 0)
    info, blocks = stream_audio(data, max_duration=12.0, block_seconds=5.0)
    assert info.duration is None
    seen = 0
    with pytest.raises(AudioDecodeError, match=r"^recording is longer than max_duration=12 s \(decoding stopped at 15"):
        for block in blocks:
            seen += block.shape[1]
    assert seen >= 5 * RATE
    # Without a limit the same file decodes in full.
    samples, _ = consume(stream_audio(data, block_seconds=5.0)[1])
    assert samples.shape[1] == 30 * RATE


def test_flac_header_lying_about_length_is_decoded_exactly() -> None:
    # libsndfile fails partway through such files; decoding continues with PyAV from the same frame.
    x = signal(RATE, 25.0)
    good = sf_bytes(x, RATE, "FLAC", "PCM_16")
    for total_samples in (0, RATE * 36_000):
        info, blocks = stream_audio(with_flac_total_samples(good, total_samples), block_seconds=5.0)
        samples, _ = consume(blocks)
        np.testing.assert_array_equal(samples[0], sf.read(io.BytesIO(good), dtype="float32")[0])


def test_corrupt_data_after_a_good_start_raises_from_the_iterator_with_the_second() -> None:
    good = sf_bytes(signal(RATE, 40.0, seed=3), RATE, "FLAC", "PCM_16")
    truncated = good[: len(good) // 2]  # both libsndfile and FFmpeg give up a little before 20 s
    info, blocks = stream_audio(truncated, block_seconds=5.0)
    assert info.decoder == "soundfile"
    seen = 0
    midway = r"^corrupt or unsupported audio: decoding failed at 1\d\.\d s \(soundfile: .+; pyav: .+\)$"
    with pytest.raises(AudioDecodeError, match=midway):
        for block in blocks:
            seen += block.shape[1]
    assert seen >= 10 * RATE


def test_invalid_arguments() -> None:
    data = sf_bytes(signal(RATE, 1.0), RATE, "WAV", "PCM_16")
    with pytest.raises(ValueError, match="block_seconds"):
        stream_audio(data, block_seconds=0)
    with pytest.raises(ValueError, match="max_duration"):
        stream_audio(data, max_duration=-1)
    with pytest.raises(ValueError, match="target_sample_rate"):
        stream_audio(data, target_sample_rate=0)
