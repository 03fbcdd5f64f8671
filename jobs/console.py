"""The job's console: its own lines on the terminal, every other library's messages in the run's log file.

One rule for what goes where while a job runs (`jobs.config.run_command` opens a `RunLog` around the work):
- the terminal: the job's own lines (its `nemotron_batch` log records: the start, progress and warnings; the summary
  and `error:` lines it prints), other libraries' log records of level ERROR and above, the traceback of a failure
  that ends the job (then the log's path), and Ray's reports of a worker or task that was killed (raylet messages);
- the log file, `<NEMOTRON_BATCH_LOG_DIR or $TMPDIR/nemotron-batch/logs>/<job>-<UTC time>-<pid>.log`, always local,
  whatever the output_path: every log record (ours too), Python warnings (Ray Data's UserWarnings), the lines Ray's
  workers print (forwarded by log_to_driver: NeMo's `W` lines, OneLogger's), and what native code writes to the
  driver's stderr (Ray core's glog lines, such as the "max_restarts > 0" one).
The log's path is printed in one line before the job's first own line. `--verbose` (or `-v`) shows everything on the
terminal as well; native stderr then goes to the terminal only (it is also in Ray's session logs).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

OURS = "nemotron_batch"  # our loggers: nemotron_batch, nemotron_batch.config, ...
WORKERS = "ray_workers"  # the lines Ray's workers print, forwarded to the driver (log_to_driver)
LOG_DIR_ENV = "NEMOTRON_BATCH_LOG_DIR"
VERBOSE_FLAGS = ("--verbose", "-v")
FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"

log = logging.getLogger(OURS)
_active: RunLog | None = None


def split_verbose(args: list[str]) -> tuple[list[str], bool]:
    """The job's `key=value` arguments without the verbose flag, and whether it was given."""
    rest = [a for a in args if a not in VERBOSE_FLAGS]
    return rest, len(rest) != len(args)


def log_dir() -> Path:
    return Path(os.environ.get(LOG_DIR_ENV) or Path(tempfile.gettempdir()) / "nemotron-batch" / "logs")


def active() -> RunLog | None:
    """The run log of the job running in this process, if any."""
    return _active


def verbose() -> bool:
    return _active is not None and _active.verbose


