"""Tar shards of audio into source rows, streamed member by member: NeMo tarred datasets and WebDataset shards.

Both layouts are tar files of many small members, read as a stream (`tarfile` mode `r|`: a 10 GB shard is never held
whole, in memory or on disk; one member's bytes at a time). Each member's bytes go on with its row (`AudioSource`
with `member` and `data`), so the decode task never opens the shard again.

* **NeMo tarred** (`tarred_audio_manifest.json` or `sharded_manifests/manifest_N.json` beside `audio_N.tar`, as
  NeMo's `convert_to_tarred_audio_dataset.py` and this project's export write them): the manifest's lines name the
  members by `audio_filepath` (NeMo matches the base name), and a line's `shard_id`, where it has one, says which
  shard holds it. One read task per shard reads the lines of its shard (a sharded manifest: its own file; a single
  manifest: the whole file, keeping the lines of this shard), then streams the shard and joins each member to its
  lines by name. Lines with `offset` are slices of their member, as in NeMo.
* **WebDataset** (`key.flac|wav|mp3|opus|...` beside `key.json` and/or `key.txt`, as `webdataset.TarWriter` writes
  them): consecutive members with one key are one sample; `json` holds the manifest fields (`text`, `duration`,
  `lang`, anything else as metadata), `txt` the reference text.

Rows are the manifest's lines (NeMo) or the shard's samples (WebDataset). Identity: the shard's URL (the row's
`manifest` column) and the member's name (with a slice's times) - `AudioSource.identity`. Content (`source_hash`):
the member's manifest entry (or the sample's json and txt) and a hash of the member's bytes, so an edited member, or
an edited line, is replaced on a rerun as an edited manifest line is. `line` is the member's (sample's) position
in the shard, 1-based; for a NeMo line whose member is absent, its line number in the manifest.

Errors, each its own row, the other members going on: a line naming a member the shard does not hold; a sample
without audio; a member the manifest does not list (NeMo skips it silently: here it is an error row, so nothing
in a shard is left out without a word); a truncated or corrupt shard (the member at the cut, and every line whose
member comes after it); a shard that cannot be opened at all (one row per manifest line naming it; for WebDataset,
whose shards have no manifest, one row for the shard). A member that is not audio fails when it is decoded.
"""

from __future__ import annotations

import json
import posixpath
import re
import tarfile
import zlib
from dataclasses import dataclass
from typing import Iterator

from connectors.audio_source import AudioSource
from connectors.manifests import AUDIO_EXTENSIONS, ManifestRow, digest, parse_line, read_manifest, row_identity
from connectors.storage import filesystem, with_retries

_AUDIO_EXTS = {ext.lstrip(".") for ext in AUDIO_EXTENSIONS}
_TEXT_EXTS = ("txt", "text", "transcript")
_SHARD_ID = re.compile(r"_(\d+)[^/]*\.(?:tar|json|jsonl)(?:\.gz)?$")


def shard_number(url: str) -> int | None:
    """The shard id in a NeMo shard or sharded-manifest name (`audio_3.tar`, `manifest_3.json`), as lhotse's
    `LazyNeMoTarredIterator` finds it; None when the name has none."""
    found = _SHARD_ID.search(url)
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class Member:
    """One member read from a shard: its name, position (1-based), bytes; or why the shard broke off there."""

    name: str
    position: int
    data: bytes | None = None
    broken: str | None = None  # the shard could not be read on from here (truncated, corrupt header)


class ShardUnreadable(Exception):
    """The shard cannot be opened at all (missing, not a tar)."""


def iter_members(url: str) -> Iterator[Member]:
    """Every regular file in the tar shard at `url`, in order, streamed; a read that breaks midway ends with one
    `Member` whose `broken` says why. Raises ShardUnreadable when the shard cannot be opened at all."""
    fs, path = filesystem(url)
    try:
        handle = with_retries(lambda: fs.open(path, "rb", block_size=4 * 2**20))
    except Exception as error:  # noqa: BLE001 - a missing or forbidden shard is reported per row
        raise ShardUnreadable(f"cannot open shard: {type(error).__name__}: {error}") from None
    with handle:
        try:
            archive = tarfile.open(fileobj=handle, mode="r|*")
        except (tarfile.TarError, EOFError, OSError) as error:
            raise ShardUnreadable(f"not a tar file: {error}") from None
        position = 0
        name = "(start of shard)"
        try:
            for info in archive:
                if not info.isfile():
                    continue
                position += 1
                name = info.name
                extracted = archive.extractfile(info)
                data = extracted.read() if extracted is not None else b""
                if len(data) != info.size:
                    raise tarfile.ReadError(f"member {name} holds {len(data)} of {info.size} bytes")
                yield Member(name, position, data)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
            yield Member(name, position, broken=f"shard is truncated or corrupt at member {name}: "
                                                f"{str(error) or type(error).__name__}")
        finally:
            archive.close()


