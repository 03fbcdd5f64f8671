"""The corpus readers without Ray: NeMo's brace patterns, offset slices (identity, checks, only the slice read),
gzip manifests that break off, shards and tables that break off, a shared NeMo manifest's shard_id."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmarks.corpora import Counting

from connectors.inputs import NEMO_TARRED, TABLE, WEBDATASET, InputError, find_inputs, iter_rows, split_patterns
from connectors.manifests import parse_line, read_manifest
from connectors.shards import read_nemo_shard, shard_number
from connectors.tables import read_table
from pipeline.audio import AudioDecodeError, stream_audio
from tests.audio_factory import tone

RATE = 16000


def test_nemo_brace_patterns_and_lists() -> None:
    assert split_patterns("s3://b/audio__OP_0..2_CL_.tar") == [f"s3://b/audio_{i}.tar" for i in range(3)]
    assert split_patterns("x/shard-{000..002}.tar,y/m.json") == ["x/shard-000.tar", "x/shard-001.tar",
                                                                 "x/shard-002.tar", "y/m.json"]
    assert split_patterns("a/{one,two}.jsonl, b.jsonl") == ["a/one.jsonl", "a/two.jsonl", "b.jsonl"]
    assert [shard_number(u) for u in ("a/audio_12.tar", "s/manifest_3.json", "x/shard.tar")] == [12, 3, None]


def test_a_slice_is_its_own_row_and_its_fields_are_checked() -> None:
    first = parse_line(b'{"audio_filepath": "a.wav", "offset": 1.5, "duration": 2}', "/m.jsonl", 1, "/d")
    second = parse_line(b'{"audio_filepath": "a.wav", "offset": 3.5, "duration": 2}', "/m.jsonl", 2, "/d")
    whole = parse_line(b'{"audio_filepath": "a.wav", "duration": 20}', "/m.jsonl", 3, "/d")
    assert len({first.row_id, second.row_id, whole.row_id}) == 3
    assert (first.audio.offset, first.audio.duration, whole.audio.offset) == (1.5, 2.0, None)
    assert whole.audio.identity() == "/d/a.wav"  # a whole file's identity is unchanged
    bad = parse_line(b'{"audio_filepath": "a.wav", "offset": -1}', "/m.jsonl", 4, "/d")
    assert bad.error == "line 4 has offset number -1; expected a number of seconds >= 0"
    empty = parse_line(b'{"audio_filepath": "a.wav", "offset": 1, "duration": 0}', "/m.jsonl", 5, "/d")
    assert empty.error == "line 5 has a slice (offset) of duration 0"


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "MP3", "OGG"])
def test_a_slice_decodes_the_same_samples_as_the_whole_file_and_seeks_where_it_can(fmt) -> None:
    samples = tone(120.0)
    buffer = io.BytesIO()
    sf.write(buffer, samples, RATE, format=fmt)
    data = buffer.getvalue()
    # The slice is read in blocks of an eighth of it; the whole file is read in blocks of that size too, because
    # libsndfile's MP3 samples of this file depend on the read size (seen here: 2 s reads give silence at 40 s).
    _, blocks = stream_audio(data, block_seconds=3.0 / 8)
    whole = np.concatenate(list(blocks), axis=1)
    counting = Counting(io.BytesIO(data))
    info, blocks = stream_audio(counting, offset=40.0, duration=3.0, block_seconds=2.0)
    part = np.concatenate(list(blocks), axis=1)
    assert part.shape == (1, 3 * RATE) and info.duration == 3.0
    np.testing.assert_array_equal(part, whole[:, 40 * RATE:43 * RATE])
    if fmt == "WAV":  # read from the offset: the slice's bytes and little more (a 2% slice)
        assert counting.read_bytes < len(data) * 0.03
    elif fmt == "FLAC":  # a seek (libFLAC reads 64 KiB at a time while it searches), not the whole file
        assert counting.read_bytes < len(data) * 0.15
    elif fmt == "MP3":  # decoded from the start, but never past the slice's end (at 36% of the file)
        assert counting.read_bytes < len(data) * 0.6
    # (Ogg: libsndfile reads to the last page when it opens the file, to learn its length: no saving there.)
    with pytest.raises(AudioDecodeError, match="starts past the end of the recording"):
        list(stream_audio(data, offset=130.0, duration=2.0)[1])


def test_a_slice_that_runs_past_the_end_is_shorter_and_says_so() -> None:
    buffer = io.BytesIO()
    sf.write(buffer, tone(10.0), RATE, format="WAV")
    info, blocks = stream_audio(buffer.getvalue(), offset=8.0, duration=5.0)
    assert sum(b.shape[1] for b in blocks) == 2 * RATE
    assert info.report.warnings(manifest_duration=5.0) == ["duration 2.0 s differs from the manifest's 5.0 s"]


def test_a_gzip_manifest_that_breaks_off_keeps_what_came_before(tmp_path) -> None:
    lines = "".join(json.dumps({"audio_filepath": f"a{i}.wav", "pad": "x" * 200}) + "\n" for i in range(20000))
    whole = gzip.compress(lines.encode())
    (tmp_path / "m.jsonl.gz").write_bytes(whole)
    assert len(list(read_manifest(str(tmp_path / "m.jsonl.gz")))) == 20000
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[:len(whole) // 2])
    rows = list(read_manifest(str(tmp_path / "cut.jsonl.gz")))
    # Read in 1 MiB chunks: the lines of the whole chunks before the break are rows, then one error row.
    assert 0 < len(rows) - 1 < 20000 and all(r.error is None for r in rows[:-1])
    assert rows[-1].error.startswith(f"compressed manifest breaks off after line {len(rows) - 1}:")
    (tmp_path / "empty.json.gz").write_bytes(gzip.compress(b"\n\n"))
    with pytest.raises(InputError, match="is empty"):
        find_inputs(str(tmp_path / "empty.json.gz"), None)


def hf_parquet(path: Path, n: int) -> None:
    import datasets

    clips = []
    for i in range(n):
        buffer = io.BytesIO()
        sf.write(buffer, tone(0.5), RATE, format="FLAC")
        clips.append({"bytes": buffer.getvalue(), "path": f"c{i}.flac"})
    table = datasets.Dataset.from_dict({"audio": clips, "text": [f"t{i}" for i in range(n)]})
    table.cast_column("audio", datasets.Audio()).to_parquet(str(path))


def test_tables_that_cannot_be_read_or_break_off(tmp_path) -> None:
    hf_parquet(tmp_path / "good.parquet", 3)
    data = (tmp_path / "good.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[:len(data) // 2])  # no footer: nothing can be read
    [row] = list(read_table(str(tmp_path / "cut.parquet")))
    assert row.error.startswith("table cut.parquet not a Parquet file:")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["a"]}), tmp_path / "noaudio.parquet")
    [row] = list(read_table(str(tmp_path / "noaudio.parquet")))
    assert row.error == "table noaudio.parquet has no 'audio' column (columns: text)"
    kinds = {s.kind for s in find_inputs(f"{tmp_path}/good.parquet", None)}
    assert kinds == {TABLE}


def test_a_manifest_shared_by_shards_joins_by_shard_id(tmp_path) -> None:
    """One tarred_audio_manifest.json for two shards: each shard's task keeps its own lines; a line without
    shard_id is reported once (with shard 0)."""
    import webdataset as wds  # only to write the tar files with a library, as users do

    for shard in (0, 1):
        with wds.TarWriter(str(tmp_path / f"audio_{shard}.tar")) as writer:
            buffer = io.BytesIO()
            sf.write(buffer, tone(0.5), RATE, format="FLAC")
            writer.write({"__key__": f"u{shard}", "flac": buffer.getvalue()})
    lines = [{"audio_filepath": "u0.flac", "duration": 0.5, "shard_id": 0},
             {"audio_filepath": "u1.flac", "duration": 0.5, "shard_id": 1},
             {"audio_filepath": "u9.flac", "duration": 0.5}]
    (tmp_path / "tarred_audio_manifest.json").write_text("".join(json.dumps(x) + "\n" for x in lines))
    inputs = find_inputs(str(tmp_path / "tarred_audio_manifest.json"), None)
    assert [(s.kind, Path(s.url).name, s.shared) for s in inputs] == [
        (NEMO_TARRED, "audio_0.tar", True), (NEMO_TARRED, "audio_1.tar", True)]
    rows = [list(iter_rows(s)) for s in inputs]
    assert [(r.audio.member, r.error) for r in rows[0]] == [
        ("u9.flac", "line 3 has no shard_id: in a manifest shared by several shards each line needs one (as NeMo's "
                    "converter writes)"), ("u0.flac", None)]
    assert [(r.audio.member, r.error, r.line) for r in rows[1]] == [("u1.flac", None, 1)]
    assert rows[1][0].audio.data and rows[1][0].manifest == str(tmp_path / "audio_1.tar")
    # The same member bytes edited: a new content hash, the same identity.
    with wds.TarWriter(str(tmp_path / "audio_1.tar")) as writer:
        buffer = io.BytesIO()
        sf.write(buffer, tone(0.5, freq=300.0), RATE, format="FLAC")
        writer.write({"__key__": "u1", "flac": buffer.getvalue()})
    [edited] = list(read_nemo_shard(str(tmp_path / "audio_1.tar"), str(tmp_path / "tarred_audio_manifest.json"),
                                    shared=True))
    assert edited.row_id == rows[1][0].row_id and edited.source_hash != rows[1][0].source_hash


def test_a_tar_that_is_not_a_tar_is_one_error_row(tmp_path) -> None:
    (tmp_path / "junk.tar").write_bytes(b"this is not a tar archive" * 100)
    [source] = find_inputs(str(tmp_path / "junk.tar"), None)
    assert source.kind == WEBDATASET
    [row] = list(iter_rows(source))
    assert row.error.startswith("shard junk.tar: not a tar file")
    with tarfile.open(tmp_path / "ok.tar", "w"):
        pass
    assert list(iter_rows(find_inputs(str(tmp_path / "ok.tar"), None)[0])) == []
