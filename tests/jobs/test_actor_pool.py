"""Sizing the inference actor pool against the cluster's nodes (jobs/cluster.py), without Ray: one actor per GPU,
fractional GPUs, what a node can hold, and the message when the nodes cannot hold `min_actors` actors (the job waits
`compute.resource_wait_seconds` for a cluster that can grow, then ends with it). The same checks on a real cluster
with declared GPUs: tests/jobs/test_rehearsal_cluster.py."""

from __future__ import annotations

import dataclasses
import time

import pytest

from jobs import cluster
from jobs.cluster import NodeCapacity, actor_pool, actors_on, plan_pool, shortfall
from jobs.config import ConfigError
from pipeline.graph import ComputeSpec

HEAD = NodeCapacity("head0000aaaa", cpus=2, gpus=0, memory_mb=8192)


def gpu_node(i: int, gpus: float = 2, cpus: float = 8, memory_mb: float = 32768) -> NodeCapacity:
    return NodeCapacity(f"gpu{i}0000bbbb", cpus=cpus, gpus=gpus, memory_mb=memory_mb)


THREE_NODES = [HEAD, gpu_node(1), gpu_node(2), gpu_node(3)]


def test_auto_on_gpu_nodes_is_one_actor_per_gpu():
    pool = plan_pool(ComputeSpec(), THREE_NODES)
    assert (pool.use_gpu, pool.min_actors, pool.max_actors) == (True, 1, 6)
    assert shortfall(ComputeSpec(), pool, THREE_NODES) is None


def test_fractional_gpus_per_actor_puts_two_actors_on_a_gpu():
    compute = ComputeSpec(gpus_per_actor=0.5)
    assert actors_on(gpu_node(1), compute, use_gpu=True) == 4
    assert plan_pool(compute, THREE_NODES).max_actors == 12
    # A third of a GPU: 2 GPUs hold 6 (no flooring to 5 by rounding).
    assert actors_on(gpu_node(1), ComputeSpec(gpus_per_actor=1 / 3), use_gpu=True) == 6


def test_a_node_holds_what_all_of_its_resources_allow():
    node = gpu_node(1, gpus=4, cpus=2)
    assert actors_on(node, ComputeSpec(), use_gpu=True) == 2  # CPUs, not GPUs, are the limit
    assert actors_on(node, ComputeSpec(cpus_per_actor=0.5), use_gpu=True) == 4
    assert actors_on(node, ComputeSpec(cpus_per_actor=0.5, actor_memory_mb=10000), use_gpu=True) == 3
    assert actors_on(HEAD, ComputeSpec(), use_gpu=True) == 0  # no GPU on the head


def test_cpu_cluster_is_one_actor_unless_told():
    pool = plan_pool(ComputeSpec(), [HEAD])
    assert (pool.use_gpu, pool.min_actors, pool.max_actors) == (False, 1, 1)
    assert plan_pool(ComputeSpec(device="cpu"), THREE_NODES).use_gpu is False
    assert plan_pool(ComputeSpec(min_actors=2), [HEAD]).max_actors == 2


def test_max_actors_is_kept_beyond_what_the_nodes_hold_now():
    # An autoscaling cluster: more actors than today's GPUs is what the autoscaler adds nodes for.
    pool = plan_pool(ComputeSpec(max_actors=8), [HEAD, gpu_node(1)])
    assert (pool.min_actors, pool.max_actors) == (1, 8)


def test_fewer_gpus_than_min_actors_says_what_fits():
    compute = ComputeSpec(min_actors=7)
    pool = plan_pool(compute, THREE_NODES)
    message = shortfall(compute, pool, THREE_NODES)
    assert message.startswith("compute.min_actors=7 inference actors (1 CPU, 1 GPU each) do not fit: the nodes hold 6")
    assert "gpu10000: 2 GPU, 8 CPU, 32.0 GiB" in message and "head0000: 0 GPU, 2 CPU" in message


def test_no_node_holds_the_actors_memory():
    compute = ComputeSpec(actor_memory_mb=65536)
    message = shortfall(compute, plan_pool(compute, THREE_NODES), THREE_NODES)
    assert message.startswith("no node can hold one inference actor (1 CPU, 1 GPU, 65536 MiB memory)")


def test_cuda_without_gpus_is_a_shortfall_not_a_cpu_pool():
    compute = ComputeSpec(device="cuda")
    pool = plan_pool(compute, [HEAD])
    assert pool.use_gpu
    assert shortfall(compute, pool, [HEAD]).startswith("compute.device=cuda but the Ray cluster has no GPUs")


def test_the_job_waits_for_the_cluster_to_grow_then_ends_with_the_message(monkeypatch):
    seen = {"lists": 0, "requests": []}

    def nodes():
        seen["lists"] += 1
        return [HEAD, gpu_node(1)]

    monkeypatch.setattr(cluster, "cluster_nodes", nodes)
    monkeypatch.setattr(cluster, "_request", lambda reservation, count: seen["requests"].append((reservation, count)))
    monkeypatch.setattr(cluster, "POLL_SECONDS", 0.05)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"the nodes hold 2\. .* \(waited 0\.3 s: compute.resource_wait_seconds\)"):
        actor_pool(ComputeSpec(min_actors=3, resource_wait_seconds=0.3))
    assert time.monotonic() - started >= 0.3
    assert seen["lists"] >= 3  # listed again while waiting
    # The autoscaler was asked for three actors' worth, and the request was cleared after.
    assert seen["requests"] == [({"CPU": 1.0, "GPU": 1.0}, 3), (None, 0)]


def test_the_job_goes_on_once_the_cluster_has_grown(monkeypatch):
    grown = iter([[HEAD, gpu_node(1)], [HEAD, gpu_node(1)], [HEAD, gpu_node(1), gpu_node(2)]])
    last = [HEAD, gpu_node(1), gpu_node(2)]
    monkeypatch.setattr(cluster, "cluster_nodes", lambda: next(grown, last))
    monkeypatch.setattr(cluster, "_request", lambda reservation, count: None)
    monkeypatch.setattr(cluster, "POLL_SECONDS", 0.01)
    pool = actor_pool(ComputeSpec(min_actors=3, resource_wait_seconds=30))
    assert (pool.use_gpu, pool.min_actors, pool.max_actors) == (True, 3, 4)


def test_an_embedded_ray_does_not_wait(monkeypatch):
    monkeypatch.setattr(cluster, "cluster_nodes", lambda: [HEAD])
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"no node can hold one inference actor \(4 CPU\)") as raised:
        actor_pool(dataclasses.replace(ComputeSpec(), cpus_per_actor=4), can_grow=False)
    assert "waited" not in str(raised.value) and time.monotonic() - started < 5