def _bytes_hash(data: bytes) -> str:
    return digest(data, size=8)


# --- NeMo tarred ----------------------------------------------------------------------------------------------------


@dataclass
class _Line:
    row: ManifestRow  # as parsed from the manifest (audio resolved against nothing: the member's name)
    key: str  # the member's base name, as NeMo matches it
    entry_hash: str


def _shard_lines(manifest: str, shard: str, shared: bool) -> Iterator[ManifestRow]:
    """The manifest lines of `shard`. A manifest of its own (sharded manifests, or one shard): all its lines. A
    manifest `shared` by several shards: the lines whose `shard_id` is the shard's number; a line without a usable
    `shard_id` is an error row, reported once, with shard 0 (a line that names no shard cannot be joined to one)."""
    if not shared:
        yield from read_manifest(manifest)
        return
    number = shard_number(shard)
    for row in read_manifest(manifest):
        shard_id = json.loads(row.metadata).get("shard_id") if row.metadata else None
        if isinstance(shard_id, int) and not isinstance(shard_id, bool):
            if shard_id == number:
                yield row
        elif number == 0:
            row.error = row.error or (f"line {row.line} has no shard_id: in a manifest shared by several shards "
                                      f"each line needs one (as NeMo's converter writes)")
            yield row


def read_nemo_shard(shard: str, manifest: str, shared: bool = False) -> Iterator[ManifestRow]:
    """The rows of one NeMo tarred shard: its manifest lines (see `_shard_lines`), each joined to its member by
    name. Memory: the shard's lines (not its members' bytes, which are streamed)."""
    lines: dict[str, list[_Line]] = {}
    for row in _shard_lines(manifest, shard, shared):
        if row.error or row.audio is None:
            row.manifest = shard  # a bad line is still reported, with the shard's rows, naming its member
            row.row_id = digest(shard, manifest, "line", str(row.line))
            if row.audio is not None:
                row.audio = AudioSource(shard, offset=row.audio.offset, duration=row.audio.duration,
                                        member=posixpath.basename(row.audio_filepath))
            yield row
            continue
        key = posixpath.basename(row.audio_filepath)
        lines.setdefault(key, []).append(_Line(row, key, row.source_hash))
    try:
        for member in iter_members(shard):
            if member.broken is not None:
                for line in lines.pop(posixpath.basename(member.name), []):
                    yield _failed(line.row, shard, member.name, member.broken)
                for waiting in lines.values():
                    for line in waiting:
                        yield _failed(line.row, shard, line.key, f"not read: {member.broken}")
                return
            key = posixpath.basename(member.name)
            found = lines.pop(key, None)
            if found is None:
                if key.rsplit(".", 1)[-1].lower() in _AUDIO_EXTS:
                    yield _unlisted(shard, member)
                continue
            content = _bytes_hash(member.data)
            for line in found:
                yield _joined(line, shard, member, content)
    except ShardUnreadable as error:
        for waiting in lines.values():
            for line in waiting:
                yield _failed(line.row, shard, line.key, str(error))
        return
    for waiting in lines.values():
        for line in waiting:
            yield _failed(line.row, shard, line.key, f"manifest line {line.row.line} names member {line.key}, which "
                                                     f"is not in the shard")


def _joined(line: _Line, shard: str, member: Member, content: str) -> ManifestRow:
    """A line joined to its member: identity shard + member (+ slice), content its entry + the member's bytes.
    (A line repeating another was already made an error row by `iter_manifest`, and never gets here.)"""
    row = line.row
    old = row.audio
    row.audio = AudioSource(shard, offset=old.offset, duration=old.duration, member=member.name, data=member.data)
    row.manifest = shard
    row.row_id = row_identity(shard, row.audio, row.requested_channel, row.requested_channel_mode)
    row.source_hash = digest(line.entry_hash, content, size=6)
    row.line = member.position
    return row


