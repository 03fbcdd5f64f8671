"""Tests for pipeline.decode: fetch, stream-decode and cut one recording into its segments; every failure becomes
the row's error (after any segments already cut); `decode_block` turns a work block into DECODED_SCHEMA rows; and
pipeline.channels picks the streams."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from connectors.storage import FileTooLarge
from pipeline.audio import AudioDecodeError
from pipeline.channels import _fan_out, channel_streams
from connectors.storage import describe_fetch_error
from pipeline.decode import AudioSpec, DecodeSettings, decode_block, decode_recording
from tests.audio_factory import from_pcm16
from pipeline.records import DECODED_SCHEMA, SOURCE_SCHEMA, WORK_BLOCK_SCHEMA
from pipeline.segmenter import SegmentPolicy as _Policy
from tests.audio_factory import bursts, tone, write_tone



def SegmentPolicy(**policy) -> _Policy:  # noqa: N802 - these tests cut tones and noise: the energy rule's input
    return _Policy(**{"method": "energy", **policy})


SETTINGS = DecodeSettings(segmenting=SegmentPolicy())
RATE = 16_000
PCM16 = 1 / 32768  # one step of the 16-bit PCM that segments carry


def _row(url: str, **extra) -> dict:
    row = {name: None for name in SOURCE_SCHEMA.names}
    row.update(row_id=f"id-{url.rsplit('/', 1)[-1]}", audio_url=url, audio_filepath=url, channel_mode="mix",
               prompt_locale="auto", target_lang="auto")
    row.update(extra)
    return row


def _segments(url: str, settings: DecodeSettings = SETTINGS, **extra) -> list[dict]:
    """One recording decoded, as a flat list: each segment with its recording's fields, then (if the recording
    failed) one row with the error (`<stage>: <message>`) and no segment."""
    recording = decode_recording(_row(url, **extra), settings)
    fields = {k: v for k, v in recording.items() if k != "segments"}
    out = [{**fields, **segment, "error": None} for segment in recording["segments"]]
    if recording["error"]:
        out.append({**fields, "segment_index": None, "error": f"{recording['error_stage']}: {recording['error']}"})
    return out


def _split(**policy) -> DecodeSettings:
    return DecodeSettings(segmenting=SegmentPolicy(**policy)) if policy else SETTINGS


def _check_tiling(segs: list[dict], duration: float) -> None:
    """Segments of one stream: in order, from 0 to `duration`, each starting where the previous ended minus its
    overlap, each carrying exactly (end - start) seconds of samples."""
    assert [s["segment_index"] for s in segs] == list(range(len(segs)))
    assert segs[0]["start"] == 0.0 and segs[0]["overlap_before"] == 0.0
    assert segs[-1]["end"] == pytest.approx(duration, abs=1e-9)
    for before, after in zip(segs, segs[1:]):
        assert after["start"] == pytest.approx(before["end"] - after["overlap_before"], abs=1e-9)
    for s in segs:
        assert from_pcm16(s["samples"]).shape == (round((s["end"] - s["start"]) * RATE),)


def _join(segs: list[dict]) -> np.ndarray:
    """The stream back from its segments: each segment without its first overlap_before seconds."""
    return np.concatenate([from_pcm16(s["samples"])[round(s["overlap_before"] * RATE):] for s in segs])


# --- one good file --------------------------------------------------------------------------------------------------


def test_good_wav_is_one_segment_row(tone_wav) -> None:
    out = _segments(str(tone_wav), reference_text="ref", line=7, metadata='{"k": 1}')
    assert len(out) == 1
    row = out[0]
    assert row["error"] is None
    assert (row["segment_index"], row["channel"], row["start"], row["end"], row["overlap_before"]) == (
        0, None, 0.0, 1.5, 0.0)
    assert (row["channel_mode"], row["source_sample_rate"], row["source_channels"]) == ("mix", 16000, 1)
    samples = from_pcm16(row["samples"])
    assert samples.dtype == np.float32 and samples.shape == (round(1.5 * RATE),) == (24000,)
    # 16-bit PCM in the file: the decoded samples equal the generated tone to within one quantisation step.
    np.testing.assert_allclose(samples, tone(1.5), atol=PCM16)
    # The source fields travel unchanged.
    assert (row["reference_text"], row["line"], row["metadata"], row["row_id"]) == ("ref", 7, '{"k": 1}',
                                                                                     "id-tone.wav")
    assert row["audio_url"] == row["audio_filepath"] == str(tone_wav)


def test_stereo_44k_is_mixed_and_resampled(tmp_path) -> None:
    path = write_tone(tmp_path / "stereo.wav", seconds=1.0, sample_rate=44100, channels=2)
    mixed = _segments(str(path))
    assert len(mixed) == 1
    row = mixed[0]
    assert row["error"] is None
    assert (row["channel"], row["start"], row["end"]) == (None, 0.0, 1.0)
    assert (row["source_sample_rate"], row["source_channels"]) == (44100, 2)
    assert len(row["samples"]) == RATE * 2  # one second of 16-bit PCM at 16 kHz
    # mix is the mean of the two channels (the same file decoded in split mode).
    split = _segments(str(path), channel_mode="split")
    assert [s["channel"] for s in split] == [0, 1]
    left, right = (from_pcm16(s["samples"]) for s in split)
    np.testing.assert_allclose(from_pcm16(row["samples"]), (left + right) / 2, atol=2 * PCM16)
    assert not np.allclose(left, right)  # the factory's channels differ (a 97-sample shift)


def test_good_wav_from_s3(tone_wav, s3fs_client, bucket) -> None:
    s3fs_client.put(str(tone_wav), f"{bucket}/a/tone.wav")
    out = _segments(f"s3://{bucket}/a/tone.wav")
    assert [(r["error"], r["segment_index"], r["start"], r["end"]) for r in out] == [(None, 0, 0.0, 1.5)]
    np.testing.assert_allclose(from_pcm16(out[0]["samples"]), tone(1.5), atol=PCM16)
    missing = _segments(f"s3://{bucket}/a/missing.wav")
    assert [(r["error"], r["segment_index"]) for r in missing] == [
        (f"fetch: file not found: s3://{bucket}/a/missing.wav", None)]


# --- long recordings ------------------------------------------------------------------------------------------------


def test_long_recording_with_pauses_is_cut_at_pauses(tmp_path) -> None:
    speech = [(s, s + 7.0) for s in np.arange(0.5, 70, 9.0)]  # 7 s of 'speech', 2 s pauses
    audio = bursts(70.0, speech)
    sf.write(tmp_path / "long.wav", audio, RATE, subtype="FLOAT")
    segs = _segments(str(tmp_path / "long.wav"), _split(max_seconds=20, min_seconds=8, trim_silence=False))

    assert all(s["error"] is None for s in segs)
    assert len(segs) == 4  # 70 s in segments of at most 20 s, each cut at the last good pause
    assert [(s["start"], s["end"]) for s in segs] == [(0.0, 17.5), (17.5, 35.5), (35.5, 53.5), (53.5, 70.0)]
    _check_tiling(segs, 70.0)
    for s in segs:
        assert s["channel"] is None and s["overlap_before"] == 0.0
        assert 8.0 <= s["end"] - s["start"] <= 20.0 or s is segs[-1]
        assert (s["source_sample_rate"], s["source_channels"], s["channel_mode"]) == (16000, 1, "mix")
    for cut in [s["start"] for s in segs[1:]]:  # every cut falls in a pause
        assert not any(a < cut < b for a, b in speech), cut
    # Pause cuts tile the recording: joined, the segments are the file, sample for sample (to 16 bits).
    np.testing.assert_allclose(_join(segs), audio, atol=PCM16)

    # The job's default trims each segment's leading pause: it starts 0.2 s (pause_seconds) before its first sound,
    # at the same cuts, with the file's own samples.
    trimmed = _segments(str(tmp_path / "long.wav"), _split(max_seconds=20, min_seconds=8))
    assert [(s["start"], s["end"]) for s in trimmed] == [(0.3, 17.5), (18.3, 35.5), (36.3, 53.5), (54.3, 70.0)]
    for s in trimmed:
        a = round(s["start"] * RATE)
        np.testing.assert_allclose(from_pcm16(s["samples"]), audio[a:a + len(from_pcm16(s["samples"]))], atol=PCM16)


def test_forced_cuts_overlap_and_join_back(tmp_path) -> None:
    """A 50 s tone has no pause: forced cuts at max_seconds, the next segment starting overlap_seconds earlier."""
    audio = tone(50.0)
    sf.write(tmp_path / "tone50.wav", audio, RATE, subtype="FLOAT")
    segs = _segments(str(tmp_path / "tone50.wav"), _split(max_seconds=20, min_seconds=8, overlap_seconds=1.0))
    assert [(s["start"], s["end"], s["overlap_before"]) for s in segs] == [
        (0.0, 20.0, 0.0), (19.0, 39.0, 1.0), (38.0, 50.0, 1.0)]
    _check_tiling(segs, 50.0)
    np.testing.assert_allclose(_join(segs), audio, atol=PCM16)


# --- channels -------------------------------------------------------------------------------------------------------


@pytest.fixture()
def call_wav(tmp_path):
    """Agent on the left, customer on the right, taking turns (24 s, 16 kHz, PCM_16)."""
    agent, customer = [(0.5, 4.0), (12.5, 16.0)], [(6.5, 10.0), (18.5, 22.0)]
    left = bursts(24.0, agent, freq=200.0, seed=1)
    right = bursts(24.0, customer, freq=330.0, seed=2)
    path = tmp_path / "call.wav"
    sf.write(path, np.stack([left, right], axis=1), RATE, subtype="PCM_16")
    return path, left, right


# Short segments, not trimmed, so that each stream's segments tile it (trimming: test_split_call_sides_start_...).
SHORT = DecodeSettings(segmenting=SegmentPolicy(max_seconds=6, min_seconds=2, trim_silence=False))


def test_split_mode_gives_both_channels_interleaved(call_wav) -> None:
    path, left, right = call_wav
    segs = _segments(str(path), SHORT, channel_mode="split")
    assert all(s["error"] is None for s in segs)
    assert {s["channel_mode"] for s in segs} == {"split"}
    assert {(s["source_sample_rate"], s["source_channels"]) for s in segs} == {(16000, 2)}
    by_channel = {c: [s for s in segs if s["channel"] == c] for c in (0, 1)}
    assert sorted({s["channel"] for s in segs}) == [0, 1]
    for channel, source in ((0, left), (1, right)):
        mine = by_channel[channel]
        assert len(mine) >= 24 / 6
        _check_tiling(mine, 24.0)  # each channel covers the whole file on its own
        np.testing.assert_allclose(_join(mine), source, atol=PCM16)  # and is that channel, not the mix
    # Round-robin: the channels alternate while both have segments left, then the longer one finishes.
    n0, n1 = len(by_channel[0]), len(by_channel[1])
    expected = [0, 1] * min(n0, n1) + [0 if n0 > n1 else 1] * abs(n0 - n1)
    assert [s["channel"] for s in segs] == expected
    assert [(s["channel"], s["segment_index"], s["start"], s["end"]) for s in segs] == [
        (0, 0, 0.0, 5.0), (1, 0, 0.0, 6.0), (0, 1, 5.0, 11.0), (1, 1, 5.0, 10.5), (0, 2, 10.0, 12.25),
        (1, 2, 10.5, 16.5), (0, 3, 12.25, 17.125), (1, 3, 15.5, 18.0), (0, 4, 17.125, 23.125), (1, 4, 18.0, 24.0),
        (0, 5, 22.125, 24.0)]


def test_split_call_sides_start_near_their_own_speech(call_wav) -> None:
    """With the default trimming (and the demo's 8 s / 2 s segments), each side's segment starts 0.2 s before that
    side's burst: the other side's turn (near-silence on this channel) before it is not transcribed. A window with no
    speech at all has nothing to contrast a pause with and is kept (the agent's last 6 s)."""
    path, left, right = call_wav
    policy = {"max_seconds": 8, "min_seconds": 2}
    segs = _segments(str(path), DecodeSettings(segmenting=SegmentPolicy(**policy)), channel_mode="split")
    assert [(s["channel"], s["start"], s["end"]) for s in segs] == [
        (0, 0.3, 6.15), (1, 6.3, 12.15), (0, 12.3, 18.15), (1, 18.3, 24.0), (0, 18.15, 24.0)]
    for s in segs:
        source = left if s["channel"] == 0 else right
        a, samples = round(s["start"] * RATE), from_pcm16(s["samples"])
        np.testing.assert_allclose(samples, source[a:a + len(samples)], atol=PCM16)
    untrimmed = _segments(str(path), DecodeSettings(segmenting=SegmentPolicy(**policy, trim_silence=False)),
                          channel_mode="split")
    assert sum(s["end"] - s["start"] for s in untrimmed) == pytest.approx(48.0)  # each side whole: 2 x 24 s
    assert sum(s["end"] - s["start"] for s in segs) == pytest.approx(29.1)  # 39% less audio to transcribe


def test_the_rows_resolved_channel_mode_is_what_counts(call_wav) -> None:
    """The decode stage reads the row's resolved channel_mode (pipeline.options merged the row's and the job's)."""
    path, left, right = call_wav
    split = _segments(str(path), SHORT, channel_mode="split")
    assert {s["channel_mode"] for s in split} == {"split"} and {s["channel"] for s in split} == {0, 1}
    mixed = _segments(str(path), SHORT, channel_mode="mix")
    assert {s["channel_mode"] for s in mixed} == {"mix"} and {s["channel"] for s in mixed} == {None}
    _check_tiling(mixed, 24.0)
    np.testing.assert_allclose(_join(mixed), (left + right) / 2, atol=2 * PCM16)


def test_row_channel_picks_one_channel(call_wav) -> None:
    path, left, right = call_wav
    segs = _segments(str(path), SHORT, channel=1)
    assert {s["channel"] for s in segs} == {1}
    assert {s["channel_mode"] for s in segs} == {"mix"}  # the mode stays the row's/job's; the channel says which
    _check_tiling(segs, 24.0)
    np.testing.assert_allclose(_join(segs), right, atol=PCM16)
    # Negative counts from the end (NeMo's channel_selector); it wins over split mode too.
    last = _segments(str(path), SHORT, channel_mode="split", channel=-1)
    assert {s["channel"] for s in last} == {1}
    assert [(s["start"], s["end"]) for s in last] == [(s["start"], s["end"]) for s in segs]


def test_row_channel_out_of_range(call_wav, tone_wav) -> None:
    path, _, _ = call_wav
    out = _segments(str(path), channel=5)
    assert len(out) == 1
    assert out[0]["error"] == "decode: channel 5 requested but the file has 2 channels"
    assert out[0]["segment_index"] is None and out[0].get("samples") is None
    assert (out[0]["source_sample_rate"], out[0]["source_channels"]) == (16000, 2)
    assert [r["error"] for r in _segments(str(path), channel=-3)] == [
        "decode: channel -3 requested but the file has 2 channels"]
    assert [r["error"] for r in _segments(str(tone_wav), channel=1)] == [
        "decode: channel 1 requested but the file has 1 channel"]


def test_split_mode_on_mono_is_one_unnamed_stream(tone_wav) -> None:
    out = _segments(str(tone_wav), channel_mode="split")
    assert [(r["channel"], r["channel_mode"], r["start"], r["end"]) for r in out] == [(None, "split", 0.0, 1.5)]


def test_streams_and_fan_out() -> None:
    blocks = [np.arange(6, dtype=np.float32).reshape(2, 3) + 10 * k for k in range(3)]
    # split: one iterator per channel; consuming one channel entirely first still gives every block.
    ch0, ch1 = _fan_out(iter(blocks), 2)
    first = [b.tolist() for b in ch0]
    second = [b.tolist() for b in ch1]
    assert first == [[0, 1, 2], [10, 11, 12], [20, 21, 22]]
    assert second == [[3, 4, 5], [13, 14, 15], [23, 24, 25]]
    streams = channel_streams(iter(blocks), 2, "split", None)
    assert [c for c, _ in streams] == [0, 1]
    mix = channel_streams(iter(blocks), 2, "mix", None)
    assert [c for c, _ in mix] == [None]
    assert [b.tolist() for b in mix[0][1]] == [[1.5, 2.5, 3.5], [11.5, 12.5, 13.5], [21.5, 22.5, 23.5]]
    picked = channel_streams(iter(blocks), 2, "split", -2)
    assert [c for c, _ in picked] == [0]
    assert [b.tolist() for b in picked[0][1]] == [[0, 1, 2], [10, 11, 12], [20, 21, 22]]
    with pytest.raises(AudioDecodeError, match="^channel 2 requested but the file has 2 channels$"):
        channel_streams(iter(blocks), 2, "mix", 2)
    with pytest.raises(ValueError, match="channel_mode must be 'mix' or 'split', got 'weird'"):
        channel_streams(iter(blocks), 2, "weird")


# --- failures -------------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path) -> None:
    url = str(tmp_path / "missing.wav")
    out = _segments(url)
    assert len(out) == 1
    assert out[0]["error"] == f"fetch: file not found: {url}"
    assert out[0]["segment_index"] is None and out[0].get("samples") is None
    assert out[0].get("source_sample_rate") is None


def test_directory_instead_of_file(tmp_path) -> None:
    (tmp_path / "dir.wav").mkdir()
    out = _segments(str(tmp_path / "dir.wav"))
    assert [r["error"] for r in out] == [f"fetch: is a directory, not a file: {tmp_path / 'dir.wav'}"]


def test_empty_file(tmp_path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    out = _segments(str(tmp_path / "empty.wav"))
    assert [(r["error"], r["segment_index"], r.get("samples")) for r in out] == [
        ("decode: empty file (0 bytes)", None, None)]


def test_text_file_named_wav(tmp_path) -> None:
    (tmp_path / "notes.wav").write_text("this is not audio\n" * 20)
    out = _segments(str(tmp_path / "notes.wav"))
    assert len(out) == 1
    error = out[0]["error"]
    assert error.startswith("decode: not an audio file: unrecognised format (soundfile: ")
    assert "; pyav: " in error and error.endswith(")")
    assert out[0]["segment_index"] is None and out[0].get("samples") is None


def test_file_over_max_file_mb(tone_wav) -> None:
    size = tone_wav.stat().st_size  # 1.5 s of 16-bit mono: 48 044 bytes
    assert size == 48044
    out = _segments(str(tone_wav), DecodeSettings(audio=AudioSpec(max_file_mb=size / 2**20 / 2)))
    assert len(out) == 1
    assert out[0]["error"] == f"fetch: file is 0.0458 MiB, over max_file_mb={size / 2 / 2**20:g}"
    assert out[0]["segment_index"] is None and out[0].get("samples") is None
    # Exactly at the limit is fine; no limit at all is fine.
    assert [r["error"] for r in _segments(str(tone_wav), DecodeSettings(audio=AudioSpec(max_file_mb=size / 2**20)))] == [None]
    assert [r["error"] for r in _segments(str(tone_wav), DecodeSettings(audio=AudioSpec(max_file_mb=None)))] == [None]


def test_file_over_max_file_mb_message_shows_the_limit_as_given(tone_wav) -> None:
    out = _segments(str(tone_wav), DecodeSettings(audio=AudioSpec(max_file_mb=0.02)))
    assert out[0]["error"].startswith("fetch: file is ")
    assert out[0]["error"].endswith(", over max_file_mb=0.02")


def test_recording_over_max_duration(tone_wav) -> None:
    out = _segments(str(tone_wav), DecodeSettings(audio=AudioSpec(max_duration=1.0)))
    assert [(r["error"], r["segment_index"]) for r in out] == [
        ("decode: recording is 1.5 s long, over max_duration=1 s", None)]


def test_row_in_error_passes_through_untouched(tone_wav) -> None:
    row = _row(str(tone_wav), error="line 3 has no audio_filepath", error_stage="manifest", line=3)
    out = decode_recording(row, SETTINGS)
    assert out == {**row, "segments": [], "warnings": None, "duration": None, "speech_seconds": None}
    assert row["error"] == "line 3 has no audio_filepath" and "segments" not in row  # the input is not modified


def test_failure_midway_gives_segments_then_one_error(tmp_path) -> None:
    """NaN at 40 s of 60 s: the decoder streams 10 s blocks, so the first 40 s are decoded and cut before the bad
    block is seen; the recording then ends with one error row naming the second."""
    audio = tone(60.0)
    audio[40 * RATE] = np.nan
    sf.write(tmp_path / "nan.wav", audio, RATE, subtype="FLOAT")
    out = _segments(str(tmp_path / "nan.wav"))
    assert len(out) == 2
    good, bad = out
    assert (good["error"], good["segment_index"], good["start"], good["end"]) == (None, 0, 0.0, 30.0)
    np.testing.assert_allclose(from_pcm16(good["samples"]), audio[: 30 * RATE], atol=PCM16)
    assert bad["error"] == "decode: audio contains NaN or Inf samples at 40.0 s"
    assert bad["segment_index"] is None and bad.get("samples") is None
    assert (bad["source_sample_rate"], bad["source_channels"], bad["channel_mode"]) == (16000, 1, "mix")
    assert bad["row_id"] == good["row_id"] == "id-nan.wav"


def test_nan_in_first_block_is_one_error(tmp_path) -> None:
    audio = tone(3.0)
    audio[RATE] = np.inf
    sf.write(tmp_path / "inf.wav", audio, RATE, subtype="FLOAT")
    assert [(r["error"], r["segment_index"]) for r in _segments(str(tmp_path / "inf.wav"))] == [
        ("decode: audio contains NaN or Inf samples", None)]


def test_fetch_error_message() -> None:
    url = "s3://b/x.wav"
    assert describe_fetch_error(FileNotFoundError("x"), url) == "file not found: s3://b/x.wav"
    assert describe_fetch_error(PermissionError("x"), url) == "access denied: s3://b/x.wav"
    assert describe_fetch_error(IsADirectoryError("x"), url) == "is a directory, not a file: s3://b/x.wav"
    assert describe_fetch_error(FileTooLarge("file is 5.0 MiB, over max_file_mb=1"), url) == (
        "file is 5.0 MiB, over max_file_mb=1")
    assert describe_fetch_error(OSError("connection reset"), url) == (
        "cannot read s3://b/x.wav: OSError: connection reset")


# --- warnings -------------------------------------------------------------------------------------------------------


def test_warnings_for_a_low_rate_and_a_duration_far_from_the_manifests(tmp_path) -> None:
    path = write_tone(tmp_path / "low.wav", seconds=2.0, sample_rate=6000)
    recording = decode_recording(_row(str(path), manifest_duration=10.0), SETTINGS)
    assert recording["error"] is None
    assert recording["warnings"] == [
        "low sample rate: resampled from 6000 Hz (under 8000 Hz, speech loses its high frequencies)",
        "duration 2.0 s differs from the manifest's 10.0 s"]
    # Within a second (or 10%) of the manifest's duration, and at 8 kHz or more: nothing to say.
    fine = decode_recording(_row(str(write_tone(tmp_path / "ok.wav", 2.0, sample_rate=8000)),
                                 manifest_duration=2.5), SETTINGS)
    assert fine["warnings"] is None


# --- decode_block ---------------------------------------------------------------------------------------------------


def _block(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist([{"block": 0, "rows": rows}], schema=WORK_BLOCK_SCHEMA)


def test_decode_block_keeps_each_recording_whole_with_its_segments(tone_wav, tmp_path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    sf.write(tmp_path / "long.wav", bursts(70.0, [(s, s + 7.0) for s in np.arange(0.5, 70, 9.0)]), RATE)
    rows = [
        _row(str(tone_wav), manifest="/m.jsonl", line=1, metadata='{"k": 1}'),
        _row(str(tmp_path / "long.wav"), line=2),
        _row(str(tmp_path / "empty.wav"), line=3),
        _row(str(tmp_path / "missing.wav"), line=4),
        _row(str(tone_wav), line=5, error="line 5 duplicates line 1 (not transcribed twice)", error_stage="manifest"),
    ]
    settings = DecodeSettings(segmenting=SegmentPolicy(max_seconds=20, min_seconds=8))
    out = pa.concat_tables(decode_block(_block(rows), settings))
    assert out.schema == DECODED_SCHEMA
    assert out["line"].to_pylist() == [1, 2, 3, 4, 5]  # one row per recording, in order
    segments = out["segments"].to_pylist()
    assert [[s["segment_index"] for s in segs] for segs in segments] == [[0], [0, 1, 2, 3], [], [], []]
    # The default segmenting trims each segment's leading pause to 0.2 s before its first sound.
    assert [(s["start"], s["end"]) for s in segments[1]] == [(0.3, 17.5), (18.3, 35.5), (36.3, 53.5), (54.3, 70.0)]
    assert out["duration"].to_pylist() == [1.5, 70.0, None, None, None]
    assert out["error"].to_pylist() == [
        None, None, "empty file (0 bytes)", f"file not found: {tmp_path / 'missing.wav'}",
        "line 5 duplicates line 1 (not transcribed twice)"]
    assert out["error_stage"].to_pylist() == [None, None, "decode", "fetch", "manifest"]
    assert out["source_sample_rate"].to_pylist() == [16000, 16000, None, None, None]
    assert out["metadata"].to_pylist()[0] == '{"k": 1}' and out["manifest"].to_pylist()[0] == "/m.jsonl"
    assert out.schema.field("segments").type.value_type.field("samples").type == pa.large_binary()
    lengths = [len(s["samples"]) for s in segments[0] + segments[1]]
    assert lengths == [24000 * 2, 17.2 * RATE * 2, 17.2 * RATE * 2, 17.2 * RATE * 2, 15.7 * RATE * 2]


def test_decode_block_all_failed_keeps_schema(tmp_path) -> None:
    (out,) = decode_block(_block([_row(str(tmp_path / "x.wav"))]), SETTINGS)
    assert out.schema == DECODED_SCHEMA
    assert out["segments"].to_pylist() == [[]]
    assert out["error"].to_pylist() == [f"file not found: {tmp_path / 'x.wav'}"]


def test_decode_block_hands_on_a_blocks_worth_of_recordings(tone_wav) -> None:
    """A block whose audio outgrows its budget (the manifest's durations were wrong or missing) leaves the task as
    several tables, each of whole recordings when the budget fills at a recording's end, so a task's memory stays
    bounded."""
    settings = dataclasses.replace(SETTINGS, block_seconds=3.5)  # full with the third 1.5 s recording
    tables = list(decode_block(_block([_row(str(tone_wav), line=i) for i in range(5)]), settings))
    assert [t.num_rows for t in tables] == [3, 2]
    assert all(t.schema == DECODED_SCHEMA for t in tables)
    whole = pa.concat_tables(tables)
    assert whole["line"].to_pylist() == [0, 1, 2, 3, 4]
    assert whole["piece"].to_pylist() == [None] * 5 and whole["final_piece"].to_pylist() == [None] * 5


def _cut_pieces(tables: list[pa.Table]) -> list[dict]:
    return [row for t in tables for row in t.to_pylist()]


def test_decode_block_cuts_a_recording_longer_than_a_block_into_pieces(tone_wav, tmp_path) -> None:
    """A recording that runs on when the task holds a block's audio is handed on in pieces as it is cut: each piece a row with the
    recording's source columns and the segments cut since the last piece, `piece` 0, 1, 2, `final_piece` on the last,
    which alone carries the duration, speech seconds and warnings. The segments, put together, are those of the
    recording decoded whole; the short recordings around it, which end before the budget fills, stay whole."""
    sf.write(tmp_path / "long.wav", bursts(130.0, [(s, s + 7.0) for s in np.arange(0.5, 130, 9.0)]), RATE)
    policy = SegmentPolicy(max_seconds=20, min_seconds=8)
    long_row = _row(str(tmp_path / "long.wav"), line=2, metadata='{"call": 7}')
    whole = decode_recording(long_row, DecodeSettings(segmenting=policy))
    assert len(whole["segments"]) == 8 and whole.get("piece") is None

    settings = DecodeSettings(segmenting=policy, block_seconds=35.0)  # about two of its 17.2 s segments
    tables = list(decode_block(_block([_row(str(tone_wav), line=1), long_row, _row(str(tone_wav), line=3)]),
                               settings))
    assert all(t.schema == DECODED_SCHEMA for t in tables)
    rows = _cut_pieces(tables)
    assert [(r["line"], r["piece"], r["final_piece"]) for r in rows] == [
        (1, None, None), (2, 0, False), (2, 1, False), (2, 2, True), (3, None, None)]
    # A table handed on once it held a block's worth: the short recording with the first piece, then a piece each.
    assert [t.num_rows for t in tables] == [2, 1, 1, 1]
    pieces = [r for r in rows if r["line"] == 2]
    # Each piece holds about a block of audio: never much more (memory), never a recording's whole.
    assert [len(p["segments"]) for p in pieces] == [2, 3, 3]
    for p in pieces:
        assert sum(len(s["samples"]) for s in p["segments"]) < 2 * 35.0 * RATE * 2
        assert p["row_id"] == long_row["row_id"] and p["metadata"] == '{"call": 7}'
        assert p["source_sample_rate"] == 16000 and p["error"] is None
    assert [(p["duration"], p["speech_seconds"], p["warnings"]) for p in pieces[:2]] == [(None, None, None)] * 2
    assert pieces[2]["duration"] == whole["duration"] == 130.0
    assert pieces[2]["speech_seconds"] == pytest.approx(whole["speech_seconds"])
    cut = [s for p in pieces for s in p["segments"]]
    assert cut == whole["segments"]  # same segments, indices continuous, same audio


def test_decode_block_pieces_of_a_split_call_keep_each_channels_segment_index(tmp_path) -> None:
    """A stereo call in split mode cut into pieces: both channels' segments interleave across the pieces, and each
    channel's segment_index runs on from piece to piece as in the call decoded whole."""
    left = bursts(90.0, [(s, s + 6.0) for s in np.arange(0.5, 90, 8.0)], seed=1, freq=180.0)
    right = bursts(90.0, [(s, s + 5.0) for s in np.arange(4.0, 90, 8.0)], seed=2, freq=260.0)
    sf.write(tmp_path / "call.wav", np.stack([left, right], axis=1), RATE)
    policy = SegmentPolicy(max_seconds=20, min_seconds=8)
    row = _row(str(tmp_path / "call.wav"), channel_mode="split")
    whole = decode_recording(row, DecodeSettings(segmenting=policy))
    rows = _cut_pieces(list(decode_block(_block([row]), DecodeSettings(segmenting=policy, block_seconds=40.0))))
    assert len(rows) >= 3 and [r["piece"] for r in rows] == list(range(len(rows)))
    assert [r["final_piece"] for r in rows] == [False] * (len(rows) - 1) + [True]
    assert {s["channel"] for r in rows[:-1] for s in r["segments"]} == {0, 1}  # pieces cut across both channels
    cut = [s for r in rows for s in r["segments"]]
    key = lambda s: (s["channel"], s["segment_index"])  # noqa: E731
    assert sorted(cut, key=key) == sorted(whole["segments"], key=key)
    for channel in (0, 1):
        assert [s["segment_index"] for s in cut if s["channel"] == channel] == \
            list(range(sum(s["channel"] == channel for s in whole["segments"])))
    assert rows[-1]["duration"] == whole["duration"] == 90.0
