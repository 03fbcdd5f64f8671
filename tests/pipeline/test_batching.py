"""Tests for pipeline.batching: duration-sorted batches bounded by count and padded seconds."""

from __future__ import annotations

import random

import pytest

from pipeline.batching import padding_overhead, plan_batches


def _padded(durations, batch) -> float:
    return len(batch) * max(durations[i] for i in batch)


def test_exact_plan_by_count() -> None:
    durations = [10.0, 1.0, 9.0, 2.0, 8.0, 1.0]
    # Longest first; equal durations keep their arrival order.
    assert plan_batches(durations, 2) == [[0, 2], [4, 3], [1, 5]]
    assert plan_batches(durations, 4) == [[0, 2, 4, 3], [1, 5]]
    assert plan_batches(durations, 100) == [[0, 2, 4, 3, 1, 5]]
    assert plan_batches(durations, 1) == [[0], [2], [4], [3], [1], [5]]


def test_sorted_batches_pad_less_than_arrival_order() -> None:
    durations = [10.0, 1.0, 9.0, 2.0, 8.0, 1.0]  # 31 s of audio
    planned = plan_batches(durations, 2)
    arrival = [[0, 1], [2, 3], [4, 5]]
    # planned: 2*10 + 2*8 + 2*1 = 38 padded seconds; arrival: 2*10 + 2*9 + 2*8 = 54.
    assert padding_overhead(durations, planned) == pytest.approx(38 / 31 - 1)
    assert padding_overhead(durations, arrival) == pytest.approx(54 / 31 - 1)
    assert padding_overhead(durations, planned) < padding_overhead(durations, arrival)


def test_padding_overhead_edges() -> None:
    assert padding_overhead([2.0, 2.0, 2.0], [[0, 1, 2]]) == 0.0
    assert padding_overhead([4.0, 2.0], [[0, 1]]) == pytest.approx(8 / 6 - 1)
    assert padding_overhead([], []) == 0.0
    assert padding_overhead([0.0, 0.0], [[0, 1]]) == 0.0
    assert padding_overhead([3.0, 1.0], [[0], [], [1]]) == 0.0  # empty batches cost nothing


def test_max_batch_seconds_closes_batches() -> None:
    durations = [5.0, 4.0, 3.0, 2.0, 1.0, 1.0]
    batches = plan_batches(durations, 10, max_batch_seconds=10.0)
    # [5,4] pads to 10 (allowed: not over); adding 3 would make 15. [3,2,1] pads to 9; a 4th would make 12.
    assert batches == [[0, 1], [2, 3, 4], [5]]
    assert [_padded(durations, b) for b in batches] == [10.0, 9.0, 1.0]


def test_batch_size_and_seconds_together() -> None:
    durations = [1.0] * 7
    assert plan_batches(durations, 3, max_batch_seconds=100.0) == [[0, 1, 2], [3, 4, 5], [6]]
    assert plan_batches(durations, 10, max_batch_seconds=2.5) == [[0, 1], [2, 3], [4, 5], [6]]


def test_over_long_clip_gets_its_own_batch() -> None:
    assert plan_batches([30.0, 2.0, 2.0], 8, max_batch_seconds=10.0) == [[0], [1, 2]]
    assert plan_batches([2.0, 30.0, 2.0, 25.0], 8, max_batch_seconds=10.0) == [[1], [3], [0, 2]]


def test_every_index_exactly_once_and_limits_hold() -> None:
    rng = random.Random(7)
    for trial in range(50):
        n = rng.randint(0, 60)
        durations = [round(rng.uniform(0.2, 40.0), 2) for _ in range(n)]
        batch_size = rng.randint(1, 12)
        max_seconds = rng.choice([None, 15.0, 60.0, 200.0])
        batches = plan_batches(durations, batch_size, max_seconds)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(n)), trial
        assert all(1 <= len(b) <= batch_size for b in batches)
        if max_seconds is not None:
            assert all(len(b) == 1 or _padded(durations, b) <= max_seconds for b in batches)
        # Longest first within and across batches.
        assert [durations[i] for i in flat] == sorted(durations, reverse=True)


def test_empty_input() -> None:
    assert plan_batches([], 4) == []


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_size_below_one_raises(batch_size) -> None:
    with pytest.raises(ValueError, match=f"batch_size must be >= 1, got {batch_size}"):
        plan_batches([1.0, 2.0], batch_size)
