"""A corpus of bad inputs, all in ONE manifest run by ONE job: every row comes out once, each bad one with its own
specific error, and the counts add up. Config-level faults (an empty manifest) end the job before any work with one
message and exit code 2.
"""

from __future__ import annotations

import io
import os
import re
import struct
from dataclasses import dataclass

import duckdb
import numpy as np
import pytest
import soundfile as sf

from jobs.transcribe import main, plan, run
from tests.audio_factory import tone
from tests.jobs.jobs_helpers import write_manifest

# --- bad files ----------------------------------------------------------------------------------------------------


def wav_bytes(samples: np.ndarray, rate: int = 16000, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def wav_header(rate: int, channels: int, bits: int, data_size: int, format_tag: int = 1) -> bytes:
    """A canonical 44-byte WAV header; its fields may lie."""
    block_align = channels * bits // 8
    fmt_chunk = struct.pack("<HHIIHH", format_tag, channels, rate, rate * block_align, block_align, bits)
    return (b"RIFF" + struct.pack("<I", min(36 + data_size, 0xFFFFFFFF)) + b"WAVE" + b"fmt "
            + struct.pack("<I", len(fmt_chunk)) + fmt_chunk + b"data" + struct.pack("<I", data_size))


def flac_claiming(total_samples: int, rate: int = 16000) -> bytes:
    """A real 1 s FLAC whose STREAMINFO total_samples (36 bits at bytes 18..25) says `total_samples`."""
    data = bytearray(wav_bytes(tone(1.0, rate), rate, fmt="FLAC"))
    assert data[:4] == b"fLaC"
    packed = int.from_bytes(data[18:26], "big")
    data[18:26] = ((packed & ~((1 << 36) - 1)) | total_samples).to_bytes(8, "big")
    return bytes(data)


def with_sample(value: float) -> bytes:
    x = tone(1.0)
    x[4000] = value
    return wav_bytes(x, subtype="FLOAT")


GOOD = wav_bytes(tone(1.0))
PCM = GOOD[44:]


# --- the corpus ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    kind: str
    line: object  # manifest line: a dict (JSON), a str (written as is) or bytes (written raw)
    files: dict  # name -> bytes, created under audio/ (None: a folder)
    expect: str | None  # None: no error; else "exact:...", "prefix:..." or "regex:..." ({line}, {dir} filled in)
    stage: str | None


UNRECOGNISED = ("not an audio file: unrecognised format "
                "(soundfile: Format not recognised; pyav: Invalid data found when processing input)")

CASES = [
    Case("good", {"audio_filepath": "audio/good.wav"}, {"good.wav": GOOD}, None, None),
    # Decision (README "Limits", tests/pipeline/test_audio.py): a WAV cut short in its data decodes what is there.
    Case("truncated-in-data", {"audio_filepath": "audio/truncated-data.wav"},
         {"truncated-data.wav": GOOD[:44 + 3200]}, None, None),
    Case("truncated-in-header", {"audio_filepath": "audio/truncated-header.wav"},
         {"truncated-header.wav": GOOD[:30]},
         "prefix:decode: corrupt or unsupported audio (soundfile: Error in WAV file. No 'data' chunk marker; pyav: ",
         "decode"),
    Case("wrong-header", {"audio_filepath": "audio/wrong-header.wav"}, {"wrong-header.wav": b"RIFX" + GOOD[4:]},
         "prefix:decode: corrupt or unsupported audio (soundfile: Error in WAV/W64/RF64 file. Malformed 'fmt ' chunk",
         "decode"),
    Case("zero-bytes", {"audio_filepath": "audio/zero.wav"}, {"zero.wav": b""},
         "exact:decode: empty file (0 bytes)", "decode"),
    Case("header-only", {"audio_filepath": "audio/header-only.wav"}, {"header-only.wav": GOOD[:44]},
         "exact:decode: no audio samples (0 frames)", "decode"),
    Case("nan-samples", {"audio_filepath": "audio/nan.wav"}, {"nan.wav": with_sample(np.nan)},
         "exact:decode: audio contains NaN or Inf samples", "decode"),
    Case("inf-samples", {"audio_filepath": "audio/inf.wav"}, {"inf.wav": with_sample(np.inf)},
         "exact:decode: audio contains NaN or Inf samples", "decode"),
    Case("zero-channels", {"audio_filepath": "audio/zero-channels.wav"},
         {"zero-channels.wav": wav_header(16000, 0, 16, len(PCM)) + PCM},
         "prefix:decode: corrupt or unsupported audio (soundfile: Channel count is zero; pyav: ", "decode"),
    Case("header-claims-hours", {"audio_filepath": "audio/ten-hours.flac"},
         {"ten-hours.flac": flac_claiming(16000 * 36000)},
         "exact:decode: recording is 36000.0 s long, over max_duration=14400 s", "decode"),
    Case("text-named-wav", {"audio_filepath": "audio/transcript.wav"},
         {"transcript.wav": b"Agent: hello, how can I help?\nCustomer: my bill.\n" * 30},
         f"exact:decode: {UNRECOGNISED}", "decode"),
    Case("random-bytes", {"audio_filepath": "audio/random.wav"},
         {"random.wav": np.random.default_rng(7).bytes(6000)}, f"exact:decode: {UNRECOGNISED}", "decode"),
    Case("invalid-json", '{"audio_filepath": "audio/good.wav", "text": "unterminated', {},
         "prefix:manifest: line {line} is not valid JSON (", "manifest"),
    Case("json-array", '["audio/good.wav", 1.0]', {}, "exact:manifest: line {line} is a JSON list, not an object",
         "manifest"),
    Case("missing-audio-filepath", {"path": "audio/good.wav", "text": "hello"}, {},
         "exact:manifest: line {line} has no audio_filepath", "manifest"),
    Case("audio-filepath-not-a-string", {"audio_filepath": 42}, {},
         "exact:manifest: line {line} has audio_filepath number 42; expected a string", "manifest"),
    Case("negative-duration", {"audio_filepath": "audio/good.wav", "duration": -2.5}, {},
         "exact:manifest: line {line} has duration number -2.5; expected a number >= 0", "manifest"),
    Case("nan-duration", '{"audio_filepath": "audio/good.wav", "duration": NaN}', {},
         "exact:manifest: line {line} has duration number nan; expected a number >= 0", "manifest"),
    Case("numeric-text", {"audio_filepath": "audio/good.wav", "text": 12345}, {},
         "exact:manifest: line {line} has text number 12345; expected a string", "manifest"),
    Case("numeric-target-lang", {"audio_filepath": "audio/good.wav", "target_lang": 7}, {},
         "exact:manifest: line {line} has target_lang number 7; expected a locale string", "manifest"),
    Case("lone-surrogate", '{"audio_filepath": "audio/good.wav", "text": "caf\\ud800"}', {},
         "exact:manifest: line {line} holds text that is not valid Unicode (a lone surrogate escape)", "manifest"),
    Case("nested-too-deep", "[" * 100_000, {}, "regex:manifest: line {line} is not (valid JSON|a usable JSON).*",
         "manifest"),
    Case("huge-channel", {"audio_filepath": "audio/good.wav", "channel": 10**30}, {},
         "exact:manifest: line {line} has channel=1000000000000000000000000000000; expected an integer channel "
         "number", "manifest"),
    Case("non-utf8-path", b'{"audio_filepath": "audio/caf\xe9-\xff.wav"}', {},
         "regex:manifest: line {line} is not valid UTF-8 \\(invalid (start|continuation) byte at byte \\d+\\)",
         "manifest"),
    Case("duplicated-row", {"audio_filepath": "audio/good.wav"}, {},
         "exact:manifest: line {line} duplicates line 1 (not transcribed twice)", "manifest"),
    Case("bad-channel-value", {"audio_filepath": "audio/good.wav", "channel": "left"}, {},
         "exact:manifest: line {line} has channel='left'; expected an integer channel number", "manifest"),
    Case("unsupported-url-scheme", {"audio_filepath": "ftpx://host/a.wav"}, {},
         "exact:fetch: cannot read ftpx://host/a.wav: ValueError: Protocol not known: ftpx", "fetch"),
    Case("missing-bucket", {"audio_filepath": "s3://no-such-bucket/a.wav"}, {},
         "exact:fetch: file not found: s3://no-such-bucket/a.wav", "fetch"),
    Case("missing-local-file", {"audio_filepath": "audio/never-recorded.wav"}, {},
         "exact:fetch: file not found: {dir}/audio/never-recorded.wav", "fetch"),
    Case("a-fifo", {"audio_filepath": "audio/pipe.wav"}, {"pipe.wav": "fifo"},
         "exact:fetch: not a regular file: {dir}/audio/pipe.wav is a FIFO (named pipe)", "fetch"),
    Case("a-folder", {"audio_filepath": "audio/folder.wav"}, {"folder.wav": None},
         "exact:fetch: is a directory, not a file: {dir}/audio/folder.wav", "fetch"),
    Case("channel-out-of-range", {"audio_filepath": "audio/good.wav", "channel": 5}, {},
         "exact:decode: channel 5 requested but the file has 1 channel", "decode"),
    Case("unknown-channel-mode", {"audio_filepath": "audio/good.wav", "channel_mode": "stereo"}, {},
         "exact:manifest: unknown channel_mode 'stereo'; use mix or split", "manifest"),
    # Another file: the same audio asked for again (in any language) would be a duplicate of line 1.
    Case("unknown-language", {"audio_filepath": "audio/good-too.wav", "lang": "xx-XX"}, {"good-too.wav": GOOD},
         "prefix:language: unknown target_lang 'xx-XX'; this checkpoint knows: ", "language"),
    # A WAV whose fmt chunk names a codec nobody knows (format tag 0x1234).
    Case("unknown-wav-codec", {"audio_filepath": "audio/unknown-codec.wav"},
         {"unknown-codec.wav": wav_header(16000, 1, 16, len(PCM), format_tag=0x1234) + PCM},
         "prefix:decode: corrupt or unsupported audio (soundfile: ", "decode"),
]

XFAIL: dict[str, str] = {}  # kinds whose error is known to be wrong (none at present)


@pytest.fixture(scope="module")
def corpus_run(ray_session, tiny_model, tmp_path_factory):
    """Writes the corpus (with one blank line in the middle, which is not a row) and runs one job over it."""
    folder = tmp_path_factory.mktemp("bad-inputs")
    audio = folder / "audio"
    audio.mkdir()
    lines: list = []
    line_of: dict[str, int] = {}
    for case in CASES:
        for name, data in case.files.items():
            if data is None:
                (audio / name).mkdir()
            elif data == "fifo":  # a named pipe: opening it to read would wait for a writer forever
                os.mkfifo(audio / name)
            else:
                (audio / name).write_bytes(data)
        if len(lines) == 5:
            lines.append("   ")  # blank: not a row, but it still counts for line numbers
        lines.append(case.line)
        line_of[case.kind] = len(lines)
    manifest = write_manifest(folder / "manifest.jsonl", lines)
    out = folder / "out"
    summary = run(plan([f"model_path={tiny_model}", f"dataset_manifest={manifest}", f"output_path={out}"]))
    rows = duckdb.sql(f"select * from read_parquet('{out}/recordings/*.parquet') order by line").fetchall()
    columns = duckdb.sql(f"select * from read_parquet('{out}/recordings/*.parquet') limit 0").columns
    by_line = {}
    for values in rows:
        row = dict(zip(columns, values))
        by_line[row["line"]] = row
    return {"summary": summary, "rows": by_line, "line_of": line_of, "folder": folder, "out": out,
            "count": len(rows)}


def test_there_are_at_least_15_kinds_of_bad_input():
    assert len([c for c in CASES if c.expect]) >= 15


@pytest.mark.slow  # the corpus job (module fixture) takes ~20-30 s here
@pytest.mark.parametrize("case", [
    pytest.param(c, id=c.kind, marks=[pytest.mark.xfail(strict=True, reason=XFAIL[c.kind])] if c.kind in XFAIL else [])
    for c in CASES])
def test_each_bad_input_has_its_own_specific_error(corpus_run, case):
    line = corpus_run["line_of"][case.kind]
    row = corpus_run["rows"][line]
    error = f"{row['error_stage']}: {row['error']}" if row["error"] else None
    if case.expect is None:
        assert error is None, error
        assert row["text"] is not None and row["duration"] > 0
        return
    how, _, text = case.expect.partition(":")
    expected = text.replace("{line}", str(line)).replace("{dir}", str(corpus_run["folder"]))
    assert error is not None, f"{case.kind}: no error"
    if how == "exact":
        assert error == expected
    elif how == "prefix":
        assert error.startswith(expected), error
    else:
        assert re.fullmatch(expected, error), error
    assert row["error_stage"] == case.stage
    assert row["text"] in (None, "")
    if case.stage in ("manifest", "fetch"):
        assert row["duration"] is None  # nothing was decoded


@pytest.mark.slow  # the corpus job (module fixture) takes ~20-30 s here
def test_truncated_wav_keeps_what_is_there(corpus_run):
    row = corpus_run["rows"][corpus_run["line_of"]["truncated-in-data"]]
    assert row["duration"] == pytest.approx(0.1, abs=0.002)  # 3200 bytes of 16-bit 16 kHz mono


@pytest.mark.slow  # the corpus job (module fixture) takes ~20-30 s here
def test_rows_in_equal_rows_out_and_the_counts_add_up(corpus_run):
    summary = corpus_run["summary"]
    lines = len(CASES)  # one row per non-blank line; the blank line is not a row
    assert corpus_run["count"] == summary.rows == lines
    assert len({r["row_id"] for r in corpus_run["rows"].values()}) == lines
    assert sorted(corpus_run["rows"]) == sorted(corpus_run["line_of"].values())  # the blank line is no row
    failed = [c for c in CASES if c.expect]
    assert summary.failed_rows == len(failed)
    assert sum(1 for r in corpus_run["rows"].values() if r["error"]) == len(failed)
    expected_stages: dict[str, int] = {}
    for c in failed:
        expected_stages[c.stage] = expected_stages.get(c.stage, 0) + 1
    assert summary.errors_by_stage == expected_stages
    assert summary.skipped_rows == 0


@pytest.mark.slow  # the corpus job (module fixture) takes ~20-30 s here
def test_bad_rows_keep_where_they_came_from(corpus_run):
    """Every row, even one whose line could not be parsed, names its manifest and line; parsed rows keep their
    audio_filepath as written."""
    for kind, line in corpus_run["line_of"].items():
        row = corpus_run["rows"][line]
        assert row["manifest"].endswith("manifest.jsonl") and row["line"] == line
    assert corpus_run["rows"][corpus_run["line_of"]["missing-bucket"]]["audio_filepath"] == "s3://no-such-bucket/a.wav"


# --- config-level faults ------------------------------------------------------------------------------------------


def test_empty_manifest_is_one_message_and_exit_code_2(ray_session, tiny_model, tmp_path, capsys):
    manifest = tmp_path / "empty.jsonl"
    manifest.write_bytes(b"")
    out = tmp_path / "out"
    code = main([f"model_path={tiny_model}", f"dataset_manifest={manifest}", f"output_path={out}"])
    captured = capsys.readouterr()
    assert code == 2
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: manifest {manifest} is empty: nothing to transcribe"]
    assert captured.out == ""
    assert not (out / "recordings").exists()


def test_manifest_of_blank_lines_only_is_empty_too(ray_session, tiny_model, tmp_path, capsys):
    manifest = tmp_path / "blank.jsonl"
    manifest.write_bytes(b"\n  \n\r\n\t\n")
    out = tmp_path / "out"
    code = main([f"model_path={tiny_model}", f"dataset_manifest={manifest}", f"output_path={out}"])
    captured = capsys.readouterr()
    assert code == 2, captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(manifest) in errors[0] and "empty" in errors[0]
    assert not (out / "recordings").exists()


# --- the manifests named: exact names are exact, every part must match ---------------------------------------------


def _one_error(captured) -> list[str]:
    assert "Traceback" not in captured.err, captured.err
    return [line for line in captured.err.splitlines() if line.startswith("error:")]


def test_a_manifest_named_with_glob_characters_is_that_file(ray_session, tiny_model, tmp_path, capsys):
    """`calls[1].jsonl` is that file, not the glob that matches `calls1.jsonl` beside it (which read the wrong
    manifest and exited 0)."""
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "right.wav").write_bytes(GOOD)
    (tmp_path / "audio" / "wrong.wav").write_bytes(GOOD)
    write_manifest(tmp_path / "calls[1].jsonl", [{"audio_filepath": "audio/right.wav"}])
    write_manifest(tmp_path / "calls1.jsonl", [{"audio_filepath": "audio/wrong.wav"}])
    out = tmp_path / "out"
    assert main([f"model_path={tiny_model}", f"dataset_manifest={tmp_path}/calls[1].jsonl", f"output_path={out}"]) == 0
    rows = duckdb.sql(f"select manifest, audio_url, error from read_parquet('{out}/recordings/*.parquet')").fetchall()
    assert rows == [(f"{tmp_path}/calls[1].jsonl", f"{tmp_path}/audio/right.wav", None)]


