"""Where one recording's bytes are, as one typed value, and the one function that opens it.

In the spirit of lhotse's `AudioSource`: a recording is read from

- a **file** or URL (`url`), the whole of it;
- a **slice** of one (`offset` seconds into it, for `duration` seconds: NeMo's `offset`/`duration` manifest fields);
- a **member of a tar shard** (`url` is the shard, `member` the member's name: NeMo tarred datasets, WebDataset);
- a **row of a table** (`url` is the table file, `row` its row: Parquet/Arrow with audio bytes);

and, for the last two, the bytes may already be carried with the row (`data`): a read task that streams a shard or a
table hands each member's bytes on, so no decode task has to find its member again.

A row's identity derives from its source (`identity()`): a whole file is its URL (so identities of plain manifests
stay what they were), a slice adds its times, a member its name, a table row its number.

Between stages a source travels as the flat columns of `FIELDS` (Arrow is columnar, and the output keeps the
origin columns for joining back to the corpus); `from_row` and `as_fields` convert. `audio_bytes` never reaches
the output.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import IO

import pyarrow as pa

from connectors.storage import open_file

# The source as columns of a row (`audio_url` is also an output column, as before).
FIELDS = [
    pa.field("audio_url", pa.string()),  # the file, the tar shard or the table file, resolved
    pa.field("audio_offset", pa.float64()),  # a slice's start in seconds (null: the whole file)
    pa.field("audio_member", pa.string()),  # a tar shard's member (null: not a shard)
    pa.field("audio_row", pa.int64()),  # a table file's row (null: not a table)
]
DATA_FIELD = pa.field("audio_bytes", pa.large_binary())  # bytes carried from the read task (never written out)
SLICE_READ_BYTES = 256 * 2**10  # a slice's remote reads: ranges of this size (a whole file's: 8 MiB)


@dataclass(frozen=True)
class AudioSource:
    url: str
    offset: float | None = None  # seconds: the slice starts here (None: the whole file)
    duration: float | None = None  # seconds of the slice (with `offset`; None: to the end)
    member: str | None = None  # name of a tar member
    row: int | None = None  # row of a table file
    data: bytes | None = None  # the bytes themselves, where the reader already holds them

    @property
    def kind(self) -> str:
        if self.member is not None:
            return "tar_member"
        if self.row is not None:
            return "table_row"
        return "slice" if self.offset is not None else "file"

    def identity(self) -> str:
        """What this source is, as a string for a row's identity: the URL alone for a whole file."""
        if self.member is not None:
            return f"{self.url}#member={self.member}"
        if self.row is not None:
            return f"{self.url}#row={self.row}"
        if self.offset is not None:
            return f"{self.url}#t={self.offset:.6f},{'' if self.duration is None else f'{self.duration:.6f}'}"
        return self.url

    def as_fields(self) -> dict:
        """The source as row columns (`FIELDS` and `audio_bytes`); the slice's duration is the row's
        `manifest_duration`, already a column."""
        return {"audio_url": self.url, "audio_offset": self.offset, "audio_member": self.member,
                "audio_row": self.row, "audio_bytes": self.data}

    @classmethod
    def from_row(cls, row: dict) -> "AudioSource":
        offset = row.get("audio_offset")
        return cls(url=row["audio_url"], offset=offset,
                   duration=row.get("manifest_duration") if offset is not None else None,
                   member=row.get("audio_member"), row=row.get("audio_row"), data=row.get("audio_bytes"))


def fields_of(source: AudioSource | None) -> dict:
    """A row's source columns; all null for a row that names no audio (a bad manifest line)."""
    if source is None:
        return {"audio_url": None, "audio_offset": None, "audio_member": None, "audio_row": None, "audio_bytes": None}
    return source.as_fields()


def open_source(source: AudioSource, *, max_mb: float | None = None, timeout: float = 60.0) -> IO[bytes]:
    """A readable, seekable binary stream of the source's bytes (for a slice: the whole file; the decoder seeks to
    the slice). Raises as `connectors.storage.open_file` does (FileNotFoundError, FileTooLarge, timeouts, ...)."""
    if source.data is not None:
        if max_mb is not None and len(source.data) > max_mb * 2**20:
            from connectors.storage import FileTooLarge

            raise FileTooLarge(f"{len(source.data) / 2**20:.1f} MiB is over audio.max_file_mb={max_mb:g}")
        return io.BytesIO(source.data)
    if source.member is not None:
        return io.BytesIO(_read_member(source, max_mb, timeout))
    if source.row is not None:
        return io.BytesIO(_read_table_cell(source, timeout))
    if source.offset is not None:
        # A slice reads a small part of a file that may be long: remote reads fetch small ranges, not 8 MiB ones.
        return open_file(source.url, max_mb=max_mb, timeout=timeout, block_size=SLICE_READ_BYTES)
    return open_file(source.url, max_mb=max_mb, timeout=timeout)


def _read_member(source: AudioSource, max_mb: float | None, timeout: float) -> bytes:
    """One member of a tar shard, found by streaming the shard from its start (no index: tar has none)."""
    import tarfile

    with open_file(source.url, timeout=timeout) as handle, tarfile.open(fileobj=handle, mode="r|*") as archive:
        for info in archive:
            if info.name == source.member and info.isfile():
                if max_mb is not None and info.size > max_mb * 2**20:
                    from connectors.storage import FileTooLarge

                    raise FileTooLarge(f"member {info.name} is {info.size / 2**20:.1f} MiB, over "
                                       f"audio.max_file_mb={max_mb:g}")
                return archive.extractfile(info).read()
    raise FileNotFoundError(f"no member {source.member!r} in {source.url}")


def _read_table_cell(source: AudioSource, timeout: float) -> bytes:
    """The audio bytes of one row of a Parquet table (column `audio`: a struct with `bytes`, or binary)."""
    import pyarrow.parquet as pq

    with open_file(source.url, timeout=timeout) as handle:
        table_file = pq.ParquetFile(handle)
        start = 0
        for group in range(table_file.num_row_groups):
            rows = table_file.metadata.row_group(group).num_rows
            if start + rows > source.row:
                cell = table_file.read_row_group(group, columns=["audio"])["audio"][source.row - start].as_py()
                data = cell.get("bytes") if isinstance(cell, dict) else cell
                if not data:
                    raise ValueError(f"row {source.row} of {source.url} holds no audio bytes")
                return data
            start += rows
    raise FileNotFoundError(f"{source.url} has no row {source.row}")
