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

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

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
    if embedded:
        with _setup_hook_in_environment(REDACTION_HOOK) as installed:
            # Through the environment the raylet passes to every worker, not a runtime_env: see
            # _setup_hook_in_environment. Ray's own variable missing (another Ray version): the runtime_env way.
            extra = {} if installed else {"runtime_env": {"worker_process_setup_hook": REDACTION_HOOK}}
            ray.init(log_to_driver=True, logging_level=logging.WARNING, include_dashboard=False, **extra)
    else:
        ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
    route_ray_output()
    if embedded:
        from jobs import reaper

        reaper.start(ray._private.worker.global_worker.node.get_session_dir_path())
    return embedded


REDACTION_HOOK = "connectors.redaction.install_redaction"


@contextlib.contextmanager
def _setup_hook_in_environment(hook: str) -> Iterator[bool]:
    """Name `hook` as the worker setup hook in this process's environment while an embedded Ray starts: its raylet
    inherits the environment and passes it to every worker it starts, and a worker runs the hook the variable names
    as it starts (what Ray's runtime_env `worker_process_setup_hook` does for a module path). With a runtime_env
    instead, Ray starts every worker of the job afresh through its runtime-env agent and leaves the workers it starts
    ahead unused: the first task waited 4-6 s for its worker on this 2-core machine, against 1-2 s this way, and the
    job's seven actors and tasks at start wait in that queue before the first block is decoded. Yields False (and
    sets nothing) when this Ray has no such variable or it is already set."""
    from ray._private import ray_constants

    name = getattr(ray_constants, "WORKER_PROCESS_SETUP_HOOK_ENV_VAR", None)
    if name is None or name in os.environ:
        yield False
        return
    os.environ[name] = hook
    try:
        yield True
    finally:
        os.environ.pop(name, None)


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