def _failed(row: ManifestRow, shard: str, member: str, reason: str) -> ManifestRow:
    old = row.audio
    row.audio = AudioSource(shard, offset=old.offset if old else None, duration=old.duration if old else None,
                            member=member)
    row.manifest = shard
    row.row_id = row_identity(shard, row.audio, row.requested_channel, row.requested_channel_mode)
    row.error = reason
    return row


def _unlisted(shard: str, member: Member) -> ManifestRow:
    audio = AudioSource(shard, member=member.name)
    return ManifestRow(row_id=row_identity(shard, audio, None, None), source_hash=_bytes_hash(member.data)[:12],
                       manifest=shard, line=member.position, audio_filepath=member.name, audio=audio,
                       error=f"member {member.name} is in the shard but in no manifest line (not transcribed)")


# --- WebDataset -----------------------------------------------------------------------------------------------------


def _split_key(name: str) -> tuple[str, str]:
    """WebDataset's convention: the key is the name up to the first dot of its last path component."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower() if dot else ""


def _samples(members: Iterator[Member]) -> Iterator[tuple[str, int, dict[str, bytes], str | None]]:
    """(key, position, {extension: bytes}, broken) per sample: consecutive members with one key."""
    key, parts, position = None, {}, 0
    for member in members:
        if member.broken is not None:
            if key is not None:
                yield key, position, parts, member.broken
            else:
                yield _split_key(member.name)[0], member.position, {}, member.broken
            return
        this, ext = _split_key(member.name)
        if this != key:
            if key is not None:
                yield key, position, parts, None
            key, parts, position = this, {}, position + 1
        parts[ext] = member.data
    if key is not None:
        yield key, position, parts, None


def read_webdataset_shard(shard: str) -> Iterator[ManifestRow]:
    """The rows of one WebDataset shard: one per sample (its audio, its json fields, its txt)."""
    try:
        for key, position, parts, broken in _samples(iter_members(shard)):
            yield _sample_row(shard, key, position, parts, broken)
    except ShardUnreadable as error:
        yield ManifestRow(row_id=digest(shard, "shard"), source_hash=digest(str(error), size=6), manifest=shard,
                          line=None, error=f"shard {posixpath.basename(shard)}: {error}")


def _sample_row(shard: str, key: str, position: int, parts: dict[str, bytes], broken: str | None) -> ManifestRow:
    audio_ext = next((ext for ext in parts if ext.rsplit(".", 1)[-1] in _AUDIO_EXTS), None)
    member = f"{key}.{audio_ext}" if audio_ext else None
    entry: dict = {}
    problem = broken
    if "json" in parts:
        try:
            loaded = json.loads(parts["json"].decode("utf-8"))
            if isinstance(loaded, dict):
                entry.update(loaded)
            else:
                problem = problem or f"sample {key}: its json is a {type(loaded).__name__}, not an object"
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as error:
            problem = problem or f"sample {key}: its json is not valid ({type(error).__name__})"
    text_ext = next((ext for ext in _TEXT_EXTS if ext in parts), None)
    if text_ext and "text" not in entry:
        try:
            entry["text"] = parts[text_ext].decode("utf-8").strip()
        except UnicodeDecodeError:
            problem = problem or f"sample {key}: its {text_ext} is not valid UTF-8"
    if member is None and problem is None:
        problem = f"sample {key} has no audio member (found: {', '.join(sorted(parts)) or 'nothing'})"
    entry["audio_filepath"] = member or key
    raw = json.dumps(entry, ensure_ascii=False, sort_keys=True).encode("utf-8", "surrogatepass")
    row = parse_line(raw, shard, position, "")
    audio = AudioSource(shard, offset=row.audio.offset if row.audio else None,
                        duration=row.audio.duration if row.audio else None, member=member or key,
                        data=parts.get(audio_ext) if audio_ext and problem is None else None)
    row.audio = audio
    row.audio_filepath = member or key
    row.row_id = row_identity(shard, audio, row.requested_channel, row.requested_channel_mode)
    content = "".join(_bytes_hash(parts[ext]) for ext in sorted(parts))
    row.source_hash = digest(raw, content, size=6)
    if problem is not None:
        row.error = problem
    return row


__all__ = ["Member", "ShardUnreadable", "iter_members", "read_nemo_shard", "read_webdataset_shard", "shard_number"]
