"""The dataset graph's shape: decoding stays its own CPU task stage, never fused into the inference actor, and nothing
between the actors and the output is a shuffle (no barrier)."""

from __future__ import annotations

from connectors.inputs import InputSource
from pipeline.assembly import RunInfo
from pipeline.decode import DecodeSettings
from pipeline.graph import ActorPool, ComputeSpec, transcription_graph
from pipeline.inference import InferenceSettings
from pipeline.models.base import ModelSettings
from pipeline.locales import Locales
from pipeline.options import JobDefaults
from pipeline.source import SourceSettings


def test_decode_is_not_fused_into_the_actor_and_nothing_is_a_shuffle(ray_session, tiny_model, tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio_filepath": "a.wav"}\n')
    source = SourceSettings(JobDefaults("auto", "mix"), Locales.from_dictionary({"auto": 101}), 600.0, 16)
    inference = InferenceSettings(adapter="nemotron_rnnt", model=ModelSettings(model_path=str(tiny_model)))
    ds = transcription_graph([InputSource("manifest", str(manifest))], source, DecodeSettings(), inference,
                             ComputeSpec(), RunInfo("r", "m", None), ActorPool(use_gpu=False, min_actors=1, max_actors=1),
                             [], None)
    ds.explain()
    plan = capsys.readouterr().out
    physical = plan.split("Physical Plan (Optimized)")[1]
    assert "TaskPoolMapOperator[MapBatches(decode_block)]" in physical
    assert "ActorPoolMapOperator[MapBatches(TranscriptionActor)]" in physical
    assert "ActorPoolMapOperator[MapBatches(Assembler)]" in physical
    for barrier in ("AllToAll", "HashShuffle", "Aggregate", "Sort", "GroupBy"):
        assert barrier not in physical, barrier
