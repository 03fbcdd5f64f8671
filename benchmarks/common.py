"""Shared by the benchmarks: machine description, peak memory of Ray's worker processes."""

from __future__ import annotations

import os
import platform
import threading
import time
from pathlib import Path


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.machine()}, {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Python {platform.python_version()}"


def _ray_workers() -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("ray::"):
                found[int(entry.name)] = cmd
    return found


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class WorkerMemory:
    """Samples the RSS of every Ray worker process (`ray::...`) while it runs: the peak of any one worker, and the
    peak of their sum. Linux only (/proc)."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.peak_worker_mib = 0.0
        self.peak_total_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sizes = [_rss_kib(pid) / 1024 for pid in _ray_workers()]
            if sizes:
                self.peak_worker_mib = max(self.peak_worker_mib, max(sizes))
                self.peak_total_mib = max(self.peak_total_mib, sum(sizes))
            time.sleep(self.interval)

    def __enter__(self) -> "WorkerMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
