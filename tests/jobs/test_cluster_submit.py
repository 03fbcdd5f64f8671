"""The job on a real Ray cluster: a two-node cluster started with `ray start` (head + a second node, each in its own
process session, temp dir and ports, so the test session's own Ray is not touched), the job submitted with
`ray job submit --working-dir <repo>`, its Parquet read back.

The cluster reads its manifest and audio from S3 (the session's moto server) through `tests.fault_proxy.FaultProxy`,
which throttles (503 SlowDown) and drops connections: the whole job through flaky object storage, on the cluster's
own processes whose environment points at the proxy (the session's Ray workers cannot be repointed).

Also: the KubeRay RayJob example parses and says what it should.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest
import yaml

from jobs.spec import load_spec
from tests.fault_proxy import FaultProxy, combine, fail_first
from tests.jobs.jobs_helpers import (
    REPO, clips, free_port, pids_in_session, private_ray_tmpdir, recordings_counts, remove_tree, stop_session,
    subprocess_env, wait_for, write_manifest,
)

BIN = Path(sys.executable).parent


def _get(dashboard: str, path: str) -> dict:
    with urllib.request.urlopen(f"{dashboard}{path}", timeout=10) as response:
        return json.loads(response.read())


def _state(dashboard: str, resource: str) -> list[dict]:
    """The state API (served by the dashboard, which needs ray[default])."""
    return _get(dashboard, f"/api/v0/{resource}?limit=10000&detail=1")["data"]["result"]["result"]


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "ray"), "start", "--block", "--disable-usage-stats", *args], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _node_ports() -> list[str]:
    """Ports a second node on the same machine would otherwise share with the head (fixed defaults)."""
    return [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]


@pytest.mark.slow
def test_two_node_cluster_runs_the_submitted_job_through_flaky_storage(ray_session, tiny_model, s3_endpoint,
                                                                       s3fs_client, bucket, tmp_path):
    entries = clips(tmp_path / "audio", 6)
    s3fs_client.put(str(tmp_path / "audio"), f"{bucket}/data/audio", recursive=True)
    s3fs_client.put(str(write_manifest(tmp_path / "m.jsonl", entries)), f"{bucket}/data/m.jsonl")
    out = tmp_path / "out"
    temp_dir = private_ray_tmpdir()
    gcs_port, dashboard_port = free_port(), free_port()
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    # Every audio object's first GET is throttled, one object's first GET loses its connection, and the
    # manifest's first GET is throttled too (the driver checks it, a read task reads it).
    proxy = FaultProxy(s3_endpoint, combine(
        fail_first(1, drop=True, path_contains="/data/audio/clip-01.wav"),
        fail_first(1, status=503, path_contains="/data/audio/"),
        fail_first(1, status=503, path_contains="/data/m.jsonl"),
    )).start()
    # `python` in the entrypoint and the `ray` CLI are this environment's; S3 is the proxy.
    env = subprocess_env(PATH=f"{BIN}:{subprocess_env()['PATH']}", RAY_USAGE_STATS_ENABLED="0",
                         AWS_ENDPOINT_URL=proxy.url)
    env.pop("RAY_TMPDIR", None)
    head = _start(["--head", f"--port={gcs_port}", "--num-cpus=2", "--include-dashboard=true",
                   "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}", f"--temp-dir={temp_dir}",
                   f"--ray-client-server-port={free_port()}", *_node_ports()], env, tmp_path / "head.log")
    second = None
    try:
        wait_for(lambda: head.poll() is not None or _reachable(dashboard), timeout=90, what="the head's dashboard")
        assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
        second = _start([f"--address=127.0.0.1:{gcs_port}", "--num-cpus=2", '--resources={"second_node": 1}',
                         *_node_ports()], env, tmp_path / "second.log")
        wait_for(lambda: second.poll() is not None or _alive_nodes(dashboard, 2), timeout=90, what="two alive nodes")
        assert second.poll() is None, (tmp_path / "second.log").read_text()[-3000:]
        nodes = _alive_nodes(dashboard, 2)
        assert len([n for n in nodes if "second_node" in n["resources_total"]]) == 1

        # cpus_per_actor=2: the inference actor takes one whole node, so decoding has to run on the other one.
        started = time.monotonic()
        submitted = subprocess.run(
            [str(BIN / "ray"), "job", "submit", f"--address={dashboard}", "--working-dir", str(REPO), "--",
             "python", "-m", "jobs.transcribe", f"model_path={tiny_model}",
             f"dataset_manifest=s3://{bucket}/data/m.jsonl", f"output_path={out}", "compute.cpus_per_actor=2"],
            env=env, capture_output=True, text=True, timeout=400)
        job_seconds = time.monotonic() - started
        assert submitted.returncode == 0, (submitted.stdout + submitted.stderr)[-4000:]
        assert "succeeded" in submitted.stdout + submitted.stderr
        assert "rows        6 (6 transcribed, 0 failed" in submitted.stdout

        tasks = _state(dashboard, "tasks")
        decode_nodes = {t["node_id"] for t in tasks if "decode_block" in t["name"] and t["node_id"]}
        inference_nodes = {t["node_id"] for t in tasks if "TranscriptionActor" in t["name"] and t["node_id"]}
        assert decode_nodes and inference_nodes
        assert decode_nodes | inference_nodes == {n["node_id"] for n in nodes}, (decode_nodes, inference_nodes)
        jobs = _get(dashboard, "/api/jobs/")
        assert [j["status"] for j in jobs if j["type"] == "SUBMISSION"] == ["SUCCEEDED"]
    finally:
        stubborn = [pid for proc in (second, head) if proc is not None for pid in stop_session(proc)]
        remove_tree(temp_dir)
        proxy.stop()

    assert pids_in_session(head.pid) == [] and (second is None or pids_in_session(second.pid) == [])
    injected = {(f.path.rsplit("/", 1)[-1], f.action) for f in proxy.faults()}
    assert ("clip-01.wav", "drop") in injected and ("m.jsonl", "503") in injected
    assert {name for name, action in injected if action == "503"} >= {f"clip-{i:02d}.wav" for i in (0, 2, 3, 4, 5)}
    counts = recordings_counts(out)
    assert len(counts) == 6 and set(counts.values()) == {1}
    errors = duckdb.sql(f"select count(*) from read_parquet('{out}/recordings/*.parquet') where error is not null")
    assert errors.fetchall() == [(0,)]
    # The test session's own Ray was not disturbed by starting and stopping another cluster on this machine.
    assert ray_session.get(ray_session.remote(lambda: 41 + 1).remote(), timeout=60) == 42
    assert ray_session.cluster_resources().get("CPU") == 4
    print(f"two-node job: {job_seconds:.0f} s; processes that needed SIGKILL at teardown: {len(stubborn)}")


def _reachable(dashboard: str) -> bool:
    try:
        _get(dashboard, "/api/version")
        return True
    except OSError:
        return False


def _alive_nodes(dashboard: str, count: int) -> list[dict]:
    try:
        nodes = [n for n in _state(dashboard, "nodes") if n["state"] == "ALIVE"]
    except (OSError, KeyError, ValueError):
        return []
    return nodes if len(nodes) == count else []


# --- the KubeRay example --------------------------------------------------------------------------------------------

RAYJOB = REPO / "jobs" / "kuberay-rayjob.yaml"


@pytest.fixture(scope="module")
def rayjob() -> dict:
    return yaml.safe_load(RAYJOB.read_text())


def test_kuberay_example_is_a_rayjob_running_the_transcribe_module(rayjob):
    assert rayjob["apiVersion"] == "ray.io/v1" and rayjob["kind"] == "RayJob"
    words = shlex.split(rayjob["spec"]["entrypoint"])
    assert words[:3] == ["python", "-m", "jobs.transcribe"]
    overrides = dict(w.split("=", 1) for w in words[3:])
    for key in ("model_path", "dataset_manifest", "output_path"):
        assert overrides[key].startswith("s3://"), key
    assert overrides["compute.device"] == "cuda" and overrides["compute.dtype"] == "bfloat16"
    load_spec(words[3:])  # every key is one the job knows (by its current name), with a value of the right type


def test_kuberay_example_has_a_working_dir_and_a_gpu_worker_group(rayjob):
    spec = rayjob["spec"]
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["working_dir"]
    cluster = spec["rayClusterSpec"]
    assert cluster["headGroupSpec"]["template"]["spec"]["containers"]
    gpu_groups = [g for g in cluster["workerGroupSpecs"]
                  if any(str(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")) == "1"
                         for c in g["template"]["spec"]["containers"])]
    assert gpu_groups, "no worker group with nvidia.com/gpu: 1"


def test_kuberay_example_takes_credentials_from_a_secret(rayjob):
    cluster = rayjob["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    for pod in pods:
        for container in pod["template"]["spec"]["containers"]:
            env = {e["name"]: e for e in container.get("env", [])}
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                assert "value" not in env[name], f"{name} must not be written into the manifest"
                ref = env[name]["valueFrom"]["secretKeyRef"]
                assert ref["name"] and ref["key"]


# The fields KubeRay's CRD defines (json tags of ray-project/kuberay ray-operator/apis/ray/v1: rayjob_types.go at
# f6ef3f7b, raycluster_types.go at 3275ee09). A misspelt or misplaced key is dropped silently by a lenient apply.
RAYJOB_SPEC_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata", "clusterSelector",
    "submitterConfig", "managedBy", "deletionPolicy", "entrypoint", "runtimeEnvYAML", "jobId", "submissionMode",
    "entrypointResources", "entrypointNumCpus", "entrypointNumGpus", "ttlSecondsAfterFinished",
    "shutdownAfterJobFinishes", "suspend"}
RAYCLUSTER_SPEC_FIELDS = {
    "suspend", "managedBy", "autoscalerOptions", "headServiceAnnotations", "enableInTreeAutoscaling",
    "gcsFaultToleranceOptions", "headGroupSpec", "rayVersion", "workerGroupSpecs"}
HEAD_GROUP_FIELDS = {"template", "headService", "enableIngress", "rayStartParams", "serviceType"}
HEAD_GROUP_REQUIRED = {"template", "rayStartParams"}
WORKER_GROUP_FIELDS = {
    "suspend", "groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds", "rayStartParams",
    "template", "scaleStrategy", "numOfHosts"}
WORKER_GROUP_REQUIRED = {"groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"}
SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode"}


def test_kuberay_example_uses_only_fields_the_rayjob_crd_defines(rayjob):
    assert set(rayjob) <= {"apiVersion", "kind", "metadata", "spec"}
    spec = rayjob["spec"]
    assert set(spec) <= RAYJOB_SPEC_FIELDS, set(spec) - RAYJOB_SPEC_FIELDS
    assert spec["submissionMode"] in SUBMISSION_MODES
    assert isinstance(spec["entrypoint"], str) and isinstance(spec["runtimeEnvYAML"], str)
    for key in ("activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished"):
        assert isinstance(spec[key], int) and spec[key] >= 0, key
    cluster = spec["rayClusterSpec"]
    assert set(cluster) <= RAYCLUSTER_SPEC_FIELDS, set(cluster) - RAYCLUSTER_SPEC_FIELDS
    head = cluster["headGroupSpec"]
    assert HEAD_GROUP_REQUIRED <= set(head) <= HEAD_GROUP_FIELDS, set(head)
    groups = cluster["workerGroupSpecs"]
    for group in groups:
        assert WORKER_GROUP_REQUIRED <= set(group) <= WORKER_GROUP_FIELDS, set(group)
        assert 0 <= group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]
    for params in [head["rayStartParams"]] + [g["rayStartParams"] for g in groups]:
        # map[string]string: a bare number is rejected by the API server.
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in params.items()), params
    for pod in [head] + groups:
        assert set(pod["template"]) <= {"metadata", "spec"} and pod["template"]["spec"]["containers"]


def test_kuberay_example_matches_what_the_rehearsal_runs(rayjob):
    """The same shape as tests/jobs/test_rehearsal_cluster.py: the head takes no work (num-cpus 0), GPUs only on the
    workers, and a pool that can grow to every GPU the autoscaler may add, waiting for them rather than hanging."""
    spec = load_spec(shlex.split(rayjob["spec"]["entrypoint"])[3:])
    cluster = rayjob["spec"]["rayClusterSpec"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    head_limits = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in head_limits
    gpus = sum(g["maxReplicas"] * int(c["resources"]["limits"].get("nvidia.com/gpu", 0))
               for g in cluster["workerGroupSpecs"] for c in g["template"]["spec"]["containers"])
    assert spec.compute.max_actors == int(gpus / spec.compute.gpus_per_actor)
    assert spec.compute.resource_wait_seconds >= 300  # a GPU pod takes minutes to come up
    assert cluster["enableInTreeAutoscaling"] is True
