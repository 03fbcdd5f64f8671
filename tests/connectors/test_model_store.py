"""Tests for connectors.model_store: checkpoints in object storage, copied once per node."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.model_store import cache_dir, is_pretrained_name, localize
from connectors.storage import filesystem


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("NEMOTRON_BATCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"


def test_cache_dir_from_env(cache) -> None:
    assert cache_dir() == cache


def test_cache_dir_default(monkeypatch) -> None:
    monkeypatch.delenv("NEMOTRON_BATCH_CACHE", raising=False)
    assert cache_dir() == Path.home() / ".cache" / "nemotron-batch" / "models"


def test_localize_local_path_unchanged(tmp_path, cache) -> None:
    ckpt = tmp_path / "m.nemo"
    ckpt.write_bytes(b"x")
    assert localize(str(ckpt)) == str(ckpt)
    assert localize(f"file://{ckpt}") == str(ckpt)
    assert localize("nvidia/nemotron-3.5-asr-streaming-0.6b") == "nvidia/nemotron-3.5-asr-streaming-0.6b"
    assert not cache.exists()  # nothing copied


def test_localize_s3_copies_once(tiny_model, s3fs_client, bucket, cache, monkeypatch) -> None:
    url = f"s3://{bucket}/models/tiny.nemo"
    s3fs_client.put(str(tiny_model), f"{bucket}/models/tiny.nemo")

    # Count downloads on the (cached) filesystem instance that localize() gets for this URL.
    fs, _ = filesystem(url)
    downloads: list[str] = []
    real_get_file = fs.get_file

    def counting_get_file(remote, local, *args, **kwargs):
        downloads.append(remote)
        return real_get_file(remote, local, *args, **kwargs)

    monkeypatch.setattr(fs, "get_file", counting_get_file)

    local = Path(localize(url))
    assert downloads == [f"{bucket}/models/tiny.nemo"]
    assert local.parent == cache
    assert local.name.endswith("-tiny.nemo")
    assert local.read_bytes() == Path(tiny_model).read_bytes()
    first = local.stat()
    # No partial download left behind.
    assert [p.name for p in cache.iterdir() if p.name.endswith(".partial")] == []

    # The second call reuses the copy: no download, same file untouched.
    assert localize(url) == str(local)
    assert len(downloads) == 1
    again = local.stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)


def test_localize_s3_refreshes_a_copy_of_the_wrong_size(tiny_model, s3fs_client, bucket, cache) -> None:
    url = f"s3://{bucket}/tiny.nemo"
    s3fs_client.put(str(tiny_model), f"{bucket}/tiny.nemo")
    local = Path(localize(url))
    local.write_bytes(b"truncated")  # an interrupted copy from some other tool
    assert localize(url) == str(local)
    assert local.read_bytes() == Path(tiny_model).read_bytes()


def test_localize_distinct_urls_distinct_copies(s3fs_client, bucket, cache) -> None:
    s3fs_client.pipe(f"{bucket}/a/m.nemo", b"first")
    s3fs_client.pipe(f"{bucket}/b/m.nemo", b"second")
    a = localize(f"s3://{bucket}/a/m.nemo")
    b = localize(f"s3://{bucket}/b/m.nemo")
    assert a != b
    assert Path(a).read_bytes() == b"first"
    assert Path(b).read_bytes() == b"second"


def test_localize_missing_object_raises(s3fs_client, bucket, cache) -> None:
    with pytest.raises(FileNotFoundError):
        localize(f"s3://{bucket}/nope.nemo")


def test_is_pretrained_name(tmp_path, monkeypatch) -> None:
    assert is_pretrained_name("nvidia/nemotron-3.5-asr-streaming-0.6b")
    assert not is_pretrained_name("s3://bucket/m.nemo")
    assert not is_pretrained_name("/models/missing.nemo")  # a .nemo path, even a missing one, is a file
    (tmp_path / "model_dir").mkdir()
    monkeypatch.chdir(tmp_path)
    assert not is_pretrained_name("model_dir")  # an existing local path
    assert is_pretrained_name("other_dir")


def test_localize_retries_a_dropped_copy_and_leaves_no_partial_file(tiny_model, s3_endpoint, s3fs_client, bucket,
                                                                     cache, monkeypatch) -> None:
    from connectors import storage
    from tests.fault_proxy import FaultProxy, fail_first

    s3fs_client.put(str(tiny_model), f"{bucket}/m/tiny.nemo")
    sleeps: list[float] = []
    monkeypatch.setattr(storage.time, "sleep", sleeps.append)
    # Every GET of the checkpoint is dropped 12 times: more than botocore and s3fs retry by themselves.
    with FaultProxy(s3_endpoint, fail_first(12, drop=True, path_contains="/m/tiny.nemo")) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        local = Path(localize(f"s3://{bucket}/m/tiny.nemo", timeout=5))
        assert proxy.faults("/m/tiny.nemo")
    assert local.read_bytes() == Path(tiny_model).read_bytes()
    assert sleeps  # connectors.storage's loop retried the copy
    assert [p.name for p in cache.iterdir() if p.name.endswith(".partial")] == []


def test_localize_from_a_server_that_never_answers_times_out(s3_endpoint, cache, monkeypatch) -> None:
    from connectors import storage
    from tests.fault_proxy import SilentServer

    monkeypatch.setattr(storage.time, "sleep", lambda seconds: None)
    with SilentServer() as server:
        with pytest.raises(storage.FetchTimeout, match=r"^timed out after 0.3 s waiting for 127.0.0.1:\d+ to answer: "):
            localize(f"{server.url}/models/m.nemo", timeout=0.3)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


# --- a checkpoint's identity is its content ---------------------------------------------------------------------


def test_fingerprint_follows_the_content_not_the_path(tmp_path, s3fs_client, bucket, cache) -> None:
    from connectors.model_store import fingerprint

    ckpt = tmp_path / "m.nemo"
    ckpt.write_bytes(b"a" * 1000)
    first = fingerprint(str(ckpt))
    assert first.startswith("blake2b:") and first.endswith(":1000")
    assert fingerprint(str(ckpt)) == first
    ckpt.write_bytes(b"b" * 1000)  # replaced in place, same size
    assert fingerprint(str(ckpt)) != first
    assert fingerprint("nvidia/nemotron-3.5-asr-streaming-0.6b") == "name:nvidia/nemotron-3.5-asr-streaming-0.6b"

    url = f"s3://{bucket}/models/m.nemo"
    s3fs_client.pipe(url, b"a" * 1000)
    remote_first = fingerprint(url)
    assert remote_first.startswith("etag:") and remote_first.endswith(":1000") and "None" not in remote_first
    s3fs_client.pipe(url, b"b" * 1000)
    assert fingerprint(url) != remote_first


def test_a_checkpoint_replaced_in_the_store_with_the_same_size_is_copied_again(s3fs_client, bucket, cache) -> None:
    url = f"s3://{bucket}/models/same-size.nemo"
    s3fs_client.pipe(url, b"a" * 2048)
    local = localize(url)
    assert Path(local).read_bytes() == b"a" * 2048
    s3fs_client.pipe(url, b"b" * 2048)
    assert Path(localize(url)).read_bytes() == b"b" * 2048
