"""What a job reads, as typed values: each `InputSource` is one unit that one read task streams into rows.

The kind says how its rows are read (`ROW_READERS`):

* `manifest`: a JSON-lines manifest, gzip-compressed or not (`.jsonl.gz`, `.json.gz`); lines with `offset` are slices;
* `audio_dir`: every audio file under a folder or prefix;
* `nemo_tarred`: one tar shard of a NeMo tarred dataset, with the manifest that lists its members
  (`connectors.shards`);
* `webdataset`: one WebDataset tar shard (`key.flac` beside `key.json` / `key.txt`);
* `table`: one Parquet or Arrow file with the audio bytes in an `audio` column (`connectors.tables`).

A new corpus layout is one more kind and one more reader that yields `connectors.manifests.ManifestRow`s, each with
its `AudioSource`; nothing downstream changes. Shards and tables are one input each, so they are read in parallel.

`find_inputs` turns the job's `dataset_manifest` / `audio_dir` / `tarred_audio_filepaths` into the list of inputs,
chosen by what the paths hold: `.tar` files are WebDataset shards, `.parquet` / `.arrow` files (or a folder of them,
as `datasets.Dataset.save_to_disk` or the hub layout `data/*.parquet` has them) are tables, anything else a manifest.
A NeMo tarred dataset is its manifest(s) in `dataset_manifest` and its shards in `tarred_audio_filepaths` (NeMo's
own key, with its brace patterns `audio__OP_0..N_CL_.tar` or `audio_{0..N}.tar`); a `tarred_audio_manifest.json`
named alone, with `audio_N.tar` beside it, is read as one too (the layout this project's export writes). Failures
are `InputError`s (the job reports them as configuration errors, exit 2).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Callable, Iterator

from braceexpand import braceexpand

from connectors.manifests import ManifestRow, iter_audio_dir, manifest_urls, open_manifest, read_manifest
from connectors.shards import read_nemo_shard, read_webdataset_shard, shard_number
from connectors.storage import NoMatch, expand, filesystem, redact, unstrip
from connectors.tables import is_table, read_table, tables_in_folder

MANIFEST = "manifest"
AUDIO_DIR = "audio_dir"
NEMO_TARRED = "nemo_tarred"
WEBDATASET = "webdataset"
TABLE = "table"

TARRED_MANIFEST_NAME = "tarred_audio_manifest.json"  # NeMo's converter's (and this project's export's) name
_TAR_EXTENSIONS = (".tar", ".tar.gz", ".tgz")


class InputError(ValueError):
    """The job's input cannot be read as given (nothing matches, an empty manifest, not a folder)."""


@dataclass(frozen=True)
class InputSource:
    kind: str  # one of ROW_READERS
    url: str  # normalised (manifests, shards, tables) or as given (folders)
    manifest_url: str | None = None  # nemo_tarred: the manifest listing the shard's members
    shared: bool = False  # nemo_tarred: that manifest lists other shards' members too (lines carry shard_id)

    @property
    def manifest(self) -> str:
        """What its rows' `manifest` column names as where they came from: the manifest, the shard or table file
        itself, or the folder."""
        return self.url


ROW_READERS: dict[str, Callable[[InputSource], Iterator[ManifestRow]]] = {
    MANIFEST: lambda source: read_manifest(source.url),
    AUDIO_DIR: lambda source: iter_audio_dir(source.url),
    NEMO_TARRED: lambda source: read_nemo_shard(source.url, source.manifest_url or "", source.shared),
    WEBDATASET: lambda source: read_webdataset_shard(source.url),
    TABLE: lambda source: read_table(source.url),
}


def iter_rows(source: InputSource) -> Iterator[ManifestRow]:
    """Every row of one input, streamed."""
    return ROW_READERS[source.kind](source)


def split_patterns(pattern: str) -> list[str]:
    """A comma-separated list of paths, each with NeMo's brace patterns expanded (`_OP_0..3_CL_` is `{0..3}`, the
    spelling that survives shells and YAML; `{000..019}` keeps its zero padding); commas inside braces are the
    brace's own."""
    parts, depth, current = [], 0, ""
    for ch in pattern.replace("_OP_", "{").replace("_CL_", "}"):
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [name for part in parts if part.strip() for name in braceexpand(part.strip())]


def _paths(pattern: str | list[str], key: str, *, keep_missing: bool) -> list[str]:
    """The files the patterns name (connectors.storage.expand: an exact name first, else a glob; every part must
    match, and none may be a folder); with `keep_missing`, a name given without a glob is kept even when absent (a
    missing shard becomes error rows, not silence)."""
    found = []
    for name in _parts(pattern):
        try:
            found.extend(expand([name]))
        except NoMatch as error:
            if not (keep_missing and not any(ch in name for ch in "*?[") and "matches no file" in str(error)):
                raise InputError(f"{key} {redact(str(error))}") from None
            found.append(name)
        except OSError as error:  # a listing that failed
            raise InputError(f"{key} {redact(str(error))}") from None
    return manifest_urls(found)


def _parts(pattern: str | list[str]) -> list[str]:
    """A list's entries as they are; a string that names something existing is that one name, whatever characters it
    holds; any other string is a comma-separated list with brace patterns."""
    if not isinstance(pattern, str):
        return [str(p).strip() for p in pattern]
    fs, path = filesystem(pattern.strip())
    return [pattern.strip()] if fs.exists(path) else split_patterns(pattern)


