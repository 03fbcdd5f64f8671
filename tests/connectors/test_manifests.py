"""Tests for connectors.manifests: manifest lines into typed rows, row identity, streaming, and bare audio folders."""

from __future__ import annotations

import io
import json
import os
import random

import pyarrow as pa
import pytest

from connectors.audio_source import AudioSource
from connectors.manifests import MAX_LINE_BYTES, ManifestRow, iter_audio_dir, iter_manifest, manifest_urls


def parse_manifest(manifest: str, data: bytes) -> list[dict]:
    """`iter_manifest` over bytes: every non-blank line as a row dict."""
    return [r.as_dict() for r in iter_manifest(manifest, io.BytesIO(data))]


def list_audio(audio_dir: str) -> list[dict]:
    """Every audio file under `audio_dir`, as row dicts, sorted by URL."""
    return sorted((r.as_dict() for r in iter_audio_dir(audio_dir)), key=lambda r: r["audio_url"])
from pipeline.locales import Locales
from pipeline.models.released import PROMPT_DICTIONARY
from pipeline.options import JobDefaults, source_row
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
    assert row["requested_lang"] == "en-US"
    # Every field the pipeline does not read is carried as a JSON object, nested values and non-ASCII intact.
    assert json.loads(row["metadata"]) == {"speaker": "agent", "call": {"id": 7, "queue": "billing"},
                                           "tags": ["x", "ü"]}
    assert "ü" in row["metadata"]  # ensure_ascii=False
    assert len(row["row_id"]) == 20 and len(row["source_hash"]) == 12


def test_target_lang_wins_over_lang_and_is_stripped() -> None:
    rows = parse_manifest(MANIFEST, _lines(
        _line(audio_filepath="a.wav", target_lang=" de-DE ", lang="en-US"),
        _line(audio_filepath="b.wav", target_lang="es-ES"),
        _line(audio_filepath="c.wav"),
        _line(audio_filepath="d.wav", lang="   "),
        _line(audio_filepath="e.wav", target_lang="  ", lang="fr"),
    ))
    assert [r["requested_lang"] for r in rows] == ["de-DE", "es-ES", None, None, "fr"]
    # lang/target_lang are known fields, never metadata; a row without extras has metadata None.
    assert [r["metadata"] for r in rows] == [None] * 5
    assert all(r["error"] is None for r in rows)


def test_minimal_row_has_nulls() -> None:
    (row,) = parse_manifest(MANIFEST, _line(audio_filepath="a.wav"))
    assert (row["manifest_duration"], row["reference_text"], row["requested_lang"], row["metadata"],
            row["error"]) == (None, None, None, None, None)


def test_integer_duration_becomes_float() -> None:
    (row,) = parse_manifest(MANIFEST, _line(audio_filepath="a.wav", duration=4))
    assert row["manifest_duration"] == 4.0 and isinstance(row["manifest_duration"], float)


# --- typed fields: a wrong type is the row's error, with the field named -------------------------------------------


@pytest.mark.parametrize("entry, message", [
    ({"audio_filepath": "a.wav", "duration": -2.0}, "line 1 has duration number -2.0; expected a number >= 0"),
    ({"audio_filepath": "a.wav", "duration": True}, "line 1 has duration boolean True; expected a number >= 0"),
    ({"audio_filepath": "a.wav", "duration": "3.0"}, "line 1 has duration string '3.0'; expected a number >= 0"),
    ({"audio_filepath": "a.wav", "text": 123}, "line 1 has text number 123; expected a string"),
    ({"audio_filepath": "a.wav", "target_lang": 7}, "line 1 has target_lang number 7; expected a locale string"),
    ({"audio_filepath": "a.wav", "lang": ["en"]}, "line 1 has lang list ['en']; expected a locale string"),
    ({"audio_filepath": "a.wav", "channel_mode": 2}, "line 1 has channel_mode number 2; expected mix or split"),
    ({"audio_filepath": "a.wav", "channel": True}, "line 1 has channel=True; expected an integer channel number"),
    ({"audio_filepath": "a.wav", "channel": 1.5}, "line 1 has channel=1.5; expected an integer channel number"),
    ({"audio_filepath": "a.wav", "channel": 10**20},
     "line 1 has channel=100000000000000000000; expected an integer channel number"),
    ({"audio_filepath": 42}, "line 1 has audio_filepath number 42; expected a string"),
    ({"duration": 1.0}, "line 1 has no audio_filepath"),
])
def test_a_wrong_type_is_a_clear_error(entry, message) -> None:
    (row,) = parse_manifest(MANIFEST, json.dumps(entry).encode())
    assert row["error"] == message


