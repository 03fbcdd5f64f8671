"""Tests for connectors.resume (the index of what an output holds) and connectors.output_store (where things live)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from connectors.output_store import OutputStore
from connectors.parquet_sink import write_parquet
from connectors.resume import DONE, NEW, REPLACE, build_index, hash_bytes, id_bytes, remove_rows

A, B, C, D = ("a" * 20, "b" * 20, "c" * 20, "d" * 20)


def _commit(out, name: str, rows: list[tuple], run_id: str = "run1") -> None:
    """A committed pair: recordings (row_id, source_hash, error, manifest, run_id) and one segment per row."""
    ids = [r[0] for r in rows]
    write_parquet(pa.table({"row_id": ids, "segment_index": list(range(len(ids)))}), f"{out}/segments", name)
    write_parquet(pa.table({"row_id": ids, "source_hash": [r[1] for r in rows], "error": [r[2] for r in rows],
                            "manifest": [r[3] for r in rows], "run_id": [run_id] * len(rows)}),
                  f"{out}/recordings", name)


def test_status_new_done_replace(tmp_path) -> None:
    out = str(tmp_path)
    _commit(out, "part-1.parquet", [(A, "1" * 12, None, "/m1"), (B, "2" * 12, "boom", "/m1"), (C, "3" * 12, None, "/m2")])
    index = build_index(OutputStore.at(out))
    ids = id_bytes([A, A, B, C, D])
    hashes = hash_bytes(["1" * 12, "9" * 12, "2" * 12, "3" * 12, "4" * 12])
    # A as it was: done; A edited: replace; B failed: retried (replace); C done; D new.
    assert index.status(ids, hashes).tolist() == [DONE, REPLACE, REPLACE, DONE, NEW]
    no_retry = build_index(OutputStore.at(out), retry_failed=False)
    assert no_retry.status(ids, hashes).tolist() == [DONE, REPLACE, DONE, DONE, NEW]
    redo = build_index(OutputStore.at(out), redo_runs=frozenset({"run1"}))
    assert redo.status(ids, hashes).tolist() == [REPLACE, REPLACE, REPLACE, REPLACE, NEW]
    assert index.runs == {"run1"}
    assert sorted(index.ids_of_manifest("/m1").tolist()) == sorted(id_bytes([A, B]).tolist())
    assert len(index.ids_of_manifest("/nowhere")) == 0


def test_the_later_file_wins_and_older_copies_are_stale_then_removed(tmp_path) -> None:
    out = str(tmp_path)
    _commit(out, "part-run1-000000.parquet", [(A, "1" * 12, None, "/m"), (B, "2" * 12, None, "/m")], "run1")
    _commit(out, "part-run2-000000.parquet", [(A, "5" * 12, None, "/m")], "run2")
    index = build_index(OutputStore.at(out))
    assert len(index) == 2
    assert index.status(id_bytes([A]), hash_bytes(["5" * 12])).tolist() == [DONE]  # the newer copy counts
    stale = {f: set(ids) for f, ids in index.stale.items()}
    assert stale == {f"{tmp_path}/recordings/part-run1-000000.parquet": {A}}
    assert remove_rows(OutputStore.at(out), stale) == 1
    assert pq.read_table(f"{out}/recordings/part-run1-000000.parquet")["row_id"].to_pylist() == [B]
    assert pq.read_table(f"{out}/segments/part-run1-000000.parquet")["row_id"].to_pylist() == [B]
    assert build_index(OutputStore.at(out)).stale == {}
    # Removing every row of a pair deletes the pair.
    assert remove_rows(OutputStore.at(out), {f"{out}/recordings/part-run1-000000.parquet": {B}}) == 1
    layout = OutputStore.at(out)
    assert [p.rsplit("/", 1)[-1] for p in layout.committed_files("recordings")[1]] == ["part-run2-000000.parquet"]
    assert [p.rsplit("/", 1)[-1] for p in layout.committed_files("segments")[1]] == ["part-run2-000000.parquet"]


def test_an_empty_output_and_an_output_written_before_source_hash_existed(tmp_path) -> None:
    assert len(build_index(OutputStore.at(str(tmp_path / "nothing")))) == 0
    write_parquet(pa.table({"row_id": [A], "error": pa.array([None], pa.string())}), f"{tmp_path}/recordings",
                  "part-old.parquet")
    index = build_index(OutputStore.at(str(tmp_path)))
    assert index.status(id_bytes([A]), hash_bytes(["1" * 12])).tolist() == [REPLACE]


def test_index_ids_are_fixed_width_bytes_about_17_bytes_a_row(tmp_path) -> None:
    ids = [f"{i:020x}" for i in range(1000)]
    _commit(str(tmp_path), "part-1.parquet", [(i, "0" * 12, None, "/m") for i in ids])
    index = build_index(OutputStore.at(str(tmp_path)))
    assert index.ids.dtype == np.dtype("S10") and index.hashes.dtype == np.dtype("S6")
    per_row = (index.ids.nbytes + index.hashes.nbytes + index.redo.nbytes + index.manifest_code.nbytes) / len(index)
    assert per_row <= 21
    assert (index.ids[:-1] < index.ids[1:]).all()  # sorted, unique


def test_layout_names_sort_in_commit_order() -> None:
    layout = OutputStore.at("s3://bucket/out/")
    assert layout.folder("recordings") == "s3://bucket/out/recordings"
    assert layout.run_record_path("r1") == "s3://bucket/out/runs/r1.json" and layout.lease_path == "s3://bucket/out/_lease.json"
    names = [OutputStore.file_name("20260101T000000Z-aaaaaa", 2), OutputStore.file_name("20260101T000000Z-aaaaaa", 10),
             OutputStore.file_name("20260102T000000Z-000000", 0)]
    assert names == sorted(names)
    assert OutputStore.temporary_name(names[0]).startswith(".")
