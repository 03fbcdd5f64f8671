"""Never touch what is not ours: the job marks its output folder first, refuses a non-empty folder that is not one of
its outputs (exit 2, one line, nothing written or deleted), adopts an output written before the marker existed, and
cleans after a crash only files it can prove a job of its own wrote."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.layout import MARKER
from jobs.transcribe import main
from tests.jobs.jobs_helpers import clips, recordings_counts, write_manifest


@pytest.fixture()
def job(tmp_path, tiny_model):
    manifest = write_manifest(tmp_path / "m.jsonl", clips(tmp_path / "audio", 2))
    out = tmp_path / "out"
    return {"out": out, "args": [f"model_path={tiny_model}", f"dataset_manifest={manifest}", f"output_path={out}"]}


def _tree(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_of_someone_elses_files_is_refused_and_left_as_it_was(ray_session, job, capsys) -> None:
    out = job["out"]
    (out / "segments").mkdir(parents=True)
    pq.write_table(pa.table({"id": [1, 2]}), out / "segments" / "theirs.parquet")
    (out / "recordings").mkdir()
    pq.write_table(pa.table({"other_tool_column": ["x"]}), out / "recordings" / "part-0.parquet")
    (out / "notes.txt").write_text("my notes")
    before = _tree(out)
    assert main(job["args"]) == 2
    err = capsys.readouterr().err
    assert f"error: output_path {out} is not empty and is not a transcription output (no {MARKER}" in err
    assert "Traceback" not in err
    assert _tree(out) == before  # nothing written, nothing deleted


def test_an_output_of_ours_keeps_a_users_files_and_a_rerun_adopts_an_unmarked_output(ray_session, job) -> None:
    out = job["out"]
    assert main(job["args"]) == 0
    assert json.loads((out / MARKER).read_text())["tool"] == "nemotron-batch"
    # A user's own files inside our tables' folders: a crash clean-up must not take them for leftovers.
    pq.write_table(pa.table({"row_id": ["mine"]}), out / "segments" / "mine.parquet")
    (out / "segments" / ".mine.parquet.tmp").write_bytes(b"theirs")
    stray = out / "segments" / "part-20250101T000000Z-ffffff-000000.parquet"  # our name, a run with no record
    pq.write_table(pa.table({"row_id": ["stray"]}), stray)
    assert main(job["args"]) == 0
    assert (out / "segments" / "mine.parquet").exists() and (out / "segments" / ".mine.parquet.tmp").exists()
    assert stray.exists()
    # An output written before the marker existed (only our tables and run records) is ours: adopted, resumed.
    (out / MARKER).unlink()
    for extra in ("mine.parquet", ".mine.parquet.tmp", stray.name):
        (out / "segments" / extra).unlink()
    assert main(job["args"]) == 0
    assert (out / MARKER).exists()
    assert set(recordings_counts(out).values()) == {1} and len(recordings_counts(out)) == 2


def test_an_empty_folder_and_a_lease_alone_are_fine(ray_session, job, tmp_path) -> None:
    out = job["out"]
    out.mkdir()
    assert main(job["args"]) == 0
    shutil.rmtree(out)
    out.mkdir()
    (out / "_lease.json").write_text("{}")  # a job of ours killed right after taking the lease
    assert main(job["args"]) == 0
    assert len(recordings_counts(out)) == 2