def test_nan_duration_is_an_error() -> None:
    (row,) = parse_manifest(MANIFEST, b'{"audio_filepath": "d.wav", "duration": NaN}')
    assert row["error"] == "line 1 has duration number nan; expected a number >= 0"


def test_several_problems_are_named_together() -> None:
    (row,) = parse_manifest(MANIFEST, _line(audio_filepath="a.wav", duration=-1, text=5))
    assert row["error"] == ("line 1 has duration number -1; expected a number >= 0; "
                            "line 1 has text number 5; expected a string")


def test_lone_surrogate_is_an_error_not_a_crash() -> None:
    (row,) = parse_manifest(MANIFEST, b'{"audio_filepath": "a.wav", "text": "bad \\ud800 text"}')
    assert row["error"] == "line 1 holds text that is not valid Unicode (a lone surrogate escape)"
    assert to_table([_resolved(row)], SOURCE_SCHEMA).num_rows == 1


# --- path resolution ----------------------------------------------------------------------------------------------


def test_relative_paths_resolve_against_local_manifest_folder() -> None:
    rows = parse_manifest("/data/calls/day1/manifest.jsonl", _lines(
        _line(audio_filepath="a.wav"),
        _line(audio_filepath="sub/b.wav"),
        _line(audio_filepath="../x.wav"),
        _line(audio_filepath="./c.wav"),
    ))
    assert [r["audio_url"] for r in rows] == [
        "/data/calls/day1/a.wav", "/data/calls/day1/sub/b.wav", "/data/calls/x.wav", "/data/calls/day1/c.wav"]
    # audio_filepath keeps what the manifest said.
    assert [r["audio_filepath"] for r in rows] == ["a.wav", "sub/b.wav", "../x.wav", "./c.wav"]


def test_relative_manifest_path_is_made_absolute(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (row,) = parse_manifest("lists/m.jsonl", _line(audio_filepath="a.wav"))
    assert row["audio_url"] == os.path.join(str(tmp_path), "lists", "a.wav")


def test_relative_paths_resolve_against_s3_manifest_folder() -> None:
    rows = parse_manifest("s3://bucket/calls/day1/manifest.jsonl", _lines(
        _line(audio_filepath="a.wav"), _line(audio_filepath="sub/b.wav"), _line(audio_filepath="../x.wav")))
    assert [r["audio_url"] for r in rows] == [
        "s3://bucket/calls/day1/a.wav", "s3://bucket/calls/day1/sub/b.wav", "s3://bucket/calls/x.wav"]


def test_absolute_and_url_paths_unchanged() -> None:
    for manifest in ("/data/m.jsonl", "s3://bucket/m/manifest.jsonl"):
        rows = parse_manifest(manifest, _lines(
            _line(audio_filepath="/mnt/audio/a.wav"), _line(audio_filepath="s3://other/b.flac"),
            _line(audio_filepath="gs://g/c.mp3"), _line(audio_filepath="https://host/d.wav?x=1")))
        assert [r["audio_url"] for r in rows] == [
            "/mnt/audio/a.wav", "s3://other/b.flac", "gs://g/c.mp3", "https://host/d.wav?x=1"]


def test_manifest_urls_are_normalised_and_deduplicated(tmp_path, monkeypatch) -> None:
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path)
    urls = manifest_urls(["a/m.jsonl", "a/../a/m.jsonl", f"{tmp_path}/a/m.jsonl", "s3://b/x/../m.jsonl",
                          "s3://b/m.jsonl"])
    assert urls == [f"{os.path.realpath(tmp_path)}/a/m.jsonl", "s3://b/m.jsonl"]


