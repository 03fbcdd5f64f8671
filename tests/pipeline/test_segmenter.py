"""Tests for pipeline.segmenter: synthetic 'speech' (loud modulated bursts) with silences at known positions."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest

from pipeline.segmenter import Segment, SegmentPolicy, merge_overlap, segment_stream

RATE = 16_000
# The energy rule (tests/pipeline/test_vad_segmenter.py tests the VAD) with the defaults (30 s max, 10 s min, 1 s
# overlap, 50 ms frames, 0.2 s pauses, -40 dBFS) without trimming leading pauses, so that the segments tile the
# recording; TRIMMING is the rule's default, tested in its own section.
POLICY = SegmentPolicy(method="energy", trim_silence=False)
TRIMMING = SegmentPolicy(method="energy")


# --- generators ---------------------------------------------------------------------------------------------------


def plan_speech(seconds: float, seed: int = 0, gap: tuple[float, float] = (0.3, 1.2),
                burst: tuple[float, float] = (0.8, 7.0)) -> list[tuple[int, int]]:
    """Speech spans (start, end) in samples: bursts of random length separated by gaps of random length."""
    rng = np.random.default_rng(seed)
    total, t, spans = int(seconds * RATE), 0, []
    while t < total:
        end = min(total, t + int(rng.uniform(*burst) * RATE))
        spans.append((t, end))
        t = end + int(rng.uniform(*gap) * RATE)
    return spans


def render(spans: list[tuple[int, int]], a: int, b: int, seed: int, level: float = 1.0,
           floor: float = 1e-3) -> np.ndarray:
    """Samples [a, b): a faint noise floor, plus 'speech' (a 180 Hz tone and noise, modulated at a syllable rate
    of 4 Hz down to -10 dB) over the spans."""
    rng = np.random.default_rng(seed)
    x = floor * rng.standard_normal(b - a, dtype=np.float32)
    t = np.arange(a, b) / RATE
    for s, e in spans:
        lo, hi = max(s, a), min(e, b)
        if lo < hi:
            tt = t[lo - a : hi - a]
            envelope = 0.3 + 0.7 * np.abs(np.sin(2 * np.pi * 2.0 * tt))
            speech = envelope * (0.2 * np.sin(2 * np.pi * 180.0 * tt) + 0.1 * rng.standard_normal(hi - lo))
            x[lo - a : hi - a] += speech.astype(np.float32)
    return x * np.float32(level)


def gaps_of(spans: list[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    return [(e, s2) for (_, e), (s2, _) in zip(spans, [*spans[1:], (total, total)]) if s2 > e]


def blocks_of(x: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for i in range(0, len(x), size):
        yield x[i : i + size]


def join(segments: list[Segment]) -> np.ndarray:
    """The recording back from its segments, each without what it shares with the previous one."""
    return np.concatenate([s.samples[round(s.overlap_before * RATE) :] for s in segments])


def check_common(segments: list[Segment], total: int, policy: SegmentPolicy = POLICY) -> None:
    assert segments[0].start == 0.0 and segments[0].overlap_before == 0.0
    assert segments[-1].end == total / RATE and not segments[-1].cut_in_speech
    for prev, seg in zip(segments, segments[1:]):
        assert seg.start >= prev.start
        assert seg.start == pytest.approx(prev.end - seg.overlap_before, abs=0.5 / RATE)
        assert seg.overlap_before == (policy.overlap_seconds if prev.cut_in_speech else 0.0)
    for seg in segments:
        assert seg.samples.dtype == np.float32 and seg.samples.ndim == 1
        assert len(seg.samples) == round((seg.end - seg.start) * RATE)
        assert seg.end - seg.start <= policy.max_seconds
    for seg in segments[:-1]:
        assert seg.end - seg.start >= policy.min_seconds


# --- cutting at pauses --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "floor"),
    [
        pytest.param(1.0, 1e-3, id="clean"),  # speech about -15 dBFS, pauses -60 dBFS
        pytest.param(10 ** (-35 / 20), 1e-3 * 10 ** (-35 / 20), id="quiet-recording"),  # speech below silence_db
        pytest.param(1.0, 0.006, id="noise-floor-minus-44-dBFS"),
    ],
)
def test_cuts_fall_inside_the_known_silences(level: float, floor: float) -> None:
    seconds = 240.0
    total = int(seconds * RATE)
    spans = plan_speech(seconds, seed=1)
    x = render(spans, 0, total, seed=2, level=level, floor=floor / level)
    segments = list(segment_stream(blocks_of(x, 10 * RATE), RATE, POLICY))

    check_common(segments, total)
    assert len(segments) >= seconds / POLICY.max_seconds
    assert not any(s.cut_in_speech for s in segments)  # pauses every few seconds: never a forced cut
    gaps = gaps_of(spans, total)
    for seg in segments[:-1]:
        cut = round(seg.end * RATE)
        assert any(a <= cut <= b for a, b in gaps), f"cut at {seg.end:.3f} s is not in a silence"
    # Pause cuts only: the segments tile the recording exactly.
    assert sum(round((s.end - s.start) * RATE) for s in segments) == total
    np.testing.assert_array_equal(join(segments), x)


def test_longest_pause_wins_unless_a_later_one_is_at_least_half_as_long() -> None:
    def recording(pauses: list[tuple[float, float]]) -> np.ndarray:
        spans, t = [], 0
        for a, b in pauses:
            spans.append((t, int(a * RATE)))
            t = int(b * RATE)
        spans.append((t, 45 * RATE))
        return render(spans, 0, 45 * RATE, seed=5)

    # 1.0 s at 12 s against 0.3 s at 25 s: the long pause (0.3 < 1.0 / 2).
    first = next(segment_stream([recording([(12.0, 13.0), (25.0, 25.3)])], RATE, POLICY))
    assert first.end == pytest.approx(12.5, abs=0.05) and not first.cut_in_speech
    # 0.6 s at 12 s against 0.4 s at 25 s: as good, and later, so the segment is longer.
    first = next(segment_stream([recording([(12.0, 12.6), (25.0, 25.4)])], RATE, POLICY))
    assert first.end == pytest.approx(25.2, abs=0.05)
    # A pause before min_seconds does not count, nor one shorter than pause_seconds: forced cut.
    first = next(segment_stream([recording([(5.0, 7.0), (20.0, 20.1)])], RATE, POLICY))
    assert first.cut_in_speech and first.end == 30.0


# --- forced cuts ----------------------------------------------------------------------------------------------------


def test_continuous_noise_is_cut_by_force_with_overlap() -> None:
    seconds = 100.0
    total = int(seconds * RATE)
    x = (0.2 * np.random.default_rng(3).standard_normal(total)).astype(np.float32)
    segments = list(segment_stream(blocks_of(x, 10 * RATE), RATE, POLICY))

    check_common(segments, total)
    # Windows of 30 s, each next one starting 1 s before the previous end: 0-30, 29-59, 58-88, 87-100.
    assert [(s.start, s.end) for s in segments] == [(0.0, 30.0), (29.0, 59.0), (58.0, 88.0), (87.0, 100.0)]
    assert [s.cut_in_speech for s in segments] == [True, True, True, False]
    assert [s.overlap_before for s in segments] == [0.0, 1.0, 1.0, 1.0]
    # Every sample is covered, the overlaps twice, and the recording comes back exactly.
    np.testing.assert_array_equal(join(segments), x)
    np.testing.assert_array_equal(segments[1].samples[: RATE], segments[0].samples[-RATE:])


def test_long_stretch_without_pause_inside_ordinary_speech() -> None:
    seconds = 150.0
    total = int(seconds * RATE)
    spans = [s for s in plan_speech(seconds, seed=4) if not (40 * RATE <= s[0] < 100 * RATE)]
    spans.append((40 * RATE, 100 * RATE))  # a minute of speech without a single pause
    spans.sort()
    x = render(spans, 0, total, seed=6)
    segments = list(segment_stream(blocks_of(x, 3 * RATE), RATE, POLICY))

    check_common(segments, total)
    assert any(s.cut_in_speech for s in segments)
    for seg in segments[:-1]:
        cut = round(seg.end * RATE)
        if seg.cut_in_speech:
            assert 40 * RATE < cut < 100 * RATE
        else:
            assert any(a <= cut <= b for a, b in gaps_of(spans, total))
    np.testing.assert_array_equal(join(segments), x)


# --- streaming ------------------------------------------------------------------------------------------------------


def test_one_hour_streamed_lazily_in_bounded_memory() -> None:
    seconds = 3600
    total = seconds * RATE  # 57.6 M samples: 230 MB as float32, never held at once
    spans = plan_speech(seconds, seed=7)

    def lazily() -> Iterator[np.ndarray]:
        for i, a in enumerate(range(0, total, 10 * RATE)):
            yield render(spans, a, min(total, a + 10 * RATE), seed=100 + i)

    tracemalloc.start()
    try:
        count, covered, last_end, longest = 0, 0, 0.0, 0.0
        for seg in segment_stream(lazily(), RATE, POLICY):
            assert seg.start == last_end or seg.overlap_before > 0
            count += 1
            covered += len(seg.samples) - round(seg.overlap_before * RATE)
            last_end = seg.end
            longest = max(longest, seg.end - seg.start)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert covered == total and last_end == seconds
    assert longest <= POLICY.max_seconds
    assert seconds / POLICY.max_seconds <= count <= seconds / POLICY.min_seconds + 1
    assert peak < 50 * 2**20, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize("sizes", ["7919", "random", "one-second"])
def test_block_sizes_do_not_change_the_segments(sizes: str) -> None:
    seconds = 200.0
    total = int(seconds * RATE)
    spans = [s for s in plan_speech(seconds, seed=8) if not (60 * RATE <= s[0] < 110 * RATE)]
    spans = sorted([*spans, (60 * RATE, 110 * RATE)])  # forced cuts too
    x = render(spans, 0, total, seed=9)
    if sizes == "7919":
        blocks = list(blocks_of(x, 7919))
    elif sizes == "random":
        bounds = np.cumsum(np.random.default_rng(10).integers(1, 50_000, size=total // 10))
        blocks = np.split(x, bounds[bounds < total])
    else:
        blocks = list(blocks_of(x, RATE))

    expected = list(segment_stream([x], RATE, POLICY))
    got = list(segment_stream(iter(blocks), RATE, POLICY))
    assert any(s.cut_in_speech for s in expected) and not all(s.cut_in_speech for s in expected[:-1])
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        fields = ("start", "end", "cut_in_speech", "overlap_before")
        assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
        np.testing.assert_array_equal(a.samples, b.samples)


# --- leading pauses (rule 5) -------------------------------------------------------------------------------------


def check_trimmed(segments: list[Segment], x: np.ndarray, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Every speech sample is in a segment with the recording's own samples; what no segment holds lies inside a
    known silence and ends pause_seconds before the next sound. Returns the skipped stretches (samples)."""
    skipped, covered_to = [], 0
    for seg in segments:
        a, b = round(seg.start * RATE), round(seg.end * RATE)
        np.testing.assert_array_equal(seg.samples, x[a:b])
        assert b - a <= TRIMMING.max_seconds * RATE
        assert seg.overlap_before == 0.0 or a == covered_to - round(seg.overlap_before * RATE)
        if a > covered_to:
            assert seg.overlap_before == 0.0
            skipped.append((covered_to, a))
        covered_to = b
    assert covered_to == len(x)
    for a, b in skipped:
        silence = [(s, e) for s, e in gaps_of([(0, 0), *spans], len(x)) if s <= a and b <= e]
        assert silence, f"skipped {a / RATE:.3f}-{b / RATE:.3f} s is not inside a silence"
        # The lead-in: the next sound starts pause_seconds after the new start (to a frame).
        assert abs((silence[0][1] - b) / RATE - TRIMMING.pause_seconds) <= TRIMMING.frame_seconds + 1e-9
    return skipped


