"""The ledger's books under re-runs of read tasks (lineage reconstruction after a lost node) and its read-ahead pacing."""

import asyncio

import pytest

from pipeline.ledger import Ledger
from pipeline.source import ReadStats


def test_a_manifest_reported_twice_counts_once():
    ledger = Ledger()
    ledger.add_reads([ReadStats(source="s3://b/a.jsonl", rows=10, done=3, failed=1, declared_seconds=20.0,
                                orphans=("ab",)), ReadStats(source="s3://b/b.jsonl", rows=5)])
    ledger.add_reads([ReadStats(source="s3://b/a.jsonl", rows=10, done=3, failed=1, declared_seconds=20.0,
                                orphans=("ab",))])  # the read task ran again
    totals = ledger.get()
    assert (totals.sources, totals.rows, totals.done, totals.to_do, totals.failed_on_read) == (2, 15, 3, 12, 1)
    assert totals.declared_seconds == 20.0 and totals.orphans == ["ab"]


def test_reading_waits_for_commits_and_a_re_admitted_block_never_waits():
    async def scenario():
        ledger = Ledger(read_ahead_rows=100)
        await ledger.admit("m", 0, 80)  # nothing in flight: at once
        second = asyncio.create_task(ledger.admit("m", 1, 80))
        await asyncio.sleep(0.2)
        assert not second.done()  # 160 > 100 in flight: waits
        # A re-run of the read task re-admits block 0: no wait, and it is not counted again.
        await asyncio.wait_for(ledger.admit("m", 0, 80), timeout=1)
        assert ledger.admitted == 80
        ledger.add_committed(80)
        await asyncio.wait_for(second, timeout=1)
        assert ledger.admitted - ledger.committed == 80

    asyncio.run(scenario())


@pytest.mark.parametrize("rows", [1, 10_000])
def test_one_block_always_passes_when_nothing_is_in_flight(rows):
    async def scenario():
        ledger = Ledger(read_ahead_rows=5)
        await asyncio.wait_for(ledger.admit("m", 0, rows), timeout=1)
        ledger.add_committed(rows)
        await asyncio.wait_for(ledger.admit("m", 1, rows), timeout=1)

    asyncio.run(scenario())
