"""Object storage through fsspec: local paths, `s3://`, `gs://`, `https://` and the rest look the same to the pipeline.

Credentials and endpoints come from the environment, as every AWS tool reads them (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, `AWS_PROFILE`, ...), so the same job runs against AWS, MinIO or a test
server without code changes, and no secret ever passes through the job's config or its output (`redact`, from
`connectors.redaction`, removes them from any message).

Fetching (`open_file`, `read_bytes`) has one retry policy for every protocol, owned here: each attempt waits at most
`timeout` seconds for a connection and for each answer or read (set on the libraries: botocore's connect/read
timeouts for s3, aiohttp's socket timeouts for http(s), ftp's timeout), the libraries' own retries are turned off for
fetches, and transient failures (refused or reset connections, throttling, HTTP 5xx) are tried `attempts` times in
all with exponential backoff, also in the middle of a file (the returned stream retries its reads); a timeout is
tried twice only (a server that hung once mostly hangs again, and each try costs the whole timeout). So a server that
accepts and never answers ends after 2 x timeout seconds plus 0.5 s (over HTTP 4 x timeout: fsspec asks for the size
with HEAD, then again with GET), with a `FetchTimeout` that says "timed out"; a refused connection ends as
`FetchConnectionError` ("connection refused"), never as "file not found" (fsspec's HTTP filesystem turns every error
into FileNotFoundError; `classify_fetch_error` looks at the cause). Local special files (FIFOs, sockets, devices)
are refused at once, before any read could block.
"""

from __future__ import annotations

import errno
import io
import math
import os
import posixpath
import re
import socket
import stat
import time
from typing import IO, Callable, Sequence, TypeVar
from urllib.parse import urlsplit

import fsspec
from fsspec.implementations.local import LocalFileSystem

from connectors.redaction import redact

T = TypeVar("T")

# Seconds an attempt waits for a connection and for each answer or read of a fetch (the config's audio.fetch_timeout).
DEFAULT_FETCH_TIMEOUT = 60.0
# Tries of one fetch request (the first and the retries); backoff 0.5 s, 1 s, 2 s between them.
FETCH_ATTEMPTS = 4
# Tries of a request that timed out, at most (within FETCH_ATTEMPTS).
TIMEOUT_ATTEMPTS = 2
RETRY_BASE_DELAY = 0.5
# Socket timeouts of filesystems that other modules open through `filesystem()` without a timeout of their own
# (listings, Parquet writes, checkpoint copies) for http(s): aiohttp's default is 5 minutes for a WHOLE request (which
# also cuts a long download) and 30 s to connect; this waits 60 s for each read instead, however long the transfer.
DEFAULT_HTTP_TIMEOUT = 60.0

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_TRANSIENT_TEXT = re.compile(
    r"SlowDown|Throttl|RequestTimeout|ServiceUnavailable|Service Unavailable|InternalError|Internal Server Error"
    r"|Connection reset|Connection aborted|Connection refused|Connection was closed|Could not connect"
    r"|ConnectionClosed|EndpointConnection|ServerDisconnected|Server disconnected|ClientConnector|ClientOSError"
    r"|timed out|Timeout"
    r"|\b(?:HTTP|status|code|error)[ :=]*(?:500|502|503|504)\b",
    re.IGNORECASE,
)
# S3 error codes worth another try (botocore's own list of throttling and transient codes, in short).
_RETRYABLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
                    "RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
                    "BandwidthLimitExceeded", "ProvisionedThroughputExceededException", "TransactionInProgressException",
                    "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable",
                    "PriorRequestNotComplete", "EC2ThrottledException"}
_HTTP_PROTOCOLS = ("http", "https")
_S3_PROTOCOLS = ("s3", "s3a")
# Object stores whose first path component is a bucket (container) that the job must never create.
_BUCKET_PROTOCOLS = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss")


# --- errors -------------------------------------------------------------------------------------------------------


class FileTooLarge(ValueError):
    """An object over the configured size limit: permanent, never retried."""


class FetchError(OSError):
    """A fetch that failed for a reason this module recognised; the message is one clear line (with the URL), for the
    output row's `error` column. `transient` says whether trying again may help."""

    transient = False

    def __init__(self, message: str, *, transient: bool | None = None) -> None:
        super().__init__(message)
        if transient is not None:
            self.transient = transient

    def after_attempts(self, attempts: int) -> "FetchError":
        """The same error, saying that it was tried `attempts` times."""
        return type(self)(f"{self} (gave up after {attempts} attempts)", transient=self.transient)


