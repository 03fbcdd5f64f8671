"""Tests for connectors.storage: URL helpers, glob expansion, reads (local and S3), retries."""

from __future__ import annotations

import os

import pytest

from connectors import storage
from connectors.storage import (NoMatch, expand, is_transient, is_url, parent_of, protocol_of, read_bytes, resolve,
                                with_retries)

# --- URL helpers --------------------------------------------------------------------------------------------------


def test_is_url() -> None:
    assert is_url("s3://bucket/key.wav")
    assert is_url("gs://bucket/key.wav")
    assert is_url("file:///tmp/x.wav")
    assert is_url("https://host/x.wav")
    assert is_url("s3a://bucket/x")
    assert not is_url("/tmp/x.wav")
    assert not is_url("relative/x.wav")
    assert not is_url("c:/x.wav")
    assert not is_url("")


def test_protocol_of() -> None:
    assert protocol_of("s3://b/k") == "s3"
    assert protocol_of("S3://b/k") == "s3"
    assert protocol_of("gs://b/k") == "gs"
    assert protocol_of("file:///tmp/x") == "file"
    assert protocol_of("/tmp/x") == "file"
    assert protocol_of("x.wav") == "file"


def test_resolve_local() -> None:
    assert resolve("a.wav", "/data/m") == "/data/m/a.wav"
    assert resolve("sub/./a.wav", "/data/m") == "/data/m/sub/a.wav"
    assert resolve("../a.wav", "/data/m") == "/data/a.wav"
    assert resolve("/abs/a.wav", "/data/m") == "/abs/a.wav"
    assert resolve("s3://b/a.wav", "/data/m") == "s3://b/a.wav"
    # No base folder: the path as given.
    assert resolve("a.wav", "") == "a.wav"


def test_resolve_url_base() -> None:
    assert resolve("a.wav", "s3://bucket/m") == "s3://bucket/m/a.wav"
    assert resolve("../x/a.wav", "s3://bucket/m/day1") == "s3://bucket/m/x/a.wav"
    assert resolve("./a.wav", "gs://bucket") == "gs://bucket/a.wav"
    assert resolve("/abs/a.wav", "s3://bucket/m") == "/abs/a.wav"
    assert resolve("https://h/a.wav", "s3://bucket/m") == "https://h/a.wav"


def test_parent_of() -> None:
    assert parent_of("s3://bucket/calls/m.jsonl") == "s3://bucket/calls"
    assert parent_of("s3://bucket/m.jsonl") == "s3://bucket"
    assert parent_of("/data/calls/m.jsonl") == "/data/calls"
    assert parent_of("calls/m.jsonl") == os.path.join(os.getcwd(), "calls")


# --- expand -------------------------------------------------------------------------------------------------------


@pytest.fixture()
def manifest_dir(tmp_path):
    for name in ["a.jsonl", "b.jsonl", "c.json", "sub/d.jsonl"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}\n")
    return tmp_path


def test_expand_glob(manifest_dir) -> None:
    assert expand(f"{manifest_dir}/*.jsonl") == [f"{manifest_dir}/a.jsonl", f"{manifest_dir}/b.jsonl"]
    assert expand(f"{manifest_dir}/**/*.jsonl") == [
        f"{manifest_dir}/a.jsonl", f"{manifest_dir}/b.jsonl", f"{manifest_dir}/sub/d.jsonl"]
    assert expand(f"{manifest_dir}/[bc].*") == [f"{manifest_dir}/b.jsonl", f"{manifest_dir}/c.json"]


def test_expand_comma_list(manifest_dir) -> None:
    got = expand(f" {manifest_dir}/c.json , {manifest_dir}/sub/*.jsonl,,{manifest_dir}/a.jsonl ")
    assert got == [f"{manifest_dir}/c.json", f"{manifest_dir}/sub/d.jsonl", f"{manifest_dir}/a.jsonl"]


def test_expand_every_part_must_match(manifest_dir) -> None:
    """A part that matches nothing is refused, naming the part: a typo in a list is never dropped silently."""
    with pytest.raises(NoMatch, match=rf"^'{manifest_dir}/nope\.jsonl' matches no file$"):
        expand(f"{manifest_dir}/nope.jsonl")
    with pytest.raises(NoMatch, match=r"^'.*/\*\.csv' matches no file$"):
        expand(f"{manifest_dir}/*.csv")
    with pytest.raises(NoMatch, match=rf"^'{manifest_dir}/aa\.jsonl' matches no file$"):
        expand(f"{manifest_dir}/a.jsonl,{manifest_dir}/aa.jsonl")
    with pytest.raises(NoMatch, match=rf"^'{manifest_dir}/aa\.jsonl' matches no file$"):
        expand([f"{manifest_dir}/a.jsonl", f"{manifest_dir}/aa.jsonl"])


