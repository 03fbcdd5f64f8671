"""Fetching under hostile conditions: servers that never answer, refuse, reset or cut a transfer short; HTTP errors
that fsspec reports as "file not found"; local special files that would block a read forever; output paths on
buckets that do not exist. Real servers on loopback (tests.fault_proxy, moto), short timeouts; the retry loop's
sleeps are recorded and skipped, so no test waits for backoff.
"""

from __future__ import annotations

import os
import socket
import threading

import pytest

from connectors import storage
from connectors.storage import (
    BucketNotFound,
    FetchConnectionError,
    FetchError,
    FetchTimeout,
    NotARegularFile,
    classify_fetch_error,
    describe_fetch_error,
    ensure_output_folder,
    open_file,
    read_bytes,
)
from tests.fault_proxy import FaultProxy, FileServer, SilentServer, always, fail_first, refusing_port

PAYLOAD = bytes(range(256)) * 400  # 100 KiB, every offset distinguishable
SHORT = 0.3  # seconds: the timeout of these tests


@pytest.fixture()
def sleeps(monkeypatch) -> list[float]:
    """The backoff sleeps of connectors.storage's retry loop, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr(storage.time, "sleep", slept.append)
    return slept


# --- http(s) ------------------------------------------------------------------------------------------------------


def test_http_server_that_never_answers_times_out_clearly(sleeps) -> None:
    with SilentServer() as server:
        url = f"{server.url}/a.wav"
        with pytest.raises(FetchTimeout, match=rf"^timed out after {SHORT:g} s waiting for 127\.0\.0\.1:\d+ to answer: "
                                               rf"{url} \(gave up after 2 attempts\)$"):
            open_file(url, timeout=SHORT)
        # Two tries (storage.TIMEOUT_ATTEMPTS); in each fsspec asks for the size with HEAD, then once more with
        # GET; both time out, nothing more.
        assert server.accepted == 4
    assert sleeps == [0.5]
    assert not isinstance(FetchTimeout("x"), FileNotFoundError)


def test_http_refused_connection_is_retried_then_reported_as_refused(sleeps) -> None:
    with refusing_port() as port:
        url = f"http://127.0.0.1:{port}/a.wav"
        with pytest.raises(FetchConnectionError, match=rf"^connection refused by 127\.0\.0\.1:{port}: {url} "
                                                       r"\(gave up after 4 attempts\)$") as caught:
            read_bytes(url, timeout=SHORT)
    assert sleeps == [0.5, 1.0, 2.0]
    assert describe_fetch_error(caught.value, url).startswith("connection refused")


def test_http_reads_and_ranges(sleeps) -> None:
    with FileServer({"/a.wav": PAYLOAD}) as server:
        assert read_bytes(f"{server.url}/a.wav", timeout=SHORT) == PAYLOAD
        with open_file(f"{server.url}/a.wav", timeout=SHORT, block_size=4096) as handle:
            handle.seek(70_000)
            assert handle.read(100) == PAYLOAD[70_000:70_100]
    assert sleeps == []


def test_http_status_codes_are_classified_not_all_file_not_found(sleeps) -> None:
    rule = always(status=403, path_contains="/denied")
    with FileServer({"/denied.wav": PAYLOAD, "/busy.wav": PAYLOAD}, rule) as server:
        with pytest.raises(FileNotFoundError):
            open_file(f"{server.url}/missing.wav", timeout=SHORT)
        with pytest.raises(PermissionError):
            open_file(f"{server.url}/denied.wav", timeout=SHORT)
        assert sleeps == []  # permanent: no retry
        server.rule = always(status=503, path_contains="/busy")
        with pytest.raises(FetchError, match=r"^HTTP 503 .*busy\.wav \(gave up after 4 attempts\)$") as caught:
            open_file(f"{server.url}/busy.wav", timeout=SHORT)
        assert caught.value.transient and not isinstance(caught.value, FileNotFoundError)
        assert sleeps == [0.5, 1.0, 2.0]


def test_http_transfer_cut_short_midway_is_retried_from_the_same_position(sleeps) -> None:
    # The first GET of the body sends 1000 bytes and closes; the stream retries that read and gets the rest.
    with FileServer({"/a.wav": PAYLOAD}, fail_first(1, cut=1000, methods=("GET",))) as server:
        with open_file(f"{server.url}/a.wav", timeout=SHORT, block_size=16_384) as handle:
            assert handle.read() == PAYLOAD
        assert [s.action for s in server.requests("GET")][:2] == ["cut:1000", "forward"]
    assert sleeps == [0.5]


def test_http_read_that_stalls_midway_times_out_then_succeeds(sleeps) -> None:
    # HEAD answers; the first ranged GET is accepted and never answered.
    with FileServer({"/a.wav": PAYLOAD}, fail_first(1, stall=True, methods=("GET",))) as server:
        with open_file(f"{server.url}/a.wav", timeout=SHORT) as handle:
            assert handle.read(5000) == PAYLOAD[:5000]
        assert [s.action for s in server.requests("GET")] == ["stall", "forward"]
    assert sleeps == [0.5]


def test_http_without_size_or_ranges_is_read_whole_within_max_mb(sleeps) -> None:
    """A server that tells no size and ignores ranges: fsspec can only stream it, and both decoders seek, so it is
    read into memory, up to max_mb and no further."""
    with FileServer({"/a.wav": PAYLOAD}, sized=False) as server:
        with open_file(f"{server.url}/a.wav", timeout=SHORT, max_mb=1) as handle:
            assert handle.seekable()
            handle.seek(50_000)
            assert handle.read(10) == PAYLOAD[50_000:50_010]
        with pytest.raises(storage.FileTooLarge, match="over max_file_mb"):
            open_file(f"{server.url}/a.wav", timeout=SHORT, max_mb=50_000 / 2**20)
    with FileServer({"/a.wav": PAYLOAD}) as server:
        # A listed size over the limit is refused before any body is asked for.
        with pytest.raises(storage.FileTooLarge):
            open_file(f"{server.url}/a.wav", timeout=SHORT, max_mb=50_000 / 2**20)
        assert server.requests("GET") == []
    assert sleeps == []


# --- s3 -----------------------------------------------------------------------------------------------------------


def test_s3_endpoint_that_never_answers_times_out_after_our_attempts_only(s3_endpoint, sleeps, monkeypatch) -> None:
    with SilentServer() as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
        with pytest.raises(FetchTimeout, match=r"^timed out after 0\.3 s waiting for 127\.0\.0\.1:\d+ to answer: "
                                               r"s3://b/a\.wav \(gave up after 2 attempts\)$"):
            open_file("s3://b/a.wav", timeout=SHORT, attempts=4)
        # A timeout is tried twice, not `attempts` times; one connection per try: botocore's and s3fs's own
        # retries are off for fetches.
        assert server.accepted == storage.TIMEOUT_ATTEMPTS == 2
    assert sleeps == [0.5]


def test_s3_refused_endpoint_is_reported_as_refused(s3_endpoint, sleeps, monkeypatch) -> None:
    with refusing_port() as port:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        with pytest.raises(FetchConnectionError, match=rf"^connection refused by 127\.0\.0\.1:{port}: s3://b/a\.wav"):
            read_bytes("s3://b/a.wav", timeout=SHORT)
    assert sleeps == [0.5, 1.0, 2.0]


def test_s3_read_that_stalls_midway_is_retried(s3_endpoint, s3fs_client, bucket, sleeps, monkeypatch) -> None:
    s3fs_client.pipe(f"{bucket}/audio/a.wav", PAYLOAD)
    with FaultProxy(s3_endpoint, fail_first(1, stall=True, methods=("GET",), path_contains="/audio/")) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        with open_file(f"s3://{bucket}/audio/a.wav", timeout=SHORT) as handle:
            assert handle.read() == PAYLOAD
        assert [s.action for s in proxy.requests("GET", "/audio/")] == ["stall", "forward"]
    assert sleeps == [0.5]


def test_timeout_must_be_a_positive_number() -> None:
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="timeout must be a positive number"):
            open_file("/tmp/x.wav", timeout=bad)


# --- classification -----------------------------------------------------------------------------------------------


def test_fsspec_file_not_found_with_a_connection_cause_is_not_file_not_found() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "Connect call failed")
        except ConnectionRefusedError as cause:
            raise FileNotFoundError("http://h:1/a.wav") from cause
    except FileNotFoundError as error:
        found = classify_fetch_error(error, "http://h:1/a.wav", 5)
    assert isinstance(found, FetchConnectionError) and str(found) == "connection refused by h:1: http://h:1/a.wav"
    # A FileNotFoundError of its own (a real 404, a missing local file) stays one.
    plain = FileNotFoundError("s3://b/k")
    assert classify_fetch_error(plain, "s3://b/k") is plain


def test_library_timeouts_and_resets_are_classified() -> None:
    from aiohttp import ServerDisconnectedError
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    url = "s3://b/k.wav"
    read = classify_fetch_error(ReadTimeoutError(endpoint_url="http://s3.local:9000/b/k.wav"), url, 2)
    assert isinstance(read, FetchTimeout) and str(read) == (
        "timed out after 2 s waiting for s3.local:9000 to answer: s3://b/k.wav")
    connect = classify_fetch_error(ConnectTimeoutError(endpoint_url="http://s3.local:9000"), url, 2)
    assert str(connect) == "timed out after 2 s connecting to s3.local:9000: s3://b/k.wav"
    reset = classify_fetch_error(ServerDisconnectedError(), "https://h/k.wav")
    assert isinstance(reset, FetchConnectionError) and storage.is_transient(reset)
    assert not storage.is_transient(NotARegularFile("x"))


# --- local special files ------------------------------------------------------------------------------------------


def _without_hanging(action) -> BaseException | None:
    """Run `action` in a thread; fail the test (instead of hanging the suite) if it does not end in 10 s."""
    outcome: dict = {}

    def run() -> None:
        try:
            action()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the read blocked"
    return outcome.get("error")


@pytest.mark.parametrize("reader", [open_file, read_bytes])
def test_fifo_is_refused_at_once(tmp_path, reader, sleeps) -> None:
    fifo = tmp_path / "audio.wav"
    os.mkfifo(fifo)
    try:
        error = _without_hanging(lambda: reader(str(fifo)))
    finally:
        # Unblock a reader stuck in open() if the check ever regresses (opening the write end releases it).
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        os.close(fd)
    assert isinstance(error, NotARegularFile)
    assert str(error) == f"not a regular file: {fifo} is a FIFO (named pipe)"
    assert describe_fetch_error(error, str(fifo)) == str(error)
    assert sleeps == []


def test_socket_device_and_directory_are_refused(tmp_path, sleeps) -> None:
    sock_path = tmp_path / "s.wav"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    try:
        with pytest.raises(NotARegularFile, match="is a socket$"):
            open_file(str(sock_path))
    finally:
        server.close()
    with pytest.raises(NotARegularFile, match="is a character device$"):
        open_file("/dev/zero")  # would never end
    with pytest.raises(NotARegularFile, match="is a character device$"):
        read_bytes("file:///dev/zero")
    with pytest.raises(IsADirectoryError):
        open_file(str(tmp_path))
    assert describe_fetch_error(IsADirectoryError(21, "x"), str(tmp_path)) == f"is a directory, not a file: {tmp_path}"
    assert sleeps == []


def test_symlink_to_a_fifo_is_refused(tmp_path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link.wav").symlink_to(tmp_path / "fifo")
    error = _without_hanging(lambda: open_file(str(tmp_path / "link.wav")))
    assert isinstance(error, NotARegularFile)


def test_local_regular_file_reads(tmp_path) -> None:
    (tmp_path / "a.wav").write_bytes(PAYLOAD)
    with open_file(str(tmp_path / "a.wav")) as handle:
        handle.seek(1000)
        assert handle.read(10) == PAYLOAD[1000:1010]
    assert read_bytes(f"file://{tmp_path}/a.wav") == PAYLOAD


# --- output folders: never a bucket -------------------------------------------------------------------------------


def test_output_on_a_missing_bucket_is_refused_and_no_bucket_is_created(s3fs_client) -> None:
    name = "t-never-created-by-the-job"
    assert not s3fs_client.exists(name)
    with pytest.raises(BucketNotFound, match=rf"^bucket '{name}' does not exist \(s3://{name}/out\); the job never "
                                             r"creates buckets"):
        ensure_output_folder(f"s3://{name}/out")
    s3fs_client.invalidate_cache()
    assert name not in [b.rstrip("/") for b in s3fs_client.ls("")]


def test_output_on_an_existing_bucket_creates_nothing(s3fs_client, bucket) -> None:
    ensure_output_folder(f"s3://{bucket}/runs/2026/out")
    ensure_output_folder(f"s3://{bucket}")
    s3fs_client.invalidate_cache()
    assert s3fs_client.ls(bucket) == []  # an object store needs no folder objects


def test_local_output_folder_is_created_and_a_file_is_refused(tmp_path) -> None:
    ensure_output_folder(str(tmp_path / "a" / "b"))
    assert (tmp_path / "a" / "b").is_dir()
    ensure_output_folder(str(tmp_path / "a" / "b"))  # exists: fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        ensure_output_folder(str(tmp_path / "file"))
