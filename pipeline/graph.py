"""The Ray Data graph of one wave of recordings, left to right:

    source rows  ->  fetch + decode + cut (CPU tasks)  ->  transcribe (actor pool, GPU or CPU)
        ->  group by recording  ->  assemble (order, stitch, languages, scores)  ->  sink (recordings + segments)

Each arrow is an explicit Arrow schema (`pipeline.records`). Nothing raises out of a stage for a bad input: the row
carries its error to the sink.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy, Dataset

from pipeline.assembly import RunInfo, assemble_group
from pipeline.decode import DecodeSettings, decode_batch
from pipeline.inference import TranscriptionActor
from pipeline.models.base import ModelSettings


@dataclass(frozen=True)
class ComputeSettings:
    use_gpu: bool
    gpus_per_actor: float
    cpus_per_actor: float
    min_actors: int
    max_actors: int
    decode_cpus: float
    decode_memory_mb: int
    rows_per_block: int
    rows_per_call: int  # segments handed to one actor call: several model batches, so they can be sorted by length
    rows_per_file: int


def transcription_graph(
    source: pa.Table,
    decode: DecodeSettings,
    model: ModelSettings,
    adapter: str,
    target_lang: str,
    run: RunInfo,
    compute: ComputeSettings,
) -> Dataset:
    # Streaming repartition (no shuffle): the wave arrives as one block; decoding needs many small ones.
    rows = ray.data.from_arrow(source).repartition(target_num_rows_per_block=compute.rows_per_block)
    segments = rows.map_batches(
        decode_batch, fn_kwargs={"settings": decode}, batch_format="pyarrow", batch_size=1,
        num_cpus=compute.decode_cpus,
        # A memory reservation keeps a decode task's memory bounded on a node (as Ray's audio example does), and,
        # being a remote argument the actor stage lacks, it stops Ray from fusing decoding into the actor, where it
        # would run one file at a time with the accelerator waiting.
        memory=compute.decode_memory_mb * 2**20,
    )
    resources = {"num_gpus": compute.gpus_per_actor} if compute.use_gpu else {}
    transcribed = segments.map_batches(
        TranscriptionActor,
        fn_constructor_kwargs={"settings": model, "adapter": adapter, "target_lang": target_lang},
        batch_format="pyarrow",
        batch_size=compute.rows_per_call,
        # An autoscaling pool: a fixed pool that takes every CPU starves the decode tasks and never finishes.
        compute=ActorPoolStrategy(min_size=compute.min_actors, max_size=compute.max_actors),
        num_cpus=compute.cpus_per_actor,
        **resources,
    )
    # Text rows only from here on (the audio stayed in the actor): the shuffle is small. One partition per output
    # file, so each write task writes one pair of files of about rows_per_file recordings.
    partitions = max(1, math.ceil(source.num_rows / compute.rows_per_file))
    return transcribed.groupby("row_id", num_partitions=partitions).map_groups(
        assemble_group, fn_kwargs={"run": run}, batch_format="pyarrow"
    )
