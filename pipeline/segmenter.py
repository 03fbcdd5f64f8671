"""Cut a long mono recording into segments at pauses, streaming, for models that cannot take hours at once.

Two methods (`SegmentPolicy.method`): `vad` finds speech with Silero VAD and sends only that (`pipeline.vad_segmenter`
has its rule); `energy`, described here, cuts at quiet frames and sends everything. This module's rule is pure numpy:
no Ray, no NeMo. Offline Conformer attention is quadratic in length (time and memory), so long
recordings are transcribed as segments of at most `max_seconds`. `segment_stream` takes mono float32 blocks
of any sizes (e.g. `stream_audio`'s blocks after picking or mixing channels) and yields `Segment`s while holding at
most `max_seconds` plus one block of audio.

The cut rule, applied whenever more than `max_seconds` are buffered past the current segment's start s; everything
is measured on the *window* [s, s + max_seconds), so the result does not depend on how the input was blocked:

1. Energy: the window is split into frames of `frame_seconds` (from s; a trailing partial frame is ignored) and
   each frame's RMS level in dBFS is computed (vectorised; floor -100 dB).
2. Quiet frames: speech level L = the 95th percentile of the window's frame levels (the 95th rather than the 90th so
   that a window that is mostly silence with a little speech still finds the speech). A frame is quiet when its level
   is below

       threshold = max(min(max(silence_db, L - relative_db), L - min_contrast_db), ALWAYS_QUIET_DB)

   i.e. below the absolute `silence_db` or more than `relative_db` under the speech (whichever is more permissive:
   loud recordings with a noise floor around -35 dBFS), but never within `min_contrast_db` of the speech level
   (quiet recordings whose speech is itself below `silence_db`, and constant noise, which has no pauses), and always
   when below ALWAYS_QUIET_DB (-70 dBFS; a window of pure silence is all pause). Missing a pause is cheap (a forced cut
   with overlap), a false pause loses a word, so the rule errs towards "not quiet".
3. Pauses: runs of quiet frames clipped to the search range [s + min_seconds, s + max_seconds] that are at least
   ceil(pause_seconds / frame_seconds) frames long. Of these, the pauses at least half as long as the longest one
   count as equally good, and the latest of them wins (longer segments, still at a clear pause). The cut is in the
   middle of that run (sample-exact, on the frame grid); the next segment starts right there, with no overlap.
4. No pause: a forced cut. The segment is the whole window [s, s + max_seconds) (so it ends exactly at the hard
   limit), `cut_in_speech` is True, and the next segment starts `overlap_seconds` before that end, so a word cut at
   the boundary is whole in one of the two; `merge_overlap` removes the words the two transcripts then share.

5. Leading pause (`trim_silence`, on by default): a segment that does not start in an overlap (the recording's first,
   and each one after a pause cut) and whose window opens with quiet frames (by rule 2, on that window) longer than
   `pause_seconds` starts `pause_seconds` before its first sound instead: the model spends nothing on the silence
   (on a split call, much of each side is the other side talking) and cannot write anything there (a small model
   writes stray punctuation into silence), and the segment's start is near its first word. A window that is quiet
   throughout is kept whole (the row still gets its segment, and its transcript is empty). The end is not trimmed:
   the model writes a sentence's language tag after the sentence, in the frames that follow it (ending segments
   0.2 s after their last sound took the demo model's auto language ID on its quality set from >= 95% to 79%).

The remainder when the input ends (at most max_seconds) is the last segment, however short; only an empty input gives
no segment. Segment boundaries are exact sample positions (start = first sample / sample_rate). Without trimming and
without forced cuts the segments tile the recording, and dropping each segment's first overlap_before seconds and
joining gives back the recording sample for sample; with trimming, what is missing between one segment's end and the
next one's start is a leading pause that rule 5 skipped.
"""

from __future__ import annotations

import itertools
import math
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pipeline.segment_policy import SEGMENTING_METHODS, Segment, SegmentPolicy

__all__ = ["ALWAYS_QUIET_DB", "SEGMENTING_METHODS", "Segment", "SegmentPolicy", "merge_overlap", "segment_stream"]

# Frames below this level are quiet whatever the rest of the window sounds like (see the module docstring, rule 2).
ALWAYS_QUIET_DB = -70.0

_LEVEL_FLOOR_DB = -100.0
_SPEECH_PERCENTILE = 95.0


