"""Faults while a job runs: an inference actor killed mid-job, and object storage that throttles, drops connections,
denies access or has lost the object.

Storage faults come from `tests.fault_proxy.FaultProxy`, an HTTP proxy on loopback in front of the session's moto
server. The session's Ray workers read the endpoint from the environment they got at `ray.init`, so these tests call
`connectors.storage` and the fetch stage in this process (with AWS_ENDPOINT_URL pointed at the proxy). A whole job
through the flaky proxy runs in tests/jobs/test_cluster_submit.py, on a cluster whose environment points at it.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time

import duckdb
import pytest
import soundfile as sf

from connectors import storage
from jobs.transcribe import plan, run
from pipeline.decode import DecodeSettings, decode_recording
from tests.audio_factory import tone
from tests.fault_proxy import Fault, FaultProxy, always, fail_first
from tests.jobs.jobs_helpers import clips, duplicate_segments, recordings_counts, write_manifest

# --- an inference actor killed mid-job ----------------------------------------------------------------------------


def _inference_actors() -> list[dict]:
    """The job's inference actors, from the GCS actor table (the session's Ray runs without a dashboard, so the
    state API `ray.util.state.list_actors` is not available; the GCS table has class names, states and pids)."""
    from ray._private.state import actors

    return [a for a in actors().values() if "TranscriptionActor" in a["ActorClassName"]]


@pytest.mark.slow
def test_inference_actor_killed_mid_job_is_replaced_and_every_row_written_once(ray_session, tiny_model, tmp_path):
    manifest = write_manifest(tmp_path / "m.jsonl", clips(tmp_path / "audio", 8, seconds=2.0))
    out = tmp_path / "out"
    seen: dict = {}
    earlier = {a["ActorID"] for a in _inference_actors()}  # the actor table keeps other tests' (dead) actors

    def killer() -> None:
        # Once the job's actor is up (the job is running, nothing is written yet), SIGKILL its process.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not seen.get("stop"):
            alive = [a for a in _inference_actors()
                     if a["State"] == "ALIVE" and a["Pid"] and a["ActorID"] not in earlier]
            if alive:
                victim = alive[0]
                seen["files_before_kill"] = list((out / "recordings").glob("*.parquet"))
                os.kill(victim["Pid"], signal.SIGKILL)
                seen["killed"] = victim
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        summary = run(plan([f"model_path={tiny_model}", f"dataset_manifest={manifest}", f"output_path={out}",
                            "batch_size=2"]))
    finally:
        seen["stop"] = True
        thread.join(5)

    assert "killed" in seen, "the inference actor never came up, so it was never killed"
    assert seen["files_before_kill"] == []  # killed mid-job: before anything was committed
    victim = seen["killed"]
    mine = {a["ActorID"]: a for a in _inference_actors() if a["ActorID"] not in earlier}
    # Ray restarted the actor (Ray Data's actor pools use max_restarts=-1, max_task_retries=-1) or replaced it.
    assert mine[victim["ActorID"]]["NumRestarts"] >= 1 or len(mine) > 1, mine
    counts = recordings_counts(out)
    assert summary.rows == 8 and summary.failed_rows == 0
    assert len(counts) == 8 and set(counts.values()) == {1}
    assert duplicate_segments(out) == []
    errors = duckdb.sql(f"select count(*) from '{out}/recordings/*.parquet' where error is not null").fetchall()[0][0]
    assert errors == 0
    print(f"killed pid {victim['Pid']}; the actor restarted {mine[victim['ActorID']]['NumRestarts']} time(s); "
          f"{len(mine)} inference actor(s) in this job")


# --- object storage faults, through a proxy -----------------------------------------------------------------------


@pytest.fixture()
def stored_audio(s3fs_client, bucket) -> tuple[str, bytes]:
    buffer = io.BytesIO()
    sf.write(buffer, tone(1.0), 16000, format="WAV", subtype="PCM_16")
    payload = buffer.getvalue()
    s3fs_client.pipe(f"{bucket}/audio/a.wav", payload)
    return f"s3://{bucket}/audio/a.wav", payload


@pytest.fixture()
def proxied(s3_endpoint, monkeypatch):
    """Start a proxy with a rule; this process's S3 clients (not the Ray workers') go through it. Also records the
    sleeps of the project's own retry loop (and skips them)."""
    sleeps: list[float] = []
    monkeypatch.setattr(storage.time, "sleep", sleeps.append)
    proxies: list[FaultProxy] = []

    def start(rule, *, botocore_retries: bool = True) -> FaultProxy:
        proxy = FaultProxy(s3_endpoint, rule).start()
        proxies.append(proxy)
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        if not botocore_retries:
            # botocore retries 5xx and throttling by itself; with one attempt, what is left is connectors.storage's
            # own retry loop (and s3fs's retries of reads).
            monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        return proxy

    start.sleeps = sleeps
    yield start
    for proxy in proxies:
        proxy.stop()


