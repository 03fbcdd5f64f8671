"""The real job on a real local Ray with the tiny model of the real class: local files, and everything on S3 (moto).

Each test reads the Parquet back with DuckDB or Polars, as an analyst would, and checks that every input row is there
exactly once: transcripts for good audio, a specific error for each bad input.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pytest

from jobs.transcribe import main, plan, run
from pipeline.models.released import CANONICAL_LOCALES
import numpy as np
import soundfile as sf

from tests.audio_factory import bursts, write_tone


def write_manifest(path: Path, lines: list) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def corpus(tmp_path) -> Path:
    """A manifest of good and bad inputs with relative paths; returns the manifest path."""
    audio = tmp_path / "audio"
    audio.mkdir()
    write_tone(audio / "a.wav", 2.0)
    write_tone(audio / "a2.wav", 2.0)
    write_tone(audio / "b.flac", 1.2, sample_rate=44100, channels=2, fmt="FLAC")
    write_tone(audio / "c.wav", 3.0, sample_rate=8000, subtype="ULAW")
    write_tone(audio / "d.mp3", 1.0, sample_rate=22050, fmt="MP3")
    (audio / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage that is not audio")
    (audio / "empty.wav").write_bytes(b"")
    return write_manifest(tmp_path / "manifest.jsonl", [
        {"audio_filepath": "audio/a.wav", "duration": 2.0, "text": "hello there", "speaker": "agent", "n": 1},
        {"audio_filepath": "audio/b.flac", "text": "hola", "lang": "es-ES"},
        {"audio_filepath": "audio/c.wav", "target_lang": "de-DE"},
        {"audio_filepath": "audio/d.mp3"},
        {"audio_filepath": "audio/corrupt.wav", "text": "x"},
        {"audio_filepath": "audio/empty.wav"},
        {"audio_filepath": "audio/missing.wav"},
        {"audio_filepath": "audio/a2.wav", "lang": "xx-XX"},
        '{"audio_filepath": "audio/a.wav", broken json',
    ])


def read_recordings(output: Path) -> pl.DataFrame:
    return pl.from_arrow(duckdb.sql(f"select * from '{output}/recordings/*.parquet' order by line").arrow())


def test_local_job_accounts_for_every_row(ray_session, tiny_model, corpus, tmp_path):
    out = tmp_path / "out"
    summary = run(plan([f"model_path={tiny_model}", f"dataset_manifest={corpus}", f"output_path={out}"]))
    df = read_recordings(out)

    assert df.height == 9 == summary.rows
    assert df["row_id"].n_unique() == 9
    assert df["line"].to_list() == list(range(1, 10))
    errors = dict(zip(df["audio_filepath"].fill_null("<none>").to_list(), df["error"].to_list()))
    by_line = {r["line"]: r for r in df.iter_rows(named=True)}
    for line in (1, 2, 3, 4):
        row = by_line[line]
        assert row["error"] is None, row
        assert isinstance(row["text"], str) and "<" not in row["text"]
        assert row["duration"] == pytest.approx([2.0, 1.2, 3.0, 1.0][line - 1], abs=0.06)
        assert row["att_context_size"] == [56, 13] and row["model"] == str(tiny_model)
    assert by_line[5]["error_stage"] == "decode" and by_line[5]["error"]
    assert (by_line[6]["error_stage"], by_line[6]["error"]) == ("decode", "empty file (0 bytes)")
    assert by_line[7]["error_stage"] == "fetch"
    assert by_line[7]["error"].startswith("file not found") and "missing.wav" in by_line[7]["error"]
    assert by_line[8]["error_stage"] == "language"
    assert by_line[8]["error"].startswith("unknown target_lang 'xx-XX'") and "en-US" in by_line[8]["error"]
    assert by_line[9]["error_stage"] == "manifest" and by_line[9]["error"].startswith("line 9 is not valid JSON")
    assert summary.failed_rows == 5 and summary.segments == 4 and summary.errors_by_stage == {"decode": 2, "fetch": 1, "language": 1,
                                                                     "manifest": 1}
    assert errors  # every path present
    # Per-row language override, job-wide default, metadata carried through, scores where a reference exists.
    assert [by_line[i]["target_lang"] for i in (1, 2, 3, 4)] == ["auto", "es-ES", "de-DE", "auto"]
    assert json.loads(by_line[1]["metadata"]) == {"speaker": "agent", "n": 1}
    assert by_line[1]["wer"] is not None and by_line[1]["ref_words"] == 2
    assert by_line[3]["wer"] is None
    assert by_line[2]["source_sample_rate"] == 44100 and by_line[2]["source_channels"] == 2
    # The run record sits next to the data.
    record = json.loads(next((out / "runs").glob("*.json")).read_text())
    assert record["summary"]["rows"] == 9 and record["att_context_size"] == [56, 13]


def test_forced_language_and_latency_setting(ray_session, tiny_model, corpus, tmp_path):
    out = tmp_path / "out"
    run(plan([f"model_path={tiny_model}", f"dataset_manifest={corpus}", f"output_path={out}",
              "target_lang=fr-FR", "att_context_size=[56,0]", "strip_lang_tags=false"]))
    df = read_recordings(out)
    good = df.filter(pl.col("error").is_null())
    assert good.height == 4
    # Rows without their own language take the job's; rows with one keep it.
    assert good["target_lang"].to_list() == ["fr-FR", "es-ES", "de-DE", "fr-FR"]
    assert all(c == [56, 0] for c in good["att_context_size"].to_list())
    assert good["raw_text"].null_count() == 0  # strip_lang_tags=false keeps the tagged hypothesis


def test_s3_job_manifest_audio_model_and_output_on_s3(ray_session, tiny_model, corpus, s3fs_client, bucket,
                                                       s3_endpoint):
    s3fs_client.put(str(corpus.parent / "audio"), f"{bucket}/data/audio", recursive=True)
    s3fs_client.put(str(corpus), f"{bucket}/data/manifest.jsonl")
    s3fs_client.put(str(tiny_model), f"{bucket}/models/tiny.nemo")
    out = f"s3://{bucket}/out"
    summary = run(plan([f"model_path=s3://{bucket}/models/tiny.nemo", f"dataset_manifest=s3://{bucket}/data/*.jsonl",
                        f"output_path={out}"]))
    assert summary.rows == 9 and summary.failed_rows == 5
    opts = {"aws_endpoint_url": s3_endpoint, "aws_allow_http": "true", "aws_region": "us-east-1",
            "aws_access_key_id": s3fs_client.key, "aws_secret_access_key": s3fs_client.secret}
    df = pl.read_parquet(f"{out}/recordings/*.parquet", storage_options=opts).sort("line")
    assert df.height == 9 and df["row_id"].n_unique() == 9
    assert df.filter(pl.col("error").is_null())["audio_url"].to_list() == [
        f"s3://{bucket}/data/audio/{n}" for n in ("a.wav", "b.flac", "c.wav", "d.mp3")]
    missing = df.filter(pl.col("line") == 7).row(0, named=True)
    assert (missing["error_stage"], missing["error"]) == (
        "fetch", f"file not found: s3://{bucket}/data/audio/missing.wav")
    assert s3fs_client.ls(f"{bucket}/out/runs")


def test_audio_dir_without_manifest(ray_session, tiny_model, tmp_path):
    folder = tmp_path / "archive" / "2026" / "11"
    folder.mkdir(parents=True)
    write_tone(folder / "one.wav", 1.0)
    write_tone(folder / "two.flac", 1.5, fmt="FLAC")
    (folder / "notes.txt").write_text("not audio")
    out = tmp_path / "out"
    summary = run(plan([f"model_path={tiny_model}", f"audio_dir={tmp_path / 'archive'}", f"output_path={out}"]))
    df = pl.read_parquet(out / "recordings")
    assert summary.rows == 2 and df.height == 2
    assert sorted(Path(p).name for p in df["audio_filepath"]) == ["one.wav", "two.flac"]
    assert df["error"].null_count() == 2


def test_bad_config_stops_before_work(tiny_model, corpus, tmp_path, capsys):
    out = tmp_path / "never"
    code = main([f"model_path={tiny_model}", f"dataset_manifest={corpus}", f"output_path={out}",
                 "att_context_size=[56,2]"])
    assert code == 2
    err = capsys.readouterr().err
    assert "att_context_size [56,2] is not offered" in err and "[56,13]" in err
    assert not (out / "recordings").exists()


def _check_cover(segments: list[tuple[float, float]], speech: list[tuple[float, float]], duration: float) -> None:
    """Segments of one stream, in order: each starts at or after the previous one's end, or 1 s before it after a cut
    forced in a stretch without a pause (overlap_seconds); every cut, and everything no segment holds, lies outside
    the speech; the last one ends at the recording's end."""
    held_to = 0.0
    for start, end in segments:
        assert start >= held_to - 1.0 - 1e-9, (start, held_to)
        for edge in (start, end):
            assert not any(a < edge < b for a, b in speech), edge
        assert not any(held_to < b and a < start for a, b in speech), ("speech skipped", held_to, start)
        held_to = end
    assert held_to == pytest.approx(duration, abs=1e-3)


