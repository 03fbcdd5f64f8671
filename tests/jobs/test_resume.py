"""Resume and atomic output: a rerun over the same output_path writes only what is not there yet; a driver killed
with SIGKILL mid-run leaves nothing a reader would mistake for output, and the rerun ends with every row exactly once.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.transcribe import plan, run
from tests.jobs.jobs_helpers import (
    PYTHON, REPO, clips, duplicate_segments, pids_in_session, private_ray_tmpdir, read_dataset, recordings_counts,
    remove_tree, stop_session, subprocess_env, visible_files, wait_for, write_manifest,
)


def parquet_names(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.parquet")}


@pytest.mark.slow
def test_rerun_skips_what_is_done_and_an_appended_row_is_the_only_work(ray_session, tiny_model, tmp_path):
    entries = clips(tmp_path / "audio", 4)
    manifest = write_manifest(tmp_path / "m.jsonl", entries[:3])
    out = tmp_path / "out"
    args = [f"model_path={tiny_model}", f"dataset_manifest={manifest}", f"output_path={out}"]

    first = run(plan(args))
    assert (first.rows, first.skipped_rows, first.failed_rows) == (3, 0, 0)
    files_after_first = parquet_names(out / "recordings")
    ids_after_first = recordings_counts(out)

    # What a crashed write task leaves behind: a half-written file under its hidden temporary name, and a segments
    # file whose recordings partner (the commit) was never written. Readers skip the first; a rerun removes both.
    committed = sorted((out / "recordings").glob("*.parquet"))[0]
    # (named as a job names its files, by a run recorded here: only such files are provably the job's own)
    half = out / "recordings" / f".part-{first.run_id}-000098.parquet.tmp"
    half.write_bytes(committed.read_bytes()[: committed.stat().st_size // 2])
    segments = pq.read_table(out / "segments" / committed.name)
    orphan = out / "segments" / f"part-{first.run_id}-000099.parquet"
    pq.write_table(segments.set_column(0, "row_id", pa.array(["never-committed"] * segments.num_rows)), orphan)
    assert read_dataset(out / "recordings").num_rows == 3  # pyarrow skips the hidden file
    assert duckdb.sql(f"select count(*) from read_parquet('{out}/recordings/*.parquet')").fetchall() == [(3,)]
    assert {p.name for p in visible_files(out / "recordings")} == files_after_first  # only committed files

    # The same job again: nothing to do, nothing written, every row counted as already done; the debris is gone.
    second = run(plan(args))
    assert (second.rows, second.skipped_rows, second.files) == (0, 3, 0)
    assert not half.exists() and not orphan.exists()
    assert parquet_names(out / "recordings") == files_after_first == parquet_names(out / "segments")
    assert recordings_counts(out) == ids_after_first

    # A row appended to the manifest: the next run does that row and only that one.
    write_manifest(manifest, entries)
    third = run(plan(args))
    assert (third.rows, third.skipped_rows, third.failed_rows) == (1, 3, 0)
    new_files = parquet_names(out / "recordings") - files_after_first
    assert len(new_files) == 1
    new_rows = pq.read_table(out / "recordings" / new_files.pop()).to_pylist()
    assert [(r["line"], r["audio_filepath"], r["run_id"]) for r in new_rows] == [
        (4, entries[3]["audio_filepath"], third.run_id)]
    counts = recordings_counts(out)
    assert len(counts) == 4 and set(counts.values()) == {1}
    assert set(ids_after_first) < set(counts)  # the first rows kept their ids: the manifest's lines did not change
    assert duplicate_segments(out) == []
    # One run record per run, with the summary of that run.
    records = {json.loads(p.read_text())["run_id"]: json.loads(p.read_text()) for p in (out / "runs").glob("*.json")}
    assert {r: rec["summary"]["rows"] for r, rec in records.items()} == {
        first.run_id: 3, second.run_id: 0, third.run_id: 1}
    assert records[third.run_id]["summary"]["skipped_rows"] == 3


@pytest.mark.slow
def test_driver_killed_mid_run_then_rerun_writes_every_row_exactly_once(ray_session, tiny_model, tmp_path):
    """`python -m jobs.transcribe` with one recording per work block and one row per file (so the job commits several
    files, one after the other) over 6 clips, SIGKILLed as soon as the first committed file appears; then the same
    job again."""
    manifest = write_manifest(tmp_path / "m.jsonl", clips(tmp_path / "audio", 6))
    out = tmp_path / "out"
    args = [f"model_path={tiny_model}", f"dataset_manifest={manifest}", f"output_path={out}", "compute.block_rows=1",
            "output.rows_per_file=1"]
    ray_tmp = private_ray_tmpdir()
    log = (tmp_path / "killed-run.log").open("w")
    driver = subprocess.Popen([PYTHON, "-m", "jobs.transcribe", *args], cwd=REPO,
                              env=subprocess_env(RAY_TMPDIR=ray_tmp), stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        wait_for(lambda: list((out / "recordings").glob("part-*.parquet")) or driver.poll() is not None,
                 timeout=240, interval=0.05, what="the first committed file")
        assert driver.poll() is None, (tmp_path / "killed-run.log").read_text()[-2000:]  # ended before the kill
        driver.send_signal(signal.SIGKILL)
        assert driver.wait(10) == -signal.SIGKILL
        # The embedded Ray of the killed driver goes with it, every process of it (the workers that write output,
        # and the node's agents, which a SIGKILLed driver cannot stop itself: jobs/reaper.py does).
        wait_for(lambda: not pids_in_session(driver.pid), timeout=60,
                 what="every process of the killed driver's Ray to exit")
    finally:
        stop_session(driver)
        log.close()
        remove_tree(ray_tmp)

    # What a reader sees now: only whole Parquet files under visible names, and the folders read cleanly.
    for path in visible_files(out):
        assert path.suffix == ".parquet" or path.parent.name == "runs", path
        if path.suffix == ".parquet":
            pq.read_metadata(path)  # a half-written file has no footer: this raises
    committed = read_dataset(out / "recordings")
    read_dataset(out / "segments")
    assert 1 <= committed.num_rows < 6
    assert len(set(committed["row_id"].to_pylist())) == committed.num_rows
    statuses = [json.loads(p.read_text())["status"] for p in (out / "runs").glob("*.json")]
    assert statuses == ["running"]  # the killed run never finished

    # The same job again, in this process: it skips what was committed and writes the rest.
    summary = run(plan(args))
    assert summary.skipped_rows == committed.num_rows
    assert summary.rows == 6 - committed.num_rows and summary.failed_rows == 0

    counts = recordings_counts(out)
    assert len(counts) == 6 and set(counts.values()) == {1}, counts
    assert duplicate_segments(out) == []
    orphans = duckdb.sql(
        f"select count(*) from read_parquet('{out}/segments/*.parquet') s "
        f"anti join read_parquet('{out}/recordings/*.parquet') r using (row_id)").fetchall()[0][0]
    assert orphans == 0  # no segment without its recording (an uncommitted pair was cleaned up)
    assert parquet_names(out / "segments") == parquet_names(out / "recordings")
    hidden = [p for p in (out / "recordings").iterdir() if p.name.startswith(".")] + \
             [p for p in (out / "segments").iterdir() if p.name.startswith(".")]
    assert hidden == []  # temporary files of the killed run are gone
    assert read_dataset(out / "recordings").num_rows == 6
