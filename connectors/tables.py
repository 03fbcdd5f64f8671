"""Tables that carry their audio into source rows: Parquet and Arrow files, read a row group (a record batch) at a time.

The Hugging Face `datasets` layout: a column `audio` of `struct<bytes: binary, path: string>` (or plain binary)
beside the text (`text`, else `sentence`, `transcript`, `transcription`, `normalized_text`), as `Dataset.to_parquet`,
`push_to_hub` (`data/train-0000N-of-000NN.parquet`) and `Dataset.save_to_disk` (`data-0000N-of-000NN.arrow`, Arrow
IPC streams, beside `state.json`) write it. Other scalar columns are read as a manifest line's fields are: `duration`,
`offset`, `lang`/`target_lang`, `channel`, `channel_mode`; anything else goes into the row's `metadata`.

A row's bytes travel with it to the decode task (`AudioSource.data`). A row without bytes but with a `path` reads
that file (resolved against the table's folder), as `datasets` does. Identity: the table file and the row's number in
it (0-based, `audio_row`); content (`source_hash`): the row's fields and a hash of its bytes. `line` is the row's
number + 1, as a manifest's lines count from 1.

Errors, each its own row: a row with neither bytes nor path, fields of the wrong type (as a manifest line's), a
table that breaks off midway (one row saying where; the rows before it go on), and a table that cannot be opened at
all or has no `audio` column (one error row for the file). Bytes that are not audio fail when they are decoded.
"""

from __future__ import annotations

import json
import math
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from connectors.audio_source import AudioSource
from connectors.manifests import ManifestRow, digest, parse_line, row_identity
from connectors.storage import filesystem, parent_of, resolve, with_retries

AUDIO_COLUMN = "audio"
TEXT_COLUMNS = ("text", "sentence", "transcript", "transcription", "normalized_text")
TABLE_EXTENSIONS = (".parquet", ".arrow")
_ROWS_PER_BATCH = 256  # Arrow IPC streams are read batch by batch as written; Parquet by row group, in slices


class TableUnreadable(Exception):
    """The table cannot be read at all (missing, not Parquet/Arrow, no audio column)."""


def _batches(url: str, handle) -> Iterator[pa.RecordBatch]:
    """The record batches of a Parquet file (row group by row group) or an Arrow IPC stream or file."""
    if url.lower().endswith(".parquet"):
        try:
            table_file = pq.ParquetFile(handle)
        except Exception as error:  # noqa: BLE001
            raise TableUnreadable(f"not a Parquet file: {error}") from None
        if AUDIO_COLUMN not in table_file.schema_arrow.names:
            names = ", ".join(table_file.schema_arrow.names)
            raise TableUnreadable(f"has no {AUDIO_COLUMN!r} column (columns: {names})")
        for group in range(table_file.num_row_groups):
            yield from table_file.read_row_group(group).to_batches(max_chunksize=_ROWS_PER_BATCH)
        return
    try:
        reader = pa.ipc.open_stream(handle)
    except pa.ArrowInvalid:
        try:
            handle.seek(0)
            file_reader = pa.ipc.open_file(handle)
        except Exception as error:  # noqa: BLE001
            raise TableUnreadable(f"not an Arrow file: {error}") from None
        reader = (file_reader.get_batch(i) for i in range(file_reader.num_record_batches))
        schema = file_reader.schema
    else:
        schema = reader.schema
    if AUDIO_COLUMN not in schema.names:
        raise TableUnreadable(f"has no {AUDIO_COLUMN!r} column (columns: {', '.join(schema.names)})")
    yield from reader


def _plain(value: object) -> object:
    """A cell as JSON can hold it (bytes are not metadata; NaN is null)."""
    if isinstance(value, (bytes, bytearray)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_table(url: str) -> Iterator[ManifestRow]:
    """Every row of one Parquet or Arrow file, streamed a batch at a time, as rows."""
    fs, path = filesystem(url)
    base = parent_of(url)
    number = -1
    try:
        handle = with_retries(lambda: fs.open(path, "rb", block_size=4 * 2**20))
    except Exception as error:  # noqa: BLE001
        yield _table_error(url, f"cannot open table: {type(error).__name__}: {error}")
        return
    with handle:
        try:
            for batch in _batches(url, handle):
                columns = batch.to_pydict()
                text_column = next((c for c in TEXT_COLUMNS if c in columns), None)
                for i in range(batch.num_rows):
                    number += 1
                    yield _table_row(url, base, number, {k: v[i] for k, v in columns.items()}, text_column)
        except TableUnreadable as error:
            yield _table_error(url, f"table {url.rsplit('/', 1)[-1]} {error}")
        except (pa.ArrowException, OSError, EOFError) as error:
            yield ManifestRow(row_id=digest(url, "broken"), source_hash=digest(str(error), size=6), manifest=url,
                              line=number + 2, error=f"table breaks off after row {number}: {error}")


def _table_error(url: str, message: str) -> ManifestRow:
    return ManifestRow(row_id=digest(url, "table"), source_hash=digest(message, size=6), manifest=url, line=None,
                       error=message)


def _table_row(url: str, base: str, number: int, cells: dict, text_column: str | None) -> ManifestRow:
    cell = cells.pop(AUDIO_COLUMN)
    data, path = (cell.get("bytes"), cell.get("path")) if isinstance(cell, dict) else (cell, None)
    entry = {k: _plain(v) for k, v in cells.items() if _plain(v) is not None}
    if text_column and text_column != "text" and "text" not in entry and isinstance(cells.get(text_column), str):
        entry["text"] = entry.pop(text_column)
    entry["audio_filepath"] = path or f"{url.rsplit('/', 1)[-1]}#row={number}"
    raw = json.dumps(entry, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8", "surrogatepass")
    row = parse_line(raw, url, number + 1, base)
    slice_of = row.audio
    if data:
        row.audio = AudioSource(url, offset=slice_of.offset if slice_of else None,
                                duration=slice_of.duration if slice_of else None, row=number, data=bytes(data))
    elif path:
        row.audio = AudioSource(resolve(path, base), offset=slice_of.offset if slice_of else None,
                                duration=slice_of.duration if slice_of else None)
    else:
        row.audio = AudioSource(url, row=number)
        row.error = row.error or f"row {number} has no audio bytes and no path"
    row.row_id = row_identity(url, AudioSource(url, offset=row.audio.offset, duration=row.audio.duration, row=number),
                              row.requested_channel, row.requested_channel_mode)
    row.source_hash = digest(raw, digest(data or b"", size=8), size=6)
    return row


def is_table(url: str) -> bool:
    return url.lower().endswith(TABLE_EXTENSIONS)


def tables_in_folder(url: str) -> list[str]:
    """The table files of a folder: `save_to_disk` output (`*.arrow` beside `state.json`), or the hub layout
    (`data/*.parquet`), or Parquet/Arrow files directly in it; sorted (shard order)."""
    from connectors.storage import unstrip

    fs, path = filesystem(url)
    root = path.rstrip("/")
    found = [p for p in fs.find(root) if p.lower().endswith(TABLE_EXTENSIONS)
             and not p.rsplit("/", 1)[-1].startswith("cache-")]  # datasets' map() caches are not the data
    return sorted(unstrip(fs, p) for p in found)


__all__ = ["AUDIO_COLUMN", "TEXT_COLUMNS", "TableUnreadable", "is_table", "read_table", "tables_in_folder"]
