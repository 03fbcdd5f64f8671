"""SIGTERM (what `ray job stop` and Kubernetes send a driver) and SIGINT stop the job cleanly: what was finished is
committed, the run record says `stopped`, the lease is released, the exit code is 128 + the signal; a rerun resumes
and every row ends up in the output exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.jobs.jobs_helpers import (clips, private_ray_tmpdir, recordings_counts, remove_tree, stop_session,
                                     subprocess_env, wait_for, write_manifest)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_job_cleanly_and_a_rerun_resumes(tmp_path, signum) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", clips(tmp_path / "audio", 48, seconds=2.0))
    out = tmp_path / "out"
    # A slow "accelerator" (sleeps padded seconds / 4 per batch) and small blocks that commit often, so that the
    # signal arrives while work is in flight and after something was committed.
    args = [sys.executable, "-m", "jobs.transcribe", "model_path=/unused.nemo",
            "model_adapter=benchmarks.adapters:SimulatedAccelerator", f"dataset_manifest={manifest}",
            f"output_path={out}", "compute.block_rows=2", "output.commit_seconds=1", "output.rows_per_file=2",
            "output.progress_seconds=0"]
    tmpdir = private_ray_tmpdir()
    env = subprocess_env(RAY_TMPDIR=tmpdir, SIM_RTFX="4")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        wait_for(lambda: (out / "recordings").exists() and any((out / "recordings").glob("part-*.parquet")),
                 timeout=240, what="a first commit")
        os.kill(proc.pid, signum)  # the driver alone, as `ray job stop` and Kubernetes signal it
        output, _ = proc.communicate(timeout=120)
    finally:
        stop_session(proc)
        remove_tree(tmpdir)
    assert proc.returncode == 128 + signum, output
    assert f"stopped     by {signal.Signals(signum).name} before the end" in output
    assert "Traceback" not in output, output
    (record_path,) = (out / "runs").glob("*.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "stopped" and record["summary"]["stopped_by"] == signal.Signals(signum).name
    assert not (out / "_lease.json").exists()  # released
    first = recordings_counts(out)
    assert 0 < len(first) < 48 and set(first.values()) == {1}
    assert record["summary"]["rows"] == len(first)

    rerun = subprocess.run(args, env=subprocess_env(SIM_RTFX="1000"), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    counts = recordings_counts(out)
    assert len(counts) == 48 and set(counts.values()) == {1}
    assert f"{len(first)} already done" in rerun.stdout
