"""One job at a time per output folder: a lease file that the running job renews, and that a killed job cannot hold
forever.

`<output_path>/_lease.json` names the run holding the folder and when it last renewed the lease. A second job that
finds a lease renewed within `lease_seconds` refuses to start (exit 2, naming the holder); a lease older than that
belongs to a job that died, and is taken over (at once when the holder ran on the same host and its process is gone). Taking a lease is write-then-read-back after a short pause, so of two
jobs racing for a free folder the one whose write landed last wins and the other refuses (object stores have no
cheap compare-and-swap that every S3 server honours; the pause makes the race window small, not zero).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass

from connectors.layout import OutputLayout
from connectors.storage import filesystem, with_retries

SETTLE_SECONDS = 0.5  # between writing the lease and reading it back


class LeaseHeld(RuntimeError):
    """Another live job holds the output folder."""


@dataclass(frozen=True)
class LeaseRecord:
    run_id: str
    host: str
    pid: int
    renewed: float  # seconds since the epoch

    def age(self) -> float:
        return time.time() - self.renewed

    def holder_is_gone(self) -> bool:
        """The holder ran on this host and its process no longer exists (a killed driver): no need to wait for the
        lease to expire. (On another host only expiry tells.)"""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def read_lease(store: OutputLayout) -> LeaseRecord | None:
    fs, path = filesystem(store.lease_path)
    try:
        fs.invalidate_cache(path.rsplit("/", 1)[0])
        with fs.open(path, "rb") as handle:
            return LeaseRecord(**json.loads(handle.read()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError):
        return None  # a torn or foreign file: treat as no lease (it is rewritten by whoever takes the folder)


def _write(store: OutputLayout, record: LeaseRecord) -> None:
    fs, path = filesystem(store.lease_path)
    with_retries(lambda: fs.pipe_file(path, json.dumps(asdict(record)).encode()))


class Lease:
    """Held while a job writes to `output_path`: `acquire()`, then renewed every lease_seconds / 4 by a thread,
    `release()` at the end (also on failure)."""

    def __init__(self, store: OutputLayout, run_id: str, lease_seconds: float):
        self.store = store
        self.run_id = run_id
        self.lease_seconds = lease_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self) -> LeaseRecord:
        return LeaseRecord(run_id=self.run_id, host=socket.gethostname(), pid=os.getpid(), renewed=time.time())

    def acquire(self) -> None:
        current = read_lease(self.store)
        if current is not None and current.run_id != self.run_id and current.age() < self.lease_seconds \
                and not current.holder_is_gone():
            raise LeaseHeld(self._held_message(current))
        _write(self.store, self._record())
        time.sleep(SETTLE_SECONDS)
        current = read_lease(self.store)
        if current is None or current.run_id != self.run_id:
            raise LeaseHeld(self._held_message(current) if current else "output_path is being taken by another job")
        self._thread = threading.Thread(target=self._renew, name="output-lease", daemon=True)
        self._thread.start()

    def _held_message(self, holder: LeaseRecord) -> str:
        return (f"output_path is in use by run {holder.run_id} (host {holder.host}, pid {holder.pid}, lease renewed "
                f"{holder.age():.0f} s ago); wait for it to finish, or use another output_path. A lease not renewed "
                f"for {self.lease_seconds:g} s (output.lease_seconds) is taken over")

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_seconds / 4):
            try:
                _write(self.store, self._record())
            except Exception:  # noqa: BLE001 - a missed renewal is retried at the next tick
                pass

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        current = read_lease(self.store)
        if current is not None and current.run_id == self.run_id:
            fs, path = filesystem(self.store.lease_path)
            try:
                fs.rm(path)
            except FileNotFoundError:
                pass