@dataclass(frozen=True)
class _Plan:
    """The policy in samples and frames at one sample rate."""

    sample_rate: int
    max_samples: int
    min_samples: int
    overlap_samples: int
    frame_samples: int
    pause_frames: int
    policy: SegmentPolicy

    @classmethod
    def of(cls, policy: SegmentPolicy, sample_rate: int) -> _Plan:
        max_samples = round(policy.max_seconds * sample_rate)
        overlap_samples = round(policy.overlap_seconds * sample_rate)
        frame_samples = max(1, round(policy.frame_seconds * sample_rate))
        if max_samples < 1 or max_samples - overlap_samples < 1:
            raise ValueError(
                f"at {sample_rate} Hz, max_seconds={policy.max_seconds} and overlap_seconds={policy.overlap_seconds} "
                "leave no room for progress"
            )
        pause_samples = round(policy.pause_seconds * sample_rate)
        return cls(
            sample_rate=sample_rate,
            max_samples=max_samples,
            min_samples=round(policy.min_seconds * sample_rate),
            overlap_samples=overlap_samples,
            frame_samples=frame_samples,
            pause_frames=max(1, math.ceil(pause_samples / frame_samples)),
            policy=policy,
        )


def segment_stream(
    blocks: Iterable[NDArray[np.float32]], sample_rate: int, policy: SegmentPolicy | None = None
) -> Iterator[Segment]:
    """Mono float32 blocks of any sizes in, segments out, streaming, by `policy.method`: `energy` (the module
    docstring's rule; at most max_seconds + one block buffered) or `vad` (`pipeline.vad_segmenter`; a stream no longer
    than max_seconds goes to the energy rule when `vad_skip_short`). Blocks must be 1-D (pick or mix channels first);
    empty blocks are skipped; other float dtypes are converted to float32. Every segment is at most max_seconds long.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    policy = policy if policy is not None else SegmentPolicy()
    if policy.method == "vad":
        return _vad_or_short(iter(blocks), int(sample_rate), policy)
    return _energy_stream(blocks, int(sample_rate), policy)


def _vad_or_short(blocks: Iterator[NDArray[np.float32]], sample_rate: int,
                  policy: SegmentPolicy) -> Iterator[Segment]:
    """The VAD, except for a stream that ends within max_seconds when `vad_skip_short` (the energy rule: one
    segment, its leading pause trimmed); the head is held only until the stream passes max_seconds."""
    from pipeline.vad_segmenter import vad_segment_stream  # torch and the model only where the VAD runs

    head: list[NDArray[np.float32]] = []
    if policy.vad_skip_short:
        limit, held = round(policy.max_seconds * sample_rate), 0
        for block in blocks:
            head.append(block)
            held += np.asarray(block).size
            if held > limit:
                break
        else:
            yield from _energy_stream(head, sample_rate, policy)
            return
    yield from vad_segment_stream(itertools.chain(head, blocks), sample_rate, policy)


def _energy_stream(blocks: Iterable[NDArray[np.float32]], sample_rate: int,
                   policy: SegmentPolicy) -> Iterator[Segment]:
    plan = _Plan.of(policy, sample_rate)
    rate = plan.sample_rate

    buffer = np.zeros(0, dtype=np.float32)
    buffer_start = 0  # absolute sample index of buffer[0]
    pending: list[NDArray[np.float32]] = []
    pending_samples = 0
    overlap_before = 0  # samples the segment starting at buffer_start shares with the previous one
    trim_pending = plan.policy.trim_silence  # the current segment's start may still move past a leading pause (rule 5)

    for block in blocks:
        arr = np.asarray(block, dtype=np.float32)
        if arr.ndim != 1:
            raise ValueError(f"segment_stream expects mono 1-D blocks, got shape {arr.shape}")
        if arr.size == 0:
            continue
        pending.append(arr)
        pending_samples += arr.size
        if buffer.size + pending_samples <= plan.max_samples:
            continue  # nothing to decide yet: concatenation is deferred so small blocks cost no repeated copies
        buffer = np.concatenate([buffer, *pending])
        pending, pending_samples = [], 0
        while buffer.size > plan.max_samples:
            if trim_pending:
                trim_pending = False
                skip = _leading_pause(buffer[: plan.max_samples], plan)
                if skip:
                    buffer = buffer[skip:]
                    buffer_start += skip
                    continue  # the window moved: it may need more input before a cut is chosen
            cut, next_start = _choose_cut(buffer[: plan.max_samples], plan)
            yield Segment(
                start=buffer_start / rate,
                end=(buffer_start + cut) / rate,
                samples=buffer[:cut].copy(),
                cut_in_speech=next_start < cut,
                overlap_before=overlap_before / rate,
            )
            overlap_before = cut - next_start
            trim_pending = plan.policy.trim_silence and overlap_before == 0
            buffer = buffer[next_start:]
            buffer_start += next_start

    if pending:
        buffer = np.concatenate([buffer, *pending])
    if buffer.size and trim_pending:
        skip = _leading_pause(buffer, plan)
        buffer = buffer[skip:]
        buffer_start += skip
    if buffer.size:
        yield Segment(
            start=buffer_start / rate,
            end=(buffer_start + buffer.size) / rate,
            samples=buffer.copy(),
            cut_in_speech=False,
            overlap_before=overlap_before / rate,
        )


def frame_levels_db(samples: NDArray[np.float32], frame_samples: int) -> NDArray[np.float64]:
    """RMS level in dBFS of each whole frame of `frame_samples` (a trailing partial frame is ignored)."""
    n_frames = samples.size // frame_samples
    frames = samples[: n_frames * frame_samples].reshape(n_frames, frame_samples)
    power = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / frame_samples
    return np.maximum(10.0 * np.log10(power + 1e-12), _LEVEL_FLOOR_DB)


def quiet_threshold_db(levels: NDArray[np.float64], policy: SegmentPolicy) -> float:
    """The level under which a frame of this window is quiet (module docstring, rule 2)."""
    speech = float(np.percentile(levels, _SPEECH_PERCENTILE)) if levels.size else _LEVEL_FLOOR_DB
    threshold = max(policy.silence_db, speech - policy.relative_db)
    threshold = min(threshold, speech - policy.min_contrast_db)
    return max(threshold, ALWAYS_QUIET_DB)


def _quiet_frames(window: NDArray[np.float32], plan: _Plan) -> NDArray[np.bool_]:
    """Which whole frames of the window are quiet (module docstring, rules 1 and 2)."""
    levels = frame_levels_db(window, plan.frame_samples)
    return levels < quiet_threshold_db(levels, plan.policy)


def _leading_pause(window: NDArray[np.float32], plan: _Plan) -> int:
    """Samples to skip at the window's start (module docstring, rule 5): a leading run of quiet frames longer than
    pause_seconds, less pause_seconds of lead-in before the first sound; 0 when there is none or all is quiet."""
    quiet = _quiet_frames(window, plan)
    if quiet.all():
        return 0
    first_sound = int(np.argmin(quiet))
    return max(0, first_sound - plan.pause_frames) * plan.frame_samples


def _choose_cut(window: NDArray[np.float32], plan: _Plan) -> tuple[int, int]:
    """(cut, next_start) in samples from the window's start: next_start == cut after a pause, cut - overlap after a
    forced cut at the window's end."""
    fs = plan.frame_samples
    quiet = _quiet_frames(window, plan)
    first = -(-plan.min_samples // fs)  # first whole frame at or after min_seconds
    search = quiet[first:]
    if search.size:
        edges = np.diff(np.concatenate(([False], search, [False])).astype(np.int8))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1)
        lengths = ends - starts
        ok = lengths >= plan.pause_frames
        if ok.any():
            starts, ends, lengths = starts[ok], ends[ok], lengths[ok]
            # Pauses at least half as long as the longest are as good; the latest of them makes the longest segment.
            best = int(np.flatnonzero(2 * lengths >= lengths.max())[-1])
            cut = ((2 * first + int(starts[best]) + int(ends[best])) * fs) // 2
            return cut, cut
    return plan.max_samples, plan.max_samples - plan.overlap_samples


def merge_overlap(previous_words: list[str], next_words: list[str], max_words: int = 8) -> list[str]:
    """For text stitched across a forced cut: `next_words` without its longest prefix (up to `max_words` words) that
    equals a suffix of `previous_words`, compared case- and punctuation-insensitively (only letters and digits count,
    after Unicode NFKC and casefold; a prefix of punctuation-only tokens never matches). No match -> next_words.

    merge_overlap(["thank", "you", "for", "calling"], ["For", "calling,", "how", "can"]) == ["how", "can"]
    """
    if max_words < 0:
        raise ValueError(f"max_words must be >= 0, got {max_words}")
    prev = [_normalise(w) for w in previous_words[len(previous_words) - min(max_words, len(previous_words)) :]]
    nxt = [_normalise(w) for w in next_words[:max_words]]
    for k in range(min(len(prev), len(nxt)), 0, -1):
        if prev[len(prev) - k :] == nxt[:k] and any(nxt[:k]):
            return list(next_words[k:])
    return list(next_words)


def _normalise(word: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", word).casefold() if ch.isalnum())
