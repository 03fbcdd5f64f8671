"""The dataset graph's shape: decoding must stay its own CPU task stage, never fused into the inference actor."""

from __future__ import annotations


from connectors.manifests import parse_manifest
from pipeline.assembly import RunInfo
from pipeline.decode import DecodeSettings
from pipeline.graph import ComputeSettings, transcription_graph
from pipeline.models.base import ModelSettings
from pipeline.records import SOURCE_SCHEMA, to_table


def test_decode_is_not_fused_into_the_actor(ray_session, tiny_model, tone_wav, capsys):
    rows = parse_manifest(str(tone_wav.parent / "m.jsonl"), f'{{"audio_filepath": "{tone_wav}"}}'.encode())
    compute = ComputeSettings(use_gpu=False, gpus_per_actor=1, cpus_per_actor=1, min_actors=1, max_actors=1,
                              decode_cpus=1, decode_memory_mb=256, rows_per_block=4, rows_per_call=16,
                              rows_per_file=100)
    ds = transcription_graph(to_table(rows, SOURCE_SCHEMA), DecodeSettings(), ModelSettings(str(tiny_model)),
                             "nemotron_rnnt", "auto", RunInfo("r", "m", None), compute)
    ds.explain()
    plan = capsys.readouterr().out
    physical = plan.split("Physical Plan (Optimized)")[1]
    assert "TaskPoolMapOperator[MapBatches(decode_batch)]" in physical
    assert "ActorPoolMapOperator[MapBatches(TranscriptionActor)]" in physical