def _is_tar(url: str) -> bool:
    return url.lower().endswith(_TAR_EXTENSIONS)


def find_inputs(dataset_manifest: str | list[str] | None, audio_dir: str | None,
                tarred_audio_filepaths: str | None = None) -> list[InputSource]:
    """The inputs named by the job's settings (`dataset_manifest` or `audio_dir`; `tarred_audio_filepaths` with a
    manifest), each checked to hold something."""
    if tarred_audio_filepaths:
        return _nemo_tarred(dataset_manifest, tarred_audio_filepaths)
    if dataset_manifest:
        return _by_content(dataset_manifest)
    fs, path = filesystem(audio_dir)
    if not fs.isdir(path):
        raise InputError(f"audio_dir {redact(audio_dir)!r} is not a folder")
    if next(iter_audio_dir(audio_dir), None) is None:
        raise InputError(f"audio_dir {redact(audio_dir)} has no audio files: nothing to transcribe")
    return [InputSource(AUDIO_DIR, audio_dir.rstrip("/"))]


def _by_content(dataset_manifest: str | list[str]) -> list[InputSource]:
    """Each path by what it holds: a folder of tables, tar shards, table files, manifests."""
    inputs: list[InputSource] = []
    urls: list[str] = []
    for name in _parts(dataset_manifest):
        fs, path = filesystem(name)
        if fs.exists(path) and fs.isdir(path):
            tables = tables_in_folder(name)
            if not tables:
                raise InputError(f"dataset_manifest {redact(name)!r} is a folder, not a file")
            urls.extend(tables)
        else:
            urls.extend(_paths([name], "dataset_manifest", keep_missing=_is_tar(name)))
    urls = manifest_urls(urls)  # _paths normalised its own; a folder's tables and repeats across parts still need it
    if not urls:
        raise InputError(f"dataset_manifest {redact(dataset_manifest)!r} matches no file")
    if len(urls) == 1 and posixpath.basename(urls[0]) == TARRED_MANIFEST_NAME:
        shards = _shards_beside(urls[0])
        if shards:
            return _pair(urls, shards)
    for url in urls:
        if _is_tar(url):
            inputs.append(InputSource(WEBDATASET, url))
        elif is_table(url):
            inputs.append(InputSource(TABLE, url))
        else:
            inputs.append(InputSource(MANIFEST, url))
    # Refused only when nothing named holds a row: an archive kept one manifest per hour or per call has empty ones
    # (an hour without calls), which add no row. The check stops at the first manifest with content, so 100,000
    # manifests are not all opened on the driver before the job starts (the read tasks open them).
    manifests = [i.url for i in inputs if i.kind == MANIFEST]
    if len(manifests) == len(inputs) and not any(_has_content(url) for url in manifests):
        if len(manifests) == 1:
            raise InputError(f"manifest {redact(manifests[0])} is empty: nothing to transcribe")
        raise InputError(f"dataset_manifest {redact(dataset_manifest)!r}: all {len(manifests)} manifests are "
                         f"empty: nothing to transcribe")
    return inputs


def _shards_beside(manifest: str) -> list[str]:
    """`audio_N.tar` beside a `tarred_audio_manifest.json`, in shard order."""
    fs, path = filesystem(manifest)
    folder = path.rsplit("/", 1)[0]
    found = [unstrip(fs, p) for p in fs.glob(f"{folder}/audio_*.tar") if re.search(r"/audio_\d+\.tar$", p)]
    return sorted(found, key=lambda url: shard_number(url) or 0)


def _nemo_tarred(dataset_manifest: str | None, tarred_audio_filepaths: str) -> list[InputSource]:
    if not dataset_manifest:
        raise InputError("tarred_audio_filepaths needs dataset_manifest: the manifest(s) that list the members")
    manifests = _paths(dataset_manifest, "dataset_manifest", keep_missing=False)
    shards = _paths(tarred_audio_filepaths, "tarred_audio_filepaths", keep_missing=True)
    return _pair(manifests, shards)


def _pair(manifests: list[str], shards: list[str]) -> list[InputSource]:
    """One input per shard with its manifest: one manifest for all shards (lines carry shard_id), or one each
    (sharded manifests, paired by the shard number in their names, else by order)."""
    if len(manifests) == 1:
        return [InputSource(NEMO_TARRED, shard, manifests[0], shared=len(shards) > 1) for shard in shards]
    if len(manifests) != len(shards):
        raise InputError(f"{len(manifests)} manifests for {len(shards)} shards: give one manifest, or one per shard")
    numbers = {shard_number(m): m for m in manifests}
    if None not in numbers and len(numbers) == len(manifests) and all(shard_number(s) in numbers for s in shards):
        return [InputSource(NEMO_TARRED, s, numbers[shard_number(s)]) for s in shards]
    return [InputSource(NEMO_TARRED, s, m) for s, m in zip(shards, manifests)]


def _has_content(url: str) -> bool:
    """Whether a manifest holds anything but blank lines (read only as far as the first other byte)."""
    with open_manifest(url) as handle:
        while chunk := handle.read(1 << 16):
            if chunk.strip():
                return True
    return False
