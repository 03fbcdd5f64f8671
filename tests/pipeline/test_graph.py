"""The dataset graph's shape: decoding stays its own CPU task stage, never fused into the inference actor, and nothing
between the actors and the output is a shuffle (no barrier)."""

from __future__ import annotations

from connectors.inputs import InputSource
from pipeline.assembly import RunInfo
from pipeline.decode import DecodeSettings
from pipeline.graph import ActorPool, ComputeSpec, decode_stage, transcription_graph
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


def test_each_table_a_decode_task_hands_on_is_a_block_of_its_own(ray_session, tmp_path):
    """A long recording's pieces reach the actors one per block (one per actor call), not joined by Ray Data's
    block shaping into one block as large as the recording: the memory bound is the work block's."""
    import numpy as np
    import pyarrow as pa
    import ray
    import soundfile as sf

    from pipeline.records import SOURCE_SCHEMA, WORK_BLOCK_SCHEMA
    from pipeline.segmenter import SegmentPolicy
    from tests.audio_factory import bursts

    sf.write(tmp_path / "long.wav", bursts(130.0, [(s, s + 7.0) for s in np.arange(0.5, 130, 9.0)]), 16000)
    row = {name: None for name in SOURCE_SCHEMA.names}
    row.update(row_id="x", audio_url=str(tmp_path / "long.wav"), channel_mode="mix", prompt_locale="auto")
    work = ray.data.from_arrow(pa.Table.from_pylist([{"block": 0, "rows": [row]}], schema=WORK_BLOCK_SCHEMA))
    decode = DecodeSettings(segmenting=SegmentPolicy(method="energy", max_seconds=20, min_seconds=8),
                            block_seconds=35.0)
    blocks = [ray.get(ref) for bundle in decode_stage(work, decode, ComputeSpec(decode_memory_mb=64))
              .iter_internal_ref_bundles() for ref in bundle.block_refs]
    assert [(b["piece"].to_pylist(), b["final_piece"].to_pylist()) for b in blocks] == \
        [([0], [False]), ([1], [False]), ([2], [True])]
