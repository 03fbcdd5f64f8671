"""A Ray Data sink that writes the two output tables as pairs of whole Parquet files, and reports what it wrote.

Each write task writes `segments/<name>.parquet` first and `recordings/<name>.parquet` last, with the same name: the
recordings file is the commit. A rerun treats the row ids in `recordings/` as done and deletes a segments file that
has no recordings partner (a task that died between the two writes), so neither table holds a row twice.

Readers must never see half a file: on a local disk each file is written under a hidden temporary name and renamed
into place; on object storage a file appears only when its upload completes, so it is written in place. Hidden names
(leading `.`/`_`) are skipped by DuckDB, Polars, Spark and pyarrow.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from ray.data import Datasink
from ray.data.block import Block, BlockAccessor

from connectors.storage import filesystem, with_retries

RECORDINGS = "recordings"
SEGMENTS = "segments"


@dataclass(frozen=True)
class WrittenFile:
    name: str
    rows: int
    failed_rows: int
    audio_seconds: float
    segments: int
    errors_by_stage: dict[str, int]


def write_parquet(table: pa.Table, folder: str, name: str) -> None:
    """Write `table` as `<folder>/<name>` so that it appears whole or not at all."""
    fs, path = filesystem(folder)

    def _write() -> None:
        if isinstance(fs, LocalFileSystem):
            fs.makedirs(path, exist_ok=True)
            temporary = f"{path}/.{name}.tmp"
            with fs.open(temporary, "wb") as handle:
                pq.write_table(table, handle, compression="zstd")
            fs.mv(temporary, f"{path}/{name}")
        else:
            with fs.open(f"{path}/{name}", "wb") as handle:
                pq.write_table(table, handle, compression="zstd")

    with_retries(_write)


class TranscriptSink(Datasink):
    def __init__(self, output_path: str, recordings_schema: pa.Schema, segments_schema: pa.Schema, *, run_id: str,
                 rows_per_file: int = 10_000):
        self.output_path = output_path.rstrip("/")
        self.recordings_schema = recordings_schema
        self.segments_schema = segments_schema
        self.run_id = run_id
        self.rows_per_file = rows_per_file
        self.written: list[WrittenFile] = []

    @property
    def min_rows_per_write(self) -> int:
        return self.rows_per_file

    def write(self, blocks: Iterable[Block], ctx) -> list[WrittenFile]:
        tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
        tables = [t for t in tables if t.num_rows]
        if not tables:
            return []
        table = pa.concat_tables(tables)
        segments = pa.Table.from_struct_array(pc.list_flatten(table["segments"])) if "segments" in table.column_names \
            else pa.table({})
        segments = segments.select(self.segments_schema.names).cast(self.segments_schema) if segments.num_rows \
            else self.segments_schema.empty_table()
        recordings = table.select(self.recordings_schema.names).cast(self.recordings_schema)
        name = f"part-{self.run_id}-{ctx.task_idx:05d}-{uuid.uuid4().hex[:8]}.parquet"
        write_parquet(segments, f"{self.output_path}/{SEGMENTS}", name)
        write_parquet(recordings, f"{self.output_path}/{RECORDINGS}", name)  # last: the commit
        errors = [e for e in recordings["error"].to_pylist() if e]
        seconds = pc.sum(recordings["duration"]).as_py() or 0.0
        return [WrittenFile(name=name, rows=recordings.num_rows, failed_rows=len(errors), audio_seconds=seconds,
                            segments=segments.num_rows, errors_by_stage=dict(Counter(e.split(":", 1)[0] for e in errors)))]

    def on_write_complete(self, write_result) -> None:
        self.written = [f for files in write_result.write_returns for f in files]


def _listing(output_path: str, table: str) -> tuple[object, str, list[str]]:
    fs, folder = filesystem(f"{output_path.rstrip('/')}/{table}")
    fs.invalidate_cache(folder)  # fsspec caches S3 listings per process; Ray's write tasks wrote since
    names = [p.rsplit("/", 1)[-1] for p in fs.ls(folder, detail=False)] if fs.exists(folder) else []
    return fs, folder, names


def clean_uncommitted(output_path: str) -> list[str]:
    """Delete what a crashed run left behind: hidden temporary files, and segments files with no recordings partner.
    Returns the deleted paths. Safe while no other run writes to the same output_path."""
    _, _, committed = _listing(output_path, RECORDINGS)
    deleted = []
    for table in (SEGMENTS, RECORDINGS):
        fs, folder, names = _listing(output_path, table)
        for name in names:
            temporary = name.startswith(".") and name.endswith(".tmp")
            orphan = table == SEGMENTS and name.endswith(".parquet") and name not in committed
            if temporary or orphan:
                fs.rm(f"{folder}/{name}")
                deleted.append(f"{folder}/{name}")
    return deleted


def committed_files(output_path: str, table: str = RECORDINGS) -> tuple[object, list[str]]:
    """The filesystem and the sorted paths of one table's committed Parquet files (hidden names are files being
    written: every reader skips them)."""
    fs, folder, names = _listing(output_path, table)
    return fs, [f"{folder}/{n}" for n in sorted(names) if n.endswith(".parquet") and not n.startswith((".", "_"))]


def committed_row_ids(output_path: str) -> set[str]:
    """The row ids already in `recordings/`: a rerun skips them."""
    fs, paths = committed_files(output_path)
    ids: set[str] = set()
    for path in paths:
        with fs.open(path, "rb") as handle:
            ids.update(pq.read_table(handle, columns=["row_id"])["row_id"].to_pylist())
    return ids
