"""Reruns as users mean them: a row is its manifest and what it asks to transcribe, not the bytes of its line.

Each test runs the real job twice or more over one output folder and reads the plain Parquet folders back as an
analyst would: whatever the history, every input row is there exactly once when a job has ended.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time

import duckdb
import pytest

from connectors.lease import Lease, LeaseRecord, _write, read_lease
from connectors.output_store import OutputStore
from jobs.transcribe import main, plan, run
from tests.jobs.jobs_helpers import clips, duplicate_segments, recordings_counts, write_manifest

pytestmark = pytest.mark.slow


def _rows(out) -> dict[int, dict]:
    rel = duckdb.sql(f"select * from read_parquet('{out}/recordings/*.parquet')")
    return {r["line"]: r for r in (dict(zip(rel.columns, v)) for v in rel.fetchall())}


def _once(out, expected: int) -> None:
    counts = recordings_counts(out)
    assert len(counts) == expected and set(counts.values()) == {1}, counts
    assert duplicate_segments(out) == []
    orphans = duckdb.sql(f"select count(*) from read_parquet('{out}/segments/*.parquet') s anti join "
                         f"read_parquet('{out}/recordings/*.parquet') r using (row_id)").fetchall()[0][0]
    assert orphans == 0


@pytest.fixture()
def job(tmp_path, tiny_model):
    entries = clips(tmp_path / "audio", 4)
    for i, entry in enumerate(entries):
        entry["text"] = f"reference {i}"
    manifest = write_manifest(tmp_path / "m.jsonl", entries)
    out = tmp_path / "out"
    args = [f"model_path={tiny_model}", f"dataset_manifest={manifest}", f"output_path={out}"]
    return {"entries": entries, "manifest": manifest, "out": out, "args": args}


def test_an_edited_reference_replaces_its_row_and_nothing_else_is_redone(ray_session, job):
    first = run(plan(job["args"]))
    assert first.rows == 4
    before = _rows(job["out"])
    job["entries"][1]["text"] = "a corrected reference"
    write_manifest(job["manifest"], job["entries"])
    second = run(plan(job["args"]))
    assert (second.rows, second.skipped_rows, second.replaced_rows, second.removed_rows) == (1, 3, 1, 1)
    after = _rows(job["out"])
    _once(job["out"], 4)
    assert after[2]["reference_text"] == "a corrected reference" and after[2]["run_id"] == second.run_id
    assert after[2]["row_id"] == before[2]["row_id"]  # the same row, replaced
    assert {after[i]["run_id"] for i in (1, 3, 4)} == {first.run_id}


def test_the_same_manifest_listed_twice_or_spelled_another_way_is_read_once(ray_session, job):
    manifest = job["manifest"]
    other_spelling = f"{manifest.parent}/audio/../{manifest.name}"
    args = [a for a in job["args"] if not a.startswith("dataset_manifest=")]
    summary = run(plan(args + [f"dataset_manifest={manifest},{other_spelling},{manifest}"]))
    assert summary.rows == 4
    _once(job["out"], 4)
    again = run(plan(args + [f"dataset_manifest={other_spelling}"]))
    assert (again.rows, again.skipped_rows) == (0, 4)


def test_failed_rows_are_retried_on_a_rerun_unless_told_not_to(ray_session, job, tmp_path):
    missing = tmp_path / "audio" / "clip-03.wav"
    kept = tmp_path / "clip-03.wav"
    shutil.move(missing, kept)
    first = run(plan(job["args"]))
    assert first.failed_rows == 1 and _rows(job["out"])[4]["error_stage"] == "fetch"
    no_retry = run(plan(job["args"] + ["resume.retry_failed=false"]))
    assert (no_retry.rows, no_retry.skipped_rows) == (0, 4)
    shutil.move(kept, missing)  # the file is back
    retried = run(plan(job["args"]))
    assert (retried.rows, retried.skipped_rows, retried.replaced_rows, retried.failed_rows) == (1, 3, 1, 0)
    rows = _rows(job["out"])
    _once(job["out"], 4)
    assert rows[4]["error"] is None and rows[4]["text"] is not None


def test_other_transcript_settings_refuse_then_redo_or_keep(ray_session, job, capsys):
    first = run(plan(job["args"]))
    code = main(job["args"] + ["att_context_size=[56,0]"])
    err = capsys.readouterr().err
    assert code == 2
    assert "att_context_size=[56, 13] (now [56, 0])" in err and "resume.on_settings_change=redo" in err
    assert {r["run_id"] for r in _rows(job["out"]).values()} == {first.run_id}  # nothing touched
    kept = run(plan(job["args"] + ["att_context_size=[56,0]", "resume.on_settings_change=keep"]))
    assert (kept.rows, kept.skipped_rows) == (0, 4)
    redone = run(plan(job["args"] + ["att_context_size=[56,0]", "resume.on_settings_change=redo"]))
    assert (redone.rows, redone.replaced_rows, redone.removed_rows) == (4, 4, 4)
    rows = _rows(job["out"])
    _once(job["out"], 4)
    assert {r["run_id"] for r in rows.values()} == {redone.run_id}
    assert all(r["att_context_size"] == [56, 0] for r in rows.values())
    # The same settings once more: everything is done (the older run's rows are gone, so nothing differs).
    assert run(plan(job["args"] + ["att_context_size=[56,0]"])).skipped_rows == 4


def test_an_edited_audio_path_leaves_no_orphan(ray_session, job, tmp_path):
    run(plan(job["args"]))
    shutil.copy(tmp_path / "audio" / "clip-00.wav", tmp_path / "audio" / "renamed.wav")
    job["entries"][0]["audio_filepath"] = "audio/renamed.wav"
    write_manifest(job["manifest"], job["entries"])
    second = run(plan(job["args"]))
    assert (second.rows, second.skipped_rows, second.removed_rows) == (1, 3, 1)
    rows = _rows(job["out"])
    _once(job["out"], 4)
    assert rows[1]["audio_filepath"] == "audio/renamed.wav"


# --- two jobs, one output ------------------------------------------------------------------------------------------


def test_a_second_job_refuses_while_the_first_holds_the_output(ray_session, job, capsys):
    job["out"].mkdir()
    holder = LeaseRecord(run_id="20260101T000000Z-other", host="another-host", pid=1, renewed=time.time())
    _write(OutputStore.at(str(job["out"])), holder)
    code = main(job["args"])
    err = capsys.readouterr().err
    assert code == 2
    assert "output_path is in use by run 20260101T000000Z-other (host another-host, pid 1" in err
    assert not (job["out"] / "recordings").exists()  # nothing of the holder's was touched, nothing written
    assert read_lease(OutputStore.at(str(job["out"]))) == holder


def test_a_lease_left_by_a_dead_job_is_taken_over(ray_session, job):
    job["out"].mkdir()
    # Expired (another host, renewed long ago) and dead (this host, no such process): both are taken over.
    _write(OutputStore.at(str(job["out"])), LeaseRecord("20260101T000000Z-gone", "another-host", 1, time.time() - 10_000))
    assert run(plan(job["args"] + ["output.lease_seconds=60"])).rows == 4
    assert read_lease(OutputStore.at(str(job["out"]))) is None  # released at the end
    dead_pid = _dead_pid()
    _write(OutputStore.at(str(job["out"])), LeaseRecord("20260101T000000Z-dead", socket.gethostname(), dead_pid, time.time()))
    assert run(plan(job["args"])).skipped_rows == 4


def _dead_pid() -> int:
    pid = os.getpid() + 100_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


def test_lease_is_renewed_while_held_and_refuses_a_second_holder(tmp_path):
    os.makedirs(tmp_path / "out")
    out = OutputStore.at(str(tmp_path / "out"))
    first = Lease(out, "run-a", lease_seconds=8)
    first.acquire()
    try:
        renewed = read_lease(out).renewed
        time.sleep(2.5)  # renewed every lease_seconds / 4
        assert read_lease(out).renewed > renewed
        with pytest.raises(Exception, match="output_path is in use by run run-a"):
            Lease(out, "run-b", lease_seconds=8).acquire()
    finally:
        first.release()
    assert read_lease(out) is None
    second = Lease(out, "run-b", lease_seconds=8)
    second.acquire()
    second.release()


def test_run_records_say_running_then_finished(ray_session, job):
    summary = run(plan(job["args"]))
    record = json.loads((job["out"] / "runs" / f"{summary.run_id}.json").read_text())
    assert record["status"] == "finished" and record["summary"]["rows"] == 4
    assert record["transcript_settings"]["att_context_size"] == [56, 13]
    assert record["transcript_settings"]["target_lang"] == "auto"



def test_a_checkpoint_replaced_under_the_same_path_is_another_model(ray_session, job, tmp_path, capsys):
    from pipeline.models.tiny import TinyModelSpec, build_checkpoint

    model = tmp_path / "model.nemo"
    build_checkpoint(model, TinyModelSpec(seed=1))
    args = [a for a in job["args"] if not a.startswith("model_path=")] + [f"model_path={model}"]
    first = run(plan(args))
    fingerprints = {r["model_fingerprint"] for r in _rows(job["out"]).values()}
    assert len(fingerprints) == 1 and fingerprints.pop().startswith("blake2b:")
    build_checkpoint(model, TinyModelSpec(seed=2))  # a new .nemo copied over the old one
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "model_fingerprint=" in err and "resume.on_settings_change=redo" in err
    assert {r["run_id"] for r in _rows(job["out"]).values()} == {first.run_id}  # nothing touched
    redone = run(plan(args + ["resume.on_settings_change=redo"]))
    assert redone.replaced_rows == 4
    _once(job["out"], 4)
    assert len({r["model_fingerprint"] for r in _rows(job["out"]).values()}) == 1


def test_a_file_renamed_under_audio_dir_replaces_its_old_row(ray_session, tiny_model, tmp_path):
    audio = tmp_path / "calls"
    clips(audio, 3)
    out = tmp_path / "out"
    args = [f"model_path={tiny_model}", f"audio_dir={audio}", f"output_path={out}"]
    assert run(plan(args)).rows == 3
    (audio / "clip-01.wav").rename(audio / "clip-01-renamed.wav")
    again = run(plan(args))
    assert (again.rows, again.skipped_rows, again.removed_rows) == (1, 2, 1)
    rows = duckdb.sql(f"select audio_url, manifest from read_parquet('{out}/recordings/*.parquet')").fetchall()
    assert sorted(p.rsplit("/", 1)[-1] for p, _ in rows) == ["clip-00.wav", "clip-01-renamed.wav", "clip-02.wav"]
    assert {m for _, m in rows} == {str(audio)}
    _once(out, 3)
