"""Tests for pipeline.audio: every format is generated here (no committed audio files)."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable

import av
import numpy as np
import pytest
import soundfile as sf

from pipeline.audio import (
    TARGET_SAMPLE_RATE,
    AudioDecodeError,
    DecodedAudio,
    decode_audio,
    probe_duration,
)

# --- generators ---------------------------------------------------------------------------------------------------


def tone(rate: int, freq: float = 440.0, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def stereo(rate: int, seconds: float = 1.0) -> np.ndarray:
    """(N, 2): left 300 Hz, right 1000 Hz."""
    return np.stack([tone(rate, 300.0, seconds), tone(rate, 1000.0, seconds)], axis=1)


def sf_bytes(samples: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def pyav_bytes(
    samples: np.ndarray, rate: int, container: str, codec: str, container_options: dict[str, str] | None = None
) -> bytes:
    """Encode (N,) or (N, C) float samples with FFmpeg through PyAV."""
    planar = np.atleast_2d(samples.T) if samples.ndim == 2 else samples[None, :]
    layout = "mono" if planar.shape[0] == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, "w", format=container, options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = layout
        step = 1024
        for start in range(0, planar.shape[1], step):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(planar[:, start : start + step]), format="fltp", layout=layout
            )
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def wav_header(rate: int, channels: int, bits: int, data_size: int) -> bytes:
    """A canonical 44-byte PCM WAV header whose data chunk claims `data_size` bytes."""
    block_align = channels * bits // 8
    fmt_chunk = struct.pack("<HHIIHH", 1, channels, rate, rate * block_align, block_align, bits)
    riff_size = min(4 + 8 + len(fmt_chunk) + 8 + data_size, 0xFFFFFFFF)
    return (
        b"RIFF" + struct.pack("<I", riff_size) + b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk
        + b"data" + struct.pack("<I", data_size)
    )  # fmt: skip


def flac_with_total_samples(total_samples: int, rate: int = 16_000, seconds: float = 1.0) -> bytes:
    """A real FLAC file whose STREAMINFO total_samples is rewritten (36 bits at file offset 18..25)."""
    data = bytearray(sf_bytes(tone(rate, seconds=seconds), rate, "FLAC", "PCM_16"))
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # first metadata block is STREAMINFO
    packed = int.from_bytes(data[18:26], "big")
    packed = (packed & ~((1 << 36) - 1)) | total_samples
    data[18:26] = packed.to_bytes(8, "big")
    return bytes(data)


def dominant_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1.0 / rate)[np.argmax(spectrum)])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# --- formats ------------------------------------------------------------------------------------------------------

PCM_TOL = 0.001  # PCM and FLAC: exact frame counts, resampling keeps duration to the sample
LOSSY_TOL = 0.1  # codec priming and padding (AAC: 1024 priming + frame padding; MP3 without a LAME tag: ~0.04 s)


def _sf(rate: int, fmt: str, subtype: str) -> Callable[[], bytes]:
    return lambda: sf_bytes(tone(rate), rate, fmt, subtype)


def _mp3_no_lame_tag() -> bytes:
    # Without the Xing/LAME header libsndfile cannot drop the encoder delay and padding.
    return pyav_bytes(tone(44_100), 44_100, "mp3", "libmp3lame", {"write_xing": "0"})


FORMATS = [
    # id, bytes factory, source rate, decoder, source_format, duration tolerance
    ("wav-pcm16-16k", _sf(16_000, "WAV", "PCM_16"), 16_000, "soundfile", "WAV/PCM_16", PCM_TOL),
    ("wav-pcm24-22050", _sf(22_050, "WAV", "PCM_24"), 22_050, "soundfile", "WAV/PCM_24", PCM_TOL),
    ("wav-pcm32-44100", _sf(44_100, "WAV", "PCM_32"), 44_100, "soundfile", "WAV/PCM_32", PCM_TOL),
    ("wav-float-48k", _sf(48_000, "WAV", "FLOAT"), 48_000, "soundfile", "WAV/FLOAT", PCM_TOL),
    ("wav-ulaw-8k", _sf(8_000, "WAV", "ULAW"), 8_000, "soundfile", "WAV/ULAW", PCM_TOL),
    ("wav-alaw-8k", _sf(8_000, "WAV", "ALAW"), 8_000, "soundfile", "WAV/ALAW", PCM_TOL),
    ("flac-11025", _sf(11_025, "FLAC", "PCM_16"), 11_025, "soundfile", "FLAC/PCM_16", PCM_TOL),
    ("flac-24bit-48k", _sf(48_000, "FLAC", "PCM_24"), 48_000, "soundfile", "FLAC/PCM_24", PCM_TOL),
    ("ogg-vorbis-22050", _sf(22_050, "OGG", "VORBIS"), 22_050, "soundfile", "OGG/VORBIS", LOSSY_TOL),
    ("mp3-44100", _sf(44_100, "MP3", "MPEG_LAYER_III"), 44_100, "soundfile", "MP3/MPEG_LAYER_III", LOSSY_TOL),
    ("mp3-16k", _sf(16_000, "MP3", "MPEG_LAYER_III"), 16_000, "soundfile", "MP3/MPEG_LAYER_III", LOSSY_TOL),
    ("mp3-no-lame-tag", _mp3_no_lame_tag, 44_100, "soundfile", "MP3/MPEG_LAYER_III", LOSSY_TOL),
    ("ogg-opus-48k", _sf(48_000, "OGG", "OPUS"), 48_000, "soundfile", "OGG/OPUS", LOSSY_TOL),
    ("ogg-opus-24k", _sf(24_000, "OGG", "OPUS"), 24_000, "soundfile", "OGG/OPUS", LOSSY_TOL),
    ("m4a-aac-44100", lambda: pyav_bytes(tone(44_100), 44_100, "mp4", "aac"), 44_100, "pyav", "pyav:aac", LOSSY_TOL),
    ("m4a-aac-22050", lambda: pyav_bytes(tone(22_050), 22_050, "ipod", "aac"), 22_050, "pyav", "pyav:aac", LOSSY_TOL),
    ("webm-opus-48k", lambda: pyav_bytes(tone(48_000), 48_000, "webm", "libopus"), 48_000, "pyav", "pyav:opus",
     LOSSY_TOL),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "source_rate", "decoder", "source_format", "tolerance"),
    [pytest.param(*f[1:], id=f[0]) for f in FORMATS],
)
def test_decodes_format(
    make: Callable[[], bytes], source_rate: int, decoder: str, source_format: str, tolerance: float
) -> None:
    audio = decode_audio(make())

    assert isinstance(audio, DecodedAudio)
    assert audio.decoder == decoder
    assert audio.source_format == source_format
    assert audio.source_sample_rate == source_rate
    assert audio.sample_rate == TARGET_SAMPLE_RATE
    assert audio.source_channels == 1 and audio.num_channels == 1
    assert audio.samples.dtype == np.float32
    assert audio.samples.ndim == 2 and audio.samples.flags.c_contiguous
    assert audio.duration == pytest.approx(1.0, abs=tolerance)
    # Not garbage: the tone survives decoding and resampling at its pitch and roughly its level.
    assert dominant_frequency(audio.samples[0], audio.sample_rate) == pytest.approx(440.0, abs=3.0)
    assert 0.25 < rms(audio.samples[0]) < 0.45  # a 0.5-amplitude sine has RMS 0.354


def test_target_sample_rate_is_honoured() -> None:
    audio = decode_audio(sf_bytes(tone(44_100), 44_100, "WAV", "PCM_16"), target_sample_rate=22_050)
    assert audio.sample_rate == 22_050
    assert audio.samples.shape == (1, 22_050)
    assert dominant_frequency(audio.samples[0], 22_050) == pytest.approx(440.0, abs=3.0)


def test_resampling_keeps_passband_and_removes_what_would_alias() -> None:
    # 7 kHz is below the 8 kHz Nyquist of the target and must survive; 11 kHz must be filtered out, not folded
    # back to 5 kHz.
    rate = 44_100
    keep = decode_audio(sf_bytes(tone(rate, 7_000.0), rate, "WAV", "FLOAT")).samples[0]
    assert dominant_frequency(keep, TARGET_SAMPLE_RATE) == pytest.approx(7_000.0, abs=3.0)
    assert rms(keep) > 0.3
    gone = decode_audio(sf_bytes(tone(rate, 11_000.0), rate, "WAV", "FLOAT")).samples[0]
    assert rms(gone) < 0.01


# --- channels -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stereo_wav() -> DecodedAudio:
    return decode_audio(sf_bytes(stereo(44_100), 44_100, "WAV", "PCM_16"))


def select_channels(audio: DecodedAudio, mode: str, channel: int | None = None) -> list[np.ndarray]:
    """The streams pipeline.channels picks from decoded audio (one block), each joined."""
    from pipeline.channels import channel_streams

    return [np.concatenate(list(blocks)) for _, blocks in
            channel_streams([audio.samples], audio.num_channels, mode, channel)]


def test_stereo_keeps_channels_apart(stereo_wav: DecodedAudio) -> None:
    assert stereo_wav.source_channels == 2
    assert stereo_wav.samples.shape == (2, TARGET_SAMPLE_RATE)
    assert stereo_wav.samples.flags.c_contiguous


def test_split_gives_one_stream_per_channel_in_order(stereo_wav: DecodedAudio) -> None:
    streams = select_channels(stereo_wav, "split")
    assert len(streams) == 2
    assert [dominant_frequency(s, TARGET_SAMPLE_RATE) for s in streams] == pytest.approx([300.0, 1000.0], abs=3.0)
    assert all(s.dtype == np.float32 and s.ndim == 1 for s in streams)


def test_mix_gives_the_mean(stereo_wav: DecodedAudio) -> None:
    (mixed,) = select_channels(stereo_wav, "mix")
    assert mixed.dtype == np.float32 and mixed.shape == (TARGET_SAMPLE_RATE,)
    np.testing.assert_allclose(mixed, stereo_wav.samples.mean(axis=0), atol=1e-6)
    spectrum = np.abs(np.fft.rfft(mixed))
    freqs = np.fft.rfftfreq(len(mixed), 1.0 / TARGET_SAMPLE_RATE)
    top_two = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert top_two == pytest.approx([300.0, 1000.0], abs=3.0)


@pytest.mark.parametrize("mode", ["mix", "split"])
@pytest.mark.parametrize("channel", [1, -1])
def test_channel_overrides_mode(stereo_wav: DecodedAudio, mode: str, channel: int) -> None:
    (stream,) = select_channels(stereo_wav, mode, channel=channel)
    assert dominant_frequency(stream, TARGET_SAMPLE_RATE) == pytest.approx(1000.0, abs=3.0)


def test_channel_zero_and_minus_two_are_left(stereo_wav: DecodedAudio) -> None:
    for channel in (0, -2):
        (stream,) = select_channels(stereo_wav, "split", channel=channel)
        assert dominant_frequency(stream, TARGET_SAMPLE_RATE) == pytest.approx(300.0, abs=3.0)


@pytest.mark.parametrize("channel", [2, -3])
def test_out_of_range_channel_is_an_audio_error(stereo_wav: DecodedAudio, channel: int) -> None:
    with pytest.raises(AudioDecodeError, match=rf"^channel {channel} requested but the file has 2 channels$"):
        select_channels(stereo_wav, "mix", channel=channel)


def test_mono_file_split_and_mix_give_one_stream() -> None:
    audio = decode_audio(sf_bytes(tone(16_000), 16_000, "WAV", "PCM_16"))
    assert len(select_channels(audio, "split")) == 1
    assert len(select_channels(audio, "mix")) == 1
    with pytest.raises(AudioDecodeError, match=r"^channel 1 requested but the file has 1 channel$"):
        select_channels(audio, "mix", channel=1)


def test_unknown_channel_mode_is_a_config_error(stereo_wav: DecodedAudio) -> None:
    with pytest.raises(ValueError, match="channel_mode") as info:
        select_channels(stereo_wav, "left")
    assert not isinstance(info.value, AudioDecodeError)


def test_stereo_through_pyav_keeps_channel_order() -> None:
    audio = decode_audio(pyav_bytes(stereo(48_000), 48_000, "mp4", "aac"))
    assert audio.decoder == "pyav" and audio.source_channels == 2
    left, right = select_channels(audio, "split")
    assert dominant_frequency(left, TARGET_SAMPLE_RATE) == pytest.approx(300.0, abs=3.0)
    assert dominant_frequency(right, TARGET_SAMPLE_RATE) == pytest.approx(1000.0, abs=3.0)


# --- bad inputs ---------------------------------------------------------------------------------------------------

UNRECOGNISED = (
    "not an audio file: unrecognised format "
    "(soundfile: Format not recognised; pyav: Invalid data found when processing input)"
)


def test_empty_bytes() -> None:
    with pytest.raises(AudioDecodeError, match=r"^empty file \(0 bytes\)$"):
        decode_audio(b"")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(np.random.default_rng(0).bytes(4096), id="random-bytes"),
        pytest.param(b"Speaker 1: hello, this is a transcript, not audio.\n" * 40, id="text-file"),
        pytest.param(b"RIFF", id="four-bytes-of-riff"),
    ],
)
def test_not_audio(data: bytes) -> None:
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(data)
    assert str(info.value) == UNRECOGNISED


def test_recognised_but_corrupt_names_both_decoders() -> None:
    # An OGG Vorbis whose pages after the first 60 bytes are noise: both decoders recognise it and both give up.
    good = sf_bytes(tone(16_000), 16_000, "OGG", "VORBIS")
    bad = good[:60] + np.random.default_rng(1).bytes(len(good) - 60)
    with pytest.raises(AudioDecodeError, match=r"^corrupt or unsupported audio \(soundfile: .+; pyav: .+\)$"):
        decode_audio(bad)


def test_container_without_audio_stream() -> None:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=1)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    with pytest.raises(AudioDecodeError, match=r"pyav: no audio stream in mov,mp4,.* container\)$"):
        decode_audio(buf.getvalue())


def test_truncated_wav_decodes_what_is_there() -> None:
    # Decision: a WAV cut short (header claims 1 s, 0.0625 s present) decodes the frames present, as libsndfile
    # does; the row's duration shows the loss. Refusing would throw away usable speech from interrupted uploads.
    full = sf_bytes(tone(16_000), 16_000, "WAV", "PCM_16")
    audio = decode_audio(full[: 44 + 2_000])
    assert audio.decoder == "soundfile"
    assert audio.duration == pytest.approx(0.0625, abs=PCM_TOL)
    assert probe_duration(full[: 44 + 2_000]) == pytest.approx(0.0625)


def test_header_only_wav_is_an_error() -> None:
    full = sf_bytes(tone(16_000), 16_000, "WAV", "PCM_16")
    with pytest.raises(AudioDecodeError, match=r"^no audio samples \(0 frames\)$"):
        decode_audio(full[:44])
    with pytest.raises(AudioDecodeError, match=r"^no audio samples \(0 frames\)$"):
        decode_audio(wav_header(16_000, 1, 16, 0))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(bad: float) -> None:
    x = tone(16_000)
    x[1234] = bad
    with pytest.raises(AudioDecodeError, match=r"^audio contains NaN or Inf samples$"):
        decode_audio(sf_bytes(x, 16_000, "WAV", "FLOAT"))


# --- durations and lying headers ----------------------------------------------------------------------------------


def test_probe_duration() -> None:
    assert probe_duration(sf_bytes(tone(8_000, seconds=2.5), 8_000, "WAV", "ULAW")) == pytest.approx(2.5)
    assert probe_duration(sf_bytes(tone(48_000), 48_000, "FLAC", "PCM_16")) == pytest.approx(1.0)
    assert probe_duration(pyav_bytes(tone(44_100), 44_100, "mp4", "aac")) is None  # soundfile cannot open m4a
    assert probe_duration(b"") is None
    assert probe_duration(b"not audio at all") is None
    assert probe_duration(flac_with_total_samples(0)) is None  # "unknown length", not 5.8e14 s


def test_header_claiming_hours_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    # A FLAC whose STREAMINFO claims 10 hours but which holds 1 s. libsndfile believes the claim, so the header
    # check must refuse it before any samples are read or allocated.
    data = flac_with_total_samples(16_000 * 36_000)
    assert probe_duration(data) == pytest.approx(36_000.0)

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("samples were read despite the header check")

    monkeypatch.setattr(sf.SoundFile, "read", no_reading)
    monkeypatch.setattr(av, "open", no_reading)
    with pytest.raises(AudioDecodeError, match=r"^recording is 36000\.0 s long, over max_duration=14400 s$"):
        decode_audio(data, max_duration=14_400)


def test_lying_flac_header_without_limit_decodes_the_real_audio() -> None:
    # libsndfile fails on it ('Internal psf_fseek() failed.' after reading past the real data); PyAV reads the real
    # 1 s. Nothing of the claimed 10 hours is ever allocated, because soundfile is read in bounded blocks.
    audio = decode_audio(flac_with_total_samples(16_000 * 36_000))
    assert audio.decoder == "pyav" and audio.source_format == "pyav:flac"
    assert audio.duration == pytest.approx(1.0, abs=PCM_TOL)


def test_unknown_length_flac_is_limited_while_decoding() -> None:
    data = flac_with_total_samples(0, seconds=2.0)  # total_samples = 0: header does not know the length
    assert decode_audio(data).duration == pytest.approx(2.0, abs=PCM_TOL)
    with pytest.raises(AudioDecodeError, match=r"^recording is longer than max_duration=0\.5 s \(decoding stopped"):
        decode_audio(data, max_duration=0.5)


def test_wav_header_claiming_hours_is_clamped_by_libsndfile() -> None:
    # A WAV header whose data chunk claims ~4 GB (37 h at 16 kHz) with 0.1 s present. libsndfile clamps the data
    # size to the bytes present, so neither the probe nor the decode believes the claim and nothing large is
    # allocated; with max_duration set it is the real 0.1 s that is judged, so this file is accepted.
    pcm = (tone(16_000, seconds=0.1) * 32767).astype("<i2").tobytes()
    data = wav_header(16_000, 1, 16, 0xFFFFFFF0) + pcm
    assert probe_duration(data) == pytest.approx(0.1)
    audio = decode_audio(data, max_duration=60)
    assert audio.duration == pytest.approx(0.1, abs=PCM_TOL)
    assert dominant_frequency(audio.samples[0], TARGET_SAMPLE_RATE) == pytest.approx(440.0, abs=10.0)


def test_streaming_wav_with_unknown_sizes_decodes_fully() -> None:
    # Streaming writers (e.g. ffmpeg to a pipe) leave 0xFFFFFFFF as RIFF and data sizes; this must not be read as
    # "37 hours" and refused.
    pcm = (tone(16_000) * 32767).astype("<i2").tobytes()
    header = bytearray(wav_header(16_000, 1, 16, 0xFFFFFFFF))
    header[4:8] = b"\xff\xff\xff\xff"
    audio = decode_audio(bytes(header) + pcm, max_duration=60)
    assert audio.duration == pytest.approx(1.0, abs=PCM_TOL)


def test_wav_with_zero_data_size_placeholder_is_rescued_by_pyav() -> None:
    # libsndfile trusts a data size of 0 and reads nothing; FFmpeg reads to the end of the file.
    pcm = (tone(16_000) * 32767).astype("<i2").tobytes()
    audio = decode_audio(wav_header(16_000, 1, 16, 0) + pcm)
    assert audio.decoder == "pyav"
    assert audio.duration == pytest.approx(1.0, abs=PCM_TOL)


def test_max_duration_on_an_honest_header() -> None:
    data = sf_bytes(tone(16_000, seconds=2.0), 16_000, "WAV", "PCM_16")
    with pytest.raises(AudioDecodeError, match=r"^recording is 2\.0 s long, over max_duration=1 s$"):
        decode_audio(data, max_duration=1)
    assert decode_audio(data, max_duration=2).duration == pytest.approx(2.0)


def test_max_duration_for_pyav_formats() -> None:
    data = pyav_bytes(tone(44_100, seconds=2.0), 44_100, "mp4", "aac")
    with pytest.raises(AudioDecodeError, match=r"over max_duration=0\.5 s"):
        decode_audio(data, max_duration=0.5)


def test_invalid_arguments() -> None:
    data = sf_bytes(tone(16_000), 16_000, "WAV", "PCM_16")
    with pytest.raises(ValueError, match="max_duration"):
        decode_audio(data, max_duration=0)
    with pytest.raises(ValueError, match="target_sample_rate"):
        decode_audio(data, target_sample_rate=0)


# --- 16-bit PCM, as segments travel between decoding and the actor -------------------------------------------------


def test_pcm16_round_trip_is_within_half_a_step_and_clips_at_full_scale() -> None:
    from pipeline.decode import to_pcm16
    from tests.audio_factory import from_pcm16

    x = np.clip(np.random.default_rng(2).standard_normal(12_345).astype(np.float32) * 0.3, -0.99, 0.99)
    data = to_pcm16(x)
    assert isinstance(data, bytes) and len(data) == 2 * len(x)
    assert data[:2] == struct.pack("<h", int(np.rint(x[0] * 32768)))  # little-endian int16, whatever the machine
    y = from_pcm16(data)
    assert y.dtype == np.float32
    np.testing.assert_allclose(x, y, atol=0.5 / 32768)
    np.testing.assert_array_equal(from_pcm16(to_pcm16(np.array([1.5, -1.5, 1.0, -1.0]))),
                                  np.array([32767, -32768, 32767, -32768]) / 32768)
    assert from_pcm16(to_pcm16(np.zeros(0, np.float32))).shape == (0,)


def test_decoded_16_bit_stream_round_trips_through_pcm16_exactly(stereo_wav: DecodedAudio) -> None:
    from pipeline.decode import to_pcm16
    from tests.audio_factory import from_pcm16

    for stream in select_channels(stereo_wav, "split"):  # resampled 16-bit audio: within half a step
        np.testing.assert_allclose(from_pcm16(to_pcm16(stream)), stream, atol=0.5 / 32768)
