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

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Iterator

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


def read_rows(source: InputSource, settings: SourceSettings, index: ResumeIndex | None,
              stats: ReadStats) -> Iterator[dict]:
    """The rows of one input (a manifest, an audio folder, ...) still to do, resolved; counts what it skips, and at
    the end the ids the output holds for this input that it no longer has (orphans)."""
    seen = bytearray()  # the ids read, 10 bytes each (for orphans), instead of a set of Python strings
    pending: list[ManifestRow] = []

    def drain() -> Iterator[dict]:
        for row in _checked(pending, index, stats):
            resolved = source_row(row, settings.defaults, settings.locales)
            if resolved["error"]:
                stats.failed += 1
            elif row.manifest_duration is not None:
                stats.declared_seconds += row.manifest_duration
            yield resolved
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
    if index is not None and len(index):
        committed = index.ids_of_manifest(source.manifest)
        if len(committed):
            read_ids = np.frombuffer(bytes(seen), dtype=committed.dtype)
            stats.orphans = tuple(id_hex(committed[~np.isin(committed, read_ids)]))


def cut_blocks(rows: Iterable[dict], settings: SourceSettings) -> Iterator[list[dict]]:
    """Rows into work blocks of about `block_seconds` of audio (by the manifest's duration), `block_rows` at most.
    The rows may come from many inputs: a block spans them, so a thousand one-line manifests make full blocks, not a
    thousand nearly empty ones."""
    block: list[dict] = []
    weight = 0.0
    for row in rows:
        block.append(row)
        duration = row.get("manifest_duration")
        weight += duration if duration is not None else UNKNOWN_DURATION_SECONDS
        if weight >= settings.block_seconds or len(block) >= settings.block_rows:
            yield block
            block, weight = [], 0.0
    if block:
        yield block


def read_blocks(batch: pa.Table, settings: SourceSettings, index_ref: list, ledger) -> Iterator[pa.Table]:
    """Ray `map_batches` UDF: groups of inputs (`inputs`: their fields) in, work blocks out, one per table. Each
    input's counts go to the ledger once its rows are all in blocks."""
    import ray

    install_redaction()  # idempotent: this worker's log records carry no credential
    index = _index(index_ref)
    for group in batch["inputs"].to_pylist():
        sources = [InputSource(i["kind"], i["url"], i["manifest_url"], bool(i["shared"])) for i in group]
        finished: list[ReadStats] = []

        def rows() -> Iterator[dict]:
            for source in sources:
                stats = ReadStats(source=source.url)
                yield from read_rows(source, settings, index, stats)
                finished.append(stats)

        def report() -> None:
            if finished and ledger is not None:
                ray.get(ledger.add_reads.remote(list(finished)))
            finished.clear()

        for number, block in enumerate(cut_blocks(rows(), settings)):
            if ledger is not None:  # wait while too much is read but not yet committed (pipeline/ledger.py)
                ray.get(ledger.admit.remote(sources[0].url, number, len(block)))
            yield pa.Table.from_pylist([{"block": number, "rows": block}], schema=WORK_BLOCK_SCHEMA)
            report()
        report()


def input_groups(inputs: list[InputSource], max_groups: int = 64) -> list[dict]:
    """The inputs in at most `max_groups` contiguous groups, one read task each: a large manifest (or a shard) keeps
    a task of its own while there are few, and many small ones share tasks (and work blocks)."""
    size = -(-len(inputs) // max_groups) if inputs else 1
    return [{"inputs": [dataclasses.asdict(i) for i in inputs[k:k + size]]} for k in range(0, len(inputs), size)]
