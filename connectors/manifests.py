"""NeMo JSON-lines manifests (and bare audio folders) into source rows, streaming.

A manifest line is `{"audio_filepath": ..., "duration": ..., "text": ..., <anything else>}`. Every non-blank line
becomes exactly one row, whatever bytes it holds: a line that cannot be used becomes a row with an `error` (stage
`manifest`) that says which field is wrong and why, never an exception and never a silent skip. Fields are checked by
type one by one (`duration` a finite number >= 0, `text` a string, `channel` an integer, ...). A byte-order mark at
the start of the file is allowed; `\\r\\n` endings are too; a line over `MAX_LINE_BYTES` is an error row.

Row identity (`row_id`) is what a user means by "this row": its manifest (the normalised URL) and what it asks to
transcribe (the resolved audio location and its own channel choice: `channel`, `channel_mode`), not the bytes of its
line. So a rerun finds a row again after its reference or its language was edited, or lines were reordered or
appended; the line's content is `source_hash`, and a changed hash means the earlier transcript is replaced. The same
identity twice in one manifest is a duplicate: the later line is an error row (not transcribed twice), with an id of
its own. A line that names no audio is identified by its line number.

`iter_manifest` reads a manifest as a stream (memory follows one line, not the file).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Iterable, Iterator

from connectors.audio_source import AudioSource, fields_of
from connectors.storage import filesystem, normalise_url, parent_of, resolve, unstrip, with_retries

# Fields the pipeline reads; everything else is the user's metadata and is carried through as JSON.
KNOWN_FIELDS = {"audio_filepath", "duration", "offset", "text", "target_lang", "lang", "channel_mode", "channel"}
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".mp4", ".webm", ".sph", ".aiff", ".au")
MAX_LINE_BYTES = 1 << 20  # a manifest line longer than 1 MiB is not a manifest entry
_BOM = b"\xef\xbb\xbf"
_MAX_CHANNEL = 1023


def digest(*parts: str | bytes, size: int = 10) -> str:
    """A stable hex digest of `parts` (`size` bytes)."""
    h = hashlib.blake2b(digest_size=size)
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


@dataclass
class ManifestRow:
    """One manifest line, parsed and typed; `error` says why it cannot be used (the rest is what could be read)."""

    row_id: str
    source_hash: str
    manifest: str | None
    line: int | None
    audio_filepath: str | None = None
    audio: AudioSource | None = None  # where the recording's bytes are (null when the line names none)
    manifest_duration: float | None = None
    reference_text: str | None = None
    metadata: str | None = None  # every unknown field, as a JSON object
    requested_lang: object = None  # the row's own target_lang (or lang): checked against the checkpoint later
    requested_channel_mode: str | None = None
    requested_channel: int | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        """The row as flat columns: the audio source as its fields (`connectors.audio_source.FIELDS`)."""
        out = dict(self.__dict__)
        out.update(fields_of(out.pop("audio")))
        return out


def _kind(value: object) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "object",
            type(None): "null"}.get(type(value), type(value).__name__)


def _encodable(value: object) -> bool:
    """Arrow writes UTF-8: a lone surrogate (JSON allows "\\ud800") cannot be written."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
        return True
    except (UnicodeEncodeError, ValueError, RecursionError):
        return False


def _check_fields(entry: dict, line: int) -> list[str]:
    """What is wrong with a parsed object's known fields, one clear sentence each (empty when all is well)."""
    problems = []
    path = entry.get("audio_filepath")
    if path is None or (isinstance(path, str) and not path.strip()):
        problems.append("has no audio_filepath")
    elif not isinstance(path, str):
        problems.append(f"has audio_filepath {_kind(path)} {path!r}; expected a string")
    duration = entry.get("duration")
    if duration is not None and (not isinstance(duration, (int, float)) or isinstance(duration, bool)
                                 or not math.isfinite(duration) or duration < 0):
        problems.append(f"has duration {_kind(duration)} {duration!r}; expected a number >= 0")
    offset = entry.get("offset")
    if offset is not None and (not isinstance(offset, (int, float)) or isinstance(offset, bool)
                               or not math.isfinite(offset) or offset < 0):
        problems.append(f"has offset {_kind(offset)} {offset!r}; expected a number of seconds >= 0")
    elif offset is not None and duration == 0:
        problems.append("has a slice (offset) of duration 0")
    text = entry.get("text")
    if text is not None and not isinstance(text, str):
        problems.append(f"has text {_kind(text)} {text!r:.40}; expected a string")
    for key in ("target_lang", "lang"):
        value = entry.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(f"has {key} {_kind(value)} {value!r:.40}; expected a locale string")
    mode = entry.get("channel_mode")
    if mode is not None and not isinstance(mode, str):
        problems.append(f"has channel_mode {_kind(mode)} {mode!r:.40}; expected mix or split")
    channel = entry.get("channel")
    if channel is not None and (not isinstance(channel, int) or isinstance(channel, bool)
                                or not -_MAX_CHANNEL <= channel <= _MAX_CHANNEL):
        problems.append(f"has channel={channel!r:.40}; expected an integer channel number")
    if not _encodable(entry):
        problems.append("holds text that is not valid Unicode (a lone surrogate escape)")
    return [f"line {line} {p}" for p in problems]