class FetchTimeout(FetchError, TimeoutError):
    """No connection, or no answer or data, within the fetch's timeout."""

    transient = True


class FetchConnectionError(FetchError, ConnectionError):
    """A connection refused, reset or dropped, or a host that does not resolve."""

    transient = True


class NotARegularFile(FetchError):
    """A local path that is a FIFO, a socket or a device: reading it could block forever or never end."""


class NoMatch(ValueError):
    """A path or glob that names no file, or names a folder (`expand`); the message names the part."""


class OutputNotWritable(PermissionError):
    """An output folder this process cannot write to; the message is one line without the path."""


class BucketNotFound(FileNotFoundError):
    """The bucket of an output path does not exist; the job never creates buckets."""


# --- URLs ---------------------------------------------------------------------------------------------------------


def is_url(path: str) -> bool:
    return bool(_URL.match(path))


def protocol_of(path: str) -> str:
    return path.split("://", 1)[0].lower() if is_url(path) else "file"


def storage_options(protocol: str, timeout: float | None = None) -> dict:
    """fsspec options for a protocol, from the environment, with connect and read timeouts of `timeout` seconds
    where the protocol's library takes them (s3, http(s), ftp). `timeout=None` keeps s3fs's own (5 s to connect,
    15 s per read) and gives http(s) DEFAULT_HTTP_TIMEOUT per read instead of aiohttp's 5 minutes per request."""
    if protocol in _S3_PROTOCOLS:
        options: dict = {}
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:  # s3fs reads the keys itself; the endpoint it does not
            options["endpoint_url"] = endpoint
        if timeout is not None:
            options["config_kwargs"] = {"connect_timeout": timeout, "read_timeout": timeout}
        return options
    if protocol in _HTTP_PROTOCOLS:
        import aiohttp

        seconds = DEFAULT_HTTP_TIMEOUT if timeout is None else timeout
        # total=None: a long transfer is fine as long as data keeps coming; each connect and each read is bounded.
        return {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=None, sock_connect=seconds,
                                                                   sock_read=seconds)}}
    if protocol == "ftp" and timeout is not None:
        return {"timeout": timeout}
    return {}


def filesystem(path: str, *, timeout: float | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for `path` and the path as that filesystem names it (no protocol for local files).
    `timeout`: seconds to wait for a connection and for each answer (see `storage_options`)."""
    protocol = protocol_of(path)
    fs, fs_path = fsspec.core.url_to_fs(path, **storage_options(protocol, timeout))
    return fs, fs_path


def unstrip(fs: fsspec.AbstractFileSystem, fs_path: str) -> str:
    """The full URL of a path that a filesystem listed (fsspec lists without the protocol)."""
    return fs.unstrip_protocol(fs_path) if protocol_of(fs.unstrip_protocol(fs_path)) != "file" else fs_path


def resolve(path: str, base_dir: str) -> str:
    """An audio path from a manifest, resolved against the manifest's own folder when it is relative."""
    if is_url(path) or os.path.isabs(path) or not base_dir:
        return path
    if is_url(base_dir):
        protocol, rest = base_dir.split("://", 1)
        return f"{protocol}://{posixpath.normpath(posixpath.join(rest, path))}"
    return os.path.normpath(os.path.join(base_dir, path))


def parent_of(path: str) -> str:
    return posixpath.dirname(path) if is_url(path) else os.path.dirname(os.path.abspath(path))


# --- retries ------------------------------------------------------------------------------------------------------


def is_transient(error: BaseException) -> bool:
    """Worth another try: throttling, dropped connections, timeouts, HTTP 5xx. A missing key, a denied access or a
    refusal of ours (a ValueError such as FileTooLarge) is permanent."""
    if isinstance(error, FetchError):
        return error.transient
    if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, ValueError)):
        return False
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    for cause in _causes(error):  # s3fs turns botocore's ClientError into a bare OSError ("[Errno 16] Please ...")
        response = getattr(cause, "response", None)
        if isinstance(response, dict):
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = response.get("Error", {}).get("Code")
            if (isinstance(status, int) and (status >= 500 or status in (408, 429))) or code in _RETRYABLE_CODES:
                return True
    return bool(_TRANSIENT_TEXT.search(f"{type(error).__name__}: {error}"))


