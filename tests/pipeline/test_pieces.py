"""Tests for pipeline.pieces: the PieceStore's exactly-once rule (duplicates, any arrival order, a repeat of the piece
that completed a set and of the others, release after commit), and the merge of a recording's pieces."""

from __future__ import annotations

import itertools

import pytest

from pipeline.pieces import PieceStore, merge_pieces


def _piece(row_id: str, piece: int, final: bool, segments: int = 2, **extra) -> dict:
    return {"row_id": row_id, "piece": piece, "final_piece": final, "duration": None, **extra,
            "segments": [{"segment_index": piece * segments + i, "channel": None, "raw_text": f"p{piece}s{i}"}
                         for i in range(segments)]}


def _three(row_id: str = "r") -> list[dict]:
    return [_piece(row_id, 0, False), _piece(row_id, 1, False), _piece(row_id, 2, True, duration=300.0)]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_the_piece_that_completes_a_set_gets_it_whatever_the_order(order) -> None:
    store, pieces = PieceStore(), _three()
    answers = [store.add("r", i, pieces[i]["final_piece"], pieces[i]) for i in order]
    assert answers[:2] == [None, None]
    assert answers[2] == pieces  # all of them, in piece order
    assert store.held() == {"incomplete": 0, "uncommitted": 1, "emitted": 1}


def test_duplicates_count_once_and_only_a_repeat_of_the_emitter_gets_the_set_again() -> None:
    store, (p0, p1, p2) = PieceStore(), _three()
    assert store.add("r", 2, True, p2) is None
    assert store.add("r", 2, True, p2) is None  # a re-run of the final piece's task: still two missing
    assert store.add("r", 0, False, p0) is None
    assert store.add("r", 0, False, p0) is None  # a duplicate does not stand in for piece 1
    assert store.add("r", 1, False, p1) == [p0, p1, p2]  # piece 1 completed the set: the emitter
    # Lineage re-runs after the set was emitted: the emitter again gets the set (its output was lost and is made
    # again), any other piece gets nothing (it made no row the first time either).
    assert store.add("r", 0, False, p0) is None
    assert store.add("r", 2, True, p2) is None
    assert store.add("r", 1, False, p1) == [p0, p1, p2]
    # Once the driver committed the recording the set is freed; the emitter mark stays, so no repeat makes it again.
    store.release(["r", "never-seen"])
    assert store.held() == {"incomplete": 0, "uncommitted": 0, "emitted": 1}
    assert [store.add("r", i, i == 2, p) for i, p in enumerate([p0, p1, p2])] == [None, None, None]


def test_recordings_are_gathered_apart() -> None:
    store = PieceStore()
    a, b = _three("a"), _three("b")
    assert store.add("a", 0, False, a[0]) is None and store.add("b", 2, True, b[2]) is None
    assert store.add("b", 0, False, b[0]) is None and store.add("a", 2, True, a[2]) is None
    assert store.add("a", 1, False, a[1]) == a
    assert store.held() == {"incomplete": 1, "uncommitted": 1, "emitted": 1}
    assert store.add("b", 1, False, b[1]) == b


def test_a_set_of_one_final_piece_alone_is_not_complete_before_its_earlier_pieces() -> None:
    """The final piece tells how many there are; a set is complete only with every piece before it."""
    store = PieceStore()
    two = [_piece("r", 0, False), _piece("r", 1, True)]
    assert store.add("r", 1, True, two[1]) is None
    assert store.add("r", 0, False, two[0]) == two


def test_merge_takes_the_final_pieces_fields_and_every_segment_in_order() -> None:
    pieces = _three()
    pieces[2].update(error="decode failed at 250.0 s", error_stage="decode", speech_seconds=120.0)
    merged = merge_pieces(pieces)
    assert merged["duration"] == 300.0 and merged["error"] == "decode failed at 250.0 s"
    assert merged["speech_seconds"] == 120.0
    assert [s["segment_index"] for s in merged["segments"]] == list(range(6))
    assert merged["piece"] is None and merged["final_piece"] is None and merged["pieces"] == 3
    with pytest.raises(AssertionError):
        merge_pieces(pieces[:2])  # no final piece: never merged
