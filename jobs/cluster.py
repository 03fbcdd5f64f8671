"""Connecting a job to Ray, one way for every job (transcribe, export).

No address: `RAY_ADDRESS` if set (`ray job submit` sets it), otherwise an embedded local Ray. The embedded one starts
without a dashboard (it costs seconds at start), with redaction installed in every worker's logging from its start,
and with a watcher (`jobs/reaper.py`) that stops it if the driver is killed. Ray's log records and what its workers
print (log_to_driver) go through the running job's log (jobs/console.py). On a cluster the stages install
redaction themselves: a runtime_env passed here would be merged with the submission's own.
"""

from __future__ import annotations

import logging
import os


def connect_ray(address: str | None) -> None:
    import ray

    from jobs.console import route_ray_output

    if ray.is_initialized():
        route_ray_output()
        return
    embedded = not address and not os.environ.get("RAY_ADDRESS")
    extra = {"include_dashboard": False,
             "runtime_env": {"worker_process_setup_hook": "connectors.redaction.install_redaction"}} if embedded else {}
    ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING, **extra)
    route_ray_output()
    if embedded:
        from jobs import reaper

        reaper.start(ray._private.worker.global_worker.node.get_session_dir_path())


def actor_pool(compute):
    """The inference actors the cluster allows (`compute`: the job's section): GPU actors when it has GPUs (unless
    compute.device=cpu), up to one per `gpus_per_actor` GPUs; one actor on a CPU-only cluster unless told."""
    import ray

    from jobs.config import ConfigError
    from pipeline.graph import ActorPool

    gpus = ray.cluster_resources().get("GPU", 0)
    if compute.device.startswith("cuda") and not gpus:
        raise ConfigError(f"compute.device={compute.device} but the Ray cluster has no GPUs")
    use_gpu = compute.device != "cpu" and gpus > 0
    max_actors = compute.max_actors or (max(1, int(gpus // compute.gpus_per_actor)) if use_gpu else 1)
    return ActorPool(use_gpu=use_gpu, min_actors=min(compute.min_actors, max_actors),
                     max_actors=max(max_actors, compute.min_actors))
