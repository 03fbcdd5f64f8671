"""The rehearsal cluster: GPU actor pools across Ray nodes, without a GPU.

Ray schedules by declared resources: a node started with `ray start --num-gpus=2` offers two GPU slots (and sets
`CUDA_VISIBLE_DEVICES` for the actors it places there) whether or not it has GPUs, and the simulated accelerator
(`benchmarks.adapters:SimulatedAccelerator`: sleeps padded seconds / SIM_RTFX per batch) needs none. So this module
starts a head without GPUs or CPUs (it runs the drivers, as in jobs/kuberay-rayjob.yaml) and two nodes declaring two
GPUs each (every node `ray start --block` in its own process
session, temp dir and ports, as tests/jobs/test_cluster_submit.py does; logical CPUs declared generously, since the
machine has two cores), and runs `python -m jobs.transcribe` on it as users do, with `ray job submit` and
`compute.device=auto`. Where each actor ran comes from the adapter's own logs (pid, Ray node id, CUDA_VISIBLE_DEVICES
per actor and per batch); where each decode task ran, from the state API.

The tests share the cluster and run in file order; the last one adds a third GPU node and SIGKILLs it mid-job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from benchmarks.adapters import busy_log_lines
from tests.jobs.jobs_helpers import (
    REPO, clips, duplicate_segments, free_port, kill_pids, pids_in_session, private_ray_tmpdir, recordings_counts,
    remove_tree, stop_session, subprocess_env, wait_for, write_manifest,
)
from tests.jobs.test_cluster_submit import BIN, _alive_nodes, _get, _node_ports, _reachable, _start, _state

pytestmark = pytest.mark.slow

ENDED = ("SUCCEEDED", "FAILED", "STOPPED")
ADAPTER = "benchmarks.adapters:SimulatedAccelerator"
# Small nodes on a 2-core machine: each GPU node's two actors take a logical CPU each, two are left for decoding.
NODE_CPUS = 4
OBJECT_STORE = str(150 * 2**20)


class Cluster:
    """A head without GPUs and GPU nodes, each `ray start` in its own process session; jobs by `ray job submit`."""

    def __init__(self, root: Path):
        self.root = root
        self.temp_dir = private_ray_tmpdir()
        self.gcs_port, dashboard_port = free_port(), free_port()
        self.dashboard = f"http://127.0.0.1:{dashboard_port}"
        # The GCS notices a dead raylet by its health checks: every second, dead after 3 misses (default: 3 s x 5).
        self.env = subprocess_env(PATH=f"{BIN}:{subprocess_env()['PATH']}", RAY_USAGE_STATS_ENABLED="0",
                                  RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3")
        self.env.pop("RAY_TMPDIR", None)
        self.procs: dict[str, subprocess.Popen] = {}
        self.head = self._node("head", ["--head", f"--port={self.gcs_port}", "--num-cpus=0", "--num-gpus=0",
                                        "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                                        f"--dashboard-port={dashboard_port}", f"--temp-dir={self.temp_dir}",
                                        f"--ray-client-server-port={free_port()}"])
        wait_for(lambda: self.head.poll() is not None or _reachable(self.dashboard), timeout=120,
                 what="the head's dashboard")
        assert self.head.poll() is None, (root / "head.log").read_text()[-3000:]
        self.gpu_nodes: dict[str, str] = {}  # name -> node id

    def _node(self, name: str, args: list[str]) -> subprocess.Popen:
        proc = _start([*args, f"--object-store-memory={OBJECT_STORE}", *_node_ports()], self.env,
                      self.root / f"{name}.log")
        self.procs[name] = proc
        return proc

    def add_gpu_node(self, name: str, gpus: int = 2) -> str:
        count = 2 + len(self.gpu_nodes)
        # `ray start` gives a raylet 30 s (fixed) to register; a machine loaded by other work can miss that: retry.
        for attempt in range(5):
            proc = self._node(name, [f"--address=127.0.0.1:{self.gcs_port}", f"--num-cpus={NODE_CPUS}",
                                     f"--num-gpus={gpus}", f'--resources={{"{name}": 1}}'])
            wait_for(lambda: proc.poll() is not None or _alive_nodes(self.dashboard, count), timeout=240,
                     what=f"{count} alive nodes")
            if proc.poll() is None:
                break
            stop_session(proc)
            time.sleep(5)
        assert proc.poll() is None, (self.root / f"{name}.log").read_text()[-3000:]
        [node_id] = [n["node_id"] for n in _alive_nodes(self.dashboard, count) if name in n["resources_total"]]
        self.gpu_nodes[name] = node_id
        return node_id

    def submit(self, name: str, manifest: Path, overrides: list[str], rtfx: float) -> "Job":
        job = Job(self, name, manifest, rtfx)
        runtime_env = {"env_vars": {"SIM_RTFX": str(rtfx), "SIM_BUSY_LOG": str(job.busy_log),
                                    "SIM_ACTORS_LOG": str(job.actors_log)}}
        done = subprocess.run(
            [str(BIN / "ray"), "job", "submit", f"--address={self.dashboard}", f"--submission-id={job.submission_id}",
             "--no-wait", "--working-dir", str(REPO), "--runtime-env-json", json.dumps(runtime_env), "--",
             "python", "-m", "jobs.transcribe", f"model_path=/benchmark/{name}", f"model_adapter={ADAPTER}",
             f"dataset_manifest={manifest}", f"output_path={job.output}", "compute.device=auto",
             "output.progress_seconds=5", *overrides],
            env=self.env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        return job

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            stop_session(proc)
        remove_tree(self.temp_dir)


class Job:
    def __init__(self, cluster: Cluster, name: str, manifest: Path, rtfx: float):
        self.cluster, self.name, self.manifest, self.rtfx = cluster, name, manifest, rtfx
        self.submission_id = f"{name}-{os.getpid()}-{time.monotonic_ns()}"
        self.output = cluster.root / f"out-{name}"
        self.busy_log = cluster.root / f"busy-{name}.log"
        self.actors_log = cluster.root / f"actors-{name}.log"
        self.busy_log.touch()
        self.actors_log.touch()

    def info(self) -> dict:
        return _get(self.cluster.dashboard, f"/api/jobs/{self.submission_id}")

    def status(self) -> str:
        return self.info()["status"]

    def wait(self, timeout: float = 240) -> str:
        return wait_for(lambda: (s := self.status()) in ENDED and s, timeout=timeout, interval=0.5,
                        what=f"job {self.name} to end")

    def logs(self) -> str:
        return subprocess.run([str(BIN / "ray"), "job", "logs", f"--address={self.cluster.dashboard}",
                               self.submission_id], env=self.cluster.env, capture_output=True, text=True,
                              timeout=60).stdout

    def calls(self):
        return busy_log_lines(self.busy_log.read_text())

    def actors(self) -> list[tuple[int, str, str]]:
        """(pid, node id, CUDA_VISIBLE_DEVICES) of every inference actor that started."""
        return [(int(pid), node, gpus) for _, pid, node, gpus in
                (line.split() for line in self.actors_log.read_text().splitlines() if line.strip())]

    def tasks(self) -> list[dict]:
        job_id = self.info()["job_id"]
        return [t for t in _state(self.cluster.dashboard, "tasks") if t.get("job_id") == job_id]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("rehearsal"))
    try:
        c.add_gpu_node("gpu_a")
        c.add_gpu_node("gpu_b")
        yield c
    finally:
        c.stop()
    assert all(pids_in_session(p.pid) == [] for p in c.procs.values())


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("rehearsal-audio")
    clips(folder / "audio", 48)
    return folder


def manifest(audio: Path, name: str, count: int) -> Path:
    entries = [{"audio_filepath": f"audio/clip-{i:02d}.wav", "clip": i} for i in range(count)]
    return write_manifest(audio / f"{name}.jsonl", entries)


def assert_every_row_once(job: Job, rows: int) -> None:
    counts = recordings_counts(job.output)
    assert len(counts) == rows and set(counts.values()) == {1}
    assert duplicate_segments(job.output) == []
    errors = duckdb.sql(f"select count(*) from read_parquet('{job.output}/recordings/*.parquet') "
                        f"where error is not null").fetchall()
    assert errors == [(0,)]


def test_one_actor_per_declared_gpu_each_on_a_gpu_node_decoding_beside_them(cluster, audio):
    job = cluster.submit("per-gpu", manifest(audio, "per-gpu", 24), ["compute.min_actors=4", "compute.block_rows=2"],
                         rtfx=20)
    assert job.wait() == "SUCCEEDED", job.logs()[-6000:]
    assert "rows        24 (24 transcribed, 0 failed" in job.logs()
    assert_every_row_once(job, 24)

    actors = job.actors()
    assert len(actors) == 4  # max_actors=null: one per declared GPU (4), and min_actors=4 starts them all
    gpu_ids = set(cluster.gpu_nodes.values())
    assert {node for _, node, _ in actors} == gpu_ids  # every actor on a GPU node, none on the head
    per_node = Counter(node for _, node, _ in actors)
    assert set(per_node.values()) == {2}
    # Ray gave each actor its own GPU of its node.
    assert sorted((node, gpus) for _, node, gpus in actors) == sorted((n, g) for n in gpu_ids for g in ("0", "1"))
    assert {(c.pid, c.node_id, c.gpus) for c in job.calls()} <= set(actors)

    # The head declares no CPU (as in jobs/kuberay-rayjob.yaml: it runs the driver): every decode task ran on the CPUs
    # of the GPU nodes. (Which of them is Ray's choice: with a dozen small blocks it often keeps them all beside the
    # data, on one node.)
    decode_nodes = Counter(t["node_id"] for t in job.tasks() if "decode_block" in t["name"] and t["node_id"])
    assert decode_nodes and set(decode_nodes) <= gpu_ids, decode_nodes
    assert sum(decode_nodes.values()) >= 12  # one per work block of 2 rows (more when a task was retried)


def test_the_pool_grows_within_its_bounds_while_a_second_job_runs(cluster, audio):
    # Slow enough that one actor cannot keep up (one recording of 1-1.75 s per call, at 1x): the pool grows, but
    # never past 3. The second job is submitted at once: both drivers start together, the small one ends first.
    first = cluster.submit("grows", manifest(audio, "grows", 48),
                           ["compute.min_actors=1", "compute.max_actors=3", "compute.block_rows=1"], rtfx=1)
    second = cluster.submit("second", manifest(audio, "second", 12), ["compute.max_actors=1", "compute.block_rows=2"],
                            rtfx=20)
    assert second.wait() == "SUCCEEDED", second.logs()[-6000:]
    assert first.wait() == "SUCCEEDED", first.logs()[-6000:]
    assert_every_row_once(first, 48)
    assert_every_row_once(second, 12)

    grown = first.actors()
    assert 2 <= len(grown) <= 3, grown  # grew from min_actors=1, within max_actors=3
    calls = first.calls()
    started = sorted(t for t, *_ in ((float(line.split()[0]),) for line in
                                     first.actors_log.read_text().splitlines() if line.strip()))
    assert min(c.start for c in calls) < started[-1]  # calls ran before the last actor was added: it grew with work
    assert len({c.pid for c in calls}) >= 2
    [(pid, node, gpus)] = second.actors()
    assert pid not in {p for p, _, _ in grown}
    # The two jobs ran at the same time (each into its own output, every row once, checked above).
    assert min(c.start for c in second.calls()) < max(c.end for c in calls)
    assert gpus in ("0", "1") and node in cluster.gpu_nodes.values()


def test_two_actors_share_a_gpu_with_fractional_gpus_per_actor(cluster, audio):
    # 5 actors of half a GPU on 4 GPUs: at least one GPU holds two; none more than two.
    job = cluster.submit("half", manifest(audio, "half", 20),
                         ["compute.gpus_per_actor=0.5", "compute.cpus_per_actor=0.5", "compute.min_actors=5",
                          "compute.max_actors=5", "compute.block_rows=2"], rtfx=20)
    assert job.wait() == "SUCCEEDED", job.logs()[-6000:]
    assert_every_row_once(job, 20)
    actors = job.actors()
    assert len(actors) == 5
    per_gpu = Counter((node, gpus) for _, node, gpus in actors)
    assert max(per_gpu.values()) == 2 and set(per_gpu) <= {(n, g) for n in cluster.gpu_nodes.values()
                                                           for g in ("0", "1")}


@pytest.mark.parametrize("overrides, message", [
    (["compute.min_actors=5"], "compute.min_actors=5 inference actors (1 CPU, 1 GPU each) do not fit: the nodes "
                               "hold 4"),
    (["compute.actor_memory_mb=100000000"], "no node can hold one inference actor (1 CPU, 1 GPU, 100000000 MiB "
                                            "memory)"),
])
def test_an_actor_the_cluster_cannot_hold_is_a_message_at_start_not_a_hang(cluster, audio, overrides, message):
    job = cluster.submit("cannot", manifest(audio, "cannot", 4), [*overrides, "compute.resource_wait_seconds=3"],
                         rtfx=20)
    assert job.wait(timeout=120) == "FAILED"
    logs = job.logs()
    assert message in logs and "(waited 3 s: compute.resource_wait_seconds)" in logs, logs[-4000:]
    assert "waiting up to 3 s for the cluster to grow" in logs
    assert job.actors() == [] and not job.output.joinpath("recordings").exists()


def test_a_gpu_node_killed_mid_job_every_row_once(cluster, audio):
    victim_id = cluster.add_gpu_node("gpu_victim")  # now 6 GPUs on 3 nodes
    victim = cluster.procs["gpu_victim"]
    # At most 4 actors on 6 GPUs: Ray Data spreads them over the nodes, and the two actors the victim may hold can be
    # recreated on the GPUs left. One recording per call, slow enough that the kill falls mid-job.
    job = cluster.submit("killed", manifest(audio, "killed", 48),
                         ["compute.min_actors=3", "compute.max_actors=4", "compute.block_rows=1"], rtfx=2)

    def victim_has_worked():
        if job.status() in ENDED:
            return "ended"
        return any(c.node_id == victim_id for c in job.calls()) and len(job.calls()) < 40
    state = wait_for(victim_has_worked, timeout=180, interval=0.2, what="a call on the victim node")
    assert state is True, f"the job ended before the victim node had worked: {job.logs()[-4000:]}"
    calls_before = len(job.calls())
    victims = pids_in_session(victim.pid)
    killed_at = time.time()
    os.killpg(victim.pid, signal.SIGKILL)  # raylet, object store, workers, agents: no chance to clean up
    kill_pids(pids_in_session(victim.pid))
    victim.wait(10)

    assert job.wait() == "SUCCEEDED", job.logs()[-8000:]
    assert "rows        48 (48 transcribed, 0 failed, 0 already done, 0 replacing" in job.logs()
    assert_every_row_once(job, 48)
    nodes = {n["node_id"]: n["state"] for n in _state(cluster.dashboard, "nodes")}
    assert nodes[victim_id] == "DEAD" and len(victims) >= 3

    actors = job.actors()
    on_victim = [a for a in actors if a[1] == victim_id]
    assert on_victim
    after = [c for c in job.calls() if c.start > killed_at + 1]
    assert after and all(c.node_id != victim_id for c in after)  # the pool went on without the lost node
    retried = [t for t in job.tasks() if t["attempt_number"] > 0 and t["state"] == "FINISHED"]
    print(f"\nvictim SIGKILLed after {calls_before} calls ({len(victims)} processes); actors started "
          f"{len(actors)} ({len(on_victim)} on the victim); {len(retried)} task(s)/call(s) re-run")