def with_retries(action: Callable[[], T], *, attempts: int = FETCH_ATTEMPTS, base_delay: float = RETRY_BASE_DELAY) -> T:
    """Run `action`, retrying transient storage errors with exponential backoff; permanent ones raise at once."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - classified below
            if attempt == attempts - 1 or not is_transient(error):
                raise
            time.sleep(base_delay * (2**attempt))
    raise AssertionError("unreachable")


def classify_fetch_error(error: BaseException, url: str, timeout: float | None = None) -> BaseException:
    """What a fetch's failure really was, as the exception to raise: a FetchTimeout ("timed out ..."), a
    FetchConnectionError ("connection refused/reset ...", "cannot resolve host ..."), for HTTP answers a
    FileNotFoundError (404, 410), PermissionError (401, 403) or FetchError ("HTTP 503 ..."), else `error` itself.
    Looks through the exception's causes, innermost first: fsspec's HTTP filesystem raises FileNotFoundError for every
    failure with the real one as its cause, and botocore wraps the socket's error."""
    if isinstance(error, (FetchError, FileTooLarge)):
        return error
    chain = _causes(error)
    where = _endpoint(chain) or _netloc(url)
    for cause in reversed(chain):
        found = _classify_one(cause, url, where, timeout)
        if found is not None:
            return found
    return error


def describe_fetch_error(error: BaseException, url: str) -> str:
    """The `error` column's message (without the stage) for a failed fetch of `url`."""
    if isinstance(error, (FetchError, FileTooLarge)):
        return str(error)
    if isinstance(error, FileNotFoundError):
        return f"file not found: {url}"
    if isinstance(error, PermissionError):
        return f"access denied: {url}"
    if isinstance(error, IsADirectoryError):
        return f"is a directory, not a file: {url}"
    return f"cannot read {url}: {type(error).__name__}: {error}"


def with_fetch_retries(action: Callable[[], T], url: str, *, timeout: float | None = None,
                       attempts: int = FETCH_ATTEMPTS) -> T:
    """`with_retries` for an action that fetches `url`: each failure is classified first (`classify_fetch_error`),
    so timeouts and refused connections that a library reported as "file not found" are retried, and the error
    that ends it says what happened and how many attempts were made."""
    timeouts = 0
    for attempt in range(attempts):
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - classified below
            failure = classify_fetch_error(error, url, timeout)
            timeouts += isinstance(failure, FetchTimeout)
            if attempt < attempts - 1 and is_transient(failure) and timeouts < TIMEOUT_ATTEMPTS:
                time.sleep(RETRY_BASE_DELAY * (2**attempt))
                continue
            if failure is error:
                raise
            if isinstance(failure, FetchError) and failure.transient and attempt > 0:
                failure = failure.after_attempts(attempt + 1)
            raise failure from error
    raise AssertionError("unreachable")


# --- fetching -----------------------------------------------------------------------------------------------------


def open_file(path: str, *, max_mb: float | None = None, block_size: int = 8 * 2**20,
              timeout: float = DEFAULT_FETCH_TIMEOUT, attempts: int = FETCH_ATTEMPTS) -> IO[bytes]:
    """A seekable binary stream of the object at `path`, for decoding without holding the whole file.

    Refuses objects over `max_mb` MiB by their listed size before opening them (FileTooLarge), local special files at
    once (NotARegularFile) and directories (IsADirectoryError). Reads are buffered in `block_size` ranges. `timeout`
    bounds each connect and each answer or read of one attempt; transient failures are retried `attempts` times in
    all, when opening and on every later read (see the module's docstring). A server that cannot serve ranges and
    does not tell the size is read whole (still bounded by `max_mb`). Errors: see `classify_fetch_error`."""
    timeout = _checked_timeout(timeout)
    if protocol_of(path) == "file":
        return with_fetch_retries(lambda: _open_local(path, max_mb), path, timeout=timeout, attempts=attempts)
    handle = with_fetch_retries(lambda: _open_remote(path, max_mb, block_size, timeout), path, timeout=timeout,
                                attempts=attempts)
    return handle if isinstance(handle, io.BytesIO) else RetryingReader(handle, path, timeout, attempts)


