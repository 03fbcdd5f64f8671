"""Cut a mono 16 kHz stream into segments that hold its speech and nothing else it can spare (`segmenting.method=vad`).

Streaming, as the energy rule in `pipeline.segmenter`: float32 blocks of any sizes in, `Segment`s out, holding at most
about `max_seconds + vad_gap_seconds` plus one block of audio. Speech regions come from Silero VAD
(`pipeline.vad`: a region starts at a 32 ms frame whose probability is >= `vad_threshold`, ends after
`pause_seconds` under it, and counts when at least `vad_min_speech_seconds` long). The rule:

1. A segment starts `vad_start_pad_seconds` before a region (never before the previous segment's end) and takes the regions
   that follow while the non-speech between two of them is shorter than `vad_gap_seconds`.
2. A longer gap ends the segment `vad_end_pad_seconds` after its last region (the model writes a sentence's language
   tag in the frames after it); the rest of the gap is not sent to the model. No speech at all: no segment.
3. A segment that would pass `max_seconds` is cut at the longest gap between its regions whose cut point lies in
   [start + min_seconds, start + max_seconds] (gaps at least half as long as the longest count as equally good; the
   latest wins). The cut point is `vad_end_pad_seconds` after the gap's start, or its middle if that comes first; the
   next segment starts `vad_start_pad_seconds` before the next region, or at the cut point if that comes later.
4. No such gap: a forced cut at exactly start + max_seconds. If speech runs on there, `cut_in_speech` is True and
   the next segment starts `overlap_seconds` earlier (`merge_overlap` keeps the shared words once), as with the energy
   rule; if the limit falls in a gap, the next segment starts at the next region less the start pad, no overlap.

Segment boundaries fall on the VAD's 512-sample frame grid (or the pads off it), never past the recording's end.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
from numpy.typing import NDArray

from pipeline.segment_policy import Segment, SegmentPolicy
from pipeline.vad import FRAME_SAMPLES, SAMPLE_RATE, SpeechProbabilities, SpeechRegions

__all__ = ["vad_segment_stream"]


class _Tape:
    """The stream's samples from `start` on, as the blocks came (no copies until a segment is taken)."""

    def __init__(self) -> None:
        self.parts: list[NDArray[np.float32]] = []
        self.start = 0  # absolute sample index of parts[0][0]
        self.end = 0  # absolute index one past the last sample

    def append(self, block: NDArray[np.float32]) -> None:
        self.parts.append(block)
        self.end += block.size

    def drop_before(self, position: int) -> None:
        """Forget the samples before `position` (whole blocks only; the rest is trimmed when taken)."""
        while self.parts and self.start + self.parts[0].size <= position:
            self.start += self.parts.pop(0).size

    def take(self, a: int, b: int) -> NDArray[np.float32]:
        """A copy of samples [a, b)."""
        assert self.start <= a <= b <= self.end, (self.start, a, b, self.end)
        out, at = [], self.start
        for part in self.parts:
            lo, hi = max(a, at), min(b, at + part.size)
            if lo < hi:
                out.append(part[lo - at:hi - at])
            at += part.size
            if at >= b:
                break
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def vad_segment_stream(blocks: Iterable[NDArray[np.float32]], sample_rate: int,
                       policy: SegmentPolicy) -> Iterator[Segment]:
    """Mono float32 blocks at 16 kHz in, segments of speech out (module docstring). Blocks must be 1-D."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"segmenting.method=vad needs {SAMPLE_RATE} Hz audio, got {sample_rate}")
    cutter = _Cutter(policy)
    for block in blocks:
        arr = np.asarray(block, dtype=np.float32)
        if arr.ndim != 1:
            raise ValueError(f"segment_stream expects mono 1-D blocks, got shape {arr.shape}")
        if arr.size:
            yield from cutter.feed(arr)
    yield from cutter.finish()


class _Cutter:
    """The rule of the module docstring over a growing list of speech regions (in samples)."""

    def __init__(self, policy: SegmentPolicy) -> None:
        frame_seconds = FRAME_SAMPLES / SAMPLE_RATE
        self.policy = policy
        self.max = round(policy.max_seconds * SAMPLE_RATE)
        self.min = round(policy.min_seconds * SAMPLE_RATE)
        self.overlap = round(policy.overlap_seconds * SAMPLE_RATE)
        self.gap = round(policy.vad_gap_seconds * SAMPLE_RATE)
        self.start_pad = round(policy.vad_start_pad_seconds * SAMPLE_RATE)
        self.end_pad = round(policy.vad_end_pad_seconds * SAMPLE_RATE)
        self.scores = SpeechProbabilities()
        self.tracker = SpeechRegions(
            threshold=policy.vad_threshold,
            min_speech_frames=max(1, math.ceil(policy.vad_min_speech_seconds / frame_seconds - 1e-9)),
            min_silence_frames=max(1, math.ceil(policy.pause_seconds / frame_seconds - 1e-9)),
        )
        self.tape = _Tape()
        self.regions: list[tuple[int, int]] = []  # closed regions (samples) not yet wholly sent
        self.seg_start: int | None = None  # the open segment's first sample
        self.overlap_before = 0
        self.floor = 0  # no segment starts before this (the previous segment's end, or its overlap start)

    # --- what the VAD knows ----------------------------------------------------------------------------------------

    def _speech(self) -> list[tuple[int, int]]:
        """Closed regions, then the open one (to the decided frontier), in samples."""
        spans = list(self.regions)
        open_start = self.tracker.open_start
        if open_start is not None:
            spans.append((open_start * FRAME_SAMPLES, self._decided()))
        return spans

    def _decided(self) -> int:
        return min(self.tracker.decided * FRAME_SAMPLES, self.tape.end)

    # --- streaming -------------------------------------------------------------------------------------------------

    def feed(self, block: NDArray[np.float32]) -> Iterator[Segment]:
        self.tape.append(block)
        self._add(self.tracker.feed(self.scores.feed(block)))
        yield from self._decide(final=False)

    def finish(self) -> Iterator[Segment]:
        # The trailing partial frame has no score: it is speech only as the end of a region that runs into it.
        closed = self.tracker.finish()
        if closed and closed[-1][1] == self.tracker.frames:
            *closed, (a, _) = closed
            self._add(closed)
            self.regions.append((a * FRAME_SAMPLES, self.tape.end))
        else:
            self._add(closed)
        yield from self._decide(final=True)

    def _add(self, closed: list[tuple[int, int]]) -> None:
        self.regions.extend((a * FRAME_SAMPLES, min(b * FRAME_SAMPLES, self.tape.end)) for a, b in closed)

    def _decide(self, final: bool) -> Iterator[Segment]:
        frontier = self.tape.end if final else self._decided()
        while True:
            after = self.floor if self.seg_start is None else self.seg_start
            speech = [(a, b) for a, b in self._speech() if b > after]
            if self.seg_start is None:
                if not speech:
                    # Keep only what a segment starting at the next region could still need.
                    self.tape.drop_before(max(self.floor, frontier - self.start_pad))
                    return
                self.seg_start = max(self.floor, speech[0][0] - self.start_pad)
                self.overlap_before = 0
            if not speech:  # nothing left after a cut at the very end
                self.seg_start = None
                continue
            start, limit = self.seg_start, self.seg_start + self.max
            # The segment's speech: the regions up to the first gap of vad_gap_seconds (rule 1).
            group, closed = speech, False
            for i, ((_, b), (a2, _)) in enumerate(zip(speech, speech[1:])):
                if a2 - b >= self.gap:
                    group, closed = speech[: i + 1], True
                    break
            else:
                closed = self.tracker.open_start is None and (final or frontier - speech[-1][1] >= self.gap)
            if closed and group[-1][1] <= limit:  # rule 2
                yield self._emit(start, min(group[-1][1] + self.end_pad, limit, self.tape.end), None, False)
            elif closed or frontier >= limit + self.gap:  # speech runs past the limit: rules 3 and 4
                yield self._cut(start, limit, group)
            else:
                return

    def _cut(self, start: int, limit: int, speech: list[tuple[int, int]]) -> Segment:
        """Rules 3 and 4: the segment [start, ...) must end by `limit`; `speech` runs past it."""
        candidates = []  # (gap length, cut point, next start)
        for (_, b), (a2, _) in zip(speech, speech[1:]):
            cut = min(b + self.end_pad, (b + a2) // 2)
            if start + self.min <= cut <= limit:
                candidates.append((a2 - b, cut, max(a2 - self.start_pad, cut)))
        if candidates:
            longest = max(c[0] for c in candidates)
            _, cut, next_start = [c for c in candidates if 2 * c[0] >= longest][-1]
            return self._emit(start, cut, next_start, False)
        if any(a < limit < b for a, b in speech):
            return self._emit(start, limit, limit - self.overlap, True)
        following = [a for a, _ in speech if a >= limit]
        return self._emit(start, limit, max(following[0] - self.start_pad, limit) if following else None, False)

    def _emit(self, start: int, end: int, next_start: int | None, in_speech: bool) -> Segment:
        segment = Segment(start=start / SAMPLE_RATE, end=end / SAMPLE_RATE, samples=self.tape.take(start, end),
                          cut_in_speech=in_speech, overlap_before=self.overlap_before / SAMPLE_RATE)
        self.floor = end if next_start is None else next_start
        self.overlap_before = end - next_start if next_start is not None and next_start < end else 0
        self.seg_start = next_start
        self.regions = [r for r in self.regions if r[1] > self.floor]
        self.tape.drop_before(self.floor)
        return segment
