"""Tests for connectors.parquet_sink: the two output tables committed from a Ray Dataset's finished blocks as pairs of
whole Parquet files (segments first, recordings last, same name), by rows or by age; what the committer reports; the
clean-up of what a crash left."""

from __future__ import annotations

import io
import os
import re
import time
from collections import Counter

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.parquet_sink import CommitPolicy, TranscriptCommitter, clean_uncommitted, write_parquet
from connectors.output_store import OutputStore
from pipeline.records import ASSEMBLED_SCHEMA, RECORDINGS_SCHEMA, SEGMENTS_SCHEMA, to_table

RUN_ID = "20260101T000000Z-abc123"
RUN_COLUMNS = {"model": "/models/tiny.nemo", "run_id": RUN_ID, "att_context_size": [56, 13]}
NAME = re.compile(rf"^part-{RUN_ID}-\d{{6}}\.parquet$")


def committed_row_ids(output: str) -> set[str]:
    """The row ids in the committed recordings files (hidden and temporary names are not committed)."""
    fs, paths = OutputStore.at(output).committed_files()
    ids: set[str] = set()
    for path in paths:
        with fs.open(path, "rb") as handle:
            ids.update(pq.read_table(handle, columns=["row_id"])["row_id"].to_pylist())
    return ids


def commit(dataset, output: str, rows_per_file: int = 10_000, commit_seconds: float = 300.0,
           pause: float = 0.0, run_id: str = RUN_ID) -> TranscriptCommitter:
    """Commit a dataset's blocks as the job's driver does (`pause`: seconds between blocks, ticking the clock)."""
    committer = TranscriptCommitter(OutputStore.at(output), run_id, RECORDINGS_SCHEMA, SEGMENTS_SCHEMA,
                                    CommitPolicy(rows_per_file=rows_per_file, commit_seconds=commit_seconds))
    for bundle in dataset.iter_internal_ref_bundles():
        committer.add(bundle)
        time.sleep(pause)
        committer.tick()
    committer.close()
    return committer


def _segment(row_id: str, index: int, start: float, end: float, text: str | None, *, channel: int | None = None,
             speaker: str | None = None, error: str | None = None) -> dict:
    stage, _, message = error.partition(": ") if error else (None, None, None)
    return {"row_id": row_id, "segment_index": index, "channel": channel, "speaker": speaker, "start": start,
            "end": end, "text": text, "language": None if text is None else "en-US", "target_lang": "auto",
            "prompt_locale": "auto", "raw_text": None, "error": message, "error_stage": stage,
            "audio_filepath": f"{row_id}.wav", **RUN_COLUMNS}


def _recording(i: int, segments: list[dict], error: str | None = None, **extra) -> dict:
    row_id = f"r{i:02d}"
    ok = error is None
    stage, _, message = error.partition(": ") if error else (None, None, None)
    row = {"row_id": row_id, "error_stage": stage, "audio_filepath": f"{row_id}.wav", "audio_url": f"/data/{row_id}.wav",
           "manifest": "/data/m.jsonl", "line": i + 1, "channel_mode": "mix", "target_lang": "auto",
           "num_segments": len(segments), "segments": segments,
           "duration": max((s["end"] for s in segments), default=None), "error": message,
           "text": " ".join(s["text"] for s in segments if s["text"]) if ok else None,
           "language": "en-US" if ok else None, "language_shares": [("en-US", 1.0)] if ok else None,
           "source_sample_rate": 16000 if segments else None, "source_channels": 1 if segments else None,
           "metadata": f'{{"n": {i}}}', **RUN_COLUMNS}
    row.update(extra)
    return row


