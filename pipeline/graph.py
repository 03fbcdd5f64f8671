"""The Ray Data graph, left to right:

    source rows (manifests or a folder)  ->  fetch+decode (CPU tasks)  ->  transcribe (actor pool, GPU or CPU)
        ->  assemble (languages, text, scores)  ->  Parquet sink

Each arrow is an explicit Arrow schema (`pipeline.records`). Nothing raises out of a stage for a bad input: the row
carries its error to the sink.
"""

from __future__ import annotations

from dataclasses import dataclass

import ray
from ray.data import ActorPoolStrategy, Dataset

from connectors.manifests import list_audio, parse_manifest
from connectors.storage import read_bytes
from pipeline.assembly import RunInfo, assemble_batch
from pipeline.decode import DecodeSettings, decode_batch
from pipeline.inference import TranscriptionActor
from pipeline.models.base import ModelSettings
from pipeline.records import SOURCE_SCHEMA, to_table


@dataclass(frozen=True)
class ComputeSettings:
    use_gpu: bool
    gpus_per_actor: float
    cpus_per_actor: float
    min_actors: int
    max_actors: int
    decode_cpus: float
    rows_per_block: int
    rows_per_call: int  # rows handed to one actor call: several model batches, so they can be sorted by length


def _manifest_rows(item: dict) -> list[dict]:
    url = item["manifest"]
    return parse_manifest(url, read_bytes(url))


def source_rows(manifests: list[str], audio_dir: str | None, rows_per_block: int) -> Dataset:
    """One row per manifest line (or audio file), split into small blocks so decoding spreads over many tasks."""
    if manifests:
        files = ray.data.from_items([{"manifest": url} for url in manifests])
        rows = files.flat_map(_manifest_rows)
    else:
        rows = ray.data.from_items(list_audio(audio_dir))
    rows = rows.map_batches(lambda b: to_table(b.to_pylist(), SOURCE_SCHEMA), batch_format="pyarrow")
    # Streaming repartition (no shuffle): a 100k-line manifest is one block after parsing; decode needs many.
    return rows.repartition(target_num_rows_per_block=rows_per_block)


def transcription_graph(
    rows: Dataset,
    decode: DecodeSettings,
    model: ModelSettings,
    adapter: str,
    target_lang: str,
    run: RunInfo,
    compute: ComputeSettings,
) -> Dataset:
    decode_cpus = compute.decode_cpus
    decoded = rows.map_batches(
        decode_batch, fn_kwargs={"settings": decode}, batch_format="pyarrow", batch_size=None,
        # Ray fuses a task stage into the actor stage after it, unless the stage computes its resources: then
        # decoding would run inside the actor, one file at a time, with the accelerator waiting.
        ray_remote_args_fn=lambda: {"num_cpus": decode_cpus},
    )
    resources = {"num_gpus": compute.gpus_per_actor} if compute.use_gpu else {}
    transcribed = decoded.map_batches(
        TranscriptionActor,
        fn_constructor_kwargs={"settings": model, "adapter": adapter, "target_lang": target_lang},
        batch_format="pyarrow",
        batch_size=compute.rows_per_call,
        # An autoscaling pool: a fixed pool that takes every CPU starves the decode tasks and never finishes.
        compute=ActorPoolStrategy(min_size=compute.min_actors, max_size=compute.max_actors),
        num_cpus=compute.cpus_per_actor,
        **resources,
    )
    return transcribed.map_batches(assemble_batch, fn_kwargs={"run": run}, batch_format="pyarrow", batch_size=None)
