"""NeMo JSON-lines manifests (and bare audio folders) into source rows.

A manifest line is `{"audio_filepath": ..., "duration": ..., "text": ..., <anything else>}`. Every non-blank line
becomes exactly one row; a line that cannot be used becomes a row with an `error`, never a silent skip.

Row ids are stable across reruns: a hash of the manifest's URL, the line's bytes, and how many identical lines came
before it in that manifest. Appending rows, reordering rows or fixing one line leaves every other row's id as it was,
so a rerun over the same `output_path` finds what is already done.
"""

from __future__ import annotations

import hashlib
import json
import math

import pyarrow as pa

from connectors.storage import filesystem, parent_of, read_bytes, resolve, unstrip
from pipeline.records import SOURCE_SCHEMA, to_table

# Fields the pipeline reads; everything else is the user's metadata and is carried through as JSON.
KNOWN_FIELDS = {"audio_filepath", "duration", "text", "target_lang", "lang", "channel_mode", "channel"}
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".mp4", ".webm", ".sph", ".aiff", ".au")


def row_id(*parts: str | bytes) -> str:
    digest = hashlib.sha1()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()[:20]


def _source_row(rid: str, manifest: str | None, line: int | None) -> dict:
    return {"row_id": rid, "manifest": manifest, "line": line, "audio_filepath": None, "audio_url": None,
            "manifest_duration": None, "reference_text": None, "row_target_lang": None, "row_channel_mode": None,
            "row_channel": None, "metadata": None, "error": None}


def _parse_line(raw: bytes, row: dict, base_dir: str) -> None:
    """Fill `row` from one manifest line, or set its error."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        row["error"] = f"manifest: line {row['line']} is not valid UTF-8 ({error.reason} at byte {error.start})"
        return
    try:
        entry = json.loads(text)
    except json.JSONDecodeError as error:
        row["error"] = f"manifest: line {row['line']} is not valid JSON ({error.msg} at column {error.colno})"
        return
    if not isinstance(entry, dict):
        row["error"] = f"manifest: line {row['line']} is a JSON {type(entry).__name__}, not an object"
        return
    path = entry.get("audio_filepath")
    if not isinstance(path, str) or not path.strip():
        row["error"] = f"manifest: line {row['line']} has no audio_filepath"
        extras = {k: v for k, v in entry.items() if k not in KNOWN_FIELDS}
        row["metadata"] = json.dumps(extras, ensure_ascii=False) if extras else None
        return
    row["audio_filepath"] = path
    row["audio_url"] = resolve(path, base_dir)
    duration = entry.get("duration")
    if isinstance(duration, (int, float)) and not isinstance(duration, bool) and math.isfinite(duration):
        row["manifest_duration"] = float(duration)
    reference = entry.get("text")
    if isinstance(reference, str):
        row["reference_text"] = reference
    lang = entry.get("target_lang", entry.get("lang"))
    if isinstance(lang, str) and lang.strip():
        row["row_target_lang"] = lang.strip()
    mode = entry.get("channel_mode")
    if isinstance(mode, str) and mode.strip():
        row["row_channel_mode"] = mode.strip()
    channel = entry.get("channel")
    if channel is not None:
        if isinstance(channel, int) and not isinstance(channel, bool):
            row["row_channel"] = channel
        else:
            row["error"] = f"manifest: line {row['line']} has channel={channel!r}; expected an integer"
    extras = {k: v for k, v in entry.items() if k not in KNOWN_FIELDS}
    row["metadata"] = json.dumps(extras, ensure_ascii=False) if extras else None


def parse_manifest(manifest_url: str, data: bytes) -> list[dict]:
    """Every non-blank line of one manifest as a source row (see `pipeline.records.SOURCE_SCHEMA`)."""
    base_dir = parent_of(manifest_url)
    rows: list[dict] = []
    first_seen: dict[bytes, int] = {}
    occurrences: dict[bytes, int] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue  # blank lines are not rows (as in NeMo's own manifest reader)
        count = occurrences.get(raw, 0)
        occurrences[raw] = count + 1
        row = _source_row(row_id(manifest_url, raw, str(count)), manifest_url, number)
        _parse_line(raw, row, base_dir)
        if count and not row["error"]:
            # The same line twice would transcribe the same audio twice and double-count it in every metric.
            row["error"] = f"manifest: line {number} duplicates line {first_seen[raw]} (not transcribed twice)"
        first_seen.setdefault(raw, number)
        rows.append(row)
    return rows


def list_audio(audio_dir: str) -> list[dict]:
    """Source rows for every audio file under `audio_dir` (recursively), for archives without a manifest."""
    fs, root = filesystem(audio_dir)
    paths = sorted(p for p in fs.find(root) if p.lower().endswith(AUDIO_EXTENSIONS))
    rows = []
    for path in paths:
        url = unstrip(fs, path)
        row = _source_row(row_id(url), None, None)
        row["audio_filepath"] = url
        row["audio_url"] = url
        rows.append(row)
    return rows


def source_table(manifests: list[str], audio_dir: str | None) -> pa.Table:
    """All source rows of a run, in manifest order. Arrow keeps a million rows in a few hundred MB on the driver."""
    rows: list[dict] = []
    if manifests:
        for url in manifests:
            rows.extend(parse_manifest(url, read_bytes(url)))
    elif audio_dir:
        rows = list_audio(audio_dir)
    return to_table(rows, SOURCE_SCHEMA)
