"""Checkpoints in object storage, copied once per node.

`model_path` may be a local `.nemo`, a `.nemo` at any fsspec URL (`s3://bucket/models/x.nemo`), or a pretrained
name (`nvidia/nemotron-3.5-asr-streaming-0.6b`, which NeMo itself downloads and caches). A URL is copied to a local
cache folder the first time any process on the node asks for it; an exclusive file lock makes the other actors on
the node wait for that copy instead of downloading the same gigabytes again. A cached copy is reused while its size
matches the remote object's.
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
        remote_size = with_fetch_retries(lambda: fs.size(remote), model_path, timeout=timeout)
        if target.exists() and target.stat().st_size == remote_size:
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
    return str(target)
