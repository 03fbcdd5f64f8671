"""Reading a transcription output back (local or any fsspec URL): its tables, the stage of a row's error, and the
language a row is known to be in.

For the jobs and notebooks that *read* an output (the export of training data, the report, the notebooks). They must
work on outputs written before and after a change of columns, so every reader here asks for columns by name and gets
a null column for one that an older output lacks:

* `error_stage` (the stage of a failure: manifest, fetch, decode, language, inference) is read when the output has
  it; an older output has only `error` as `<stage>: <message>`, whose part before the first ': ' is the stage.
* `prompt_locale` (the canonical locale a row was conditioned on, e.g. `de-DE` for `target_lang=de`) is preferred
  to `target_lang` when present.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.layout import RECORDINGS, RUNS, SEGMENTS, OutputLayout
from connectors.storage import filesystem

__all__ = ["RECORDINGS", "SEGMENTS", "RUNS", "NotAnOutput", "check_output", "read_table", "read_whole",
           "read_run_records", "error_stage", "known_language", "row_language"]

AUTO = "auto"
# Where the language a row is grouped or labelled by came from (see `row_language`).
FROM_REFERENCE = "reference"
FROM_DETECTED = "detected"


class NotAnOutput(ValueError):
    """The folder is not a transcription output (no committed recordings files)."""


def check_output(output_path: str) -> None:
    """Raise NotAnOutput unless `output_path` holds committed `recordings/` Parquet files."""
    try:
        _, paths = OutputLayout(output_path).committed_files(RECORDINGS)
    except Exception as error:  # noqa: BLE001 - any failure to list means we cannot read it as an output
        raise NotAnOutput(f"{output_path} cannot be listed: {type(error).__name__}: {error}") from None
    if not paths:
        raise NotAnOutput(f"{output_path} is not a transcription output: no committed Parquet files under "
                          f"{output_path.rstrip('/')}/{RECORDINGS}/")


def read_table(output_path: str, table: str, columns: dict[str, pa.DataType]) -> pa.Table:
    """The committed rows of one output table with exactly `columns` (name: type); a column that a file lacks is
    null. Only those columns are read from each file."""
    fs, paths = OutputLayout(output_path).committed_files(table)
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


def read_whole(output_path: str, table: str) -> pa.Table:
    """Every column of one output table, as the files have them (files written before and after a change of columns
    are unified: a column some files lack is null there). For exploring; jobs ask for their columns by name."""
    fs, paths = OutputLayout(output_path).committed_files(table)
    parts = []
    for path in paths:
        with fs.open(path, "rb") as handle:
            parts.append(pq.read_table(handle))
    return pa.concat_tables(parts, promote_options="permissive") if parts else pa.table({})


def read_run_records(output_path: str) -> list[dict]:
    """Every `runs/<run_id>.json` record of an output, oldest first ([] when there are none)."""
    import json

    fs, folder = filesystem(OutputLayout(output_path).runs)
    if not fs.exists(folder):
        return []
    records = []
    for path in sorted(fs.ls(folder, detail=False)):
        name = path.rsplit("/", 1)[-1]
        if name.endswith(".json") and not name.startswith((".", "_")):
            with fs.open(path, "r") as handle:
                records.append(json.load(handle))
    return records


def error_stage(table: pa.Table) -> pa.ChunkedArray:
    """The stage of each row's error (null where there is none): the `error_stage` column where the output has one,
    else the part of `error` before the first ': '."""
    if "error_stage" in table.column_names and table["error_stage"].null_count < table.num_rows:
        return table["error_stage"]
    errors = table["error"]
    has_stage = pc.fill_null(pc.match_substring(errors, ": "), False)
    prefix = pc.list_element(pc.split_pattern(errors, ": ", max_splits=1), 0)
    return pc.if_else(has_stage, prefix, pa.scalar(None, pa.string()))


def known_language(table: pa.Table) -> pa.ChunkedArray:
    """The locale each row is known to be in, null where none is: the prompt it was conditioned on (`prompt_locale`
    where the output has it, else `target_lang`), when that was forced by the job or the manifest row (`lang` /
    `target_lang`) rather than `auto`."""
    forced = table["target_lang"].cast(pa.string())
    if "prompt_locale" in table.column_names:
        forced = pc.coalesce(table["prompt_locale"].cast(pa.string()), forced)
    is_auto = pc.fill_null(pc.equal(forced, AUTO), True)
    return pc.if_else(is_auto, pa.scalar(None, pa.string()), forced)


def row_language(table: pa.Table, detected: str = "language") -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """(language, source) of each row: the known language (`known_language`) where there is one, source
    `reference`; else the language the model detected (column `detected`), source `detected`; null and null when
    neither is known. The report groups WER/CER by it, the export labels utterances with it, the notebooks follow."""
    known = known_language(table)
    heard = table[detected].cast(pa.string())
    language = pc.coalesce(known, heard)
    source = pc.if_else(pc.is_valid(known), FROM_REFERENCE,
                        pc.if_else(pc.is_valid(heard), FROM_DETECTED, pa.scalar(None, pa.string())))
    return language, source