# --- blank, odd and bad lines -------------------------------------------------------------------------------------


def test_blank_lines_skipped_and_line_numbers_are_file_lines() -> None:
    data = b"\n" + _line(audio_filepath="a.wav") + b"\n   \n\r\n" + _line(audio_filepath="b.wav") + b"\r\n\n"
    rows = parse_manifest(MANIFEST, data)
    assert [r["audio_filepath"] for r in rows] == ["a.wav", "b.wav"]
    assert [r["line"] for r in rows] == [2, 5]
    assert all(r["error"] is None for r in rows)


def test_a_byte_order_mark_at_the_start_is_allowed() -> None:
    rows = parse_manifest(MANIFEST, b"\xef\xbb\xbf" + _lines(_line(audio_filepath="a.wav"),
                                                            _line(audio_filepath="b.wav")))
    assert [(r["audio_filepath"], r["error"]) for r in rows] == [("a.wav", None), ("b.wav", None)]


def test_an_overlong_line_is_one_error_row_and_is_never_held() -> None:
    long_line = b'{"audio_filepath": "a.wav", "text": "' + b"x" * (MAX_LINE_BYTES + 10) + b'"}'
    rows = parse_manifest(MANIFEST, _lines(_line(audio_filepath="ok.wav"), long_line, _line(audio_filepath="b.wav")))
    assert [r["line"] for r in rows] == [1, 2, 3]
    assert rows[1]["error"] == "line 2 is longer than 1 MiB"
    assert rows[0]["error"] is None and rows[2]["error"] is None


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
        b'"just a string"',                                 # 7: a JSON string
        b"[" * 100_000,                                     # 8: nested too deep for the parser
    )
    rows = parse_manifest(MANIFEST, data)
    assert len(rows) == 8
    assert [r["line"] for r in rows] == list(range(1, 9))
    errors = [r["error"] for r in rows]
    assert errors[0] is None
    assert errors[1].startswith("line 2 is not valid JSON (")
    assert errors[2] == "line 3 is a JSON list, not an object"
    assert errors[3] == "line 4 has no audio_filepath"
    assert errors[4] == "line 5 is not valid UTF-8 (invalid continuation byte at byte 23)"
    assert errors[5] == "line 6 has no audio_filepath"
    assert errors[6] == "line 7 is a JSON str, not an object"
    assert errors[7].startswith("line 8 is not ")
    # The row without audio keeps its extras for the user to find it again.
    assert json.loads(rows[3]["metadata"]) == {"speaker": "s1"}
    for row in rows[1:]:
        assert row["audio_url"] is None
        assert row["manifest"] == MANIFEST
    assert len({r["row_id"] for r in rows}) == 8


def test_invalid_json_error_names_reason_and_column() -> None:
    bad = '{"audio_filepath": "a.wav" "text": "x"}'
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(bad)
    (row,) = parse_manifest(MANIFEST, b"\n\n" + bad.encode())
    assert row["line"] == 3
    assert row["error"] == f"line 3 is not valid JSON ({expected.value.msg} at column 28)"