def test_long_recording_is_cut_into_segments_that_cover_it(ray_session, tiny_model, tmp_path):
    """A 6-minute recording with pauses: cut at pauses into segments of at most max_segment_seconds, batched like
    any clip, stitched back in order; the segments cover the recording and the duration is right."""
    speech = [(s, s + 7.0) for s in np.arange(0.5, 360, 9.0)]  # 7 s of 'speech', 2 s pauses
    audio = tmp_path / "long.flac"
    sf.write(audio, bursts(360.0, speech), 16000, format="FLAC")
    manifest = write_manifest(tmp_path / "m.jsonl", [{"audio_filepath": str(audio), "text": "a b c"}])
    out = tmp_path / "out"
    summary = run(plan([f"model_path={tiny_model}", f"dataset_manifest={manifest}", f"output_path={out}",
                        "segmenting.max_seconds=20", "segmenting.min_seconds=8", "segmenting.method=energy"]))
    rec = pl.read_parquet(out / "recordings").row(0, named=True)
    segs = duckdb.sql(f"select * from '{out}/segments/*.parquet' order by segment_index").pl()
    assert summary.rows == 1 and rec["error"] is None
    assert rec["duration"] == pytest.approx(360.0, abs=1e-3)
    assert rec["num_segments"] == segs.height == summary.segments and segs.height >= 360 / 20
    assert segs["segment_index"].to_list() == list(range(segs.height))
    assert segs["end"][-1] == pytest.approx(360.0, abs=1e-3)
    assert ((segs["end"] - segs["start"]) <= 20.0 + 1e-6).all()
    # Cut at pauses, each segment starting 0.2 s before its first sound (segmenting.trim_silence): what lies between
    # one segment's end and the next one's start is inside a pause, and all the speech is covered.
    assert segs["start"][0] == pytest.approx(0.3)
    _check_cover(list(zip(segs["start"], segs["end"])), speech, 360.0)
    assert rec["text"] == " ".join(t for t in segs["text"].to_list() if t)


