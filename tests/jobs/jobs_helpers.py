"""Shared helpers of the fault, resume, bad-input, secrets and cluster tests (not a test module)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow.dataset as ds

from tests.audio_factory import write_tone

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_manifest(path: Path, lines: list) -> Path:
    """JSON-lines: dicts are dumped, str lines written as they are, bytes lines written raw."""
    data = b"".join((x if isinstance(x, bytes) else (x if isinstance(x, str) else json.dumps(x)).encode()) + b"\n"
                    for x in lines)
    path.write_bytes(data)
    return path


def clips(folder: Path, n: int, *, seconds: float = 1.0, step: float = 0.25) -> list[dict]:
    """`n` short WAV clips in `folder`; their manifest entries (relative paths, a `clip` number as metadata)."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(n):
        write_tone(folder / f"clip-{i:02d}.wav", seconds + step * (i % 4))
        entries.append({"audio_filepath": f"{folder.name}/clip-{i:02d}.wav", "clip": i})
    return entries


def recordings_counts(output: Path | str) -> dict[str, int]:
    """row_id -> how many times it is in recordings/ (DuckDB over every committed file)."""
    rows = duckdb.sql(f"select row_id, count(*) from read_parquet('{output}/recordings/*.parquet') "
                      f"group by row_id").fetchall()
    return dict(rows)


def duplicate_segments(output: Path | str) -> list[tuple]:
    return duckdb.sql(
        f"select row_id, channel, segment_index, count(*) as n from read_parquet('{output}/segments/*.parquet') "
        f"group by all having count(*) > 1").fetchall()


def visible_files(folder: Path) -> list[Path]:
    """Files a reader would take as data: not hidden (`.`/`_`), anywhere under `folder`."""
    return [p for p in folder.rglob("*") if p.is_file()
            and not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts)]


def read_dataset(folder: Path):
    """The whole folder as pyarrow reads it (hidden files skipped, as DuckDB, Polars and Spark do)."""
    return ds.dataset(str(folder), format="parquet").to_table()


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a job run in its own process with its own local Ray: never the session's Ray (no
    RAY_ADDRESS, a private RAY_TMPDIR so `ray_current_cluster` of any other Ray is not found)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTEST_CURRENT_TEST")}
    env.update(RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1", **extra)
    return env


def private_ray_tmpdir() -> str:
    """Short (Unix socket paths are limited to ~107 bytes), under /tmp, unique."""
    return tempfile.mkdtemp(prefix="rt", dir="/tmp")


def pids_in_session(sid: int) -> list[int]:
    """Live (not zombie) processes of the session `sid`: a process started with start_new_session=True and every
    process it started that did not leave the session (Ray's own processes do not)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            found.append(int(entry.name))
    return found


def stop_session(proc: subprocess.Popen, grace: float = 5.0) -> list[int]:
    """Stop `proc` (started with start_new_session=True) and everything in its session: SIGTERM to the process
    group, SIGKILL to whatever is left after `grace` seconds. Returns the pids that needed the SIGKILL."""
    if pids_in_session(proc.pid):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while pids_in_session(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    stubborn = pids_in_session(proc.pid)
    kill_pids(stubborn)
    # A SIGKILLed process is gone only once the kernel has torn it down (a loaded machine takes a moment).
    deadline = time.monotonic() + 10
    while stubborn and pids_in_session(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass
    return stubborn


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def remove_tree(path: str | Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
