"""One transcription output folder, as one object: its layout, its readers, its run records, its commits, its resume
index and its lease. Built once per job (and once per reader: report, compare, export, notebooks) from a
normalised `output_path`; every part of the project that touches an output goes through it.

Parquet pairs are the format (the layout: connectors.layout). The methods below are the interface a second table
format would implement; the heavier parts live in their own modules (`parquet_sink` commits, `resume` the
done-index, `lease`), which take the layout.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from connectors import lease, parquet_sink, resume
from connectors.layout import MARKER, RECORDINGS, RUNS, SEGMENTS, TABLES, OutputLayout, is_data_file, is_hidden
from connectors.storage import filesystem, with_retries

__all__ = ["OutputStore", "NotAnOutput", "RECORDINGS", "SEGMENTS", "RUNS", "TABLES", "is_data_file", "is_hidden"]


class NotAnOutput(ValueError):
    """The folder is not a transcription output (no committed recordings files)."""


class NotOurs(ValueError):
    """A job was pointed at a non-empty folder that is not a transcription output: it refuses to touch it."""


# What an output folder of ours may hold besides the marker (an output written before the marker existed holds only
# these, and runs/ has our run records).
_OUR_ENTRIES = {RECORDINGS, SEGMENTS, RUNS, "report", "compare", "_lease.json", MARKER}


class OutputStore(OutputLayout):
    # --- claiming ---------------------------------------------------------------------------------------------

    def claim(self, run_id: str) -> None:
        """Make sure the folder is ours before anything is written or cleaned: a new or empty folder gets the marker
        (written first); a folder with the marker is ours; an output written before the marker existed (nothing but
        our tables and our run records) is adopted. Any other non-empty folder raises NotOurs: the job never writes
        into, or deletes from, a folder it did not make."""
        fs, path = filesystem(self.url)
        fs.invalidate_cache(path)
        entries = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)] if fs.exists(path) else []
        if MARKER in entries:
            return
        others = set(entries) - {"_lease.json"}  # a lease alone: a job of ours started here and was killed
        if others and not (others <= _OUR_ENTRIES and self._has_our_run_records()):
            shown = ", ".join(sorted(entries)[:5]) + (", ..." if len(entries) > 5 else "")
            raise NotOurs(f"output_path {self.url} is not empty and is not a transcription output (no {MARKER}; it "
                          f"holds {shown}): the job never writes into or deletes from a folder it did not make. "
                          f"Use a new or empty folder")
        data = json.dumps({"tool": "nemotron-batch", "first_run": run_id}).encode()
        fs.makedirs(path, exist_ok=True)
        _, marker = filesystem(self.marker_path)
        with_retries(lambda: fs.pipe_file(marker, data))

    def _has_our_run_records(self) -> bool:
        return any("transcript_settings" in record for record in self.run_records().values())

    # --- reading -----------------------------------------------------------------------------------------------

    def check(self) -> None:
        """Raise NotAnOutput unless the folder holds committed `recordings/` Parquet files."""
        try:
            _, paths = self.committed_files(RECORDINGS)
        except Exception as error:  # noqa: BLE001 - any failure to list means we cannot read it as an output
            raise NotAnOutput(f"{self.url} cannot be listed: {type(error).__name__}: {error}") from None
        if not paths:
            raise NotAnOutput(f"{self.url} is not a transcription output: no committed Parquet files under "
                              f"{self.folder(RECORDINGS)}/")

    def read_table(self, table: str, columns: dict[str, pa.DataType]) -> pa.Table:
        """The committed rows of one table with exactly `columns` (name: type); a column that a file lacks (an output
        written before it existed) is null. Only those columns are read from each file."""
        fs, paths = self.committed_files(table)
        schema = pa.schema(list(columns.items()))
        parts = []
        for path in paths:
            with fs.open(path, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                present = [c for c in columns if c in parquet.schema_arrow.names]
                part = parquet.read(columns=present)
            parts.append(pa.table({name: part[name].cast(kind) if name in present else pa.nulls(part.num_rows, kind)
                                   for name, kind in columns.items()}, schema=schema))
        return pa.concat_tables(parts) if parts else schema.empty_table()

    def read_whole(self, table: str) -> pa.Table:
        """Every column of one table, as the files have them (files written before and after a change of columns are
        unified: a column some files lack is null there). For exploring; jobs ask for their columns by name."""
        fs, paths = self.committed_files(table)
        parts = []
        for path in paths:
            with fs.open(path, "rb") as handle:
                parts.append(pq.read_table(handle))
        return pa.concat_tables(parts, promote_options="permissive") if parts else pa.table({})

    # --- run records -------------------------------------------------------------------------------------------

    def run_records(self) -> dict[str, dict]:
        """run_id -> the record of every run into this output, oldest first ({} when there are none); a torn or
        foreign file is passed over."""
        fs, folder = filesystem(self.runs)
        fs.invalidate_cache(folder)
        if not fs.exists(folder):
            return {}
        records = {}
        for path in sorted(fs.ls(folder, detail=False)):
            name = path.rsplit("/", 1)[-1]
            if not name.endswith(".json") or is_hidden(name):
                continue
            try:
                with fs.open(path, "rb") as handle:
                    record = json.loads(handle.read())
                records[record.get("run_id") or name[: -len(".json")]] = record
            except (ValueError, OSError, AttributeError):
                continue
        return records

    def write_run_record(self, run_id: str, record: dict) -> None:
        fs, path = filesystem(self.run_record_path(run_id))
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        data = json.dumps(record, indent=2).encode()
        with_retries(lambda: fs.pipe_file(path, data))

    # --- writing, resuming, holding (see parquet_sink, resume, lease) ------------------------------------------

    def committer(self, run_id: str, recordings_schema: pa.Schema, segments_schema: pa.Schema, policy):
        return parquet_sink.TranscriptCommitter(self, run_id, recordings_schema, segments_schema, policy)

    def clean_uncommitted(self) -> list[str]:
        return parquet_sink.clean_uncommitted(self, runs=set(self.run_records()))

    def resume_index(self, *, retry_failed: bool = True, redo_runs: frozenset[str] = frozenset()):
        return resume.build_index(self, retry_failed=retry_failed, redo_runs=redo_runs)

    def remove_rows(self, drop: dict[str, set[str]]) -> int:
        return resume.remove_rows(self, drop)

    def locate(self, ids: list[str]) -> dict[str, list[str]]:
        return resume.locate(self, ids)

    def lease(self, run_id: str, lease_seconds: float) -> lease.Lease:
        return lease.Lease(self, run_id, lease_seconds)
