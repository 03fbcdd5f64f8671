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
from typing import Callable, TypeVar

import fsspec

T = TypeVar("T")

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# Errors worth another try: throttling, dropped connections, timeouts. Anything else (missing key, access denied)
# is permanent and becomes the row's error at once.
_TRANSIENT_MARKERS = ("SlowDown", "Throttl", "RequestTimeout", "ServiceUnavailable", "InternalError",
                      "Connection reset", "Connection aborted", "timed out", "Timeout", "503", "500", "502", "504")


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


def is_transient(error: BaseException) -> bool:
    if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return False
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    text = f"{type(error).__name__}: {error}"
    return any(marker in text for marker in _TRANSIENT_MARKERS)


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


def read_bytes(path: str, *, max_bytes: int | None = None) -> bytes:
    """The whole object at `path`. Refuses objects over `max_bytes` by their listed size, before reading them."""

    def _read() -> bytes:
        fs, fs_path = filesystem(path)
        if max_bytes is not None:
            size = fs.size(fs_path)
            if size is not None and size > max_bytes:
                raise ValueError(f"file is {size / 2**20:.1f} MiB, over max_file_mb={max_bytes / 2**20:.0f}")
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