def test_segments_start_pause_seconds_before_their_first_sound() -> None:
    seconds = 240.0
    total = int(seconds * RATE)
    # Pauses of 1-4 s, as on one side of a split call, and a recording that opens with 6 s of silence.
    spans = [(s + 6 * RATE, min(total, e + 6 * RATE)) for s, e in plan_speech(seconds - 6, seed=21, gap=(1.0, 4.0))]
    x = render(spans, 0, total, seed=22)
    segments = list(segment_stream(blocks_of(x, 10 * RATE), RATE, TRIMMING))

    skipped = check_trimmed(segments, x, spans)
    assert segments[0].start == pytest.approx(6.0 - TRIMMING.pause_seconds, abs=TRIMMING.frame_seconds)
    assert len(skipped) >= len(segments) - 1  # after every pause cut (1-4 s pauses: more than a pause is left)
    assert sum(b - a for a, b in skipped) / RATE > 6.0 + 0.3 * (len(segments) - 1)
    # The cuts are where they would be without trimming or later (a segment's window starts later).
    untrimmed = list(segment_stream([x], RATE, POLICY))
    assert segments[0].end >= untrimmed[0].end


@pytest.mark.parametrize("sizes", ["7919", "one-second"])
def test_trimming_does_not_depend_on_block_sizes_and_keeps_overlaps(sizes: str) -> None:
    seconds = 200.0
    total = int(seconds * RATE)
    spans = [s for s in plan_speech(seconds, seed=23, gap=(0.5, 3.0)) if not (60 * RATE <= s[0] < 110 * RATE)]
    spans = sorted([*spans, (60 * RATE, 110 * RATE)])  # forced cuts too: a segment after one is never trimmed
    x = render(spans, 0, total, seed=24)
    expected = list(segment_stream([x], RATE, TRIMMING))
    got = list(segment_stream(blocks_of(x, 7919 if sizes == "7919" else RATE), RATE, TRIMMING))

    assert any(s.cut_in_speech for s in expected) and check_trimmed(expected, x, spans)
    assert [(s.start, s.end, s.cut_in_speech, s.overlap_before) for s in got] == \
        [(s.start, s.end, s.cut_in_speech, s.overlap_before) for s in expected]


