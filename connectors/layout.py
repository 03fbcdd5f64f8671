"""An output folder's layout: what lives where under `output_path`, and how files are named.

    <output_path>/recordings/part-<run_id>-<seq>.parquet   one row per input row (the commit: see parquet_sink)
    <output_path>/segments/part-<run_id>-<seq>.parquet     one row per segment; same name as its recordings partner
    <output_path>/runs/<run_id>.json                       each run's settings and summary
    <output_path>/_lease.json                              the running job's lease (see connectors.lease)
    <output_path>/_nemotron_batch.json                     the marker: this folder is a transcription output

Names sort in commit order: `run_id` starts with the run's UTC start time and `seq` counts a run's commits, so of two
files holding the same row the later name is the newer row. Hidden names (leading `.` or `_`) are files being
written or bookkeeping: DuckDB, Polars, Spark and pyarrow skip them.

The base of `connectors.output_store.OutputStore`; the modules that write and index an output (parquet_sink, resume,
lease) take a layout, so that the store can own them without an import cycle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import fsspec

from connectors.storage import filesystem, normalise_url

RECORDINGS = "recordings"
SEGMENTS = "segments"
RUNS = "runs"
TABLES = (RECORDINGS, SEGMENTS)


MARKER = "_nemotron_batch.json"
# What a job writes: part-<run_id>-<seq>.parquet, and the same under a hidden temporary name while it is written.
_FILE = re.compile(r"^\.?part-(?P<run_id>\d{8}T\d{6}Z-[0-9a-f]{6})-\d{6}\.parquet(?:\.tmp)?$")


def run_of(name: str) -> str | None:
    """The run that wrote a file of this name, if the name is one a job writes (else None: not ours)."""
    match = _FILE.match(name)
    return match.group("run_id") if match else None


def is_hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def is_data_file(name: str) -> bool:
    return name.endswith(".parquet") and not is_hidden(name)


@dataclass(frozen=True)
class OutputLayout:
    """Where things live under an output folder, and how its files are named."""

    url: str  # normalised: one spelling per folder (`normalise_url`), no trailing slash

    @classmethod
    def at(cls, output_path: str) -> "OutputLayout":
        return cls(normalise_url(output_path.rstrip("/")).rstrip("/"))

    # --- layout ------------------------------------------------------------------------------------------------

    def folder(self, table: str) -> str:
        return f"{self.url}/{table}"

    @property
    def runs(self) -> str:
        return self.folder(RUNS)

    @property
    def marker_path(self) -> str:
        return f"{self.url}/{MARKER}"

    @property
    def lease_path(self) -> str:
        return f"{self.url}/_lease.json"

    def run_record_path(self, run_id: str) -> str:
        return f"{self.runs}/{run_id}.json"

    @staticmethod
    def file_name(run_id: str, seq: int) -> str:
        return f"part-{run_id}-{seq:06d}.parquet"

    @staticmethod
    def temporary_name(name: str) -> str:
        return f".{name}.tmp"

    def listing(self, table: str) -> tuple[fsspec.AbstractFileSystem, str, list[str]]:
        """(filesystem, folder as it names it, the file names in it); fresh, never a cached S3 listing."""
        fs, folder = filesystem(self.folder(table))
        fs.invalidate_cache(folder)  # fsspec caches S3 listings per process; other processes wrote since
        names = [p.rsplit("/", 1)[-1] for p in fs.ls(folder, detail=False)] if fs.exists(folder) else []
        return fs, folder, names

    def committed_files(self, table: str = RECORDINGS) -> tuple[fsspec.AbstractFileSystem, list[str]]:
        """The filesystem and the paths of one table's committed Parquet files, in commit order."""
        fs, folder, names = self.listing(table)
        return fs, [f"{folder}/{n}" for n in sorted(names) if is_data_file(n)]
