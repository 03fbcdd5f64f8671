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


def _session(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None


def _ray_workers(session: int | None = None) -> dict[int, str]:
    """pid -> command of every Ray worker process (`ray::...`), or only those of one process session (a cluster
    started with `ray start` in its own session keeps its workers there: other Ray clusters on the machine are not
    counted)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("ray::") and (session is None or _session(int(entry.name)) == session):
                found[int(entry.name)] = cmd
    return found


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    """A process's resident memory (KiB) from /proc/<pid>/status: `VmRSS` (all of it), or one part of it:
    `RssAnon` (its own heap), `RssShmem` (shared memory it touched: for a Ray worker, Ray's object store)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class WorkerMemory:
    """Samples the RSS of every Ray worker process (`ray::...`; of one process session if `session` is given) while
    it runs: the peak of any one worker, the peak of their sum, and per command (`ray::MapWorker(...)`, the actor
    pool's workers; `ray::MapBatches(decode_batch)`, ...) the peak and the last sample. Linux only (/proc)."""

    def __init__(self, interval: float = 0.1, session: int | None = None):
        self.interval = interval
        self.session = session
        self.peak_worker_mib = 0.0
        self.peak_total_mib = 0.0
        self.peak_by_command_mib: dict[str, float] = {}
        # Its own heap only (RssAnon): VmRSS also counts the pages of Ray's object store a worker has written or
        # read (RssShmem; RssFile where the store is file-backed) and its libraries' pages, which the store and the
        # page cache hold, not the worker; a worker that handled more objects over its life touched more of them.
        self.peak_private_by_command_mib: dict[str, float] = {}
        self.peak_parts_by_command_mib: dict[str, dict[str, float]] = {}
        self.last_by_command_mib: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            workers = _ray_workers(self.session)
            sizes = {pid: _rss_kib(pid) / 1024 for pid in workers}
            if sizes:
                self.peak_worker_mib = max(self.peak_worker_mib, max(sizes.values()))
                self.peak_total_mib = max(self.peak_total_mib, sum(sizes.values()))
            seen: dict[str, float] = {}
            for pid, mib in sizes.items():
                command = workers[pid].split()[0]
                self.peak_by_command_mib[command] = max(self.peak_by_command_mib.get(command, 0.0), mib)
                parts = self.peak_parts_by_command_mib.setdefault(command, {})
                for part in ("RssAnon", "RssFile", "RssShmem"):
                    parts[part] = max(parts.get(part, 0.0), _rss_kib(pid, part) / 1024)
                self.peak_private_by_command_mib[command] = parts["RssAnon"]
                seen[command] = max(seen.get(command, 0.0), mib)
            self.last_by_command_mib.update(seen)  # each command's RSS when last seen (before it exited)
            time.sleep(self.interval)

    def __enter__(self) -> "WorkerMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class SessionCpu:
    """CPU seconds (user + system) of every process in one process session, summed over each process's life: sampled
    every `interval` seconds from /proc (a process's last sample before it exits is kept, so at most `interval` of
    its time is missed). A job started with start_new_session=True keeps its embedded Ray (raylet, GCS, workers)
    in its session. Linux only."""

    def __init__(self, session: int, interval: float = 0.2):
        self.session = session
        self.interval = interval
        self._ticks: dict[int, int] = {}
        self._roles: dict[int, list[str]] = {}  # what each process was seen doing, in order (see process_role)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def seconds(self) -> float:
        return sum(self._ticks.values()) / os.sysconf("SC_CLK_TCK")

    def by_role(self) -> dict[str, dict]:
        """CPU seconds and process count per role, most first. A Ray worker's role is every task or actor it ran
        (`ray::IDLE` if none), so a worker that read, then decoded, shows as `read_blocks > decode_block`."""
        found: dict[str, dict] = {}
        for pid, ticks in self._ticks.items():
            roles = [r for r in self._roles.get(pid, []) if r != "ray::IDLE"] or self._roles.get(pid) or ["?"]
            entry = found.setdefault(" > ".join(roles), {"cpu_seconds": 0.0, "processes": 0})
            entry["cpu_seconds"] += ticks / os.sysconf("SC_CLK_TCK")
            entry["processes"] += 1
        ordered = sorted(found.items(), key=lambda kv: -kv[1]["cpu_seconds"])
        return {name: {"cpu_seconds": round(v["cpu_seconds"], 2), "processes": v["processes"]} for name, v in ordered}

    def _sample(self) -> None:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[3]) == self.session:
                    # utime + stime of the process itself (fields 14, 15 of stat; after the name: 11, 12)
                    pid = int(entry.name)
                    self._ticks[pid] = int(fields[11]) + int(fields[12])
                    role = process_role(entry)
                    roles = self._roles.setdefault(pid, [])
                    if role and role not in roles:
                        roles.append(role)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def start(self) -> "SessionCpu":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def process_role(entry: Path) -> str | None:
    """What a process is, from its command line: a Ray worker's title without the method (`ray::Ledger.add_read` ->
    `ray::Ledger`, `ray::MapWorker(MapBatches(Assembler)).submit` -> `ray::MapWorker(MapBatches(Assembler))`), a
    Python process's script or module (`-m jobs.transcribe`, `log_monitor.py`), else the program's name."""
    try:
        argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return None
    if not argv:
        return None
    if argv[0].startswith("ray::"):
        title = argv[0].split()[0]
        return title[:title.rindex(")") + 1] if ")" in title else title.split(".")[0]
    if Path(argv[0]).name.startswith("python"):
        rest = [a for a in argv[1:] if a != "-u"]
        if rest[:1] == ["-m"] and len(rest) > 1:
            return f"-m {rest[1]}"
        if rest[:1] == ["-c"]:
            return "python -c"
        return Path(rest[0]).name if rest else "python"
    return Path(argv[0]).name