def _rows() -> list[dict]:
    """Twelve assembled recordings: good ones of 1 to 3 segments, a split call, and failures from every stage."""
    rows = []
    for i in range(12):
        rid = f"r{i:02d}"
        if i == 2:
            rows.append(_recording(i, [], error=f"fetch: file not found: /data/{rid}.wav"))
        elif i in (5, 9):
            rows.append(_recording(i, [], error="decode: empty file (0 bytes)"))
        elif i == 7:  # failed after decoding: its audio was read and cut
            rows.append(_recording(i, [_segment(rid, 0, 0.0, 20.0, None),
                                       _segment(rid, 1, 20.0, 32.5, None, error="inference: RuntimeError: oom")],
                                   error="inference: RuntimeError: oom"))
        elif i == 10:  # a split call: both sides, with the conversation view
            segs = [_segment(rid, 0, 0.0, 6.0, "hello", channel=0, speaker="agent"),
                    _segment(rid, 0, 0.0, 6.0, "hi", channel=1, speaker="customer"),
                    _segment(rid, 1, 6.0, 9.0, "bye", channel=0, speaker="agent")]
            conversation = [{k: s[k] for k in ("start", "end", "channel", "speaker", "text")}
                            for s in sorted(segs, key=lambda s: (s["start"], s["channel"]))]
            rows.append(_recording(i, segs, channel_mode="split", conversation=conversation, source_channels=2,
                                   reference_text="hello hi bye", wer=0.0, word_errors=0, ref_words=3))
        else:
            n = 1 + i % 3
            segs = [_segment(rid, k, 10.0 * k, 10.0 * k + 7.5 + i, f"words {i} {k}") for k in range(n)]
            rows.append(_recording(i, segs))
    return rows


ROWS = _rows()
FAILED = {"r02", "r05", "r07", "r09"}
SECONDS = sum(r["duration"] for r in ROWS if r["duration"] is not None)
N_SEGMENTS = sum(len(r["segments"]) for r in ROWS)


def _expected_recordings() -> pa.Table:
    return to_table(ROWS, RECORDINGS_SCHEMA).sort_by("row_id")


def _expected_segments() -> pa.Table:
    segments = [s for r in ROWS for s in r["segments"]]
    return to_table(segments, SEGMENTS_SCHEMA).sort_by([("row_id", "ascending"), ("channel", "ascending"),
                                                        ("segment_index", "ascending")])


def _dataset(ray):
    """The rows in several blocks, as the assembly stage hands them on (ASSEMBLED_SCHEMA)."""
    table = to_table(ROWS, ASSEMBLED_SCHEMA)
    return ray.data.from_arrow([table.slice(k, 3) for k in range(0, table.num_rows, 3)])


def _check_written(sink: TranscriptCommitter) -> None:
    # rows_per_file=5 over blocks of 3 rows: every commit took at least 5 rows, except possibly the last.
    sizes = sorted(f.rows for f in sink.written)
    assert len(sizes) >= 2 and all(n >= 5 for n in sizes[1:]), sizes
    assert sum(f.rows for f in sink.written) == 12
    assert sum(f.failed_rows for f in sink.written) == 4
    assert sum(f.audio_seconds for f in sink.written) == pytest.approx(SECONDS)
    assert sum(f.segments for f in sink.written) == N_SEGMENTS == 18
    stages: Counter = Counter()
    for f in sink.written:
        stages.update(f.errors_by_stage)
    assert dict(stages) == {"fetch": 1, "decode": 2, "inference": 1}
    assert all(NAME.match(f.name) for f in sink.written)
    assert len({f.name for f in sink.written}) == len(sink.written)


def _check_pairs(sink: TranscriptCommitter, recordings: dict[str, pa.Table], segments: dict[str, pa.Table]) -> None:
    """recordings/ and segments/ hold the same file names, the ones the sink reported; each pair agrees."""
    assert sorted(recordings) == sorted(segments) == sorted(f.name for f in sink.written)
    for f in sink.written:
        recs, segs = recordings[f.name], segments[f.name]
        assert recs.schema.names == RECORDINGS_SCHEMA.names and segs.schema.names == SEGMENTS_SCHEMA.names
        assert recs.num_rows == f.rows and segs.num_rows == f.segments
        assert segs.num_rows == sum(recs["num_segments"].to_pylist())
        assert set(segs["row_id"].to_pylist()) <= set(recs["row_id"].to_pylist())
        assert sum(1 for e in recs["error"].to_pylist() if e) == f.failed_rows