def test_expand_folders_are_refused_by_name(manifest_dir) -> None:
    # A folder is not a manifest file, named directly or matched by a glob: refused, never opened.
    with pytest.raises(NoMatch, match=rf"^'{manifest_dir}/sub' is a folder, not a file$"):
        expand(f"{manifest_dir}/sub")
    with pytest.raises(NoMatch, match=rf"^'{manifest_dir}/\*' matches a folder, {manifest_dir}/sub, not only files$"):
        expand(f"{manifest_dir}/*")


def test_expand_exact_names_are_exact(tmp_path) -> None:
    """A name that exists is that file, whatever characters it holds; a glob applies only where nothing exists by
    the name."""
    for name in ["calls[1].jsonl", "calls1.jsonl", "star*.jsonl", "starry.jsonl", "what?.jsonl", "whats.jsonl",
                 "a,b/m.jsonl", "a/m.jsonl", "b/m.jsonl"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}\n")
    assert expand(f"{tmp_path}/calls[1].jsonl") == [f"{tmp_path}/calls[1].jsonl"]
    assert expand(f"{tmp_path}/star*.jsonl") == [f"{tmp_path}/star*.jsonl"]
    assert expand(f"{tmp_path}/what?.jsonl") == [f"{tmp_path}/what?.jsonl"]
    # A comma inside a folder name: the whole string names a file, so it is that file; or the list form.
    assert expand(f"{tmp_path}/a,b/m.jsonl") == [f"{tmp_path}/a,b/m.jsonl"]
    assert expand([f"{tmp_path}/a,b/m.jsonl", f"{tmp_path}/calls[1].jsonl"]) == [
        f"{tmp_path}/a,b/m.jsonl", f"{tmp_path}/calls[1].jsonl"]
    # Where nothing exists by the name, it is a glob (and the comma form a list).
    assert expand(f"{tmp_path}/calls[0-9].jsonl") == [f"{tmp_path}/calls1.jsonl"]
    assert expand(f"{tmp_path}/a/m.jsonl,{tmp_path}/b/m.jsonl") == [f"{tmp_path}/a/m.jsonl", f"{tmp_path}/b/m.jsonl"]


def test_expand_s3(s3fs_client, bucket) -> None:
    for key in ["m/2.jsonl", "m/1.jsonl", "m/x.txt", "m/calls[1].jsonl", "m/calls1.jsonl", "m/sub/d.jsonl",
                "a,b/m.jsonl"]:
        s3fs_client.pipe(f"{bucket}/{key}", b"{}\n")
    assert expand(f"s3://{bucket}/m/*.jsonl") == [f"s3://{bucket}/m/1.jsonl", f"s3://{bucket}/m/2.jsonl",
                                                  f"s3://{bucket}/m/calls1.jsonl", f"s3://{bucket}/m/calls[1].jsonl"]
    assert expand(f"s3://{bucket}/m/x.txt") == [f"s3://{bucket}/m/x.txt"]
    assert expand(f"s3://{bucket}/m/calls[1].jsonl") == [f"s3://{bucket}/m/calls[1].jsonl"]
    assert expand(f"s3://{bucket}/a,b/m.jsonl") == [f"s3://{bucket}/a,b/m.jsonl"]
    assert expand([f"s3://{bucket}/a,b/m.jsonl"]) == [f"s3://{bucket}/a,b/m.jsonl"]
    with pytest.raises(NoMatch, match=rf"^'s3://{bucket}/m/missing\.jsonl' matches no file$"):
        expand(f"s3://{bucket}/m/1.jsonl,s3://{bucket}/m/missing.jsonl")
    with pytest.raises(NoMatch, match=rf"^'s3://{bucket}/m/sub' is a folder, not a file$"):
        expand(f"s3://{bucket}/m/sub")
    with pytest.raises(NoMatch, match=rf"^'s3://{bucket}/m/\*' matches a folder, s3://{bucket}/m/sub, not only"):
        expand(f"s3://{bucket}/m/*")


