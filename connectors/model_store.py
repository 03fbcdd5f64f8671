"""Checkpoints in object storage, copied once per node.

`model_path` may be a local `.nemo`, a `.nemo` at any fsspec URL (`s3://bucket/models/x.nemo`), or a pretrained
name (`nvidia/nemotron-3.5-asr-streaming-0.6b`, which NeMo itself downloads and caches). A URL is copied to a local
cache folder the first time any process on the node asks for it; an exclusive file lock makes the other actors on
the node wait for that copy instead of downloading the same gigabytes again. A cached copy is reused while its size
matches the remote object's (and its ETag, where the store gives one).

A checkpoint's identity is its content, not its path (`fingerprint`): a new `.nemo` copied over the old one under the
same `model_path` is a different model, which a rerun into the same output must notice.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

from connectors.storage import FetchError, filesystem, is_url, with_fetch_retries


def cache_dir() -> Path:
    return Path(os.environ.get("NEMOTRON_BATCH_CACHE", Path.home() / ".cache" / "nemotron-batch")) / "models"


def is_pretrained_name(model_path: str) -> bool:
    return not is_url(model_path) and not model_path.endswith(".nemo") and not os.path.exists(model_path)


def _remote_tag(info: dict) -> str | None:
    """What an object store says identifies an object's content: its ETag (S3, GCS), else a version or mtime."""
    for key in ("ETag", "etag", "VersionId", "version_id", "md5Hash", "LastModified", "mtime", "last_modified"):
        if info.get(key):
            return str(info[key]).strip('"')
    return None


def fingerprint(model_path: str, *, timeout: float | None = None) -> str:
    """The checkpoint's identity by content: `blake2b:<hash>:<size>` of a local file (read once, ~1 GB/s), the
    object's `etag:<tag>:<size>` in object storage (no download), and `name:<name>` for a pretrained name (the hub's
    own caching decides its content) or a path that is no file here (an adapter of one's own may take any name)."""
    if not is_url(model_path) and not os.path.isfile(model_path):
        return f"name:{model_path}"
    if not is_url(model_path) or model_path.startswith("file://"):
        path = model_path.removeprefix("file://")
        digest = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as handle:
            while chunk := handle.read(8 << 20):
                digest.update(chunk)
        return f"blake2b:{digest.hexdigest()}:{os.path.getsize(path)}"
    fs, remote = filesystem(model_path, timeout=timeout)
    fs.invalidate_cache(remote)
    info = with_fetch_retries(lambda: fs.info(remote), model_path, timeout=timeout)
    return f"etag:{_remote_tag(info)}:{info.get('size')}"


def localize(model_path: str, *, timeout: float | None = None) -> str:
    """A path NeMo can open: the local file, the cached copy of a URL, or the pretrained name unchanged.

    `timeout`: seconds to wait for a connection and for each read of the copy (None: the protocol's default, see
    `connectors.storage.storage_options`), so a stalled server fails the copy instead of hanging every actor of the
    node on the lock. A failed or short copy (fewer bytes than the remote object has) is removed and retried with
    backoff; the cache never holds a partial file under the final name."""
    if not is_url(model_path) or model_path.startswith("file://"):
        return model_path.removeprefix("file://")
    fs, remote = filesystem(model_path, timeout=timeout)
    key = hashlib.sha1(model_path.encode()).hexdigest()[:12]
    target = cache_dir() / f"{key}-{Path(remote).name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fs.invalidate_cache(remote)
        info = with_fetch_retries(lambda: fs.info(remote), model_path, timeout=timeout)
        remote_size, tag = info.get("size"), _remote_tag(info)
        tag_file = target.with_name(f".{target.name}.tag")
        cached_tag = tag_file.read_text() if tag_file.exists() else None
        if target.exists() and target.stat().st_size == remote_size and cached_tag == (tag or ""):
            return str(target)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")

        def copy() -> None:
            try:
                fs.get_file(remote, str(partial))
                copied = partial.stat().st_size
                if remote_size is not None and copied != remote_size:
                    raise FetchError(f"copy of {model_path} is {copied} bytes, the object has {remote_size}",
                                     transient=True)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise

        with_fetch_retries(copy, model_path, timeout=timeout)
        partial.replace(target)
        tag_file.write_text(tag or "")  # a checkpoint replaced in the store (same size, new ETag) is copied again
    return str(target)
