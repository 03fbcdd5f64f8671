"""What decoding tells about a recording that did not fail (pipeline.audio_report.DecodeReport, filled by
stream_audio): truncation, lying headers, low rates, decoder switches, clipping, silence; and read failures of the
source that must never pass for a shorter recording. All audio is generated here and truncated by bytes."""

from __future__ import annotations

import io
import re
import struct

import numpy as np
import pytest
import soundfile as sf

from pipeline.audio import AudioDecodeError, DecodeReport, decode_audio, stream_audio
from pipeline.audio_report import wav_header_duration
from tests.audio_factory import tone
from tests.pipeline.test_audio_stream import m4a_bytes, signal, with_flac_total_samples

RATE = 16_000


def encode(samples: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def report_of(data, **kwargs) -> DecodeReport:
    """Decode to the end as the pipeline does (stream_audio, blocks consumed) and return the complete report."""
    info, blocks = stream_audio(data, block_seconds=2.0, **kwargs)
    for _ in blocks:
        pass
    assert info.report.complete
    return info.report


# --- truncation and lying headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT", "ULAW", "ALAW", "IMA_ADPCM"])
def test_wav_truncated_by_bytes_warns_with_promised_and_held_seconds(subtype) -> None:
    data = encode(tone(12.0), RATE, "WAV", subtype)
    whole = report_of(data)
    assert whole.warnings() == [] and whole.header_duration == pytest.approx(12.0, abs=0.02)
    cut = data[: int(len(data) * 0.26)]
    report = report_of(cut)
    assert report.truncated
    assert report.header_duration == pytest.approx(12.0, abs=0.02)  # libsndfile alone would say 3.1
    assert report.decoded_seconds == pytest.approx(3.12, abs=0.1)  # ADPCM holds whole blocks
    assert report.warnings() == [f"truncated: the header says 12.0 s, the file holds "
                                 f"{report.decoded_seconds:.1f} s"]


def test_mp3_truncated_by_bytes_warns() -> None:
    data = encode(tone(12.0), RATE, "MP3", "MPEG_LAYER_III")
    assert report_of(data).warnings() == []
    warnings = report_of(data[: len(data) // 2]).warnings()
    assert len(warnings) == 1 and warnings[0].startswith("truncated: the header says 12.0 s, the file holds ")


def test_flac_whose_header_promises_more_than_it_holds_warns() -> None:
    # A FLAC cut at a frame boundary reads like this one: complete frames, a STREAMINFO length from before the cut.
    good = encode(signal(RATE, 25.0), RATE, "FLAC", "PCM_16")
    report = report_of(with_flac_total_samples(good, RATE * 60))
    # (libsndfile also stumbles on such a file near its end, and PyAV finishes it: said in a warning of its own.)
    assert report.warnings()[-1] == "truncated: the header says 60.0 s, the file holds 25.0 s"
    assert all(w.startswith("decoder switched midway: ") for w in report.warnings()[:-1])


def test_flac_whose_header_promises_less_is_decoded_whole_and_says_so() -> None:
    """libsndfile stops where STREAMINFO says the audio ends; 20 of 25 s were silently dropped before."""
    good = encode(signal(RATE, 25.0), RATE, "FLAC", "PCM_16")
    lying = with_flac_total_samples(good, RATE * 5)
    audio = decode_audio(lying)
    np.testing.assert_array_equal(audio.samples[0], sf.read(io.BytesIO(good), dtype="float32")[0])
    assert audio.report.warnings() == [
        "decoder switched midway: soundfile stopped at 5.0 s, where the header says the audio ends; pyav decoded "
        "the rest",
        "header duration wrong: the header says 5.0 s, 25.0 s decoded"]


def test_flac_truncated_mid_frame_is_still_an_error_naming_the_second() -> None:
    good = encode(signal(RATE, 12.0), RATE, "FLAC", "PCM_16")
    info, blocks = stream_audio(good[: len(good) // 2], block_seconds=2.0)
    with pytest.raises(AudioDecodeError, match=r"^corrupt or unsupported audio: decoding failed at \d\.\d s"):
        for _ in blocks:
            pass
    assert not info.report.complete


def test_soundfile_failing_midway_is_reported_as_a_decoder_switch() -> None:
    # A STREAMINFO length of 0 with blocks read in steps: libsndfile gives up partway on such files, PyAV goes on.
    good = encode(signal(RATE, 25.0), RATE, "FLAC", "PCM_16")
    for total in (0, RATE * 36_000):
        report = report_of(with_flac_total_samples(good, total))
        assert report.decoded_seconds == pytest.approx(25.0)
        switched = [w for w in report.warnings() if w.startswith("decoder switched midway: soundfile failed at ")]
        assert len(switched) <= 1  # when libsndfile does fail, it is said once, with the second
        if report.decoder_switch:
            assert report.decoder_switch.endswith("pyav decoded the rest")


# --- rates, levels ------------------------------------------------------------------------------------------------


def test_low_source_rate_warns_below_8_khz_only() -> None:
    low = report_of(encode(tone(2.0, 4000), 4000, "WAV", "PCM_16"))
    assert low.source_sample_rate == 4000
    assert low.warnings() == [
        "low sample rate: resampled from 4000 Hz (under 8000 Hz, speech loses its high frequencies)"]
    assert report_of(encode(tone(2.0, 8000), 8000, "WAV", "PCM_16")).warnings() == []
    assert low.warnings(min_sample_rate=3000) == []


def test_clipping_share_is_reported() -> None:
    loud = np.clip(tone(3.0) * 5.0, -1.0, 1.0)  # the tone peaks at 0.3: x5 saturates a large share of samples
    report = report_of(encode(loud, RATE, "WAV", "PCM_16"))
    assert 0.1 < report.clipped_share < 0.9
    assert report.warnings() == [f"clipping: {100 * report.clipped_share:.1f}% of samples at full scale"]
    # A few full-scale peaks are not clipping.
    peaks = tone(3.0)
    peaks[[100, 20_000]] = 1.0
    assert report_of(encode(peaks, RATE, "WAV", "FLOAT")).warnings() == []


def test_silence_and_quiet_recordings_are_reported() -> None:
    assert report_of(encode(np.zeros(RATE * 2, np.float32), RATE, "WAV", "PCM_16")).warnings() == [
        "digital silence: every sample is 0"]
    quiet = report_of(encode(tone(2.0) * 1e-4, RATE, "WAV", "FLOAT"))  # peak 3e-5: about -90 dBFS
    assert quiet.warnings() == ["very quiet: peak level -90 dBFS"]
    stereo = np.stack([tone(2.0), np.zeros(RATE * 2, np.float32)], axis=1)
    assert report_of(encode(stereo, RATE, "WAV", "PCM_16")).warnings() == ["channel 1 of 2 is digital silence"]


def test_duration_far_from_the_manifest_is_reported() -> None:
    report = report_of(encode(tone(3.0), RATE, "WAV", "PCM_16"))
    assert report.warnings(manifest_duration=12.0) == ["duration 3.0 s differs from the manifest's 12.0 s"]
    assert report.warnings(manifest_duration=3.4) == []  # within a second
    assert report.warnings(manifest_duration=float("nan")) == report.warnings(manifest_duration=None) == []


def test_report_before_the_end_makes_no_length_claims() -> None:
    info, blocks = stream_audio(encode(tone(12.0), RATE, "WAV", "PCM_16")[:40_000], block_seconds=0.5)
    next(blocks)
    assert not info.report.complete and not info.report.truncated
    assert info.report.warnings() == []
    blocks.close()


def test_decode_audio_carries_the_report() -> None:
    audio = decode_audio(encode(tone(12.0), RATE, "WAV", "PCM_16")[:50_000])
    assert audio.report is not None and audio.report.complete
    assert audio.report.warnings()[0].startswith("truncated: the header says 12.0 s")


# --- the source failing to read -----------------------------------------------------------------------------------


class FailingAfter(io.BytesIO):
    """A seekable file whose reads past `limit` bytes raise, as a network file does when the connection dies after
    the fetch's retries."""

    def __init__(self, data: bytes, limit: int, error: BaseException) -> None:
        super().__init__(data)
        self.limit, self.error = limit, error

    def read(self, size=-1):
        if self.tell() + (size if size and size > 0 else 1) > self.limit:
            raise self.error
        return super().read(size)

    def readinto(self, buffer):
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer)[: len(data)] = data
        return len(data)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_a_read_failure_midway_is_raised_never_a_shorter_recording(fmt, capsys) -> None:
    data = encode(tone(20.0), RATE, fmt, "PCM_16")
    error = ConnectionResetError("connection reset by s3.example: https://u:secret@h/a.wav")
    info, blocks = stream_audio(FailingAfter(data, len(data) // 2, error), block_seconds=2.0)
    with pytest.raises(ConnectionResetError) as caught:
        for _ in blocks:
            pass
    assert caught.value is error
    assert not info.report.complete
    # libsndfile's read callback no longer prints the exception (and whatever URL it names) to stderr.
    assert "secret" not in capsys.readouterr().err


def test_a_read_failure_in_the_header_is_raised_not_called_corrupt() -> None:
    data = encode(tone(2.0), RATE, "WAV", "PCM_16")
    error = TimeoutError("timed out after 30 s waiting for h to answer: https://h/a.wav")
    with pytest.raises(TimeoutError) as caught:
        stream_audio(FailingAfter(data, 0, error))
    assert caught.value is error


def test_a_read_failure_under_pyav_is_raised() -> None:
    data = m4a_bytes(signal(RATE, 20.0), RATE)
    error = ConnectionResetError("reset")
    with pytest.raises(ConnectionResetError):
        info, blocks = stream_audio(FailingAfter(data, len(data) // 2, error), block_seconds=2.0)
        for _ in blocks:
            pass


def test_file_objects_still_decode_exactly_through_the_latch(tmp_path) -> None:
    data = m4a_bytes(signal(RATE, 3.0), RATE)
    (tmp_path / "a.m4a").write_bytes(data)
    with open(tmp_path / "a.m4a", "rb") as handle:
        from_file = decode_audio_from(handle)
    np.testing.assert_array_equal(from_file, decode_audio(data).samples)


def decode_audio_from(handle) -> np.ndarray:
    info, blocks = stream_audio(handle, block_seconds=30.0)
    return np.concatenate(list(blocks), axis=1)


# --- corrupt data in the middle: an error, never a shorter recording ------------------------------------------------


def with_garbage(data: bytes, at: float, size: int, seed: int = 0) -> bytes:
    """`data` with `size` random bytes written over it at the fraction `at` of its length (data continues after)."""
    damaged = bytearray(data)
    start = int(len(data) * at)
    damaged[start:start + size] = np.random.default_rng(seed).bytes(size)
    return bytes(damaged)


@pytest.mark.parametrize("size", [8192, 1024])
def test_flac_with_garbage_in_the_middle_is_an_error_keeping_what_came_before(size) -> None:
    """libsndfile loses sync on it; PyAV, the fallback, used to resync past the damage: the recording came out 0.5 s
    short with a misleading `truncated` warning and no error."""
    good = encode(signal(RATE, 16.0), RATE, "FLAC", "PCM_16")
    info, blocks = stream_audio(with_garbage(good, 0.5, size), block_seconds=2.0)
    kept = 0
    midway = (r"^corrupt or unsupported audio: decoding failed at (\d+\.\d) s \(soundfile: .+; pyav: corrupt data at "
              r"(\d+\.\d) s: \d+\.\d+ s of audio could not be decoded\)$")
    with pytest.raises(AudioDecodeError, match=midway) as caught:
        for block in blocks:
            kept += block.shape[1]
    assert not info.report.complete  # no length claim (no `truncated` warning) for a file that failed
    failed_at = float(re.match(midway, str(caught.value)).group(2))
    assert 6.0 < failed_at < 9.0  # the damage sits at about 8 s of 16
    assert kept / RATE <= failed_at + 0.05  # what came before it is kept (the second is rounded), none after
    assert kept / RATE >= 6.0  # ... including the block in hand when the failure was found
    # decode_audio's first block holds the whole file: PyAV hands over what it decoded before the damage, then fails.
    with pytest.raises(AudioDecodeError, match=midway):
        decode_audio(with_garbage(good, 0.5, size))


def test_flac_that_only_pyav_reads_with_garbage_in_the_middle_is_an_error() -> None:
    """The same damage where PyAV is the only decoder from the start (libsndfile refuses the file's header)."""
    good = encode(signal(RATE, 16.0), RATE, "FLAC", "PCM_16")
    damaged = bytearray(with_garbage(good, 0.5, 8192))
    damaged[8:12] = b"\xff\xff\xff\xff"  # STREAMINFO's block sizes: libsndfile refuses them, FFmpeg does not use them
    info, blocks = stream_audio(bytes(damaged), block_seconds=2.0)
    assert info.decoder == "pyav"
    with pytest.raises(AudioDecodeError, match=r"^corrupt or unsupported audio: decoding failed at \d+\.\d s \((soundfile: "
                                               r".+; )?pyav: corrupt data at \d+\.\d s: "):
        for _ in blocks:
            pass


def test_truncated_flac_is_still_decoded_as_far_as_it_goes() -> None:
    """Data that simply ends (cut at a frame boundary) is no corruption: decoded, with a `truncated` warning."""
    good = encode(signal(RATE, 16.0), RATE, "FLAC", "PCM_16")
    frames = _flac_frame_starts(good)
    cut = good[:frames[len(frames) // 2]]
    report = report_of(cut)
    assert report.decoded_seconds == pytest.approx(8.0, abs=0.3)
    assert report.warnings()[-1].startswith("truncated: the header says 16.0 s, the file holds ")


def _flac_frame_starts(data: bytes) -> list[int]:
    """Byte offsets of the FLAC frames (as PyAV's demuxer cuts them)."""
    import av

    with av.open(io.BytesIO(data)) as container:
        return [packet.pos for packet in container.demux(container.streams.audio[0]) if packet.size and packet.pos]


# --- the WAV header -----------------------------------------------------------------------------------------------


def test_wav_header_duration_reads_chunk_sizes_only() -> None:
    for fmt in ("WAV", "WAVEX", "RF64"):
        data = encode(tone(3.0), RATE, fmt, "PCM_16")
        assert wav_header_duration(io.BytesIO(data[:200])) == pytest.approx(3.0), fmt
    # A LIST chunk before the data, and a big-endian RIFX file.
    data = encode(tone(3.0), RATE, "WAV", "PCM_16")
    fmt_end = 12 + 8 + struct.unpack("<I", data[16:20])[0]
    listed = data[:fmt_end] + b"LIST" + struct.pack("<I", 5) + b"INFOx\0" + data[fmt_end:]
    assert wav_header_duration(io.BytesIO(listed)) == pytest.approx(3.0)
    assert wav_header_duration(io.BytesIO(b"RIFX" + data[4:12] + data[12:16] + struct.pack(">I", 16)
                                          + _to_big_endian_fmt(data[20:36]) + b"data" + struct.pack(">I", 96_000))
                               ) == pytest.approx(3.0)


def _to_big_endian_fmt(body: bytes) -> bytes:
    return struct.pack(">HHIIHH", *struct.unpack("<HHIIHH", body))


def test_wav_header_duration_unknown_for_placeholders_and_other_formats() -> None:
    data = bytearray(encode(tone(1.0), RATE, "WAV", "PCM_16"))
    data_at = bytes(data).index(b"data")
    for placeholder in (0, 0xFFFFFFFF):
        data[data_at + 4: data_at + 8] = struct.pack("<I", placeholder)
        assert wav_header_duration(io.BytesIO(bytes(data))) is None
    assert wav_header_duration(io.BytesIO(encode(tone(1.0), RATE, "FLAC", "PCM_16"))) is None
    assert wav_header_duration(io.BytesIO(b"RIFF\0\0\0\0WAVE")) is None
    assert wav_header_duration(io.BytesIO(b"")) is None