def test_stereo_call_split_into_channels_and_conversation(ray_session, tiny_model, tmp_path):
    """Agent on the left, customer on the right, taking turns: split mode gives one stream per channel, named
    segments, and a conversation view of both sides in time order."""
    agent_turns, customer_turns = [(0.5, 4.0), (12.5, 16.0)], [(6.5, 10.0), (18.5, 22.0)]
    left = bursts(24.0, agent_turns, freq=200.0, seed=1)
    right = bursts(24.0, customer_turns, freq=330.0, seed=2)
    sf.write(tmp_path / "call.wav", np.stack([left, right], axis=1), 16000, subtype="PCM_16")
    sf.write(tmp_path / "mono.wav", left, 16000, subtype="PCM_16")
    manifest = write_manifest(tmp_path / "m.jsonl", [
        {"audio_filepath": "call.wav"},
        {"audio_filepath": "call.wav", "channel_mode": "mix", "copy": 2},
        {"audio_filepath": "call.wav", "channel": 1, "copy": 3},
        {"audio_filepath": "mono.wav"},
    ])
    out = tmp_path / "out"
    run(plan([f"model_path={tiny_model}", f"dataset_manifest={manifest}", f"output_path={out}",
              "audio.channel_mode=split", "audio.channel_names=[agent,customer]", "segmenting.max_seconds=6",
              "segmenting.min_seconds=2", "segmenting.method=energy"]))
    recs = {r["line"]: r for r in pl.read_parquet(out / "recordings").iter_rows(named=True)}
    segs = duckdb.sql(f"select r.line, s.* from '{out}/segments/*.parquet' s "
                      f"join '{out}/recordings/*.parquet' r using (row_id) order by r.line, channel, start").pl()
    split = segs.filter(pl.col("line") == 1)
    assert sorted(set(split["channel"].to_list())) == [0, 1]
    assert set(zip(split["channel"].to_list(), split["speaker"].to_list())) == {(0, "agent"), (1, "customer")}
    for channel in (0, 1):
        mine = split.filter(pl.col("channel") == channel)
        turns = agent_turns if channel == 0 else customer_turns
        assert mine["end"][-1] == pytest.approx(24.0, abs=1e-3)
        _check_cover(list(zip(mine["start"], mine["end"])), turns, 24.0)  # this side's pauses, not its turns
    # The agent speaks first: its first segment starts 0.2 s before its first turn.
    assert split.filter(pl.col("channel") == 0)["start"][0] == pytest.approx(0.3)
    conversation = recs[1]["conversation"]
    assert recs[1]["channel_mode"] == "split" and conversation
    starts = [t["start"] for t in conversation]
    assert starts == sorted(starts)
    assert {t["speaker"] for t in conversation} == {"agent", "customer"}
    assert recs[1]["text"] == " ".join(t["text"] for t in conversation)
    # A row may ask for mix; a row may pick one channel (as NeMo's channel_selector); mono files stay one stream.
    assert recs[2]["channel_mode"] == "mix" and recs[2]["conversation"] is None
    assert set(segs.filter(pl.col("line") == 2)["channel"].to_list()) == {None}
    assert set(segs.filter(pl.col("line") == 3)["channel"].to_list()) == {1}
    assert set(segs.filter(pl.col("line") == 4)["channel"].to_list()) == {None}
    assert all(r["error"] is None for r in recs.values())