def test_a_quiet_window_or_short_lead_is_not_trimmed() -> None:
    silent = np.zeros(70 * RATE, np.float32)
    assert [s.start for s in segment_stream([silent], RATE, TRIMMING)] == \
        [s.start for s in segment_stream([silent], RATE, POLICY)]
    # Speech from 0.15 s: the leading quiet run is shorter than a pause, nothing to skip.
    x = render([(int(0.15 * RATE), 5 * RATE)], 0, 5 * RATE, seed=25)
    (seg,) = segment_stream([x], RATE, TRIMMING)
    assert seg.start == 0.0
    # A short recording (the remainder alone) is trimmed too: 2 s of silence, then 3 s of speech.
    x = render([(2 * RATE, 5 * RATE)], 0, 5 * RATE, seed=26)
    (seg,) = segment_stream([x], RATE, TRIMMING)
    assert seg.start == pytest.approx(2.0 - TRIMMING.pause_seconds, abs=TRIMMING.frame_seconds)
    np.testing.assert_array_equal(seg.samples, x[round(seg.start * RATE):])


# --- edges ----------------------------------------------------------------------------------------------------------


def test_recording_shorter_than_min_seconds_is_one_segment() -> None:
    x = render([(0, 3 * RATE), (4 * RATE, 7 * RATE)], 0, 7 * RATE + 123, seed=11)
    (seg,) = segment_stream(blocks_of(x, 1000), RATE, POLICY)
    assert (seg.start, seg.end, seg.cut_in_speech, seg.overlap_before) == (0.0, (7 * RATE + 123) / RATE, False, 0.0)
    np.testing.assert_array_equal(seg.samples, x)


