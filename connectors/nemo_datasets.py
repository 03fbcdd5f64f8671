"""The NeMo dataset layouts that the training-data export writes, named in one place, on any fsspec storage.

Per split folder (`<output_path>/<split>/`):

* `manifest.jsonl`: a NeMo JSON-lines manifest (format `manifest`: pointing into the original audio with
  `offset`/`duration`; format `cut`: `audio_filepath` relative to the manifest's folder, `audio/<utt_id>.flac`).
* tarred (format `tarred`), the layout of NeMo's `scripts/speech_recognition/convert_to_tarred_audio_dataset.py`:
  `audio_<n>.tar` (one file per utterance, named by its `audio_filepath`), `tarred_audio_manifest.json` (every entry,
  with `shard_id`), and `sharded_manifests/manifest_<n>.json` (the entries of shard n). NeMo's
  `TarredAudioToBPEDataset` reads `manifest_filepath` + `tarred_audio_filepaths=audio__OP_0..N_CL_.tar`; its lhotse
  reader (`LazyNeMoTarredIterator`) finds the shard ids in the names (`manifest[^/]*_(\\d+)[^/]*\\.json` and
  `audio[^/]*_(\\d+)[^/]*\\.tar`), which these names match.
* `recordings.jsonl`: a transcription manifest of the split's recordings (original audio, reference `text`), to
  transcribe the held-out set again before and after fine-tuning.
"""

from __future__ import annotations

import io
import json
import tarfile
from typing import Iterable

from connectors.storage import filesystem, with_retries

MANIFEST = "manifest.jsonl"
RECORDINGS_MANIFEST = "recordings.jsonl"
TARRED_MANIFEST = "tarred_audio_manifest.json"
SHARDED_MANIFESTS = "sharded_manifests"
CLIPS = "audio"


def tar_name(shard_id: int) -> str:
    return f"audio_{shard_id}.tar"


def shard_manifest_name(shard_id: int) -> str:
    return f"{SHARDED_MANIFESTS}/manifest_{shard_id}.json"


def tar_pattern(shards: int) -> str:
    """NeMo's brace pattern for all shards (`audio__OP_0..N_CL_.tar`: the `_OP_`/`_CL_` spelling survives shells and
    YAML); a single shard is named as it is."""
    return tar_name(0) if shards == 1 else f"audio__OP_0..{shards - 1}_CL_.tar"


def sharded_manifest_pattern(shards: int) -> str:
    return shard_manifest_name(0) if shards == 1 else f"{SHARDED_MANIFESTS}/manifest__OP_0..{shards - 1}_CL_.json"


def write_bytes(url: str, data: bytes) -> None:
    """One object, written whole (the parent folder is created on local disks)."""
    fs, path = filesystem(url)

    def _write() -> None:
        parent = path.rsplit("/", 1)[0]
        if parent and parent != path:
            fs.makedirs(parent, exist_ok=True)
        with fs.open(path, "wb") as handle:
            handle.write(data)

    with_retries(_write)


def jsonl(entries: Iterable[dict]) -> bytes:
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries).encode("utf-8")


class TarShard:
    """One `audio_<n>.tar`, streamed to storage as members are added (memory: one clip)."""

    def __init__(self, url: str):
        fs, path = filesystem(url)
        parent = path.rsplit("/", 1)[0]
        fs.makedirs(parent, exist_ok=True)
        self._handle = fs.open(path, "wb")
        self._tar = tarfile.open(fileobj=self._handle, mode="w|")  # a stream: never seeks, so object storage works
        self.members = 0

    def add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        self._tar.addfile(info, io.BytesIO(data))
        self.members += 1

    def close(self) -> None:
        self._tar.close()
        self._handle.close()

    def __enter__(self) -> "TarShard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