def test_timestamps_confidence_and_per_row_languages(ray_session, tiny_model, tmp_path):
    """Rows asking for different languages share batches; word timestamps are absolute, ordered, inside the
    recording and free of tags; sentences carry the language of the tag that closed them."""
    talk = bursts(20.0, [(0.5, 5.0), (6.0, 11.0), (12.0, 19.0)])
    for copy in (1, 2, 3):  # the same audio three times: one row each (one file asked for twice is a duplicate)
        sf.write(tmp_path / f"talk{copy}.wav", talk, 16000, subtype="PCM_16")
    manifest = write_manifest(tmp_path / "m.jsonl", [
        {"audio_filepath": "talk1.wav", "lang": "en-US"},
        {"audio_filepath": "talk2.wav", "lang": "de-DE", "copy": 2},
        {"audio_filepath": "talk3.wav", "copy": 3},
    ])
    out = tmp_path / "out"
    run(plan([f"model_path={tiny_model}", f"dataset_manifest={manifest}", f"output_path={out}", "timestamps=true",
              "confidence=true", "segmenting.max_seconds=8", "segmenting.min_seconds=3", "strip_lang_tags=false",
              "segmenting.method=energy"]))
    recs = {r["line"]: r for r in pl.read_parquet(out / "recordings").iter_rows(named=True)}
    assert [recs[i]["target_lang"] for i in (1, 2, 3)] == ["en-US", "de-DE", "auto"]
    assert [recs[i]["prompt_locale"] for i in (1, 2, 3)] == ["en-US", "de-DE", "auto"]
    assert all(recs[i]["error"] is None and recs[i]["confidence"] is not None for i in (1, 2, 3))
    # The same audio under different prompts: the prompt reached the model row by row.
    assert len({recs[i]["raw_text"] for i in (1, 2, 3)}) == 3
    segs = duckdb.sql(f"select r.line, s.* from '{out}/segments/*.parquet' s join '{out}/recordings/*.parquet' r "
                      f"using (row_id) order by r.line, s.start").pl()
    timed = 0
    for seg in segs.iter_rows(named=True):
        words = seg["words"] or []
        timed += len(words)
        starts = [w["start"] for w in words]
        assert starts == sorted(starts)
        for w in words:
            assert "<" not in w["word"] and w["word"].strip()
            assert seg["start"] - 1e-6 <= w["start"] <= w["end"] <= seg["end"] <= 20.0 + 1e-6
            assert w["confidence"] is None or 0.0 <= w["confidence"] <= 1.0
        assert 0.0 <= seg["confidence"] <= 1.0
        tagged = [t for t in (seg["raw_text"] or "").split(">") if "<" in t]
        for sentence in seg["sentences"] or []:
            assert sentence["language"] is None or sentence["language"] in CANONICAL_LOCALES  # the model's tags
        if tagged and seg["text"]:
            assert seg["sentences"], seg
    assert timed > 0
