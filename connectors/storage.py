"""Object storage through fsspec: local paths, `s3://`, `gs://` and the rest look the same to the pipeline.

Credentials and endpoints come from the environment, as every AWS tool reads them (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, `AWS_PROFILE`, ...), so the same job runs against AWS, MinIO or a test
server without code changes, and no secret ever passes through the job's config or its output.
"""

from __future__ import annotations

import os
import posixpath
import re
import time
from typing import IO, Callable, TypeVar

import fsspec

T = TypeVar("T")

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_TRANSIENT_TEXT = re.compile(
    r"SlowDown|Throttl|RequestTimeout|ServiceUnavailable|Service Unavailable|InternalError|Internal Server Error"
    r"|Connection reset|Connection aborted|Connection refused|Connection was closed|Could not connect"
    r"|ConnectionClosed|EndpointConnection|ServerDisconnected|Server disconnected|ClientConnector|ClientOSError"
    r"|timed out|Timeout"
    r"|\b(?:HTTP|status|code|error)[ :=]*(?:500|502|503|504)\b",
    re.IGNORECASE,
)


# Environment variables whose values are credentials: never echoed, wherever they turn up in a message.
SECRET_ENV_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                   "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN",
                   "AZURE_STORAGE_CONNECTION_STRING", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
_URL_QUERY = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#'\"]*)\?[^\s'\"]*")
_CREDENTIAL_PAIR = re.compile(
    r"((?:signature|x-amz-[a-z-]*|sig|token|secret|password|passwd|access[_-]?key|api[_-]?key|credential)s?"
    r"[\"']?\s*[=:]\s*[\"']?)[^\s&\"',;]+",
    re.IGNORECASE,
)
_USERINFO = re.compile(r"(://)[^/\s:@]+:[^/\s@]+@")


def redact(text: str | None) -> str | None:
    """`text` without credentials: the query of every URL (signed URLs carry their signature there), `user:pass@`
    in URLs, `key=value` pairs that name a secret, and the value of any credential environment variable."""
    if not text:
        return text
    text = _URL_QUERY.sub(r"\1?<redacted>", text)
    text = _USERINFO.sub(r"\1<redacted>@", text)
    text = _CREDENTIAL_PAIR.sub(r"\1<redacted>", text)
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= 6:
            text = text.replace(value, "<redacted>")
    return text


def is_url(path: str) -> bool:
    return bool(_URL.match(path))


def protocol_of(path: str) -> str:
    return path.split("://", 1)[0].lower() if is_url(path) else "file"


def storage_options(protocol: str) -> dict:
    """fsspec options for a protocol, from the environment. s3fs reads keys itself; the endpoint it does not."""
    if protocol in ("s3", "s3a"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        return {"endpoint_url": endpoint} if endpoint else {}
    return {}


def filesystem(path: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for `path` and the path as that filesystem names it (no protocol for local files)."""
    protocol = protocol_of(path)
    fs, fs_path = fsspec.core.url_to_fs(path, **storage_options(protocol))
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


class FileTooLarge(ValueError):
    """An object over the configured size limit: permanent, never retried."""


def is_transient(error: BaseException) -> bool:
    """Worth another try: throttling, dropped connections, timeouts, HTTP 5xx. A missing key, a denied access or a
    refusal of ours (a ValueError such as FileTooLarge) is permanent."""
    if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, ValueError)):
        return False
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    return bool(_TRANSIENT_TEXT.search(f"{type(error).__name__}: {error}"))


def with_retries(action: Callable[[], T], *, attempts: int = 4, base_delay: float = 0.5) -> T:
    """Run `action`, retrying transient storage errors with exponential backoff; permanent ones raise at once."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - classified below
            if attempt == attempts - 1 or not is_transient(error):
                raise
            time.sleep(base_delay * (2**attempt))
    raise AssertionError("unreachable")


def _check_size(fs: fsspec.AbstractFileSystem, fs_path: str, max_mb: float | None) -> None:
    if max_mb is not None:
        size = fs.size(fs_path)
        if size is not None and size > max_mb * 2**20:
            raise FileTooLarge(f"file is {size / 2**20:.3g} MiB, over max_file_mb={max_mb:g}")


def open_file(path: str, *, max_mb: float | None = None, block_size: int = 8 * 2**20) -> IO[bytes]:
    """A seekable binary stream of the object at `path`, for decoding without holding the whole file. Refuses
    objects over `max_mb` MiB by their listed size before opening them. Reads are buffered in `block_size` ranges."""

    def _open() -> IO[bytes]:
        fs, fs_path = filesystem(path)
        _check_size(fs, fs_path, max_mb)
        return fs.open(fs_path, "rb", block_size=block_size)

    return with_retries(_open)


def read_bytes(path: str, *, max_mb: float | None = None) -> bytes:
    """The whole object at `path` (a manifest, a small file). Refuses objects over `max_mb` MiB before reading."""

    def _read() -> bytes:
        fs, fs_path = filesystem(path)
        _check_size(fs, fs_path, max_mb)
        with fs.open(fs_path, "rb") as handle:
            return handle.read()

    return with_retries(_read)


def expand(pattern: str) -> list[str]:
    """A path, a glob, or a comma-separated list of either, as a sorted list of existing files (full URLs)."""
    found: list[str] = []
    for part in [p.strip() for p in pattern.split(",") if p.strip()]:
        fs, fs_path = filesystem(part)
        if any(ch in fs_path for ch in "*?["):
            matches = sorted(fs.glob(fs_path))
        else:
            matches = [fs_path] if fs.isfile(fs_path) else []
        found.extend(unstrip(fs, m) for m in matches)
    return found


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


def ensure_output_folder(url: str) -> None:
    """Make sure the output folder can be written: create it (and its parents) on a local disk; on object storage
    check that the bucket exists (a job never creates a bucket: a typo must not leave one behind) and create nothing
    (prefixes need no creation)."""
    fs, path = filesystem(url)
    if protocol_of(url) == "file":
        fs.makedirs(path, exist_ok=True)
        return
    bucket = path.split("/", 1)[0]
    fs.invalidate_cache(bucket)
    if not fs.exists(bucket):
        raise FileNotFoundError(f"bucket {bucket!r} does not exist (the job does not create buckets)")
