"""Stage: read the manifests (or walk an audio folder) into work blocks, in Ray tasks across the cluster.

One task per manifest streams it line by line (`connectors.manifests`), resolves each row's options once
(`pipeline.options`), skips what the output already holds (`connectors.resume`: the index travels through the object
store, so no task and not the driver holds the done ids as Python objects), and cuts the rest into *work blocks*:
recordings totalling about `compute.block_seconds` of audio by the manifest's `duration` (a row without one counts as
UNKNOWN_DURATION_SECONDS, a typical call), at most `compute.block_rows` recordings. A work block is one row (its source rows nested), so
that Ray Data can hand each to its own decode task.

What a task read is reported to the job's `Ledger` actor (rows, skipped, replaced, orphans), for the progress line
and the final accounting; the driver never sees the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa

from connectors.inputs import InputSource, iter_rows
from connectors.manifests import ManifestRow
from connectors.redaction import install_redaction
from connectors.resume import DONE, REPLACE, ResumeIndex, hash_bytes, id_bytes, id_hex
from pipeline.locales import Locales
from pipeline.options import JobDefaults, source_row
from pipeline.records import WORK_BLOCK_SCHEMA

_INDEX_CACHE: dict[str, ResumeIndex] = {}
UNKNOWN_DURATION_SECONDS = 60.0  # what a row without `duration` counts for when work blocks are cut
_CHECK_EVERY = 4096  # rows looked up in the index at once (vectorised)
# ... or fewer, once the rows waiting hold this many bytes of audio (tar members, table cells travel with their rows)
_CHECK_BYTES = 32 * 2**20


@dataclass(frozen=True)
class SourceSettings:
    defaults: JobDefaults
    locales: Locales
    block_seconds: float
    block_rows: int


@dataclass
class ReadStats:
    """What one read task saw in one manifest (or audio folder)."""

    source: str
    rows: int = 0  # every row (line) read
    done: int = 0  # already in the output: skipped
    replaced: int = 0  # in the output, but to be done again (edited line, failed, other settings)
    failed: int = 0  # rows that failed while being read (bad line, unknown locale, ...): they still go on
    declared_seconds: float = 0.0  # audio to do, by the manifest's duration (where given)
    orphans: tuple[str, ...] = ()  # committed ids of this manifest that it no longer has


def _index(index_ref: list) -> ResumeIndex | None:
    """The resume index from the object store, fetched once per worker process (zero-copy numpy)."""
    if not index_ref:
        return None
    import ray

    key = index_ref[0].hex()
    if key not in _INDEX_CACHE:
        _INDEX_CACHE.clear()
        _INDEX_CACHE[key] = ray.get(index_ref[0])
    return _INDEX_CACHE[key]


def _checked(rows: list[ManifestRow], index: ResumeIndex | None, stats: ReadStats) -> list[ManifestRow]:
    """The rows still to do; counts what is skipped and what is replaced."""
    if index is None or not len(index):
        return rows
    status = index.status(id_bytes([r.row_id for r in rows]), hash_bytes([r.source_hash for r in rows]))
    stats.done += int(np.count_nonzero(status == DONE))
    stats.replaced += int(np.count_nonzero(status == REPLACE))
    return [r for r, s in zip(rows, status) if s != DONE]


def read_source(source: InputSource, settings: SourceSettings, index: ResumeIndex | None,
                stats: ReadStats) -> Iterator[list[dict]]:
    """The work blocks of one input (a manifest, an audio folder, ...): lists of resolved source rows."""
    seen = bytearray()  # the ids read, 10 bytes each (for orphans), instead of a set of Python strings
    block: list[dict] = []
    weight = 0.0
    pending: list[ManifestRow] = []

    def drain() -> Iterator[list[dict]]:
        nonlocal block, weight
        for row in _checked(pending, index, stats):
            resolved = source_row(row, settings.defaults, settings.locales)
            if resolved["error"]:
                stats.failed += 1
            duration = row.manifest_duration
            if duration is not None and not resolved["error"]:
                stats.declared_seconds += duration
            block.append(resolved)
            weight += duration if duration is not None else UNKNOWN_DURATION_SECONDS
            if weight >= settings.block_seconds or len(block) >= settings.block_rows:
                yield block
                block, weight = [], 0.0
        pending.clear()

    pending_bytes = 0
    for row in iter_rows(source):
        stats.rows += 1
        seen.extend(bytes.fromhex(row.row_id))
        pending.append(row)
        if row.audio is not None and row.audio.data is not None:
            pending_bytes += len(row.audio.data)
        if len(pending) >= _CHECK_EVERY or pending_bytes >= _CHECK_BYTES:
            yield from drain()
            pending_bytes = 0
    yield from drain()
    if block:
        yield block
    if index is not None and len(index) and source.manifest is not None:
        committed = index.ids_of_manifest(source.manifest)
        if len(committed):
            read_ids = np.frombuffer(bytes(seen), dtype=committed.dtype)
            stats.orphans = tuple(id_hex(committed[~np.isin(committed, read_ids)]))


def read_blocks(batch: pa.Table, settings: SourceSettings, index_ref: list, ledger) -> Iterator[pa.Table]:
    """Ray `map_batches` UDF: a batch of inputs (`kind`, `url`) in, work blocks out, one per table."""
    import ray

    install_redaction()  # idempotent: this worker's log records carry no credential
    index = _index(index_ref)
    for item in batch.to_pylist():
        source = InputSource(item["kind"], item["url"], item.get("manifest_url"), bool(item.get("shared")))
        url = source.url
        stats = ReadStats(source=url)
        for number, rows in enumerate(read_source(source, settings, index, stats)):
            if ledger is not None:  # wait while too much is read but not yet committed (pipeline/ledger.py)
                ray.get(ledger.admit.remote(url, number, len(rows)))
            yield pa.Table.from_pylist([{"block": number, "rows": rows}], schema=WORK_BLOCK_SCHEMA)
        if ledger is not None:
            ray.get(ledger.add_read.remote(stats))