@pytest.mark.parametrize("kind", ["typo-in-comma-list", "typo-in-list", "folder", "glob-matching-a-folder",
                                  "unbalanced-bracket"])
def test_a_manifest_that_names_nothing_or_a_folder_is_one_error_line(ray_session, tiny_model, tmp_path, capsys,
                                                                      kind):
    write_manifest(tmp_path / "good.jsonl", [{"audio_filepath": "a.wav"}])
    (tmp_path / "calls" / "audio").mkdir(parents=True)
    write_manifest(tmp_path / "calls" / "m.jsonl", [{"audio_filepath": "a.wav"}])
    value, expected = {
        "typo-in-comma-list": (f"{tmp_path}/good.jsonl,{tmp_path}/goood.jsonl",
                               f"error: dataset_manifest '{tmp_path}/goood.jsonl' matches no file"),
        "typo-in-list": (f"['{tmp_path}/good.jsonl','{tmp_path}/goood.jsonl']",
                         f"error: dataset_manifest '{tmp_path}/goood.jsonl' matches no file"),
        "folder": (f"{tmp_path}/calls", f"error: dataset_manifest '{tmp_path}/calls' is a folder, not a file"),
        "glob-matching-a-folder": (f"{tmp_path}/calls/*", f"error: dataset_manifest '{tmp_path}/calls/*' matches a "
                                                          f"folder, {tmp_path}/calls/audio, not only files"),
        "unbalanced-bracket": (f"[{tmp_path}/good.jsonl", "error: cannot read the configuration: not valid YAML ("),
    }[kind]
    out = tmp_path / "out"
    code = main([f"model_path={tiny_model}", f"dataset_manifest={value}", f"output_path={out}"])
    captured = capsys.readouterr()
    errors = _one_error(captured)
    assert code == 2 and len(errors) == 1, captured.err
    assert errors[0] == expected if kind != "unbalanced-bracket" else errors[0].startswith(expected)
    assert not (out / "recordings").exists()


