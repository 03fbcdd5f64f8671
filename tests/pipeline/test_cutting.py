"""pipeline.cutting: spans cut from a decoded stream are exactly the samples at their offsets, across block
boundaries, per channel or mixed as the transcription mixed; what the audio cannot give is a per-span problem; clips
encode losslessly for audio decoded from 16-bit sources."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from pipeline.audio import stream_audio
from pipeline.cutting import Span, cut_spans, encode_clip, sample_range

RATE = 16000


def blocks_of(audio: np.ndarray, size: int):
    """(channels, n) audio as blocks of `size` samples, as a decoder yields them."""
    for i in range(0, audio.shape[1], size):
        yield audio[:, i:i + size]


def test_spans_are_the_samples_at_their_offsets_across_blocks_channels_and_mixes():
    rng = np.random.default_rng(0)
    audio = (rng.integers(-20000, 20000, (2, 10 * RATE)) / 32768).astype(np.float32)
    spans = [Span("a", 0, 0.5, 2.25), Span("b", 1, 2.0, 7.1), Span("c", None, 6.9, 10.0), Span("d", 1, 0.0, 0.01)]
    got = {k: (x, p) for k, x, p in cut_spans(blocks_of(audio, 7000), spans, RATE)}
    for span in spans:
        a, b = sample_range(span.start, span.end, RATE)
        expected = audio.mean(axis=0, dtype=np.float32)[a:b] if span.channel is None else audio[span.channel, a:b]
        samples, problem = got[span.key]
        assert problem is None and samples.dtype == np.float32
        assert np.array_equal(samples, expected), span


def test_what_the_audio_cannot_give_is_that_spans_problem():
    audio = np.zeros((1, 3 * RATE), np.float32)
    spans = [Span("ok", None, 0.0, 1.0), Span("channel", 1, 0.0, 1.0), Span("past", None, 2.5, 4.0),
             Span("after", None, 3.5, 4.0), Span("rounding", None, 2.0, 3.01)]
    got = {k: (x, p) for k, x, p in cut_spans(blocks_of(audio, 4000), spans, RATE)}
    assert got["ok"][1] is None and len(got["ok"][0]) == RATE
    assert got["channel"] == (None, "channel 1 requested but the audio has 1 channel(s)")
    assert got["past"][0] is None and "ends at 3.00 s, before the utterance's end 4.00 s" in got["past"][1]
    assert got["after"][0] is None and "ends at 3.00 s" in got["after"][1]
    assert got["rounding"][1] is None and len(got["rounding"][0]) == RATE  # within 20 ms of the end: what there is


@pytest.mark.parametrize("codec", ["flac", "wav"])
def test_clips_of_16_bit_audio_encode_losslessly(codec):
    rng = np.random.default_rng(1)
    pcm = rng.integers(-32768, 32767, 3 * RATE).astype(np.int16)
    buffer = io.BytesIO()
    sf.write(buffer, pcm, RATE, format="WAV", subtype="PCM_16")
    _, blocks = stream_audio(buffer.getvalue(), target_sample_rate=RATE)
    decoded = np.concatenate([b[0] for b in blocks])
    clip = encode_clip(decoded[RATE:2 * RATE], RATE, codec)
    back, rate = sf.read(io.BytesIO(clip), dtype="int16")
    assert rate == RATE and np.array_equal(back, pcm[RATE:2 * RATE])
    assert sf.info(io.BytesIO(clip)).format == codec.upper()
