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

from connectors.storage import filesystem, is_url, with_retries


def cache_dir() -> Path:
    return Path(os.environ.get("NEMOTRON_BATCH_CACHE", Path.home() / ".cache" / "nemotron-batch")) / "models"


def is_pretrained_name(model_path: str) -> bool:
    return not is_url(model_path) and not model_path.endswith(".nemo") and not os.path.exists(model_path)


def localize(model_path: str) -> str:
    """A path NeMo can open: the local file, the cached copy of a URL, or the pretrained name unchanged."""
    if not is_url(model_path) or model_path.startswith("file://"):
        return model_path.removeprefix("file://")
    fs, remote = filesystem(model_path)
    key = hashlib.sha1(model_path.encode()).hexdigest()[:12]
    target = cache_dir() / f"{key}-{Path(remote).name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        remote_size = with_retries(lambda: fs.size(remote))
        if target.exists() and target.stat().st_size == remote_size:
            return str(target)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        with_retries(lambda: fs.get_file(remote, str(partial)))
        partial.replace(target)
    return str(target)