def test_exactly_max_seconds_is_one_segment_and_one_more_sample_is_two() -> None:
    x = (0.2 * np.random.default_rng(12).standard_normal(30 * RATE + 1)).astype(np.float32)
    assert len(list(segment_stream([x[:-1]], RATE, POLICY))) == 1
    first, second = segment_stream([x], RATE, POLICY)
    assert (first.end, second.start, second.end) == (30.0, 29.0, (30 * RATE + 1) / RATE)


def test_short_last_segment_is_kept_and_empty_input_gives_none() -> None:
    x = (0.2 * np.random.default_rng(13).standard_normal(59 * RATE + 1)).astype(np.float32)
    segments = list(segment_stream([x], RATE, POLICY))
    assert segments[-1].end - segments[-1].start == pytest.approx(1.0 + 1 / RATE)  # the overlap and one sample
    assert list(segment_stream([], RATE, POLICY)) == []
    assert list(segment_stream([np.zeros(0, np.float32)] * 3, RATE, POLICY)) == []


def test_digital_silence_is_one_long_pause() -> None:
    x = np.zeros(70 * RATE, np.float32)
    segments = list(segment_stream([x], RATE, POLICY))
    assert not any(s.cut_in_speech for s in segments)
    check_common(segments, len(x))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mono"):
        list(segment_stream([np.zeros((2, 100), np.float32)], RATE, POLICY))
    with pytest.raises(ValueError, match="sample_rate"):
        list(segment_stream([], 0, POLICY))
    with pytest.raises(ValueError, match="min_seconds"):
        SegmentPolicy(min_seconds=40.0)
    with pytest.raises(ValueError, match="overlap_seconds"):
        SegmentPolicy(overlap_seconds=30.0)
    with pytest.raises(ValueError, match="frame_seconds"):
        SegmentPolicy(frame_seconds=0.0)


# --- merge_overlap --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "following", "expected"),
    [
        ("thank you for calling", "for calling how can", "how can"),
        ("thank you for calling", "calling how can", "how can"),
        ("thank you for calling", "thank you for calling", ""),
        ("Thank you for CALLING.", "for, calling how can", "how can"),  # case and punctuation do not matter
        ("it's fine", "Its fine today", "today"),
        ("thank you for calling", "how can I help", "how can I help"),  # no match
        ("thank you for calling", "for how can", "for how can"),  # a prefix that is not a suffix
        ("", "how can", "how can"),
        ("thank you", "", ""),
        ("wait -", "- wait", "- wait"),  # punctuation-only tokens never match on their own
    ],
)
def test_merge_overlap(previous: str, following: str, expected: str) -> None:
    assert merge_overlap(previous.split(), following.split()) == expected.split()


def test_merge_overlap_prefers_the_longest_match_up_to_max_words() -> None:
    prev = "a b a b a b".split()
    assert merge_overlap(prev, "a b a b c".split()) == ["c"]
    words = [f"w{i}" for i in range(12)]
    assert merge_overlap(words, words[2:] + ["x"], max_words=8) == words[2:] + ["x"]  # the 10-word match is too long
    assert merge_overlap(words, words[4:] + ["x"], max_words=8) == ["x"]
    assert merge_overlap(words, words[4:] + ["x"], max_words=0) == words[4:] + ["x"]