def _check_tables(recordings: pa.Table, segments: pa.Table) -> None:
    """Read back, the two tables equal the input: recordings without the nested column, segments exploded."""
    recordings = recordings.sort_by("row_id")
    expected = _expected_recordings()
    assert recordings.num_rows == 12 and segments.num_rows == 18
    assert {r for r, e in zip(recordings["row_id"].to_pylist(), recordings["error"].to_pylist()) if e} == FAILED
    assert recordings.cast(RECORDINGS_SCHEMA).equals(expected)
    assert recordings.to_pylist() == expected.to_pylist()
    segments = segments.sort_by([("row_id", "ascending"), ("channel", "ascending"), ("segment_index", "ascending")])
    assert segments.cast(SEGMENTS_SCHEMA).equals(_expected_segments())
    assert segments.to_pylist() == _expected_segments().to_pylist()
    for field in RECORDINGS_SCHEMA:  # the stored types are the schema's (nested fields' names aside)
        assert recordings.schema.field(field.name).type.id == field.type.id, field.name


# --- local ---------------------------------------------------------------------------------------------------------


def test_sink_local(ray_session, tmp_path) -> None:
    out = tmp_path / "out"
    sink = commit(_dataset(ray_session), str(out), rows_per_file=5)
    _check_written(sink)

    listing = {t: sorted(os.listdir(out / t)) for t in ("recordings", "segments")}
    assert sorted(os.listdir(out)) == ["recordings", "segments"]
    assert not [n for names in listing.values() for n in names if n.startswith(".") or n.endswith(".tmp")]
    recordings = {n: pq.read_table(out / "recordings" / n) for n in listing["recordings"]}
    segments = {n: pq.read_table(out / "segments" / n) for n in listing["segments"]}
    _check_pairs(sink, recordings, segments)
    _check_tables(pq.read_table(out / "recordings"), pq.read_table(out / "segments"))

    # As an analyst reads them.
    count, failed, seconds, nested = duckdb.sql(
        f"select count(*), count(error), sum(duration), sum(num_segments) from '{out}/recordings/*.parquet'"
    ).fetchall()[0]
    assert (count, failed, nested) == (12, 4, 18)
    assert seconds == pytest.approx(SECONDS)
    per_recording = duckdb.sql(
        f"select r.row_id, count(s.row_id) from '{out}/recordings/*.parquet' r "
        f"left join '{out}/segments/*.parquet' s using (row_id) group by r.row_id order by r.row_id").fetchall()
    assert per_recording == [(r["row_id"], len(r["segments"])) for r in ROWS]
    speakers = duckdb.sql(f"select speaker, count(*) from '{out}/segments/*.parquet' where channel is not null "
                          f"group by speaker order by speaker").fetchall()
    assert speakers == [("agent", 2), ("customer", 1)]
    turns = duckdb.sql(f"select conversation from '{out}/recordings/*.parquet' where row_id = 'r10'").fetchall()[0][0]
    assert [(t["speaker"], t["text"]) for t in turns] == [("agent", "hello"), ("customer", "hi"), ("agent", "bye")]

    assert committed_row_ids(str(out)) == {r["row_id"] for r in ROWS}
    assert clean_uncommitted(OutputStore.at(str(out)), runs={RUN_ID}) == []  # a finished write leaves nothing to clean


def test_sink_all_failed_rows_write_an_empty_segments_file(ray_session, tmp_path) -> None:
    rows = [r for r in ROWS if not r["segments"]]
    out = tmp_path / "out"
    sink = commit(ray_session.data.from_arrow(to_table(rows, ASSEMBLED_SCHEMA)), str(out))
    assert [(f.rows, f.failed_rows, f.audio_seconds, f.segments, f.errors_by_stage) for f in sink.written] == [
        (3, 3, 0.0, 0, {"fetch": 1, "decode": 2})]
    name = sink.written[0].name
    assert os.listdir(out / "segments") == os.listdir(out / "recordings") == [name]
    empty = pq.read_table(out / "segments" / name)
    assert empty.num_rows == 0 and empty.schema.names == SEGMENTS_SCHEMA.names
    assert pq.read_table(out / "recordings" / name)["row_id"].to_pylist() == ["r02", "r05", "r09"]


