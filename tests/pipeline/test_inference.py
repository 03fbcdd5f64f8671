"""Tests for pipeline.inference: the actor hands every segment of a work block to the adapter in one call, reads the
audio from the Arrow buffers, puts each answer back into its recording, and isolates a segment the model fails on."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipeline.decode import to_pcm16
from pipeline.inference import InferenceSettings, TranscriptionActor, segment_audio
from pipeline.models.base import AudioItem, ModelOutput, ModelSettings, WordTiming
from pipeline.records import DECODED_SCHEMA, SOURCE_SCHEMA, TRANSCRIBED_SCHEMA, to_table

CALLS: list[list] = []


class EchoAdapter:
    """A stand-in model (this is a unit test of the actor): answers with each item's length and locale; fails a
    batch holding an item of exactly 0.5 s, and that item alone."""

    def __init__(self, spec):
        self.card = None

    @staticmethod
    def describe(model_path):
        raise NotImplementedError

    def transcribe(self, items):
        CALLS.append(items)
        if any(it.num_samples == 8000 for it in items):
            if len(items) > 1:
                raise RuntimeError("a batch with the bad clip")
            raise RuntimeError("this clip breaks the model")
        return [ModelOutput(raw_text=f"{len(it.samples)}@{it.prompt_locale}", num_tokens=3,
                            words=[WordTiming("w", 0.0, 0.1, 0.9)]) for it in items]


def _recording(row_id: str, locale: str, lengths: list[int], error: str | None = None) -> dict:
    row = {name: None for name in SOURCE_SCHEMA.names}
    row.update(row_id=row_id, prompt_locale=locale, target_lang=locale, channel_mode="mix", error=error,
               error_stage="decode" if error else None)
    rng = np.random.default_rng(len(lengths))
    row["segments"] = [{"segment_index": i, "channel": None, "start": float(i), "end": float(i + 1),
                        "overlap_before": 0.0, "samples": to_pcm16(rng.uniform(-0.5, 0.5, n).astype(np.float32))}
                       for i, n in enumerate(lengths)]
    return row


@pytest.fixture()
def actor(monkeypatch) -> TranscriptionActor:
    monkeypatch.setattr("pipeline.inference.localize", lambda path, timeout=None: path)
    CALLS.clear()
    return TranscriptionActor(InferenceSettings(adapter="tests.pipeline.test_inference:EchoAdapter",
                                                model=ModelSettings(model_path="/m")))


def test_one_call_per_block_answers_in_their_recordings(actor) -> None:
    rows = [_recording("a", "de-DE", [16000, 3200]), _recording("b", "auto", []),
            _recording("c", "en-US", [4800], error="audio contains NaN or Inf samples at 9.0 s")]
    out = actor(to_table(rows, DECODED_SCHEMA))
    assert out.schema == TRANSCRIBED_SCHEMA
    assert len(CALLS) == 1 and len(CALLS[0]) == 3  # every segment of the block, in one call
    got = out.to_pylist()
    assert [[s["raw_text"] for s in r["segments"]] for r in got] == [
        ["16000@de-DE", "3200@de-DE"], [], ["4800@en-US"]]  # a recording failed midway keeps its segments' text
    assert got[2]["error"] == "audio contains NaN or Inf samples at 9.0 s"
    assert got[0]["segments"][0]["words"] == [{"word": "w", "start": 0.0, "end": 0.1, "confidence": 0.9}]
    assert [r["row_id"] for r in got] == ["a", "b", "c"] and "samples" not in out.schema.field("segments").type.value_type.names


def test_the_segment_the_model_fails_on_fails_alone(actor) -> None:
    rows = [_recording("a", "en-US", [16000, 8000, 4000])]
    (got,) = actor(to_table(rows, DECODED_SCHEMA)).to_pylist()
    assert [(s["raw_text"], s["error_stage"]) for s in got["segments"]] == [
        ("16000@en-US", None), (None, "inference"), ("4000@en-US", None)]
    assert got["segments"][1]["error"] == "RuntimeError: this clip breaks the model"


def test_segment_audio_reads_the_buffers_of_a_sliced_array() -> None:
    clips = [np.linspace(-0.5, 0.5, n, dtype=np.float32) for n in (5, 0, 7, 3)]
    struct = pa.array([{"samples": to_pcm16(c)} for c in clips],
                      pa.struct([pa.field("samples", pa.large_binary())]))
    for start in range(4):
        got = segment_audio(struct.slice(start))
        assert [len(g) for g in got] == [len(c) for c in clips[start:]]
        for g, c in zip(got, clips[start:]):
            assert g.dtype == np.int16  # views of the block's buffer: the adapter converts one batch at a time
            np.testing.assert_allclose(AudioItem(g).as_float32(), c, atol=1 / 32768)
