"""Stopping cleanly on SIGTERM (what `ray job stop` and Kubernetes send) and SIGINT (Ctrl-C).

The handlers only record the request; the driver's loop sees it within a second, stops taking finished blocks,
commits the ones it already holds (whole blocks: rows are never half-written), closes the run record as `stopped`,
releases the lease and exits with 128 + the signal's number (143, 130). Blocks still in flight are abandoned: they
were not committed, so a rerun does them. A second signal while stopping is left to the default (it ends at once).
"""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger("nemotron_batch")
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    @property
    def exit_code(self) -> int:
        return 128 + self.signum if self.signum else 0

    def install(self) -> "StopRequest":
        """Take over SIGTERM and SIGINT (after Ray's start, which installs handlers of its own). Only from the main
        thread, as Python allows; elsewhere (a job run from a thread) nothing changes."""
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self._event.is_set():
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        self.signum = signum
        self._event.set()
        log.warning("%s received: stopping; committing what is finished (a rerun does the rest)",
                    signal.Signals(signum).name)