def test_the_same_audio_twice_is_a_duplicate_naming_the_first_line() -> None:
    rows = parse_manifest(MANIFEST, _lines(
        _line(audio_filepath="a.wav", text="hello"),
        _line(audio_filepath="b.wav"),
        b"",
        _line(audio_filepath="a.wav", text="hello"),     # the same line again
        _line(audio_filepath="a.wav", text="other"),     # the same audio with another reference
        _line(audio_filepath="a.wav", channel=1),        # another channel of it: another row
        _line(audio_filepath="./a.wav"),                 # the same file spelled another way
    ))
    assert [r["line"] for r in rows] == [1, 2, 4, 5, 6, 7]
    assert [r["error"] for r in rows] == [
        None, None, "line 4 duplicates line 1 (not transcribed twice)",
        "line 5 duplicates line 1 (not transcribed twice)", None,
        "line 7 duplicates line 1 (not transcribed twice)"]
    # Duplicates keep which audio they were and each has its own id.
    assert rows[2]["audio_url"] == "/data/calls/a.wav"
    assert len({r["row_id"] for r in rows}) == 6


# --- identity: manifest + audio + channel choice, not the line's bytes ----------------------------------------------


def _ids(manifest: str, *lines: bytes) -> list[str]:
    return [r["row_id"] for r in parse_manifest(manifest, _lines(*lines))]


def test_an_edited_reference_or_language_keeps_the_identity_and_changes_the_content_hash() -> None:
    before = parse_manifest(MANIFEST, _line(audio_filepath="a.wav", text="one", lang="en-US"))[0]
    for edited in (_line(audio_filepath="a.wav", text="won", lang="en-US"),
                   _line(audio_filepath="a.wav", text="one", lang="de-DE"),
                   _line(audio_filepath="a.wav", text="one", lang="en-US", speaker="x")):
        after = parse_manifest(MANIFEST, edited)[0]
        assert after["row_id"] == before["row_id"]
        assert after["source_hash"] != before["source_hash"]


def test_key_order_and_whitespace_change_nothing() -> None:
    one = parse_manifest(MANIFEST, b'{"audio_filepath": "a.wav", "text": "x", "duration": 1.0}')[0]
    two = parse_manifest(MANIFEST, b'{"duration":1.0,"text":"x","audio_filepath":"a.wav"}  ')[0]
    assert (one["row_id"], one["source_hash"]) == (two["row_id"], two["source_hash"])


def test_channel_choice_is_part_of_the_identity() -> None:
    ids = _ids(MANIFEST, _line(audio_filepath="a.wav"), _line(audio_filepath="a.wav", channel=0),
               _line(audio_filepath="a.wav", channel=1), _line(audio_filepath="a.wav", channel_mode="split"))
    assert len(set(ids)) == 4


def test_ids_survive_reordering_appending_and_blank_lines() -> None:
    base = [_line(audio_filepath=f"{c}.wav", text=c) for c in "abcd"]
    original = _ids(MANIFEST, *base)
    assert _ids(MANIFEST, base[2], base[0], base[3], base[1]) == [original[2], original[0], original[3], original[1]]
    assert _ids(MANIFEST, *base, _line(audio_filepath="e.wav"))[:4] == original
    assert [r["row_id"] for r in parse_manifest(MANIFEST, b"\n\n".join(base))] == original
    assert len(set(original)) == 4 and all(len(i) == 20 for i in original)


def test_ids_differ_between_manifests_and_crlf_changes_nothing() -> None:
    line = _line(audio_filepath="a.wav")
    assert _ids("s3://bucket/a/manifest.jsonl", line) != _ids("s3://bucket/b/manifest.jsonl", line)
    lf = parse_manifest(MANIFEST, line + b"\n")[0]
    crlf = parse_manifest(MANIFEST, line + b"\r\n")[0]
    assert (lf["row_id"], lf["source_hash"]) == (crlf["row_id"], crlf["source_hash"])


# --- fuzz: whatever a line holds, reading never raises and the row fits the schema ---------------------------------


LOCALES = Locales.from_dictionary(PROMPT_DICTIONARY)
DEFAULTS = JobDefaults(target_lang="auto", channel_mode="mix")