def read_bytes(path: str, *, max_mb: float | None = None, timeout: float = DEFAULT_FETCH_TIMEOUT,
               attempts: int = FETCH_ATTEMPTS) -> bytes:
    """The whole object at `path` (a manifest, a small file). Refuses objects over `max_mb` MiB before reading, and
    special files; timeouts and retries as `open_file`."""
    timeout = _checked_timeout(timeout)

    def _read() -> bytes:
        opened = (_open_local(path, max_mb) if protocol_of(path) == "file"
                  else _open_remote(path, max_mb, 8 * 2**20, timeout))
        with opened as handle:
            return _read_at_most(handle, max_mb)

    return with_fetch_retries(_read, path, timeout=timeout, attempts=attempts)


class RetryingReader(io.RawIOBase):
    """A remote file whose reads are retried like the open was: a reset connection or a timeout in the middle of a
    recording costs a retry from the same position, not the recording. Failures that remain after `attempts` raise
    the classified error (FetchTimeout, FetchConnectionError, ...)."""

    def __init__(self, handle: IO[bytes], url: str, timeout: float | None, attempts: int) -> None:
        super().__init__()
        self._handle = handle
        self._url = url
        self._timeout = timeout
        self._attempts = attempts
        self.size = getattr(handle, "size", None)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        return self._handle.tell()

    def read(self, size: int | None = -1) -> bytes:
        position = self._handle.tell()

        def _read() -> bytes:
            self._handle.seek(position)
            return self._handle.read(-1 if size is None else size)

        return with_fetch_retries(_read, self._url, timeout=self._timeout, attempts=self._attempts)

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._handle.close()
        super().close()


def _open_remote(path: str, max_mb: float | None, block_size: int, timeout: float | None) -> IO[bytes]:
    """One attempt at opening a remote object: its listed size checked, then a buffered, seekable stream."""
    fs, fs_path = _fetch_filesystem(path, timeout)
    size = _checked_size(fs, fs_path, max_mb)
    # s3fs and fsspec's HTTP take the size we already know (each would ask the server again otherwise).
    known = {"size": size} if size and protocol_of(path) in _HTTP_PROTOCOLS + _S3_PROTOCOLS else {}
    handle = fs.open(fs_path, "rb", block_size=block_size, **known)
    if size is None or not handle.seekable():
        # An HTTP server that tells no size gets a streaming file (its seekable() says True, its seek() raises);
        # both decoders seek, so it is read into memory, within max_mb.
        with handle:
            return io.BytesIO(_read_at_most(handle, max_mb))
    return handle


def _fetch_filesystem(path: str, timeout: float | None) -> tuple[fsspec.AbstractFileSystem, str]:
    """A filesystem for fetching: timeouts set and the libraries' own retries off, so that `with_fetch_retries` is
    the one retry loop (library retries multiply: botocore's 5 attempts inside s3fs's 5 inside ours made a dead
    endpoint cost 100 timeouts). fsspec caches instances by their options, so these never serve other callers."""
    protocol = protocol_of(path)
    options = storage_options(protocol, timeout)
    if protocol in _S3_PROTOCOLS:
        options.setdefault("config_kwargs", {})["retries"] = {"total_max_attempts": 1}
    fs, fs_path = fsspec.core.url_to_fs(path, **options)
    if protocol in _S3_PROTOCOLS:
        fs.retries = 1  # s3fs's retry loop around each call (a class attribute, not a constructor option)
    return fs, fs_path


def _open_local(path: str, max_mb: float | None) -> IO[bytes]:
    """A local file opened for reading after checking that it is a regular file: stat first (a FIFO's open would
    block until a writer comes), then open without blocking and check the opened file again (the path may have been
    swapped in between)."""
    local = path.removeprefix("file://")
    _check_regular(os.stat(local).st_mode, path)
    fd = os.open(local, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        _check_regular(st.st_mode, path)
        _check_limit(st.st_size, max_mb)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_regular(mode: int, path: str) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", path)
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "not a regular file")
    raise NotARegularFile(f"not a regular file: {path} is {kind}")


def _checked_size(fs: fsspec.AbstractFileSystem, fs_path: str, max_mb: float | None) -> int | None:
    info = fs.info(fs_path)
    if info.get("type") == "directory":
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", fs_path)
    size = info.get("size")
    _check_limit(size, max_mb)
    return size