# --- an output folder the job cannot write to -----------------------------------------------------------------------


def _make_read_only(folder) -> str | None:
    """Make `folder` read-only for this process: its mode for a normal user, the immutable attribute for root (whom
    the mode does not stop). Returns how, or None when neither holds here."""
    import subprocess

    folder.chmod(0o555)
    probe = folder / "probe"
    try:
        probe.write_text("x")
    except OSError:
        return "mode"
    probe.unlink()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        return "immutable"
    return None


def test_a_read_only_output_folder_is_one_error_line(ray_session, tiny_model, tmp_path, capsys):
    """An existing output folder made read-only ended in an OSError traceback on `_lease.json`."""
    import subprocess

    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "a.wav").write_bytes(GOOD)
    manifest = write_manifest(tmp_path / "m.jsonl", [{"audio_filepath": "audio/a.wav"}])
    out = tmp_path / "out"
    out.mkdir()
    how = _make_read_only(out)
    try:
        if how is None:
            pytest.skip("cannot make a folder read-only for this user here")
        code = main([f"model_path={tiny_model}", f"dataset_manifest={manifest}", f"output_path={out}"])
    finally:
        if how == "immutable":
            subprocess.run(["chattr", "-i", str(out)], check=True)
        out.chmod(0o755)
    captured = capsys.readouterr()
    errors = _one_error(captured)
    assert code == 2 and errors == [f"error: cannot use output_path '{out}': cannot write to it (permission "
                                    f"denied)"], captured.err
    assert list(out.iterdir()) == []


