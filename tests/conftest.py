"""Session-wide fixtures: one moto S3 server, one local Ray, one tiny model of the real class.

Order matters: the S3 endpoint and credentials go into the environment before Ray starts, so Ray's workers inherit
them the way a cluster's workers inherit theirs.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.audio_factory import write_tone

TEST_KEY = "test-access-key-AKIAEXAMPLE"
TEST_SECRET = "test-secret-key-wJalrXUtnFEMIexample"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def run_logs(tmp_path_factory):
    """Every job run in-process writes its log (jobs/console.py) under the session's temporary folder."""
    os.environ["NEMOTRON_BATCH_LOG_DIR"] = str(tmp_path_factory.mktemp("run-logs"))


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 protocol server (moto) on loopback; the environment points every S3 client at it."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID=TEST_KEY, AWS_SECRET_ACCESS_KEY=TEST_SECRET,
                      AWS_DEFAULT_REGION="us-east-1")
    yield endpoint
    server.stop()


@pytest.fixture(scope="session")
def ray_session(s3_endpoint):
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # More logical CPUs than cores: the actor pool and the decode tasks must both get a slot on a 2-core machine.
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, object_store_memory=512 * 2**20)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from pipeline.models.tiny import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("models") / "tiny.nemo")


@pytest.fixture(scope="session")
def s3fs_client(s3_endpoint):
    import s3fs

    return s3fs.S3FileSystem(key=TEST_KEY, secret=TEST_SECRET, endpoint_url=s3_endpoint)


@pytest.fixture()
def bucket(s3fs_client, request) -> str:
    """A fresh bucket per test."""
    name = "t-" + "".join(c for c in request.node.name.lower() if c.isalnum())[:40]
    if not s3fs_client.exists(name):
        s3fs_client.mkdir(name)
    return name


@pytest.fixture()
def tone_wav(tmp_path) -> Path:
    return write_tone(tmp_path / "tone.wav", seconds=1.5)