def test_sink_empty_dataset_writes_nothing(ray_session, tmp_path) -> None:
    out = tmp_path / "empty"
    sink = commit(ray_session.data.from_arrow(to_table(ROWS[:1], ASSEMBLED_SCHEMA)).limit(0), str(out))
    assert sink.written == []
    assert not out.exists() or [p for p in out.rglob("*") if p.is_file()] == []


# --- S3 -------------------------------------------------------------------------------------------------------------


def _read_s3(s3fs_client, folder: str) -> dict[str, pa.Table]:
    keys = s3fs_client.ls(folder, refresh=True)
    return {k.rsplit("/", 1)[1]: pq.read_table(io.BytesIO(s3fs_client.cat_file(k))) for k in keys}


def test_sink_s3(ray_session, s3fs_client, bucket) -> None:
    out = f"s3://{bucket}/out/"
    sink = commit(_dataset(ray_session), out, rows_per_file=5)
    _check_written(sink)

    assert sorted(k.rsplit("/", 1)[1] for k in s3fs_client.ls(f"{bucket}/out", refresh=True)) == [
        "recordings", "segments"]
    recordings = _read_s3(s3fs_client, f"{bucket}/out/recordings")
    segments = _read_s3(s3fs_client, f"{bucket}/out/segments")
    assert not [n for n in (*recordings, *segments) if n.startswith(".") or n.endswith(".tmp")]
    _check_pairs(sink, recordings, segments)
    _check_tables(pa.concat_tables(recordings.values()), pa.concat_tables(segments.values()))

    assert committed_row_ids(out) == {r["row_id"] for r in ROWS}
    assert clean_uncommitted(OutputStore.at(out), runs={RUN_ID}) == []


# --- write_parquet, clean_uncommitted, committed_row_ids ------------------------------------------------------------


def _ids(*row_ids: str) -> pa.Table:
    return pa.table({"row_id": pa.array(row_ids, pa.string())})


def test_write_parquet_local_leaves_no_temporary(tmp_path) -> None:
    folder = tmp_path / "deep" / "recordings"
    write_parquet(_ids("a", "b"), str(folder), "part-1.parquet")
    assert os.listdir(folder) == ["part-1.parquet"]
    assert pq.read_table(folder / "part-1.parquet")["row_id"].to_pylist() == ["a", "b"]
    write_parquet(_ids("c"), str(folder), "part-1.parquet")  # a rewrite replaces the file whole
    assert os.listdir(folder) == ["part-1.parquet"]
    assert pq.read_table(folder / "part-1.parquet")["row_id"].to_pylist() == ["c"]


def _part(seq: int, run_id: str = RUN_ID) -> str:
    return OutputStore.file_name(run_id, seq)


def test_clean_uncommitted_local(tmp_path) -> None:
    out = tmp_path / "out"
    write_parquet(_ids("a", "b"), str(out / "segments"), _part(1))
    write_parquet(_ids("a", "b"), str(out / "recordings"), _part(1))  # a committed pair
    write_parquet(_ids("c"), str(out / "segments"), _part(2))  # a task died before its commit
    (out / "segments" / f".{_part(3)}.tmp").write_bytes(b"half a file")
    (out / "recordings" / f".{_part(4)}.tmp").write_bytes(b"half a file")
    # Not provably ours: a user's file, a file of a run with no record here, a hidden file of another tool.
    write_parquet(_ids("u"), str(out / "segments"), "mine.parquet")
    write_parquet(_ids("v"), str(out / "segments"), _part(5, "20250101T000000Z-ffffff"))
    (out / "segments" / ".other.parquet.tmp").write_bytes(b"someone else's")

    deleted = clean_uncommitted(OutputStore.at(str(out)), runs={RUN_ID})
    assert sorted(deleted) == sorted([f"{out}/segments/{_part(2)}", f"{out}/segments/.{_part(3)}.tmp",
                                      f"{out}/recordings/.{_part(4)}.tmp"])
    assert sorted(os.listdir(out / "segments")) == sorted([_part(1), "mine.parquet", _part(5, "20250101T000000Z-ffffff"),
                                                           ".other.parquet.tmp"])
    assert os.listdir(out / "recordings") == [_part(1)]
    assert clean_uncommitted(OutputStore.at(str(out)), runs={RUN_ID}) == []  # nothing left to do
    assert committed_row_ids(str(out)) == {"a", "b"}