# --- read_bytes ---------------------------------------------------------------------------------------------------


def test_read_bytes_local(tmp_path) -> None:
    payload = bytes(range(256)) * 10
    (tmp_path / "x.bin").write_bytes(payload)
    assert read_bytes(str(tmp_path / "x.bin")) == payload
    assert read_bytes(f"file://{tmp_path}/x.bin") == payload
    assert read_bytes(str(tmp_path / "x.bin"), max_mb=len(payload) / 2**20) == payload


def test_read_bytes_local_missing_raises_at_once(tmp_path, monkeypatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(storage.time, "sleep", sleeps.append)
    with pytest.raises(FileNotFoundError):
        read_bytes(str(tmp_path / "missing.wav"))
    assert sleeps == []


def test_read_bytes_s3(s3fs_client, bucket) -> None:
    payload = os.urandom(70_000)
    s3fs_client.pipe(f"{bucket}/audio/x.wav", payload)
    assert read_bytes(f"s3://{bucket}/audio/x.wav") == payload
    with pytest.raises(FileNotFoundError):
        read_bytes(f"s3://{bucket}/audio/missing.wav")


def test_read_bytes_refuses_over_max_mb(tmp_path, s3fs_client, bucket, monkeypatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(storage.time, "sleep", sleeps.append)
    (tmp_path / "big.bin").write_bytes(b"\0" * (3 * 2**20))
    with pytest.raises(ValueError, match=r"^file is 3 MiB, over max_file_mb=2$"):
        read_bytes(str(tmp_path / "big.bin"), max_mb=2)
    s3fs_client.pipe(f"{bucket}/big.bin", b"\0" * 2000)
    with pytest.raises(ValueError, match="max_file_mb"):
        read_bytes(f"s3://{bucket}/big.bin", max_mb=1999 / 2**20)
    # A size refusal is permanent: no retry.
    assert sleeps == []


def test_size_refusal_is_not_retried_whatever_the_limit(tmp_path, monkeypatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(storage.time, "sleep", sleeps.append)
    big = tmp_path / "big.wav"
    with open(big, "wb") as handle:
        handle.truncate(600 * 2**20)  # sparse: 600 MiB listed, nothing written
    with pytest.raises(ValueError, match=r"file is 600 MiB, over max_file_mb=500"):
        read_bytes(str(big), max_mb=500)
    assert sleeps == []


# --- retries ------------------------------------------------------------------------------------------------------


def test_with_retries_retries_transient_then_succeeds() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) <= 2:
            raise ConnectionError("Connection reset by peer")
        return "ok"

    assert with_retries(flaky, base_delay=0.001) == "ok"
    assert len(calls) == 3


def test_with_retries_backoff_doubles(monkeypatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(storage.time, "sleep", sleeps.append)
    calls = []

    def always_slow() -> None:
        calls.append(1)
        raise OSError("SlowDown: please reduce your request rate")

    with pytest.raises(OSError, match="SlowDown"):
        with_retries(always_slow, attempts=4, base_delay=0.5)
    assert len(calls) == 4
    assert sleeps == [0.5, 1.0, 2.0]


def test_with_retries_does_not_retry_permanent_errors() -> None:
    for error in (FileNotFoundError("no such key"), PermissionError("AccessDenied"), ValueError("bad")):
        calls = []

        def fails() -> None:
            calls.append(1)
            raise error

        with pytest.raises(type(error)):
            with_retries(fails, base_delay=0.001)
        assert len(calls) == 1, error


def test_is_transient() -> None:
    assert is_transient(OSError("An error occurred (SlowDown) when calling the GetObject operation"))
    assert is_transient(ConnectionError("boom"))
    assert is_transient(ConnectionResetError())
    assert is_transient(TimeoutError())
    assert is_transient(OSError("Read timed out."))
    assert is_transient(RuntimeError("ServiceUnavailable"))
    assert is_transient(OSError("Throttling: rate exceeded"))
    assert not is_transient(PermissionError("Access Denied"))
    assert not is_transient(FileNotFoundError("s3://b/k"))
    # The type decides before the text: a missing key whose message looks transient is still permanent.
    assert not is_transient(FileNotFoundError("timed out"))
    assert not is_transient(PermissionError("SlowDown"))
    assert not is_transient(IsADirectoryError("x"))
    assert not is_transient(ValueError("invalid literal"))
    assert not is_transient(KeyError("x"))
