"""Connecting a job to Ray, one way for every job (transcribe, export), and sizing its inference actor pool.

No address: `RAY_ADDRESS` if set (`ray job submit` sets it), otherwise an embedded local Ray. The embedded one starts
without a dashboard (it costs seconds at start), with redaction installed in every worker's logging from its start,
and with a watcher (`jobs/reaper.py`) that stops it if the driver is killed. Ray's log records and what its workers
print (log_to_driver) go through the running job's log (jobs/console.py). On a cluster the stages install
redaction themselves: a runtime_env passed here would be merged with the submission's own.

The pool is checked against the cluster's nodes before any work starts. Ray schedules an actor only on one node that
holds all of its reservation (GPUs, CPUs, memory), and an actor that fits nowhere waits forever: Ray Data would sit
with its first block decoded and nothing transcribed. So when the nodes cannot hold `compute.min_actors` actors, the
job asks the autoscaler for them (a no-op on a fixed cluster) and waits up to `compute.resource_wait_seconds`, saying
so at once; then it ends with one message that says what one actor needs and what each node has.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.graph import ActorPool

log = logging.getLogger("nemotron_batch")

# How often the nodes are listed again while waiting for the cluster to grow.
POLL_SECONDS = 2.0


def connect_ray(address: str | None) -> bool:
    """Connect (or start an embedded Ray); True when the Ray is embedded (this process's own: it cannot grow)."""
    import ray

    from jobs.console import route_ray_output

    if ray.is_initialized():
        route_ray_output()
        return False
    embedded = not address and not os.environ.get("RAY_ADDRESS")
    extra = {"include_dashboard": False,
             "runtime_env": {"worker_process_setup_hook": "connectors.redaction.install_redaction"}} if embedded else {}
    ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING, **extra)
    route_ray_output()
    if embedded:
        from jobs import reaper

        reaper.start(ray._private.worker.global_worker.node.get_session_dir_path())
    return embedded


@dataclass(frozen=True)
class NodeCapacity:
    """What one alive Ray node declares (its totals, not what is free now: other jobs come and go)."""

    node_id: str
    cpus: float
    gpus: float
    memory_mb: float

    def describe(self) -> str:
        return f"{self.node_id[:8]}: {self.gpus:g} GPU, {self.cpus:g} CPU, {self.memory_mb / 1024:.1f} GiB"


def cluster_nodes() -> list[NodeCapacity]:
    import ray

    return [NodeCapacity(n["NodeID"], n["Resources"].get("CPU", 0.0), n["Resources"].get("GPU", 0.0),
                         n["Resources"].get("memory", 0.0) / 2**20) for n in ray.nodes() if n.get("Alive")]


def actor_reservation(compute, use_gpu: bool) -> dict[str, float]:
    """One inference actor's reservation, in Ray's resource names (memory in bytes)."""
    need = {"CPU": compute.cpus_per_actor}
    if use_gpu:
        need["GPU"] = compute.gpus_per_actor
    if compute.actor_memory_mb:
        need["memory"] = compute.actor_memory_mb * 2**20
    return need


def actors_on(node: NodeCapacity, compute, use_gpu: bool) -> int:
    """How many inference actors one node holds: every reserved resource must fit (two actors at 0.5 GPU share a
    GPU; a node with GPUs but too few CPUs or too little memory holds fewer, or none)."""
    have = {"CPU": node.cpus, "GPU": node.gpus, "memory": node.memory_mb * 2**20}
    # The small epsilon keeps 2 / (2/3) from flooring to 2 by rounding.
    return max(0, min(math.floor(have[name] / amount + 1e-9) for name, amount in
                      actor_reservation(compute, use_gpu).items()))


def plan_pool(compute, nodes: list[NodeCapacity]) -> "ActorPool":
    """The pool the job asks Ray Data for: GPU actors when the cluster has GPUs (auto) or when told (cuda); at most
    one actor per `gpus_per_actor` GPUs of the cluster unless `max_actors` says; one actor on a CPU-only cluster."""
    from pipeline.graph import ActorPool

    gpus = sum(n.gpus for n in nodes)
    use_gpu = compute.device.startswith("cuda") or (compute.device == "auto" and gpus > 0)
    fits = sum(actors_on(n, compute, use_gpu) for n in nodes)
    default_max = max(1, fits) if use_gpu else 1
    max_actors = max(compute.max_actors or default_max, compute.min_actors)
    return ActorPool(use_gpu=use_gpu, min_actors=compute.min_actors, max_actors=max_actors)


def shortfall(compute, pool, nodes: list[NodeCapacity]) -> str | None:
    """Why the nodes cannot hold the pool's first `min_actors` actors, or None when they can."""
    fits = sum(actors_on(n, compute, pool.use_gpu) for n in nodes)
    if fits >= pool.min_actors:
        return None
    need = actor_reservation(compute, pool.use_gpu)
    one = ", ".join(f"{v / 2**20:.0f} MiB memory" if k == "memory" else f"{v:g} {k}" for k, v in need.items())
    where = "; ".join(n.describe() for n in nodes) or "none"
    if pool.use_gpu and not any(n.gpus for n in nodes):
        why = f"compute.device={compute.device} but the Ray cluster has no GPUs"
    elif fits == 0:
        why = f"no node can hold one inference actor ({one})"
    else:
        why = (f"compute.min_actors={pool.min_actors} inference actors ({one} each) do not fit: the nodes hold "
               f"{fits}")
    return (f"{why}. Nodes: {where}. Lower compute.min_actors, compute.gpus_per_actor, compute.cpus_per_actor or "
            f"compute.actor_memory_mb, or add nodes")


def actor_pool(compute, *, can_grow: bool = True):
    """The inference actors the cluster allows (`compute`: the job's section), checked against its nodes; waits up to
    `compute.resource_wait_seconds` for a cluster that can grow (not an embedded Ray) to hold `min_actors` of them."""
    from jobs.config import ConfigError

    nodes = cluster_nodes()
    pool = plan_pool(compute, nodes)
    problem = shortfall(compute, pool, nodes)
    wait = compute.resource_wait_seconds if can_grow else 0
    if problem and wait > 0:
        log.warning("%s; waiting up to %g s for the cluster to grow (compute.resource_wait_seconds)", problem, wait)
        _request(actor_reservation(compute, pool.use_gpu), pool.min_actors)
        deadline = time.monotonic() + wait
        try:
            while problem and time.monotonic() < deadline:
                time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
                nodes = cluster_nodes()
                pool = plan_pool(compute, nodes)
                problem = shortfall(compute, pool, nodes)
        finally:
            _request(None, 0)  # from here the pool's own pending actors drive the autoscaler
    if problem:
        waited = f" (waited {wait:g} s: compute.resource_wait_seconds)" if wait > 0 else ""
        raise ConfigError(problem + waited)
    return pool


def _request(reservation: dict[str, float] | None, count: int) -> None:
    """Ask the autoscaler (KubeRay's, a cloud launcher's) for `count` actors' worth of nodes; an empty request clears
    it. Without an autoscaler the request is stored and nothing happens."""
    from ray.autoscaler.sdk import request_resources

    try:
        request_resources(bundles=[dict(reservation) for _ in range(count)] if reservation else [])
    except Exception as error:  # noqa: BLE001 - asking is a courtesy: the wait and the message do not depend on it
        log.debug("request_resources failed: %s", error)
