"""Tests for the VAD method (pipeline.vad, pipeline.vad_segmenter) on generated noisy calls with known speech."""

from __future__ import annotations

import shutil
import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest

from benchmarks.noisy_calls import (NoisyCall, dtmf, hold_music, make_call, ring_tones, score_segments,
                                    sounding_stretches)
from pipeline.segmenter import Segment, SegmentPolicy, segment_stream
from pipeline.vad import FRAME_SAMPLES, SpeechProbabilities

RATE = 16_000
VAD = SegmentPolicy(method="vad")

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not on PATH")


@pytest.fixture(scope="module")
def call() -> NoisyCall:
    return make_call(seed=7, seconds=150.0)


def blocks_of(x: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for i in range(0, len(x), size):
        yield x[i:i + size]


def cut(x: np.ndarray, policy: SegmentPolicy = VAD, size: int = 10 * RATE) -> list[Segment]:
    return list(segment_stream(blocks_of(x, size), RATE, policy))


def test_probabilities_are_the_packages_own(call: NoisyCall) -> None:
    import torch
    from silero_vad import load_silero_vad

    x = call.audio[: 40 * RATE]
    model = load_silero_vad()
    with torch.no_grad():
        reference = np.array([float(model(torch.from_numpy(x[i:i + FRAME_SAMPLES]), RATE))
                              for i in range(0, len(x) - FRAME_SAMPLES + 1, FRAME_SAMPLES)])
    scores = SpeechProbabilities()
    ours = np.concatenate([scores.feed(b) for b in blocks_of(x, 7919)])  # blocks off the frame grid
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=1e-4)
    assert (reference > 0.5).any() and (reference < 0.1).any()  # the stretch holds speech and non-speech


def test_segments_hold_the_speech_and_leave_out_the_rest(call: NoisyCall) -> None:
    segments = cut(call.audio)
    score = score_segments(call, 0, [(s.start, s.end) for s in segments])
    assert score.speech_kept / score.speech_seconds >= 0.98
    assert score.nonspeech_sent / score.nonspeech_seconds <= 0.15
    assert score.words_missed == 0
    for seg in segments:
        a, b = round(seg.start * RATE), round(seg.end * RATE)
        np.testing.assert_array_equal(seg.samples, call.audio[a:b])
        assert 0 < seg.end - seg.start <= VAD.max_seconds
        assert any(u.start < seg.end and seg.start < u.end for u in call.utterances), \
            f"{seg.start:.1f}-{seg.end:.1f} s holds no speech"
    for prev, seg in zip(segments, segments[1:]):
        assert seg.start >= prev.end - seg.overlap_before
    # Music, tones and silences are not sent (a section's edges may touch a neighbouring segment's pads).
    for kind, start, end, _ in call.events:
        if kind in ("music", "silence", "ring") and end - start > 5:
            sent = sum(max(0.0, min(end, s.end) - max(start, s.start)) for s in segments)
            assert sent <= 2 * (VAD.vad_start_pad_seconds + VAD.vad_end_pad_seconds), (kind, start, end, sent)


def test_cuts_fall_between_words_and_forced_cuts_overlap_only_in_speech(call: NoisyCall) -> None:
    # 70 s of the call's utterances back to back (no gap), then the call: a VAD sees no pause for most of a minute.
    pieces = [call.audio[round(u.start * RATE):round(u.end * RATE)] for u in call.utterances]
    run = np.concatenate(pieces)
    run = run[: 70 * RATE] if run.size > 70 * RATE else np.tile(run, 70 * RATE // run.size + 1)[: 70 * RATE]
    x = np.concatenate([run, call.audio])
    words = [(a, b) for a, b in sounding_stretches(run)]
    words += [(round(w0 * RATE) + run.size, round(w1 * RATE) + run.size) for u in call.utterances for w0, w1 in u.words]
    policy = SegmentPolicy(method="vad", max_seconds=20.0, min_seconds=5.0)
    segments = cut(x, policy, size=7919)

    assert any(s.cut_in_speech for s in segments)
    for seg, nxt in zip(segments, segments[1:]):
        end = round(seg.end * RATE)
        if seg.cut_in_speech:
            assert nxt.overlap_before == policy.overlap_seconds
            assert nxt.start == pytest.approx(seg.end - policy.overlap_seconds)
            assert seg.end - seg.start == pytest.approx(policy.max_seconds)
        else:
            assert nxt.overlap_before == 0.0 and nxt.start >= seg.end
            assert not any(a < end < b for a, b in words), f"cut at {seg.end:.2f} s inside a word"
    assert all(s.end - s.start <= policy.max_seconds + 1e-9 for s in segments)


def test_silence_music_and_tones_give_no_segments() -> None:
    rng = np.random.default_rng(3)
    floor = (1e-3 * rng.standard_normal(60 * RATE)).astype(np.float32)
    music = 0.2 * hold_music(60.0, rng)
    tones = np.concatenate([0.3 * ring_tones(3), 0.3 * dtmf("0123456789*#" * 3, rng), floor[: 30 * RATE]])
    for x in (np.zeros(60 * RATE, np.float32), floor, music, tones):
        assert cut(x) == []
    # A short clip skips the VAD (vad_skip_short): one segment, as the energy rule cuts it; without the skip: none.
    assert len(cut(music[: 10 * RATE])) == 1
    assert cut(music[: 10 * RATE], SegmentPolicy(method="vad", vad_skip_short=False)) == []


def test_block_sizes_do_not_change_the_segments(call: NoisyCall) -> None:
    expected = cut(call.audio, size=call.audio.size)
    for size in (7919, RATE):
        got = cut(call.audio, size=size)
        assert [(s.start, s.end, s.cut_in_speech, s.overlap_before) for s in got] == \
            [(s.start, s.end, s.cut_in_speech, s.overlap_before) for s in expected]


def test_twenty_minutes_stream_in_bounded_memory(call: NoisyCall) -> None:
    rounds = 8  # 8 x 150 s: 20 minutes, 77 MB as float32, never held at once

    def lazily() -> Iterator[np.ndarray]:
        for _ in range(rounds):
            yield from blocks_of(call.audio.copy(), 10 * RATE)

    single = cut(call.audio)
    tracemalloc.start()
    try:
        count, last_end = 0, 0.0
        for seg in segment_stream(lazily(), RATE, VAD):
            assert seg.start >= last_end - seg.overlap_before
            last_end = seg.end
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rounds * len(single) - rounds <= count <= rounds * len(single) + rounds
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="method"):
        SegmentPolicy(method="neural")
    with pytest.raises(ValueError, match="vad_threshold"):
        SegmentPolicy(vad_threshold=1.5)
    with pytest.raises(ValueError, match="vad_gap_seconds"):
        SegmentPolicy(vad_gap_seconds=0.5)
    with pytest.raises(ValueError, match="16000 Hz"):
        list(segment_stream([np.zeros(40 * 8000, np.float32)], 8000, VAD))
