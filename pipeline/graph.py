"""The job's Ray Data graph, left to right, one streaming pass over the whole archive:

    manifests  ->  read (tasks: parse, resolve, skip done, cut into work blocks)
               ->  fetch + decode + cut (CPU tasks, one work block each)
               ->  transcribe (actor pool, GPU or CPU: the model loads once per actor, for the whole job)
               ->  assemble (a small actor pool: order, stitch, languages, scores)
               ->  committed by the driver as it goes

A recording travels as one row with its segments nested, so no stage regroups anything: no shuffle, no barrier, no
waves; the first actor call waits for one decoded work block, and finished blocks are committed while the rest runs.
A recording longer than a work block is the exception: decoding hands it on in pieces of about a work block each
(so memory does not grow with a recording's length), the pieces are transcribed like any rows, and the assembly
stage puts them back together through the job's PieceStore actor (pipeline.pieces), exactly once.
Each arrow is an explicit Arrow schema (`pipeline.records`). Nothing raises out of a stage for a bad input: the row
carries its error to the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import ray
from ray.data import ActorPoolStrategy, Dataset, TaskPoolStrategy

from connectors.inputs import InputSource
from pipeline.assembly import Assembler, RunInfo
from pipeline.decode import DecodeSettings, decode_block
from pipeline.inference import InferenceSettings, TranscriptionActor
from pipeline.settings import setting
from pipeline.source import SourceSettings, input_groups, read_blocks


@dataclass(frozen=True)
class ComputeSpec:
    """Devices, actors, work blocks and the cluster (the job's `compute` section)."""

    device: str = setting("auto", "auto (GPU actors when the cluster has GPUs) | cpu | cuda | cuda:N")
    dtype: str = setting("float32", "float32 | bfloat16 | float16 (autocast; the prompt projection stays float32)")
    max_batch_seconds: Optional[float] = setting(None, "also cap a forward pass at this many padded audio seconds "
                                                       "(long segments: fewer per batch)")
    gpus_per_actor: float = setting(1.0, "GPUs of one inference actor (when the cluster has GPUs)")
    cpus_per_actor: float = setting(1.0, "CPUs Ray reserves for one inference actor")
    model_threads: Optional[int] = setting(None, "torch threads of a CPU actor; null = cpus_per_actor (more lets a "
                                                 "CPU-only machine's model use the cores decoding leaves idle)")
    min_actors: int = setting(1, "inference actors to start with")
    max_actors: Optional[int] = setting(None, "inference actors at most; null = as many as the nodes hold at start "
                                              "(one per gpus_per_actor GPUs; 1 on a CPU-only cluster): set it on "
                                              "an autoscaling cluster")
    actor_memory_mb: Optional[int] = setting(None, "memory Ray reserves for one inference actor, MiB; null = none "
                                                   "(a node must hold it: checked at start)")
    resource_wait_seconds: float = setting(300.0, "how long the job waits at start for the cluster to hold "
                                                  "min_actors actors (an autoscaler adding GPU nodes) before it ends "
                                                  "with a message; 0 = not at all")
    decode_cpus: float = setting(1.0, "CPUs of one fetch+decode task")
    decode_memory_mb: int = setting(512, "memory reserved per fetch+decode task, MiB")
    block_seconds: Optional[float] = setting(None, "audio seconds per work block (by the manifest's duration where "
                                                   "given): what one task decodes and one actor call sorts into "
                                                   "batches; null = 240 x batch_size, at most 7200")
    block_rows: int = setting(1024, "recordings per work block at most (a row without a duration counts as 60 s of "
                                    "audio)")
    ray_address: Optional[str] = setting(None, "a Ray cluster address; null = RAY_ADDRESS (set by ray job submit), "
                                               "else an embedded local Ray")


def work_block_seconds(compute: ComputeSpec, batch_size: int) -> float:
    """Audio per work block. An actor sorts one block's segments into batches, so a block should hold many batches
    (padding: benchmarks/padding.py), yet stay small enough to decode in parallel and to sit in the object store
    (16-bit audio: 32 KB a second, 230 MB for the 7200 s cap)."""
    return compute.block_seconds or min(240.0 * batch_size, 7200.0)


@dataclass(frozen=True)
class ActorPool:
    """The inference actors, as the cluster allows them (decided by the job from `compute` and the cluster)."""

    use_gpu: bool
    min_actors: int
    max_actors: int


def decode_stage(blocks: Dataset, decode: DecodeSettings, compute: ComputeSpec) -> Dataset:
    """Fetch + decode + cut: one CPU task per work block; each table it hands on is one Ray block, one actor call."""
    # Ray Data joins the tables a task yields into blocks of up to target_max_block_size (128 MiB by default): two
    # pieces of a long recording would reach one actor call together. At the work block's audio, every table a decode
    # task hands on before its last (which holds that much at least: pipeline.decode) is a block of its own. The
    # dataset has one block size: the other stages' blocks (source rows, transcripts) are far smaller anyway.
    blocks.context.target_max_block_size = decode.block_bytes
    return blocks.map_batches(
        decode_block, fn_kwargs={"settings": decode}, batch_size=1, batch_format="pyarrow",
        num_cpus=compute.decode_cpus,
        # A memory reservation keeps a decode task's memory bounded on a node (as Ray's audio example does), and,
        # being a remote argument the actor stage lacks, it stops Ray from fusing decoding into the actor, where it
        # would run one file at a time with the accelerator waiting.
        memory=compute.decode_memory_mb * 2**20,
    )


# Reading and assembling are light and reserve no CPU: on a small node the decode tasks and the actors hold every CPU
# slot, and a stage that waits for one would wait until decoding is over (nothing assembled, nothing committed).
# Their concurrency is bounded by their pools instead.
LIGHT_TASKS = 4


def transcription_graph(inputs: list[InputSource], source: SourceSettings, decode: DecodeSettings,
                        inference: InferenceSettings, compute: ComputeSpec, run: RunInfo, pool: ActorPool,
                        index_ref: list, ledger, pieces=None) -> Dataset:
    groups = input_groups(inputs)
    items = ray.data.from_items(groups, override_num_blocks=max(1, len(groups)))
    blocks = items.map_batches(
        read_blocks, fn_kwargs={"settings": source, "index_ref": index_ref, "ledger": ledger},
        batch_size=1, batch_format="pyarrow", num_cpus=0, compute=TaskPoolStrategy(size=LIGHT_TASKS))
    # A read task's work blocks arrive coalesced into large blocks; one work block per Ray block lets every decode
    # task take one (a streaming split: no shuffle).
    blocks = blocks.repartition(target_num_rows_per_block=1)
    decoded = decode_stage(blocks, decode, compute)
    resources = {"memory": compute.actor_memory_mb * 2**20} if compute.actor_memory_mb else {}
    if pool.use_gpu:
        # The GPUs go in through ray_remote_args_fn: `num_gpus=` makes Ray Data (2.60) demand an int batch_size,
        # and an int batch_size bundles small blocks into one call until it has that many rows (a hundred blocks
        # of two hour-long recordings each in one call). Ray still reserves the GPUs and sets CUDA_VISIBLE_DEVICES
        # per actor (tests/jobs/test_rehearsal_cluster.py). Ray marks the argument deprecated for 2.64.
        gpus = compute.gpus_per_actor
        resources["ray_remote_args_fn"] = lambda: {"num_gpus": gpus}
    transcribed = decoded.map_batches(
        TranscriptionActor,
        fn_constructor_kwargs={"settings": inference},
        batch_format="pyarrow",
        batch_size=None,  # one work block per call: the actor sorts its segments into batches
        # An autoscaling pool: a fixed pool that takes every CPU starves the decode tasks and never finishes.
        compute=ActorPoolStrategy(min_size=pool.min_actors, max_size=pool.max_actors),
        num_cpus=compute.cpus_per_actor,
        **resources,
    )
    # Actors, not tasks: a task stage started a fresh worker process per work block (pipeline.assembly.Assembler).
    # One actor assembles a work block of 1,000 short clips in about 0.1 s; the pool grows only under a backlog.
    return transcribed.map_batches(Assembler, fn_constructor_kwargs={"run": run, "pieces": pieces}, batch_size=None,
                                   batch_format="pyarrow", num_cpus=0,
                                   compute=ActorPoolStrategy(min_size=1, max_size=LIGHT_TASKS))