def test_committed_row_ids_local(tmp_path) -> None:
    out = tmp_path / "out"
    assert committed_row_ids(str(out)) == set()  # no output yet
    assert clean_uncommitted(OutputStore.at(str(out)), runs={RUN_ID}) == []
    write_parquet(_ids("a", "b"), str(out / "recordings"), "p1.parquet")
    write_parquet(_ids("c"), str(out / "recordings"), "p2.parquet")
    write_parquet(_ids("z"), str(out / "segments"), "p3.parquet")  # segments alone commit nothing
    (out / "recordings" / "_hidden.parquet").write_bytes(b"not read")
    (out / "recordings" / ".p4.parquet.tmp").write_bytes(b"not read")
    assert committed_row_ids(str(out)) == {"a", "b", "c"}
    assert committed_row_ids(str(out) + "/") == {"a", "b", "c"}


def test_clean_uncommitted_and_committed_row_ids_s3(s3fs_client, bucket) -> None:
    out = f"s3://{bucket}/out"
    assert committed_row_ids(out) == set()
    write_parquet(_ids("a", "b"), f"{out}/segments", _part(1))
    write_parquet(_ids("a", "b"), f"{out}/recordings", _part(1))
    write_parquet(_ids("c"), f"{out}/segments", _part(2))
    s3fs_client.pipe(f"{bucket}/out/segments/.{_part(3)}.tmp", b"half a file")

    deleted = clean_uncommitted(OutputStore.at(out), runs={RUN_ID})
    assert sorted(deleted) == [f"{bucket}/out/segments/.{_part(3)}.tmp", f"{bucket}/out/segments/{_part(2)}"]
    assert [k.rsplit("/", 1)[1] for k in s3fs_client.ls(f"{bucket}/out/segments", refresh=True)] == [_part(1)]
    assert [k.rsplit("/", 1)[1] for k in s3fs_client.ls(f"{bucket}/out/recordings", refresh=True)] == [_part(1)]
    assert committed_row_ids(out) == {"a", "b"}


def test_committed_row_ids_sees_files_written_by_ray_tasks(ray_session, bucket) -> None:
    out = f"s3://{bucket}/out"
    commit(ray_session.data.from_arrow(to_table(ROWS[:4], ASSEMBLED_SCHEMA)), out)
    assert committed_row_ids(out) == {"r00", "r01", "r02", "r03"}  # lists recordings/ (and caches the listing)
    second = commit(ray_session.data.from_arrow(to_table(ROWS[4:6], ASSEMBLED_SCHEMA)), out,
                    run_id="20260101T000001Z-def456")  # a second run: its own file names
    assert sum(f.rows for f in second.written) == 2
    assert committed_row_ids(out) == {"r00", "r01", "r02", "r03", "r04", "r05"}


# --- commits by age -------------------------------------------------------------------------------------------------


def test_rows_are_committed_by_age_while_the_dataset_still_runs(ray_session, tmp_path) -> None:
    """With a row count never reached, commits still happen once the oldest waiting block is commit_seconds old:
    slow rows are never all held until the end."""
    out = tmp_path / "out"
    table = to_table(ROWS, ASSEMBLED_SCHEMA)
    blocks = ray_session.data.from_arrow([table.slice(k, 2) for k in range(0, 12, 2)])
    sink = commit(blocks, str(out), rows_per_file=1_000_000, commit_seconds=1.0, pause=0.6)
    assert len(sink.written) >= 2  # one file per second or so, not one at the end
    assert sum(f.rows for f in sink.written) == 12
    assert committed_row_ids(str(out)) == {r["row_id"] for r in ROWS}
