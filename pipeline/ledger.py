"""The job's ledger: what the read tasks saw, gathered in one small Ray actor, and how far reading may run ahead.

The driver never holds the rows; it learns how many there were, how many were skipped as done, how many replace an
earlier copy, and which committed rows became orphans, from this actor (in a call per work block). With the commits'
own counts this closes the books: rows to do = rows read - rows done = rows committed.

Read-ahead: reading is far faster than transcribing, and each finished work block waiting in a queue costs the
driver some memory (Ray Data keeps its metadata there) even though its rows are small. So a read task asks the ledger
before it hands on a block (`admit`), and waits while more than `read_ahead_rows` rows are admitted but not yet
committed; the driver reports its commits (`add_committed`). Driver memory then stays flat however large the
archive (benchmarks/machinery.py driver-memory).

Both reports are idempotent: Ray re-runs a read task whose output was lost with a node (lineage reconstruction),
and a second report of the same block or manifest must neither count its rows twice nor hold reading back for ever.
The actor lives on the driver's node (jobs/transcribe.py), so losing a worker node never loses the books.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class LedgerTotals:
    sources: int = 0  # manifests (or the audio folder) fully read
    rows: int = 0
    done: int = 0
    replaced: int = 0
    failed_on_read: int = 0
    declared_seconds: float = 0.0
    orphans: list[str] = field(default_factory=list)

    @property
    def to_do(self) -> int:
        return self.rows - self.done


class Ledger:
    """Run as a Ray actor (`ray.remote(num_cpus=0)(Ledger)`: its `admit` is async, so it waits without blocking the
    other calls)."""

    def __init__(self, read_ahead_rows: int = 1 << 62) -> None:
        self.read_ahead_rows = read_ahead_rows
        self.admitted = 0
        self.committed = 0
        self.admitted_blocks: set[tuple[str, int]] = set()
        self.reads: dict[str, object] = {}  # source -> its ReadStats (the last report wins)

    async def admit(self, source: str, block: int, rows: int) -> None:
        """Return once `rows` more rows may go into the pipeline (always at once when nothing is in flight, and at once
        for a block admitted before: a re-run of its read task)."""
        if (source, block) in self.admitted_blocks:
            return
        while self.admitted > self.committed and self.admitted - self.committed + rows > self.read_ahead_rows:
            await asyncio.sleep(0.05)
        self.admitted_blocks.add((source, block))
        self.admitted += rows

    def add_committed(self, rows: int) -> None:
        self.committed += rows

    def add_reads(self, finished: list) -> None:
        """What read tasks saw, a list of ReadStats at a time (one call per work block, not per manifest: an archive
        kept one manifest per call has a hundred thousand)."""
        for stats in finished:
            self.reads[stats.source] = stats

    def get(self) -> LedgerTotals:
        t = LedgerTotals()
        for stats in self.reads.values():
            t.sources += 1
            t.rows += stats.rows
            t.done += stats.done
            t.replaced += stats.replaced
            t.failed_on_read += stats.failed
            t.declared_seconds += stats.declared_seconds
            t.orphans.extend(stats.orphans)
        return t