# --- corrupt data in the middle of a file ----------------------------------------------------------------------------


def test_a_flac_with_garbage_in_its_middle_is_an_error_row_never_a_shorter_transcript(ray_session, tiny_model,
                                                                                       tmp_path):
    """8 KiB of garbage in the middle of a 16 s FLAC: libsndfile loses sync, PyAV used to skip the damage, and the row
    came out with no error, 0.4 s less audio and a `truncated` warning. Now: an error row (stage decode) that keeps
    the segments decoded before the damage, and none from after it."""
    from tests.audio_factory import bursts

    buffer = io.BytesIO()
    sf.write(buffer, bursts(16.0, [(0.3, 3.5), (4.2, 7.5), (8.5, 12.0), (12.8, 15.6)]), 16000, format="FLAC",
             subtype="PCM_16")
    damaged = bytearray(buffer.getvalue())
    middle = len(damaged) // 2
    damaged[middle:middle + 8192] = np.random.default_rng(5).bytes(8192)
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "damaged.flac").write_bytes(bytes(damaged))
    (tmp_path / "audio" / "good.wav").write_bytes(GOOD)
    manifest = write_manifest(tmp_path / "m.jsonl", [{"audio_filepath": "audio/damaged.flac"},
                                                     {"audio_filepath": "audio/good.wav"}])
    out = tmp_path / "out"
    summary = run(plan([f"model_path={tiny_model}", f"dataset_manifest={manifest}", f"output_path={out}",
                        "segmenting.method=energy", "segmenting.max_seconds=4", "segmenting.min_seconds=2"]))
    assert summary.rows == 2 and summary.failed_rows == 1 and summary.errors_by_stage == {"decode": 1}
    row = duckdb.sql(f"select error_stage, error, warnings, duration, num_segments from "
                     f"read_parquet('{out}/recordings/*.parquet') where audio_filepath = 'audio/damaged.flac'").fetchall()[0]
    stage, error, warnings, duration, segments = row
    found = re.fullmatch(r"corrupt or unsupported audio: decoding failed at \d+\.\d s \(soundfile: .+; pyav: "
                         r"corrupt data at (\d+\.\d) s: \d+\.\d+ s of audio could not be decoded\)", error)
    assert stage == "decode" and found, error
    assert warnings is None  # no `truncated` claim about a file that is damaged, not short
    damage = float(found.group(1))
    assert 6.0 < damage < 9.0
    # What was decoded before the damage is kept (segments up to it), nothing from after it.
    assert segments >= 1 and duration is not None and duration <= damage + 0.05
    ends = duckdb.sql(f"select max(\"end\") from read_parquet('{out}/segments/*.parquet') s join "
                      f"read_parquet('{out}/recordings/*.parquet') r using (row_id) "
                      f"where r.audio_filepath = 'audio/damaged.flac'").fetchall()[0][0]
    assert ends is not None and ends <= damage + 0.05