def _resolved(row: dict) -> dict:
    fields = {k: v for k, v in row.items() if k in ManifestRow.__dataclass_fields__}
    audio = AudioSource.from_row(row) if row.get("audio_url") else None
    return source_row(ManifestRow(**fields, audio=audio), DEFAULTS, LOCALES)


def _random_value(rng: random.Random, depth: int = 0):
    makers = [
        lambda: None, lambda: True, lambda: rng.randint(-10**30, 10**30), lambda: rng.uniform(-1e9, 1e9),
        lambda: float("nan"), lambda: "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(12))),
        lambda: "\ud800",
        lambda: [_random_value(rng, depth + 1) for _ in range(rng.randrange(3))],
        lambda: {str(rng.random()): _random_value(rng, depth + 1) for _ in range(rng.randrange(3))},
    ]
    return makers[rng.randrange(len(makers) if depth < 3 else len(makers) - 2)]()


def _fuzz_lines(rng: random.Random, n: int) -> list[bytes]:
    lines = []
    fields = ["audio_filepath", "duration", "text", "target_lang", "lang", "channel_mode", "channel", "x"]
    for _ in range(n):
        entry = {f: _random_value(rng) for f in rng.sample(fields, rng.randrange(len(fields)))}
        if rng.random() < 0.5:
            entry["audio_filepath"] = f"clip-{rng.randrange(50)}.wav"
        raw = json.dumps(entry, ensure_ascii=rng.random() < 0.5, allow_nan=True).encode("utf-8", "surrogatepass")
        mutation = rng.randrange(5)
        if mutation == 1 and raw:  # flip bytes
            raw = bytearray(raw)
            for _ in range(rng.randrange(1, 4)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            raw = bytes(raw)
        elif mutation == 2:  # truncate
            raw = raw[: rng.randrange(len(raw) + 1)]
        elif mutation == 3:  # random bytes
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        lines.append(raw.replace(b"\n", b" "))
    return lines


def test_fuzzed_lines_never_raise_and_every_line_is_one_row_that_fits_the_schema() -> None:
    rng = random.Random(20261203)
    lines = _fuzz_lines(rng, 3000)
    data = b"\n".join(lines) + b"\n"
    rows = list(iter_manifest(MANIFEST, io.BytesIO(data)))
    assert len(rows) == sum(1 for line in lines if line.strip())
    resolved = [source_row(r, DEFAULTS, LOCALES) for r in rows]
    table = to_table(resolved, SOURCE_SCHEMA)
    assert table.num_rows == len(rows)
    assert len(set(table["row_id"].to_pylist())) == len(rows)
    errors = [r["error"] for r in resolved]
    assert any(e is None for e in errors) and any(e is not None for e in errors)
    assert all(r["error_stage"] in ("manifest", "language") for r in resolved if r["error"])


# --- audio folders ------------------------------------------------------------------------------------------------


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
        assert row["manifest"] == str(tmp_path) and row["line"] is None and row["error"] is None
    assert len({r["row_id"] for r in rows}) == 5
    assert [r["row_id"] for r in list_audio(str(tmp_path))] == [r["row_id"] for r in rows]
    assert isinstance(to_table([_resolved(r) for r in rows], SOURCE_SCHEMA), pa.Table)


def test_list_audio_empty_folder(tmp_path) -> None:
    (tmp_path / "readme.md").write_text("no audio here")
    assert list_audio(str(tmp_path)) == []


def test_list_audio_on_s3(s3fs_client, bucket) -> None:
    for key in ["x/a.wav", "x/sub/b.flac", "x/c.txt", "y/d.wav"]:
        s3fs_client.pipe(f"{bucket}/{key}", b"data")
    rows = list_audio(f"s3://{bucket}/x")
    assert [r["audio_url"] for r in rows] == [f"s3://{bucket}/x/a.wav", f"s3://{bucket}/x/sub/b.flac"]
