"""A quiet console (jobs/console.py): the real demo, run as a user runs it, prints the job's own lines only; other
libraries' messages are in the log file named on its first line, and on the console with --verbose. The demo writes
to and reads from the output_path it is given. Plus the routing itself, in-process: native stderr, warnings, third
party records, a failure."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import duckdb
import pytest

from jobs.config import run_command
from jobs.console import LOG_DIR_ENV, split_verbose

ROOT = Path(__file__).resolve().parents[2]
# What other libraries print during the demo (seen on the console before jobs/console.py): NeMo's warning lines,
# Ray core's "constructor arguments ... max_restarts > 0" glog line, Ray Data's UserWarnings, OneLogger's lines.
THIRD_PARTY = [r"\[NeMo W ", r" W ", r"UserWarning", r"max_restarts", r"OneLogger", r"warnings\.warn",
               r"core_worker\.cc", r"streaming_executor"]
LOG_LINE = re.compile(r" nemotron_batch INFO log (\S+) \(other libraries' messages")


def _demo(tmp_path: Path, name: str, *flags: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
    out, logs = tmp_path / name, tmp_path / f"{name}-logs"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own embedded Ray, as `make demo`
    env.update(PYTHONPATH=str(ROOT), **{LOG_DIR_ENV: str(logs)})
    done = subprocess.run([sys.executable, "-m", "jobs.demo", *flags, f"output_path={out}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    return done, out, logs


def _third_party(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(re.search(p, line) for p in THIRD_PARTY)]


@pytest.mark.slow
def test_the_demo_prints_its_own_lines_and_logs_the_rest(tmp_path):
    done, out, logs = _demo(tmp_path, "quiet")
    console = done.stdout + done.stderr
    assert done.returncode == 0, console
    assert _third_party(console) == []
    # The log's path comes first, and the log holds what the console no longer shows.
    first = done.stderr.splitlines()[0]
    match = LOG_LINE.search(first)
    assert match, first
    log_file = Path(match.group(1))
    assert log_file.parent == logs and log_file.is_file()
    logged = log_file.read_text()
    for pattern in (r"\[NeMo W ", r"max_restarts", r"UserWarning", r"OneLogger"):
        assert re.search(pattern, logged), pattern
    assert "(pid=autoscaler)" not in logged  # Ray's autoscaler table is not a message; only its events would be
    # Still the job's own lines: the model, progress, the summary.
    assert " nemotron_batch INFO model " in done.stderr and " nemotron_batch INFO progress " in done.stderr
    assert "rows        4 (4 transcribed, 0 failed" in done.stdout
    # The demo wrote into the given folder and printed the rows it finds there, in manifest order.
    rows = duckdb.sql(f"select audio_filepath, reference_text from '{out}/recordings/*.parquet' order by line"
                      ).fetchall()
    assert len(rows) == 4
    printed = [line.split("  (asked:")[0] for line in done.stdout.splitlines() if "  (asked: " in line]
    assert printed == [path for path, _ in rows]
    assert [line for line in done.stdout.splitlines() if line.startswith("  reference: ")] == [
        f"  reference: {reference}" for _, reference in rows]
    assert f"Output: {out}/recordings/" in done.stdout


@pytest.mark.slow
def test_verbose_shows_the_other_libraries_messages_too(tmp_path):
    done, out, logs = _demo(tmp_path, "verbose", "--verbose")
    console = done.stdout + done.stderr
    assert done.returncode == 0, console
    for pattern in (r"\[NeMo W ", r"max_restarts", r"UserWarning", r"OneLogger"):
        assert re.search(pattern, console), pattern
    match = LOG_LINE.search(done.stderr.splitlines()[0])
    assert match and "also shown here (--verbose)" in done.stderr.splitlines()[0]
    assert "[NeMo W " in Path(match.group(1)).read_text()
    assert len(duckdb.sql(f"select * from '{out}/recordings/*.parquet'").fetchall()) == 4


# --- the routing, in-process ----------------------------------------------------------------------------------------


class _Done:
    def lines(self) -> list[str]:
        return ["done"]


def test_the_console_shows_ours_and_errors_the_log_holds_everything(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path))
    library = logging.getLogger("some.library")
    handlers = list(logging.getLogger().handlers)

    def work() -> _Done:
        library.warning("a library's warning")
        logging.getLogger("nemotron_batch").info("our own line")
        library.error("a library's error")
        warnings.warn("a library's UserWarning", UserWarning)
        sys.stderr.flush()
        os.write(2, b"a native line on fd 2\n")
        return _Done()

    assert run_command(work, job="unit") == 0
    printed = capsys.readouterr()
    assert printed.out == "done\n"
    lines = printed.err.splitlines()
    assert LOG_LINE.search(lines[0]) and lines[1].endswith("nemotron_batch INFO our own line")
    assert lines[2].endswith("some.library ERROR a library's error") and len(lines) == 3
    (log_file,) = tmp_path.glob("unit-*.log")
    assert LOG_LINE.search(lines[0]).group(1) == str(log_file)
    logged = log_file.read_text()
    for text in ("a library's warning", "our own line", "a library's error", "UserWarning: a library's UserWarning",
                 "a native line on fd 2"):
        assert text in logged, text
    assert logging.getLogger().handlers == handlers  # everything undone


def test_verbose_shows_a_library_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path))

    def work() -> _Done:
        logging.getLogger("some.library").warning("a library's warning")
        return _Done()

    assert run_command(work, job="unit", verbose=True) == 0
    assert "some.library WARNING a library's warning" in capsys.readouterr().err


def test_a_failure_shows_its_traceback_and_names_the_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path))
    before = os.fstat(2)

    def work() -> _Done:
        raise RuntimeError("the cluster went away")

    with pytest.raises(RuntimeError, match="the cluster went away"):
        run_command(work, job="unit")
    (log_file,) = tmp_path.glob("unit-*.log")
    err = capsys.readouterr().err
    assert LOG_LINE.search(err) and f"the job failed: RuntimeError; the traceback follows, the log is {log_file}" in err
    assert "RuntimeError: the cluster went away" in log_file.read_text()
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)  # fd 2 is the terminal (or capture) again


def test_the_verbose_flag_is_taken_out_of_the_keys():
    assert split_verbose(["a=1", "--verbose", "b=2"]) == (["a=1", "b=2"], True)
    assert split_verbose(["-v"]) == ([], True)
    assert split_verbose(["a=1"]) == (["a=1"], False)
