"""Tests for connectors.manifests: manifest lines into source rows, stable row ids, and bare audio folders."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pytest

from connectors.manifests import list_audio, parse_manifest
from pipeline.records import SOURCE_SCHEMA, to_table

MANIFEST = "/data/calls/manifest.jsonl"


def _line(**entry) -> bytes:
    return json.dumps(entry).encode()


def _lines(*lines: bytes) -> bytes:
    return b"\n".join(lines) + b"\n"


# --- good rows ----------------------------------------------------------------------------------------------------


def test_good_row_fields_and_metadata() -> None:
    data = _line(audio_filepath="audio/a.wav", duration=3.25, text="hello world", lang="en-US",
                 speaker="agent", call={"id": 7, "queue": "billing"}, tags=["x", "ü"])
    (row,) = parse_manifest(MANIFEST, data)
    assert row["manifest"] == MANIFEST
    assert row["line"] == 1
    assert row["error"] is None
    assert row["audio_filepath"] == "audio/a.wav"
    assert row["audio_url"] == "/data/calls/audio/a.wav"
    assert row["manifest_duration"] == 3.25
    assert row["reference_text"] == "hello world"
    assert row["row_target_lang"] == "en-US"
    # Every field the pipeline does not read is carried as a JSON object, nested values and non-ASCII intact.
    assert json.loads(row["metadata"]) == {"speaker": "agent", "call": {"id": 7, "queue": "billing"},
                                           "tags": ["x", "ü"]}
    assert "ü" in row["metadata"]  # ensure_ascii=False
    assert set(row) == set(SOURCE_SCHEMA.names)
    # The row fits the declared schema.
    assert to_table([row], SOURCE_SCHEMA).num_rows == 1


def test_target_lang_wins_over_lang_and_is_stripped() -> None:
    rows = parse_manifest(MANIFEST, _lines(
        _line(audio_filepath="a.wav", target_lang=" de-DE ", lang="en-US"),
        _line(audio_filepath="b.wav", target_lang="es-ES"),
        _line(audio_filepath="c.wav"),
        _line(audio_filepath="d.wav", lang="   "),
    ))
    assert [r["row_target_lang"] for r in rows] == ["de-DE", "es-ES", None, None]
    # lang/target_lang are known fields, never metadata; a row without extras has metadata None.
    assert [r["metadata"] for r in rows] == [None, None, None, None]
    assert all(r["error"] is None for r in rows)


def test_minimal_row_has_nulls() -> None:
    (row,) = parse_manifest(MANIFEST, _line(audio_filepath="a.wav"))
    assert row["manifest_duration"] is None
    assert row["reference_text"] is None
    assert row["row_target_lang"] is None
    assert row["metadata"] is None
    assert row["error"] is None


def test_integer_duration_becomes_float_and_bad_durations_are_null() -> None:
    rows = parse_manifest(MANIFEST, _lines(
        _line(audio_filepath="a.wav", duration=4),
        _line(audio_filepath="b.wav", duration=True),
        _line(audio_filepath="c.wav", duration="3.0"),
        b'{"audio_filepath": "d.wav", "duration": NaN}',
    ))
    assert rows[0]["manifest_duration"] == 4.0 and isinstance(rows[0]["manifest_duration"], float)
    assert [r["manifest_duration"] for r in rows[1:]] == [None, None, None]
    assert all(r["error"] is None for r in rows)


# --- path resolution ----------------------------------------------------------------------------------------------


def test_relative_paths_resolve_against_local_manifest_folder() -> None:
    rows = parse_manifest("/data/calls/day1/manifest.jsonl", _lines(
        _line(audio_filepath="a.wav"),
        _line(audio_filepath="sub/b.wav"),
        _line(audio_filepath="../x.wav"),
        _line(audio_filepath="./c.wav"),
    ))
    assert [r["audio_url"] for r in rows] == [
        "/data/calls/day1/a.wav",
        "/data/calls/day1/sub/b.wav",
        "/data/calls/x.wav",
        "/data/calls/day1/c.wav",
    ]
    # audio_filepath keeps what the manifest said.
    assert [r["audio_filepath"] for r in rows] == ["a.wav", "sub/b.wav", "../x.wav", "./c.wav"]


def test_relative_manifest_path_is_made_absolute(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (row,) = parse_manifest("lists/m.jsonl", _line(audio_filepath="a.wav"))
    assert row["audio_url"] == os.path.join(str(tmp_path), "lists", "a.wav")


def test_relative_paths_resolve_against_s3_manifest_folder() -> None:
    rows = parse_manifest("s3://bucket/calls/day1/manifest.jsonl", _lines(
        _line(audio_filepath="a.wav"),
        _line(audio_filepath="sub/b.wav"),
        _line(audio_filepath="../x.wav"),
    ))
    assert [r["audio_url"] for r in rows] == [
        "s3://bucket/calls/day1/a.wav",
        "s3://bucket/calls/day1/sub/b.wav",
        "s3://bucket/calls/x.wav",
    ]


def test_absolute_and_url_paths_unchanged() -> None:
    for manifest in ("/data/m.jsonl", "s3://bucket/m/manifest.jsonl"):
        rows = parse_manifest(manifest, _lines(
            _line(audio_filepath="/mnt/audio/a.wav"),
            _line(audio_filepath="s3://other/b.flac"),
            _line(audio_filepath="gs://g/c.mp3"),
            _line(audio_filepath="https://host/d.wav?x=1"),
        ))
        assert [r["audio_url"] for r in rows] == [
            "/mnt/audio/a.wav", "s3://other/b.flac", "gs://g/c.mp3", "https://host/d.wav?x=1"]


# --- blank and bad lines ------------------------------------------------------------------------------------------


def test_blank_lines_skipped_and_line_numbers_are_file_lines() -> None:
    data = b"\n" + _line(audio_filepath="a.wav") + b"\n   \n\r\n" + _line(audio_filepath="b.wav") + b"\r\n\n"
    rows = parse_manifest(MANIFEST, data)
    assert [r["audio_filepath"] for r in rows] == ["a.wav", "b.wav"]
    assert [r["line"] for r in rows] == [2, 5]
    assert all(r["error"] is None for r in rows)


def test_empty_manifest_gives_no_rows() -> None:
    assert parse_manifest(MANIFEST, b"") == []
    assert parse_manifest(MANIFEST, b"\n\n  \n") == []


def test_each_bad_line_is_one_error_row() -> None:
    data = _lines(
        _line(audio_filepath="ok.wav"),                    # 1
        b'{"audio_filepath": "a.wav",',                     # 2: truncated JSON
        b'["a.wav", 3.0]',                                  # 3: an array
        _line(duration=1.0, text="hi", speaker="s1"),       # 4: no audio_filepath
        b'{"audio_filepath": "caf\xe9.wav"}',               # 5: Latin-1 byte, not UTF-8
        _line(audio_filepath="   "),                        # 6: blank audio_filepath
        _line(audio_filepath=42),                           # 7: not a string
        b'"just a string"',                                 # 8: a JSON string
    )
    rows = parse_manifest(MANIFEST, data)
    assert len(rows) == 8
    assert [r["line"] for r in rows] == list(range(1, 9))
    errors = [r["error"] for r in rows]
    assert errors[0] is None
    assert errors[1].startswith("manifest: line 2 is not valid JSON (")
    assert errors[2] == "manifest: line 3 is a JSON list, not an object"
    assert errors[3] == "manifest: line 4 has no audio_filepath"
    assert errors[4] == "manifest: line 5 is not valid UTF-8 (invalid continuation byte at byte 23)"
    assert errors[5] == "manifest: line 6 has no audio_filepath"
    assert errors[6] == "manifest: line 7 has no audio_filepath"
    assert errors[7] == "manifest: line 8 is a JSON str, not an object"
    # The row without audio keeps its extras for the user to find it again; its known fields are not parsed.
    assert json.loads(rows[3]["metadata"]) == {"speaker": "s1"}
    for row in rows[1:]:
        assert row["audio_url"] is None
        assert row["manifest"] == MANIFEST
    assert len({r["row_id"] for r in rows}) == 8


def test_invalid_json_error_names_reason_and_column() -> None:
    bad = '{"audio_filepath": "a.wav" "text": "x"}'
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(bad)
    assert expected.value.colno == 28
    (row,) = parse_manifest(MANIFEST, b"\n\n" + bad.encode())
    assert row["line"] == 3
    assert row["error"] == f"manifest: line 3 is not valid JSON ({expected.value.msg} at column 28)"


def test_duplicate_line_error_names_first_line() -> None:
    dup = _line(audio_filepath="a.wav", text="hello")
    rows = parse_manifest(MANIFEST, _lines(dup, _line(audio_filepath="b.wav"), b"", dup, dup))
    assert [r["line"] for r in rows] == [1, 2, 4, 5]
    assert rows[0]["error"] is None
    assert rows[1]["error"] is None
    assert rows[2]["error"] == "manifest: line 4 duplicates line 1 (not transcribed twice)"
    assert rows[3]["error"] == "manifest: line 5 duplicates line 1 (not transcribed twice)"
    # Duplicates are parsed rows too (the user sees which audio they were) and each has its own id.
    assert rows[2]["audio_url"] == "/data/calls/a.wav"
    assert len({r["row_id"] for r in rows}) == 4


# --- row ids ------------------------------------------------------------------------------------------------------


_BASE = [
    _line(audio_filepath="a.wav", text="one"),
    _line(audio_filepath="b.wav", text="two"),
    _line(audio_filepath="c.wav"),
    b"not json",
    _line(audio_filepath="a.wav", text="one"),  # a duplicate of the first line
]


def test_row_ids_stable_and_unique() -> None:
    first = parse_manifest(MANIFEST, _lines(*_BASE))
    second = parse_manifest(MANIFEST, _lines(*_BASE))
    ids = [r["row_id"] for r in first]
    assert ids == [r["row_id"] for r in second]
    assert len(set(ids)) == len(ids) == 5
    assert all(len(i) == 20 and all(c in "0123456789abcdef" for c in i) for i in ids)


def test_row_ids_unchanged_when_a_line_is_appended() -> None:
    before = [r["row_id"] for r in parse_manifest(MANIFEST, _lines(*_BASE))]
    after_rows = parse_manifest(MANIFEST, _lines(*_BASE, _line(audio_filepath="d.wav")))
    after = [r["row_id"] for r in after_rows]
    assert after[:5] == before
    assert after[5] not in before


def test_row_ids_unchanged_when_lines_are_reordered() -> None:
    original = parse_manifest(MANIFEST, _lines(*_BASE))
    by_line = {r["line"]: r["row_id"] for r in original}
    # Move line 3 to the front and line 4 to the end; the two identical lines keep their relative order.
    reordered = parse_manifest(MANIFEST, _lines(_BASE[2], _BASE[0], _BASE[1], _BASE[4], _BASE[3]))
    assert [r["row_id"] for r in reordered] == [by_line[3], by_line[1], by_line[2], by_line[5], by_line[4]]
    # Blank lines inserted anywhere change line numbers but no id.
    spaced = parse_manifest(MANIFEST, b"\n\n".join(_BASE))
    assert [r["row_id"] for r in spaced] == [r["row_id"] for r in original]
    assert [r["line"] for r in spaced] == [1, 3, 5, 7, 9]


def test_fixing_one_line_changes_only_its_id() -> None:
    original = [r["row_id"] for r in parse_manifest(MANIFEST, _lines(*_BASE))]
    fixed = _BASE.copy()
    fixed[3] = _line(audio_filepath="e.wav")
    after = [r["row_id"] for r in parse_manifest(MANIFEST, _lines(*fixed))]
    assert [a == b for a, b in zip(original, after)] == [True, True, True, False, True]


def test_row_ids_differ_between_manifests() -> None:
    one = [r["row_id"] for r in parse_manifest("s3://bucket/a/manifest.jsonl", _lines(*_BASE))]
    two = [r["row_id"] for r in parse_manifest("s3://bucket/b/manifest.jsonl", _lines(*_BASE))]
    assert not set(one) & set(two)


def test_crlf_line_has_same_id_as_lf_line() -> None:
    lf = parse_manifest(MANIFEST, _line(audio_filepath="a.wav") + b"\n")
    crlf = parse_manifest(MANIFEST, _line(audio_filepath="a.wav") + b"\r\n")
    assert lf[0]["row_id"] == crlf[0]["row_id"]


# --- list_audio ---------------------------------------------------------------------------------------------------


def test_list_audio_finds_nested_audio_only(tmp_path) -> None:
    (tmp_path / "day1" / "deep").mkdir(parents=True)
    (tmp_path / "day2").mkdir()
    for name in ["b.wav", "day1/a.FLAC", "day1/deep/c.mp3", "day2/d.opus", "day2/e.m4a"]:
        (tmp_path / name).write_bytes(b"x")
    for name in ["notes.txt", "day1/manifest.jsonl", "day1/deep/cover.jpg", "day2/wav"]:
        (tmp_path / name).write_bytes(b"x")
    rows = list_audio(str(tmp_path))
    expected = sorted(str(tmp_path / n) for n in ["b.wav", "day1/a.FLAC", "day1/deep/c.mp3", "day2/d.opus",
                                                  "day2/e.m4a"])
    assert [r["audio_url"] for r in rows] == expected
    assert [r["audio_filepath"] for r in rows] == expected
    for row in rows:
        assert row["manifest"] is None and row["line"] is None and row["error"] is None
        assert row["reference_text"] is None and row["metadata"] is None
    assert len({r["row_id"] for r in rows}) == 5
    # Stable across listings, and fits the source schema.
    assert [r["row_id"] for r in list_audio(str(tmp_path))] == [r["row_id"] for r in rows]
    assert isinstance(to_table(rows, SOURCE_SCHEMA), pa.Table)


def test_list_audio_empty_folder(tmp_path) -> None:
    (tmp_path / "readme.md").write_text("no audio here")
    assert list_audio(str(tmp_path)) == []


def test_list_audio_on_s3(s3fs_client, bucket) -> None:
    for key in ["x/a.wav", "x/sub/b.flac", "x/c.txt", "y/d.wav"]:
        s3fs_client.pipe(f"{bucket}/{key}", b"data")
    rows = list_audio(f"s3://{bucket}/x")
    assert [r["audio_url"] for r in rows] == [f"s3://{bucket}/x/a.wav", f"s3://{bucket}/x/sub/b.flac"]
