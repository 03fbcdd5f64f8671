"""The job's ledger: what the read tasks saw, gathered in one small Ray actor.

The driver never holds the rows; it learns how many there were, how many were skipped as done, how many replace an
earlier copy, and which committed rows became orphans, from this actor (one call per manifest). With the commits'
own counts this closes the books: rows to do = rows read - rows done = rows committed.
"""

from __future__ import annotations

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
    """Run as a Ray actor (`ray.remote(num_cpus=0)(Ledger)`)."""

    def __init__(self) -> None:
        self.totals = LedgerTotals()

    def add_read(self, stats) -> None:
        t = self.totals
        t.sources += 1
        t.rows += stats.rows
        t.done += stats.done
        t.replaced += stats.replaced
        t.failed_on_read += stats.failed
        t.declared_seconds += stats.declared_seconds
        t.orphans.extend(stats.orphans)

    def get(self) -> LedgerTotals:
        return self.totals
