"""Committing transcripts: pairs of whole Parquet files, written as the job goes, never all at the end.

A commit writes `segments/<name>.parquet` first and `recordings/<name>.parquet` last, with the same name: the
recordings file is the commit. A rerun treats the rows in `recordings/` as done and deletes a segments file that has
no recordings partner (a writer that died between the two files), so neither table holds a row twice.

`TranscriptCommitter` runs on the driver. It takes the finished blocks of the dataset as references (it never
fetches their data), and starts a write task whenever `rows_per_file` recordings are waiting or the oldest of them
has waited `commit_seconds`; so a job killed at any time keeps what it finished more than `commit_seconds` earlier,
and an archive of slow rows still commits as it goes. Ray Data's own `Datasink` commits only in bundles of a fixed
row count, with no clock: that is why this is not a Datasink.

Readers must never see half a file: on a local disk each file is written under a hidden temporary name and renamed
into place; on object storage a file appears only when its upload completes, so it is written in place. Hidden names
(leading `.`/`_`) are skipped by DuckDB, Polars, Spark and pyarrow.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from connectors.layout import RECORDINGS, SEGMENTS, TABLES, OutputLayout, is_hidden, run_of
from connectors.storage import filesystem, with_retries


@dataclass(frozen=True)
class WrittenFile:
    """What one commit wrote."""

    name: str
    rows: int
    failed_rows: int
    audio_seconds: float
    segments: int
    errors_by_stage: dict[str, int]
    # Recordings that travelled in pieces (the assembled table's `pieces` column set): committed now, so the job's
    # piece store may free them (pipeline.pieces).
    pieced: tuple[str, ...] = ()


def write_parquet(table: pa.Table, folder: str, name: str) -> None:
    """Write `table` as `<folder>/<name>` so that it appears whole or not at all (replacing a file of that name)."""
    fs, path = filesystem(folder)

    def _write() -> None:
        if isinstance(fs, LocalFileSystem):
            fs.makedirs(path, exist_ok=True)
            temporary = f"{path}/{OutputLayout.temporary_name(name)}"
            with fs.open(temporary, "wb") as handle:
                pq.write_table(table, handle, compression="zstd")
            fs.mv(temporary, f"{path}/{name}")
        else:
            with fs.open(f"{path}/{name}", "wb") as handle:
                pq.write_table(table, handle, compression="zstd")

    with_retries(_write)


def split_assembled(table: pa.Table, recordings_schema: pa.Schema, segments_schema: pa.Schema
                    ) -> tuple[pa.Table, pa.Table]:
    """An assembled table (recordings with their segments nested) as the two output tables."""
    segments = pa.Table.from_struct_array(pc.list_flatten(table["segments"])) if table.num_rows else None
    segments = segments.select(segments_schema.names).cast(segments_schema) if segments is not None and \
        segments.num_rows else segments_schema.empty_table()
    return table.select(recordings_schema.names).cast(recordings_schema), segments


def write_pair(table: pa.Table, store: OutputLayout, name: str, recordings_schema: pa.Schema,
               segments_schema: pa.Schema) -> WrittenFile:
    """Commit one pair of files: segments first, recordings (the commit) last."""
    recordings, segments = split_assembled(table, recordings_schema, segments_schema)
    write_parquet(segments, store.folder(SEGMENTS), name)
    write_parquet(recordings, store.folder(RECORDINGS), name)  # last: the commit
    stages = [s for s in recordings["error_stage"].to_pylist() if s] if "error_stage" in recordings.column_names \
        else []
    failed = pc.sum(pc.is_valid(recordings["error"])).as_py() or 0
    seconds = pc.sum(recordings["duration"]).as_py() or 0.0
    pieced = tuple(table.filter(pc.is_valid(table["pieces"]))["row_id"].to_pylist()) \
        if "pieces" in table.column_names else ()
    return WrittenFile(name=name, rows=recordings.num_rows, failed_rows=failed, audio_seconds=seconds,
                       segments=segments.num_rows, errors_by_stage=dict(Counter(stages)), pieced=pieced)


def _write_task(parts: list, store: OutputLayout, name: str, recordings_schema: pa.Schema,
                segments_schema: pa.Schema) -> WrittenFile:
    """Ray task: fetch the blocks (or block slices) and commit them as one pair."""
    import ray

    tables = []
    for ref, start, end in parts:
        block = ray.get(ref)
        tables.append(block if start is None else block.slice(start, end - start))
    table = pa.concat_tables([t for t in tables if t.num_rows]) if any(t.num_rows for t in tables) else None
    if table is None:
        return WrittenFile(name=name, rows=0, failed_rows=0, audio_seconds=0.0, segments=0, errors_by_stage={})
    return write_pair(table, store, name, recordings_schema, segments_schema)


@dataclass(frozen=True)
class CommitPolicy:
    """When to commit (the job's `output` section has these two)."""

    rows_per_file: int = 10_000
    commit_seconds: float = 300.0


MAX_WRITES_IN_FLIGHT = 2  # write tasks running at once; the driver waits before starting more


@functools.lru_cache(maxsize=None)
def _remote_write():
    import ray

    return ray.remote(num_cpus=0, max_retries=3, retry_exceptions=True)(_write_task)


@dataclass
class TranscriptCommitter:
    """Driver side: collect finished blocks, commit them as pairs of files by rows or by age."""

    store: OutputLayout
    run_id: str
    recordings_schema: pa.Schema
    segments_schema: pa.Schema
    policy: CommitPolicy = field(default_factory=CommitPolicy)  # or anything with these two attributes
    written: list[WrittenFile] = field(default_factory=list)
    _pending: list = field(default_factory=list)  # (ref, start, end) of blocks not yet committed
    _pending_rows: int = 0
    _oldest: float | None = None
    _in_flight: list = field(default_factory=list)
    _seq: int = 0

    def add(self, bundle) -> None:
        """One finished RefBundle of the dataset (references only)."""
        for entry, block_slice in zip(bundle.blocks, bundle.slices):
            rows = entry.metadata.num_rows if block_slice is None else block_slice.num_rows
            start, end = (None, None) if block_slice is None else (block_slice.start_offset, block_slice.end_offset)
            self._pending.append((entry.ref, start, end))
            self._pending_rows += rows or 0
        if self._oldest is None:
            self._oldest = time.monotonic()
        if self._pending_rows >= self.policy.rows_per_file:
            self.flush()

    def tick(self) -> None:
        """Called periodically: commit what has waited `commit_seconds`; collect finished writes."""
        self.collect(block=False)
        if self._pending and self._oldest is not None and \
                time.monotonic() - self._oldest >= self.policy.commit_seconds:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        while len(self._in_flight) >= MAX_WRITES_IN_FLIGHT:
            self.collect(block=True)
        name = OutputLayout.file_name(self.run_id, self._seq)
        self._seq += 1
        self._in_flight.append(_remote_write().remote(self._pending, self.store, name, self.recordings_schema,
                                                      self.segments_schema))
        self._pending, self._pending_rows, self._oldest = [], 0, None

    def collect(self, block: bool) -> None:
        import ray

        if not self._in_flight:
            return
        ready, self._in_flight = ray.wait(self._in_flight, num_returns=1 if block else len(self._in_flight),
                                          timeout=None if block else 0)
        self.written.extend(w for w in ray.get(ready) if w.rows)

    def close(self) -> None:
        """Commit everything left and wait for every write."""
        self.flush()
        while self._in_flight:
            self.collect(block=True)


def clean_uncommitted(store: OutputLayout, runs: set[str]) -> list[str]:
    """Delete what a crashed run left behind: hidden temporary files, and segments files with no recordings partner;
    only files it can prove a job wrote (named as a job names them, by one of `runs`, the runs with a record here).
    Returns the deleted paths. Safe only while no other job writes to the same output (hold its lease)."""
    _, _, committed = store.listing(RECORDINGS)
    deleted = []
    for table in TABLES:
        fs, folder, names = store.listing(table)
        for name in names:
            if run_of(name) not in runs:
                continue  # not a name we write, or a run that left no record: not provably ours
            temporary = is_hidden(name) and name.endswith(".tmp")
            orphan = table == SEGMENTS and name.endswith(".parquet") and not is_hidden(name) and name not in committed
            if temporary or orphan:
                fs.rm(f"{folder}/{name}")
                deleted.append(f"{folder}/{name}")
    return deleted