class _Terminal(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at emit time (the terminal, or a test's capture), never to a stream
    captured at start; prints the log's path once, before the first line it lets through."""

    def __init__(self, run: RunLog) -> None:
        super().__init__()
        self.run = run

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # logging.StreamHandler.__init__ sets it; the property wins
        pass

    def filter(self, record: logging.LogRecord) -> bool:
        ours = record.name == OURS or record.name.startswith(OURS + ".")
        return (self.run.verbose or ours or record.levelno >= logging.ERROR) and super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        self.announce()
        super().emit(record)

    def announce(self) -> None:
        if not self.run.announced:
            self.run.announced = True
            super().emit(log.makeRecord(OURS, logging.INFO, __file__, 0, "%s", (self.run.announcement(),), None))


class RunLog:
    """The run's log file and the routing of everything else into it, from `__enter__` to `__exit__` (restored)."""

    def __init__(self, job: str, verbose: bool = False) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.path = log_dir() / f"{job}-{stamp}-{os.getpid()}.log"
        self.verbose = verbose
        self.announced = False
        self._undo: list[Callable[[], None]] = []

    def announcement(self) -> str:
        shown = "also shown here (--verbose)" if self.verbose else "--verbose shows them here too"
        return f"log {self.path} (other libraries' messages; {shown})"

    def announce(self) -> None:
        """The log's path on the terminal, once (before the job's first own line, or before a failure)."""
        self._terminal.announce()

    def __enter__(self) -> RunLog:
        global _active
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a", buffering=1, encoding="utf-8", errors="backslashreplace")
        self._undo.append(self.file.close)
        if not self.verbose:
            self._redirect_native_stderr()
        root = logging.getLogger()
        level = root.level
        if level > logging.INFO:  # (a root already at DEBUG, or NOTSET: everything, stays so)
            root.setLevel(logging.INFO)
        self._undo.append(lambda: root.setLevel(level))
        formatter = logging.Formatter(FORMAT)
        to_file = logging.StreamHandler(self.file)
        to_terminal = self._terminal = _Terminal(self)
        for handler in (to_file, to_terminal):
            handler.setLevel(logging.INFO)
            handler.setFormatter(formatter)
            root.addHandler(handler)
            self._undo.append(lambda h=handler: root.removeHandler(h))
        workers = logging.getLogger(WORKERS)
        workers.setLevel(logging.INFO)
        # Python warnings (Ray Data's UserWarnings) become `py.warnings` records: the file, or the terminal if verbose.
        logging.captureWarnings(True)
        self._undo.append(lambda: logging.captureWarnings(False))
        _active = self
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        global _active
        if error is not None and isinstance(error, Exception):
            self.file.write("".join(traceback.format_exception(kind, error, tb)))
            self.announce()
            print(f"the job failed: {type(error).__name__}; the traceback follows, the log is {self.path}",
                  file=sys.stderr)
        _active = None
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def _redirect_native_stderr(self) -> None:
        """File descriptor 2 -> the log: native code (Ray core's glog) writes there directly. Python's `sys.stderr`,
        where it is the process's fd 2, moves to a copy of the terminal, so our lines and tracebacks stay visible."""
        sys.stderr.flush()
        terminal_fd = os.dup(2)
        os.dup2(self.file.fileno(), 2)

        def restore() -> None:
            sys.stderr.flush()
            os.dup2(terminal_fd, 2)
            os.close(terminal_fd)

        self._undo.append(restore)
        try:
            on_fd2 = sys.stderr.fileno() == 2
        except (AttributeError, OSError, ValueError):  # a test's capture: it is not fd 2 and stays as it is
            on_fd2 = False
        if on_fd2:
            original = sys.stderr
            sys.stderr = os.fdopen(os.dup(terminal_fd), "w", buffering=1, encoding=original.encoding,
                                   errors="backslashreplace")

            def back() -> None:
                sys.stderr.close()
                sys.stderr = original

            self._undo.append(back)

    def route_ray(self) -> None:
        """Ray's and Ray Data's loggers print through their own stderr handlers and do not propagate: while the job
        runs their records go to the root's handlers instead (the file; the terminal for errors, or if verbose).
        Ray Data's session file handler (ray-data.log) stays."""
        from ray._private.log import PlainRayHandler

        for name in ("ray", "ray.data"):
            logger = logging.getLogger(name)
            printing = [h for h in logger.handlers if isinstance(h, PlainRayHandler)]
            propagate = logger.propagate
            for handler in printing:
                logger.removeHandler(handler)
            logger.propagate = True

            def restore(logger: logging.Logger = logger, printing: list = printing, propagate: bool = propagate):
                logger.propagate = propagate
                for handler in printing:
                    logger.addHandler(handler)

            self._undo.append(restore)


def route_ray_output() -> None:
    """Called once Ray is connected (jobs.cluster.connect_ray): Ray's loggers and its workers' printed lines go
    through the running job's log. Ray prints its workers' lines from a thread through a dispatcher of handlers;
    ours replaces Ray's printer and calls it only when no job log is open (a notebook, a benchmark) or with
    --verbose: the lines go to the log file as `ray_workers` records."""
    import ray.data  # noqa: F401 - its import sets up its loggers; they must exist before they are routed
    from ray._private import worker as ray_worker

    if _active is not None:
        _active.route_ray()
    dispatcher = ray_worker.global_worker_stdstream_dispatcher
    handlers = dict(dispatcher.handlers)
    printer = handlers.get("ray_print_logs")
    if printer is None or OURS in handlers:  # log_to_driver=False, or already routed for this connection
        return
    dispatcher.remove_handler("ray_print_logs")
    dispatcher.add_handler(OURS, lambda data: _worker_output(printer, ray_worker.filter_autoscaler_events, data))


def _worker_output(printer: Callable[[dict], None], autoscaler_events: Callable, data: dict) -> None:
    if _active is None:
        printer(data)
        return
    workers = logging.getLogger(WORKERS)
    lines = data.get("lines", [])
    if data.get("pid") == "autoscaler":  # its status table every few seconds: only its events, as Ray prints them
        lines = list(autoscaler_events(lines))
    name = data.get("actor_name") or data.get("task_name") or ""
    where = f"({name + ' ' if name else ''}pid={data.get('pid')}" + (
        f", ip={data.get('ip')})" if data.get("ip") != data.get("localhost") else ")")
    for line in lines:
        workers.info("%s %s", where, line)