def _check_limit(size: int | None, max_mb: float | None) -> None:
    if max_mb is not None and size is not None and size > max_mb * 2**20:
        raise FileTooLarge(f"file is {size / 2**20:.3g} MiB, over max_file_mb={max_mb:g}")


def _read_at_most(handle: IO[bytes], max_mb: float | None) -> bytes:
    """The whole stream, refusing it as soon as it passes `max_mb` (for objects whose size was not listed)."""
    if max_mb is None:
        return handle.read()
    limit = int(max_mb * 2**20)
    data = handle.read(limit + 1)
    _check_limit(len(data), max_mb)
    return data


def _checked_timeout(timeout: float | None) -> float | None:
    if timeout is not None and not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return timeout


def _causes(error: BaseException) -> list[BaseException]:
    """`error` and its causes, outermost first (explicit causes, else the implicit context)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 16 and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return chain


def _classify_one(error: BaseException, url: str, where: str, timeout: float | None) -> BaseException | None:
    name = type(error).__name__
    after = f" after {timeout:g} s" if timeout is not None else ""
    if isinstance(error, ConnectionRefusedError):
        return FetchConnectionError(f"connection refused by {where}: {url}")
    if isinstance(error, socket.gaierror) or name == "ClientConnectorDNSError":
        return FetchConnectionError(f"cannot resolve host {where}: {url}")
    if name in ("ConnectTimeoutError", "ConnectionTimeoutError"):
        return FetchTimeout(f"timed out{after} connecting to {where}: {url}")
    if isinstance(error, TimeoutError) or name in ("ReadTimeoutError", "FSTimeoutError"):
        return FetchTimeout(f"timed out{after} waiting for {where} to answer: {url}")
    if isinstance(error, (ConnectionResetError, BrokenPipeError)) or name in (
            "ServerDisconnectedError", "ConnectionClosedError", "ClientPayloadError", "IncompleteRead",
            "RemoteDisconnected", "ResponseStreamingError"):
        return FetchConnectionError(f"connection reset or closed by {where}: {url}")
    if name == "EndpointConnectionError":
        return FetchConnectionError(f"cannot connect to {where}: {url}")
    status = getattr(error, "status", None)
    if name == "ClientResponseError" and isinstance(status, int):
        if status in (404, 410):
            return FileNotFoundError(errno.ENOENT, f"HTTP {status}", url)
        if status in (401, 403):
            return PermissionError(errno.EACCES, f"HTTP {status}", url)
        reason = getattr(error, "message", "") or ""
        return FetchError(f"HTTP {status} {reason}: {url}".replace("  ", " "),
                          transient=status in (408, 425, 429) or status >= 500)
    return None


def _endpoint(chain: list[BaseException]) -> str | None:
    """host:port of the server that failed, when an exception names it (botocore's endpoint, aiohttp's host)."""
    for error in chain:
        endpoint = getattr(error, "kwargs", {}).get("endpoint_url") if isinstance(
            getattr(error, "kwargs", None), dict) else None
        if endpoint:
            return _netloc(endpoint)
        host, port = getattr(error, "host", None), getattr(error, "port", None)
        if isinstance(host, str) and host:
            return f"{host}:{port}" if port else host
    return None


def _netloc(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    host = parts.hostname or parts.netloc.rpartition("@")[2]
    return f"{host}:{parts.port}" if parts.port else host


# --- output folders and listings ----------------------------------------------------------------------------------


def ensure_output_folder(path: str) -> None:
    """Make `path` ready to be written to, creating folders but never a bucket: a local folder (and its parents) is
    created; on object stores (s3, gs, az, ...) the bucket must exist (BucketNotFound otherwise) and nothing is
    created (a prefix needs no creating). A local folder that this process cannot write to raises OutputNotWritable.
    Use this instead of `fs.makedirs(output_path)`, which creates a missing bucket on s3 (s3fs's mkdir does)."""
    protocol = protocol_of(path)
    fs, fs_path = filesystem(path)
    if isinstance(fs, LocalFileSystem):
        if os.path.exists(fs_path) and not os.path.isdir(fs_path):
            raise NotADirectoryError(errno.ENOTDIR, "output_path is a file, not a folder", path)
        os.makedirs(fs_path, exist_ok=True)
        # An existing folder may be read-only (its mode, a read-only mount, the immutable attribute): said here,
        # before any work, rather than as a traceback at the first write.
        if not os.access(fs_path, os.W_OK | os.X_OK):
            raise OutputNotWritable("cannot write to it (permission denied)")
        return
    if protocol not in _BUCKET_PROTOCOLS:
        fs.makedirs(fs_path, exist_ok=True)
        return
    bucket = fs_path.strip("/").split("/", 1)[0]
    if not _bucket_exists(fs, bucket, protocol):
        raise BucketNotFound(f"bucket {bucket!r} does not exist ({redact(path)}); the job never creates buckets: "
                             f"create it, or fix output_path")


def _bucket_exists(fs: fsspec.AbstractFileSystem, bucket: str, protocol: str) -> bool:
    if protocol in _S3_PROTOCOLS:
        # HEAD on the bucket, not s3fs's exists(), which calls any error (a network failure, a denial) "missing".
        try:
            with_retries(lambda: fs.call_s3("head_bucket", Bucket=bucket))
        except FileNotFoundError:
            return False
        except PermissionError:
            return True  # HeadBucket denied: writes may still be allowed; the first write will tell
        return True
    return with_retries(lambda: fs.exists(bucket))


def expand(pattern: str | Sequence[str]) -> list[str]:
    """Every file that `pattern` names, as full URLs, in the order given (a glob's matches sorted).

    `pattern` is a list of paths or globs (each taken as it is: any character, commas included), or one string: the
    path of something that exists, whatever characters it holds, else a comma-separated list. Each part is the file
    of that exact name when one exists (`calls[1].jsonl` is that file, even beside `calls1.jsonl`), else a glob
    (`*`, `?`, `[...]`, `**`). Every part must name at least one file: a part that matches nothing, names a folder,
    or whose glob matches a folder raises NoMatch naming that part (a typo in a list is never dropped)."""
    if isinstance(pattern, str):
        whole = pattern.strip()
        parts = [whole] if _kind(*filesystem(whole)) else [p.strip() for p in pattern.split(",") if p.strip()]
    else:
        parts = list(pattern)
    found: list[str] = []
    for part in parts:
        found.extend(_expand_one(part))
    return found


def _expand_one(part: str) -> list[str]:
    fs, fs_path = filesystem(part)
    kind = _kind(fs, fs_path)
    if kind == "file":
        return [unstrip(fs, fs_path)]
    if kind == "directory":
        raise NoMatch(f"{part!r} is a folder, not a file")
    if not any(ch in fs_path for ch in "*?["):
        raise NoMatch(f"{part!r} matches no file")
    matches = with_retries(lambda: fs.glob(fs_path, detail=True))
    if not matches:
        raise NoMatch(f"{part!r} matches no file")
    for path, info in sorted(matches.items()):
        if info.get("type") == "directory":
            raise NoMatch(f"{part!r} matches a folder, {unstrip(fs, path)}, not only files")
    return [unstrip(fs, path) for path in sorted(matches)]


def _kind(fs: fsspec.AbstractFileSystem, fs_path: str) -> str | None:
    """'file', 'directory' (a folder, or on an object store a prefix that holds objects), or None: nothing by that
    exact name."""
    try:
        info = with_retries(lambda: fs.info(fs_path))
    except (FileNotFoundError, NotADirectoryError):
        return None
    return "directory" if info.get("type") == "directory" else "file"


def normalise_url(url: str) -> str:
    """One spelling per location: a local path absolute and normalised (`a/../a/m.jsonl` -> `/abs/a/m.jsonl`,
    symlinks resolved), a URL's path normalised (`s3://b/x/../y` -> `s3://b/y`); the query is kept as it is."""
    if not is_url(url) or url.startswith("file://"):
        return os.path.realpath(url.removeprefix("file://"))
    protocol, rest = url.split("://", 1)
    query = ""
    if "?" in rest:
        rest, query = rest.split("?", 1)
        query = "?" + query
    bucket, _, key = rest.partition("/")
    key = posixpath.normpath(key) if key else ""
    key = "" if key == "." else key
    return f"{protocol.lower()}://{bucket}" + (f"/{key}" if key else "") + query
