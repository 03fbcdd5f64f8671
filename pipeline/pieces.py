"""Putting a long recording's pieces back together after the actors, exactly once.

Decoding hands a recording longer than a work block on in pieces (pipeline.decode.decode_block), so that no task and
no actor call holds more than a work block of audio. The pieces are transcribed apart, by any actor, and arrive at
the assembly tasks in any order; this module's `PieceStore`, one small Ray actor of the job (beside the Ledger, on the
driver's node), gathers them. A piece sent to it carries no audio (text, words and times only), so it stays small.

Exactly once, under Ray's retries and lineage re-runs (a task re-run, a node lost with its blocks): the store keeps
pieces by (row_id, piece), so a piece sent twice counts once. The piece whose arrival completes the set is its
*emitter*: it gets the whole set (the assembly task then makes the recording's one output row) and every other piece
gets None (no output row). A repeat of the emitter (its task re-run because its output was lost before it was
committed) gets the same set again, and only it: so the recording is made once in every outcome of a run. The set
is kept until the driver has committed the recording (`release`), since until then a lost block may need it again;
then it is freed and only the emitter mark is kept (a few bytes a recording). Rows that travel whole never touch the
store.

A stopped job (SIGTERM) loses the store with the driver: a recording whose pieces were not all assembled was not
committed, so the rerun does it again from the start.
"""

from __future__ import annotations

from typing import Iterable


class PieceStore:
    """Run as a Ray actor (`ray.remote(num_cpus=0)(PieceStore)`); its calls run one at a time."""

    def __init__(self) -> None:
        self.pieces: dict[str, dict[int, dict]] = {}  # row_id -> piece -> the transcribed piece (no audio)
        self.count: dict[str, int] = {}  # row_id -> how many pieces, once the final one has arrived
        self.emitter: dict[str, int] = {}  # row_id -> the piece that completed its set
        self.emitted: dict[str, list[dict]] = {}  # row_id -> its set, until the recording is committed

    def add(self, row_id: str, piece: int, final: bool, row: dict) -> list[dict] | None:
        """Keep one transcribed piece. All the recording's pieces, in order, if this piece completed the set (or is
        a repeat of the piece that did); else None."""
        if row_id in self.emitter:
            return self.emitted.get(row_id) if piece == self.emitter[row_id] else None
        got = self.pieces.setdefault(row_id, {})
        got[piece] = row  # a repeat of a piece replaces it: the same piece, transcribed again
        if final:
            self.count[row_id] = piece + 1
        total = self.count.get(row_id)
        if total is None or len(got) < total:
            return None
        whole = [got[i] for i in range(total)]
        del self.pieces[row_id], self.count[row_id]
        self.emitter[row_id] = piece
        self.emitted[row_id] = whole
        return whole

    def release(self, row_ids: Iterable[str]) -> None:
        """The driver committed these recordings: their sets are not needed again."""
        for row_id in row_ids:
            self.emitted.pop(row_id, None)

    def held(self) -> dict[str, int]:
        """How many recordings are incomplete, complete but not yet committed, done (for tests and diagnosis)."""
        return {"incomplete": len(self.pieces), "uncommitted": len(self.emitted), "emitted": len(self.emitter)}


def merge_pieces(pieces: list[dict]) -> dict:
    """A recording's transcribed pieces (in order) as the one transcribed recording: the final piece's fields (it
    carries the duration, warnings and the error of a failure midway) and every piece's segments, in order."""
    final = pieces[-1]
    assert final.get("final_piece") and [p["piece"] for p in pieces] == list(range(len(pieces))), \
        [(p.get("piece"), p.get("final_piece")) for p in pieces]
    merged = {**final, "segments": [s for p in pieces for s in (p.get("segments") or [])]}
    merged["piece"], merged["final_piece"] = None, None
    merged["pieces"] = len(pieces)
    return merged


def gather(store, row: dict) -> dict | None:
    """Send one transcribed piece to the job's store (a Ray actor handle); the whole recording once this piece
    completes it, else None."""
    import ray

    whole = ray.get(store.add.remote(row["row_id"], row["piece"], bool(row.get("final_piece")), row))
    return merge_pieces(whole) if whole is not None else None