def _string(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def row_identity(manifest: str | None, audio: AudioSource | None, channel: object, channel_mode: object) -> str:
    """A row's `row_id`: its manifest (or shard, or table file) and what it asks to transcribe."""
    return digest(manifest or "", audio.identity() if audio else "", str(channel), str(channel_mode))


def parse_line(raw: bytes, manifest: str | None, line: int, base_dir: str) -> ManifestRow:
    """One manifest line (without its newline) as a row; never raises for the line's content. A line with `offset`
    is a slice of its file (NeMo's semantics: `duration` is then the slice's length; without it, to the end), with
    an identity of its own."""
    row = ManifestRow(row_id=digest(manifest or "", "line", str(line)), source_hash=digest(raw, size=6),
                      manifest=manifest, line=line)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        row.error = f"line {line} is not valid UTF-8 ({error.reason} at byte {error.start})"
        return row
    try:
        entry = json.loads(text)
    except json.JSONDecodeError as error:
        row.error = f"line {line} is not valid JSON ({error.msg} at column {error.colno})"
        return row
    except (RecursionError, ValueError) as error:  # nesting too deep, a number too long to convert
        row.error = f"line {line} is not a usable JSON object ({type(error).__name__})"
        return row
    if not isinstance(entry, dict):
        row.error = f"line {line} is a JSON {type(entry).__name__}, not an object"
        return row
    extras = {k: v for k, v in entry.items() if k not in KNOWN_FIELDS}
    if extras and _encodable(extras):
        row.metadata = json.dumps(extras, ensure_ascii=False)
    problems = _check_fields(entry, line)
    path = entry.get("audio_filepath")
    if isinstance(path, str) and path.strip() and _encodable(path):
        row.audio_filepath = path
        row.audio = AudioSource(resolve(path, base_dir))
    if problems:
        row.error = "; ".join(problems)
        return row
    row.manifest_duration = float(entry["duration"]) if entry.get("duration") is not None else None
    if entry.get("offset") is not None:
        row.audio = AudioSource(row.audio.url, offset=float(entry["offset"]), duration=row.manifest_duration)
    row.reference_text = entry.get("text")
    lang = entry.get("target_lang") if _string(entry.get("target_lang")) else entry.get("lang")
    row.requested_lang = _string(lang)
    row.requested_channel_mode = _string(entry.get("channel_mode"))
    row.requested_channel = entry.get("channel")
    # Identity: the manifest and what the row asks to transcribe. Content: the entry itself, key order ignored.
    row.row_id = row_identity(manifest, row.audio, row.requested_channel, row.requested_channel_mode)
    row.source_hash = digest(json.dumps(entry, sort_keys=True, ensure_ascii=False), size=6)
    return row


def _lines(handle: IO[bytes], chunk_bytes: int = 1 << 20) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes without the line ending) of a binary stream, read in chunks (any file object: fsspec's
    have no bounded readline); None for a line over MAX_LINE_BYTES, whose bytes are dropped as they arrive."""
    number = 0
    pending = b""
    overlong = False
    while True:
        chunk = handle.read(chunk_bytes)
        if not chunk:
            break
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            number += 1
            if overlong or len(raw) > MAX_LINE_BYTES:
                overlong = False
                yield number, None
                continue
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            yield number, raw.rstrip(b"\r")
        if len(pending) > MAX_LINE_BYTES:  # a line this long is not an entry: do not hold it
            overlong, pending = True, b""
    if pending or overlong:
        number += 1
        if overlong or len(pending) > MAX_LINE_BYTES:
            yield number, None
        else:
            if number == 1 and pending.startswith(_BOM):
                pending = pending[len(_BOM):]
            yield number, pending.rstrip(b"\r")


def iter_manifest(manifest: str, handle: IO[bytes]) -> Iterator[ManifestRow]:
    """Every non-blank line of one manifest, streamed, as a row. Blank lines are not rows (as in NeMo's reader)."""
    base_dir = parent_of(manifest)
    first_line: dict[str, int] = {}
    for number, raw in _lines(handle):
        if raw is None:
            yield ManifestRow(row_id=digest(manifest, "line", str(number)), source_hash=digest(str(number), size=6),
                              manifest=manifest, line=number,
                              error=f"line {number} is longer than {MAX_LINE_BYTES // 2**20} MiB")
            continue
        if not raw.strip():
            continue
        row = parse_line(raw, manifest, number, base_dir)
        if row.error is None:
            first = first_line.setdefault(row.row_id, number)
            if first != number:
                # The same audio (and channel choice) twice would transcribe it twice and double-count it.
                row.row_id = digest(row.row_id, "duplicate", str(number))
                row.error = f"line {number} duplicates line {first} (not transcribed twice)"
        yield row


@contextmanager
def open_manifest(manifest: str) -> Iterator[IO[bytes]]:
    """A manifest's bytes as a stream: gzip-compressed ones (`.gz`: `.jsonl.gz`, `.json.gz`) decompressed as read."""
    fs, path = filesystem(manifest)
    with with_retries(lambda: fs.open(path, "rb", block_size=4 * 2**20)) as handle:
        if path.lower().endswith(".gz"):
            with gzip.GzipFile(fileobj=handle, mode="rb") as unzipped:
                yield unzipped
        else:
            yield handle


def read_manifest(manifest: str) -> Iterator[ManifestRow]:
    """Stream the manifest at `manifest` (any fsspec URL, gzip-compressed or not) as rows. A compressed manifest
    that breaks off midway (truncated, corrupt) gives the rows read before the break and one error row saying so."""
    with open_manifest(manifest) as handle:
        rows = iter_manifest(manifest, handle)
        last = 0
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except (EOFError, gzip.BadGzipFile, zlib.error) as error:
                yield ManifestRow(row_id=digest(manifest, "broken"), source_hash=digest(str(error), size=6),
                                  manifest=manifest, line=last + 1,
                                  error=f"compressed manifest breaks off after line {last}: {error}")
                return
            last = row.line or last
            yield row


def iter_audio_dir(audio_dir: str) -> Iterator[ManifestRow]:
    """A row for every audio file under `audio_dir` (recursively), for archives without a manifest; walked folder by
    folder, so the listing is never held whole."""
    fs, root = filesystem(audio_dir)
    for folder, _dirs, files in fs.walk(root):
        for name in sorted(files):
            if name.lower().endswith(AUDIO_EXTENSIONS):
                url = unstrip(fs, f"{folder.rstrip('/')}/{name}")
                # The identity is the file alone (as it always was); `manifest` names the folder, so that a file
                # renamed or removed under it is found as an orphan of that folder on a rerun.
                yield ManifestRow(row_id=digest("", url, "None", "None"), source_hash=digest(url, size=6),
                                  manifest=audio_dir.rstrip("/"), line=None, audio_filepath=url,
                                  audio=AudioSource(url))


def manifest_urls(urls: Iterable[str]) -> list[str]:
    """Manifest URLs normalised (`a/../a/m.jsonl` is `a/m.jsonl`, a local path absolute) with repeats dropped, so a
    manifest named twice, or spelled two ways, is read once."""
    seen: dict[str, None] = {}
    for url in urls:
        seen.setdefault(normalise_url(url), None)
    return list(seen)


__all__ = ["ManifestRow", "digest", "open_manifest", "row_identity", "iter_audio_dir", "iter_manifest",
           "manifest_urls", "parse_line",
           "read_manifest", "MAX_LINE_BYTES", "KNOWN_FIELDS", "AUDIO_EXTENSIONS"]