def test_throttled_reads_are_retried_and_succeed(proxied, stored_audio):
    url, payload = stored_audio
    proxy = proxied(fail_first(3, status=503, path_contains="/audio/"))
    assert storage.read_bytes(url, max_mb=10) == payload
    assert [s.action for s in proxy.requests("GET", "/audio/")] == ["503", "503", "503", "forward"]


def test_dropped_connections_on_read_are_retried_and_succeed(proxied, stored_audio):
    url, payload = stored_audio
    proxy = proxied(fail_first(2, drop=True, path_contains="/audio/"), botocore_retries=False)
    with storage.open_file(url, max_mb=10) as handle:
        assert handle.read() == payload
    assert [s.action for s in proxy.requests("GET", "/audio/")] == ["drop", "drop", "forward"]


def test_own_retry_loop_backs_off_exponentially_on_5xx(proxied, stored_audio):
    """botocore's retries off: the size check (HEAD) gets 503 SlowDown, then 500; connectors.storage retries with
    backoff (0.5 s, then 1 s) and the read succeeds."""
    url, payload = stored_audio

    def rule(method, path, earlier):
        if method == "HEAD" and "/audio/" in path and earlier < 2:
            return Fault(status=(503, 500)[earlier])
        return None

    proxy = proxied(rule, botocore_retries=False)
    assert storage.read_bytes(url, max_mb=10) == payload
    assert proxied.sleeps == [0.5, 1.0]
    assert [s.action for s in proxy.requests("HEAD", "/audio/")][:3] == ["503", "500", "forward"]


def test_persistent_5xx_gives_up_after_four_attempts_as_a_fetch_error_row(proxied, stored_audio):
    url, _ = stored_audio
    proxy = proxied(always(status=503, path_contains="/audio/"), botocore_retries=False)
    row = decode_recording({"row_id": "r", "audio_url": url, "error": None, "channel_mode": "mix"}, DecodeSettings())
    assert row["segments"] == [] and row["error_stage"] == "fetch"
    assert row["error"].startswith(f"cannot read {url}: ")
    assert "Service Unavailable" in row["error"] or "SlowDown" in row["error"]
    assert proxied.sleeps == [0.5, 1.0, 2.0]
    assert len(proxy.requests("HEAD", "/audio/")) == 4


@pytest.mark.parametrize(("status", "error"), [(403, "access denied: {url}"), (404, "file not found: {url}")])
def test_permanent_errors_are_not_retried_and_become_the_rows_error(proxied, stored_audio, status, error):
    url, _ = stored_audio
    proxy = proxied(always(status=status, path_contains="/audio/"))
    row = decode_recording({"row_id": "r", "audio_url": url, "error": None, "channel_mode": "mix"}, DecodeSettings())
    assert (row["error_stage"], row["error"], row["segments"]) == ("fetch", error.format(url=url), [])
    assert proxied.sleeps == []  # not retried by connectors.storage...
    assert len(proxy.requests(path_contains="/audio/")) == 1  # ...nor by botocore or s3fs: one request, one answer


def test_dropped_connections_beyond_s3fs_retries_are_retried_by_storage(proxied, stored_audio):
    url, payload = stored_audio
    # s3fs retries a dropped HEAD itself (a handful of times); drop more than that, then answer.
    proxied(fail_first(12, drop=True, methods=("HEAD",), path_contains="/audio/"), botocore_retries=False)
    assert storage.read_bytes(url, max_mb=10) == payload
    assert proxied.sleeps  # connectors.storage backed off at least once


def test_is_transient_classifies_botocore_connection_errors():
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    assert storage.is_transient(ReadTimeoutError(endpoint_url="http://s3"))
    assert storage.is_transient(ConnectTimeoutError(endpoint_url="http://s3"))
    assert not storage.is_transient(FileNotFoundError("s3://b/k"))
    assert not storage.is_transient(PermissionError("Forbidden"))


def test_is_transient_classifies_dropped_and_refused_connections():
    from aiohttp import ServerDisconnectedError
    from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

    assert storage.is_transient(ConnectionClosedError(endpoint_url="http://s3"))
    assert storage.is_transient(EndpointConnectionError(endpoint_url="http://s3"))
    assert storage.is_transient(ServerDisconnectedError())
