"""Stop an embedded Ray's processes when the driver that started it dies, however it dies.

A driver that exits normally stops its embedded Ray itself. A driver killed with SIGKILL cannot: Ray's GCS and raylet
notice and exit, but the node's agents (dashboard agent, runtime-env agent) are left running, re-parented and renamed
(`ray::DashboardAgent`). So the job starts this small watcher beside an embedded Ray, in its own session. While the
driver lives it keeps a list of the driver's descendants (pid and start time, so a reused pid is never mistaken for
one of them); when the driver's pid disappears it stops them, and anything else whose command line names the Ray
session's folder (SIGTERM, then SIGKILL).

    python -m jobs.reaper <driver pid> <ray session folder>
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_SECONDS = 1.0
GRACE_SECONDS = 3.0


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[19]))


def descendants(root: int) -> dict[int, int]:
    """pid -> start time of every live descendant of `root`."""
    children: dict[int, list[int]] = {}
    started: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                children.setdefault(stat[0], []).append(int(entry.name))
                started[int(entry.name)] = stat[1]
    found, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found and child != os.getpid():
                found[child] = started[child]
                todo.append(child)
    return found


def session_processes(session_dir: str, known: dict[int, int]) -> list[int]:
    """Live processes (not this one) that were the driver's descendants (same start time), or whose command line
    mentions the session folder."""
    marker = session_dir.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        stat = _stat(pid)
        if stat is None:
            continue
        if known.get(pid) == stat[1]:
            found.append(pid)
            continue
        try:
            if marker in (entry / "cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def watch(driver: int, session_dir: str) -> None:
    known: dict[int, int] = {}
    while alive(driver):
        known.update(descendants(driver))
        time.sleep(POLL_SECONDS)
    stop(session_processes(session_dir, known), signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    while session_processes(session_dir, known) and time.monotonic() < deadline:
        time.sleep(0.2)
    stop(session_processes(session_dir, known), signal.SIGKILL)


def start(session_dir: str) -> subprocess.Popen:
    """Start the watcher for this process (the driver) and its embedded Ray's session folder."""
    return subprocess.Popen([sys.executable, "-m", "jobs.reaper", str(os.getpid()), session_dir],
                            cwd=Path(__file__).resolve().parent.parent, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2])
