"""A Ray Data sink that writes whole Parquet files, each committed at once, and reports what it wrote.

Readers must never see half a file: on a local disk each file is written under a hidden temporary name and renamed
into place; on object storage a file appears only when its upload completes (a single PUT or a completed multipart
upload), so it is written in place. Hidden names (leading `.`/`_`) are skipped by DuckDB, Polars, Spark and pyarrow.

`write()` returns per-file counts; `on_write_complete()` keeps them, so the job's summary is computed from what was
really written, not from what was meant to be.
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


@dataclass(frozen=True)
class WrittenFile:
    path: str
    rows: int
    failed_rows: int
    audio_seconds: float
    errors_by_stage: dict[str, int]


class ParquetSink(Datasink):
    def __init__(self, folder: str, schema: pa.Schema, *, run_id: str, rows_per_file: int = 10_000):
        self.folder = folder.rstrip("/")
        self.schema = schema
        self.run_id = run_id
        self.rows_per_file = rows_per_file
        self.written: list[WrittenFile] = []

    def on_write_start(self, schema: pa.Schema | None = None) -> None:
        fs, path = filesystem(self.folder)
        fs.makedirs(path, exist_ok=True)

    @property
    def min_rows_per_write(self) -> int:
        return self.rows_per_file

    def write(self, blocks: Iterable[Block], ctx) -> list[WrittenFile]:
        tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
        tables = [t.select(self.schema.names).cast(self.schema) for t in tables if t.num_rows]
        if not tables:
            return []
        table = pa.concat_tables(tables)
        name = f"part-{self.run_id}-{ctx.task_idx:05d}-{uuid.uuid4().hex[:8]}.parquet"
        fs, folder = filesystem(self.folder)
        final = f"{folder}/{name}"

        def _write() -> None:
            if isinstance(fs, LocalFileSystem):
                temporary = f"{folder}/.{name}.tmp"
                with fs.open(temporary, "wb") as handle:
                    pq.write_table(table, handle, compression="zstd")
                fs.mv(temporary, final)
            else:
                with fs.open(final, "wb") as handle:
                    pq.write_table(table, handle, compression="zstd")

        with_retries(_write)
        errors = [e for e in table["error"].to_pylist() if e] if "error" in table.column_names else []
        seconds = pc.sum(table["duration"]).as_py() if "duration" in table.column_names else 0.0
        return [WrittenFile(path=final, rows=table.num_rows, failed_rows=len(errors), audio_seconds=seconds or 0.0,
                            errors_by_stage=dict(Counter(e.split(":", 1)[0] for e in errors)))]

    def on_write_complete(self, write_result) -> None:
        self.written = [f for files in write_result.write_returns for f in files]
