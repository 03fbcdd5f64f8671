"""Choosing pseudo-labelled utterances from a transcription output: filters, duplicates, splits and replay.

The unit is a segment (`segments/` row): one cut of one channel of one recording, never a whole recording, so a long
call gives many utterances and a stereo call in split mode one per channel and turn. Everything here is a pure
function over Arrow tables (no Ray, no audio, no storage): the export job reads the tables, calls these, and hands
the kept utterances to the audio stage.

Filters (`Filters`; each optional; a dropped utterance carries the *first* reason it failed, in this order):

==================  =====================================================================================
reason              dropped when
==================  =====================================================================================
error:<stage>       `drop_errors` and the segment or its recording has an error (stage: manifest, fetch,
                    decode, language, inference; a recording that failed part-way keeps its earlier segments)
empty_text          the segment has no text (always)
no_language         neither a forced locale nor a detected language (untagged text in auto mode): a prompt-
                    conditioned model cannot be trained on it (always)
forced_cut          the segment overlaps the previous one of its channel: the cut fell in speech and the
                    words both segments heard were removed from this one's text, so its audio and text do
                    not line up (always)
duration            end - start outside [min_duration, max_duration], or not positive (always)
chars_per_second    characters of text per second of audio outside [min_chars_per_second,
                    max_chars_per_second]: almost nothing for a long stretch, or looping/hallucinated text
language_mismatch   `drop_language_mismatch` and the recording was forced to one locale and heard in another
no_confidence       `min_confidence` is set and the segment has none (transcribed without confidence=true)
confidence          segment confidence < `min_confidence`
wer, cer            the recording has a reference and its WER > `max_wer` (CER > `max_cer`)
duplicate_text      more than `max_per_text` kept utterances have exactly this text: the first ones in a
                    seeded pseudo-random order are kept
language            `languages` is set and the utterance's language is not in it (such utterances are the
                    replay pool, see below)
==================  =====================================================================================

An utterance's language (`lang`/`target_lang` in the manifests) follows `connectors.transcripts.row_language`: the
locale its recording was forced to where there is one, else the language the model detected for the segment.

Splits: every recording goes to exactly one split, by a group key: the recording (`split_by=recording`) or a field of
the manifest row's metadata (`split_by=call_id`, `speaker`, ...; a recording without that field is its own group).
A group's split is a hash of (seed, key) against the cumulative shares, so shares hold on average and a recording
keeps its split when the output grows and the export is run again (a test recording never turns into a training
one).

Replay: `replay_share` of the train rows come from a pool of other data, so fine-tuning does not make the model
forget it: the utterances of this output whose language is outside `languages`, or those of another output. Replay
rows pass the same quality filters, come only from groups that the split puts in train, and never from a recording
(row_id) that this output has.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.transcripts import error_stage, row_language

EMPTY_TEXT = "empty_text"
NO_LANGUAGE = "no_language"
FORCED_CUT = "forced_cut"
DURATION = "duration"
CHARS_PER_SECOND = "chars_per_second"
LANGUAGE_MISMATCH = "language_mismatch"
NO_CONFIDENCE = "no_confidence"
CONFIDENCE = "confidence"
WER = "wer"
CER = "cer"
DUPLICATE_TEXT = "duplicate_text"
LANGUAGE = "language"
ERROR_PREFIX = "error:"
RECORDING = "recording"
TRAIN = "train"

# The columns `utterances` reads (name: type); columns an older output lacks come back null.
RECORDING_COLUMNS = {
    "row_id": pa.string(), "audio_url": pa.string(), "audio_filepath": pa.string(), "error": pa.string(),
    "error_stage": pa.string(), "target_lang": pa.string(), "prompt_locale": pa.string(), "language": pa.string(),
    "language_mismatch": pa.bool_(), "reference_text": pa.string(), "wer": pa.float64(), "cer": pa.float64(),
    "metadata": pa.string(), "channel_mode": pa.string(), "source_channels": pa.int32(), "duration": pa.float64(),
    "audio_offset": pa.float64(),
}
SENTENCE_TYPE = pa.list_(pa.struct([pa.field("text", pa.string()), pa.field("language", pa.string())]))
SEGMENT_COLUMNS = {
    "row_id": pa.string(), "segment_index": pa.int32(), "channel": pa.int32(), "speaker": pa.string(),
    "start": pa.float64(), "end": pa.float64(), "text": pa.string(), "language": pa.string(),
    "confidence": pa.float64(), "error": pa.string(), "error_stage": pa.string(),
}


@dataclass(frozen=True)
class Filters:
    drop_errors: bool = True
    drop_language_mismatch: bool = True
    min_duration: float | None = None
    max_duration: float | None = None
    min_chars_per_second: float | None = None
    max_chars_per_second: float | None = None
    min_confidence: float | None = None
    max_wer: float | None = None
    max_cer: float | None = None
    max_per_text: int | None = None
    languages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Splits:
    shares: dict[str, float] = field(default_factory=lambda: {TRAIN: 1.0})  # in order; sum to 1
    split_by: str = RECORDING
    seed: int = 0


def unit_hash(seed: int, key: str) -> float:
    """A stable pseudo-random number in [0, 1) for `key` (the same on every machine and run)."""
    digest = hashlib.blake2b(f"{seed}\0{key}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def utterance_id(row_id: str, channel: int | None, segment_index: int) -> str:
    """`<row_id>-m-0003` (mixed) or `<row_id>-c1-0003` (channel 1): unique within an output, no dots (NeMo's tarred
    readers take a file's key up to its first dot)."""
    return f"{row_id}-{'m' if channel is None else f'c{channel}'}-{segment_index:04d}"


def utterances(recordings: pa.Table, segments: pa.Table) -> pa.Table:
    """One row per segment with what the filters and the audio stage need from the segment and its recording.

    Columns: utt_id, row_id, segment_index, channel, speaker, start, end, duration, text, segment_language,
    confidence, error_stage (of the segment, else of its recording; null when neither failed), has_error, audio_url,
    audio_filepath, source_channels, channel_mode, language and language_source (`row_language`), language_mismatch,
    has_reference, wer, cer, metadata, forced_cut, chars_per_second; plus `sentences` when `segments` has it.
    A segment whose recording row is missing is not an utterance (the sink commits both tables together).
    `start` and `end` are seconds in `audio_url`: a slice's segment times (from the slice's start) plus its
    `audio_offset`, so the audio is cut from the right place.
    """
    index = pc.index_in(segments["row_id"], value_set=recordings["row_id"])
    segments = segments.filter(pc.is_valid(index))
    index = index.filter(pc.is_valid(index))
    recording = recordings.take(index)
    segment_stage = error_stage(segments)
    recording_stage = error_stage(recording)
    language, source = row_language(pa.table({"target_lang": recording["target_lang"],
                                              "prompt_locale": recording["prompt_locale"],
                                              "language": pc.coalesce(segments["language"], recording["language"])}))
    duration = pc.subtract(segments["end"], segments["start"])
    offset = pc.fill_null(recording["audio_offset"], 0.0)
    text = segments["text"]
    columns = {
        "row_id": segments["row_id"], "segment_index": segments["segment_index"], "channel": segments["channel"],
        "speaker": segments["speaker"], "start": pc.add(segments["start"], offset),
        "end": pc.add(segments["end"], offset), "duration": duration,
        "text": text, "segment_language": segments["language"], "confidence": segments["confidence"],
        "error_stage": pc.coalesce(segment_stage, recording_stage),
        "has_error": pc.or_(pc.is_valid(segments["error"]), pc.is_valid(recording["error"])),
        "audio_url": recording["audio_url"], "audio_filepath": recording["audio_filepath"],
        "source_channels": recording["source_channels"], "channel_mode": recording["channel_mode"],
        "language": language, "language_source": source,
        "language_mismatch": pc.fill_null(recording["language_mismatch"], False),
        "has_reference": pc.is_valid(recording["reference_text"]), "wer": recording["wer"], "cer": recording["cer"],
        "metadata": recording["metadata"],
        "chars_per_second": pc.divide(pc.cast(pc.utf8_length(pc.fill_null(text, "")), pa.float64()),
                                      pc.max_element_wise(duration, 1e-9)),
    }
    if "sentences" in segments.column_names:
        columns["sentences"] = segments["sentences"]
    table = pa.table(columns)
    ids = [utterance_id(r, c, i) for r, c, i in zip(table["row_id"].to_pylist(), table["channel"].to_pylist(),
                                                    table["segment_index"].to_pylist())]
    table = table.add_column(0, "utt_id", pa.array(ids, pa.string()))
    return _mark_forced_cuts(table)


def _mark_forced_cuts(table: pa.Table) -> pa.Table:
    """Add `forced_cut`: the segment starts before the previous segment of its recording's channel ended."""
    table = table.sort_by([("row_id", "ascending"), ("channel", "ascending"), ("segment_index", "ascending")])
    rows = table["row_id"].to_numpy(zero_copy_only=False)
    channels = pc.fill_null(table["channel"], -1).to_numpy()
    starts = pc.fill_null(table["start"], 0.0).to_numpy()
    ends = pc.fill_null(table["end"], 0.0).to_numpy()
    forced = np.zeros(table.num_rows, dtype=bool)
    if table.num_rows > 1:
        same = (rows[1:] == rows[:-1]) & (channels[1:] == channels[:-1])
        forced[1:] = same & (starts[1:] < ends[:-1] - 1e-6)
    return table.append_column("forced_cut", pa.array(forced))


def _first_reason(reason: pa.ChunkedArray | pa.Array, mask, value) -> pa.ChunkedArray:
    """`reason`, with `value` where it is still null and `mask` holds (a null mask counts as false)."""
    mask = pc.and_(pc.is_null(reason), pc.fill_null(mask, False))
    return pc.if_else(mask, value, reason)


def _outside(values, low: float | None, high: float | None):
    mask = pa.array([False] * len(values), pa.bool_())
    if low is not None:
        mask = pc.or_(mask, pc.less(values, low))
    if high is not None:
        mask = pc.or_(mask, pc.greater(values, high))
    return mask


def judge(table: pa.Table, filters: Filters, seed: int = 0) -> pa.Table:
    """Add `reason` (null: kept) to every utterance: the first quality filter it fails, then `duplicate_text`; and
    `in_languages` (its language is in `filters.languages`, or no set is given). The language filter itself is
    applied by `finish`, because the utterances it drops are the replay pool."""
    reason = pa.nulls(table.num_rows, pa.string())
    if filters.drop_errors:
        stage = pc.binary_join_element_wise(ERROR_PREFIX, pc.fill_null(table["error_stage"], "unknown"), "")
        reason = _first_reason(reason, table["has_error"], stage)
    text = pc.fill_null(table["text"], "")
    reason = _first_reason(reason, pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0), EMPTY_TEXT)
    reason = _first_reason(reason, pc.is_null(table["language"]), NO_LANGUAGE)
    reason = _first_reason(reason, table["forced_cut"], FORCED_CUT)
    too_short_or_long = pc.or_(pc.less_equal(table["duration"], 0.0),  # no audio at all: never an utterance
                               _outside(table["duration"], filters.min_duration, filters.max_duration))
    reason = _first_reason(reason, too_short_or_long, DURATION)
    reason = _first_reason(reason, _outside(table["chars_per_second"], filters.min_chars_per_second,
                                            filters.max_chars_per_second), CHARS_PER_SECOND)
    if filters.drop_language_mismatch:
        reason = _first_reason(reason, table["language_mismatch"], LANGUAGE_MISMATCH)
    if filters.min_confidence is not None:
        reason = _first_reason(reason, pc.is_null(table["confidence"]), NO_CONFIDENCE)
        reason = _first_reason(reason, pc.less(table["confidence"], filters.min_confidence), CONFIDENCE)
    if filters.max_wer is not None:
        reason = _first_reason(reason, pc.greater(table["wer"], filters.max_wer), WER)
    if filters.max_cer is not None:
        reason = _first_reason(reason, pc.greater(table["cer"], filters.max_cer), CER)
    if filters.max_per_text is not None:
        reason = _first_reason(reason, _duplicates(table, reason, filters.max_per_text, seed), DUPLICATE_TEXT)
    in_languages = (pc.fill_null(pc.is_in(table["language"], pa.array(list(filters.languages), pa.string())), False)
                    if filters.languages else pa.array([True] * table.num_rows, pa.bool_()))
    return table.append_column("reason", reason).append_column("in_languages", in_languages)


def _duplicates(table: pa.Table, reason, limit: int, seed: int) -> pa.Array:
    """True for each still-kept utterance beyond the first `limit` with exactly its text (seeded order, so the kept
    copies come from many recordings rather than the first one listed)."""
    kept = pc.is_null(reason).to_pylist()
    texts = table["text"].to_pylist()
    ids = table["utt_id"].to_pylist()
    order = sorted((i for i in range(table.num_rows) if kept[i]), key=lambda i: unit_hash(seed, ids[i]))
    seen: dict[str, int] = {}
    mask = [False] * table.num_rows
    for i in order:
        seen[texts[i]] = seen.get(texts[i], 0) + 1
        mask[i] = seen[texts[i]] > limit
    return pa.array(mask, pa.bool_())


def assign_splits(table: pa.Table, splits: Splits) -> tuple[pa.Table, int]:
    """Add `group` and `split` to every utterance (one split per group, so per recording); returns the table and the
    number of recordings that lacked the `split_by` field (each then is its own group)."""
    row_ids = table["row_id"].to_pylist()
    metadata = table["metadata"].to_pylist()
    keys: dict[str, str] = {}
    missing = 0
    for row_id, meta in zip(row_ids, metadata):
        if row_id in keys:
            continue
        key = None
        if splits.split_by != RECORDING and meta:
            value = json.loads(meta).get(splits.split_by)
            key = None if value is None else f"{splits.split_by}={value}"
        if key is None:
            missing += splits.split_by != RECORDING
            key = f"row_id={row_id}"
        keys[row_id] = key
    names = list(splits.shares)
    bounds = np.cumsum([splits.shares[n] for n in names])
    bounds[-1] = 1.0  # shares summing to 1 within rounding must still place every hash
    split_of = {key: names[int(np.searchsorted(bounds, unit_hash(splits.seed, key), side="right"))]
                for key in set(keys.values())}
    groups = [keys[r] for r in row_ids]
    return (table.append_column("group", pa.array(groups, pa.string()))
            .append_column("split", pa.array([split_of[g] for g in groups], pa.string()))), missing


@dataclass(frozen=True)
class Replay:
    share: float
    wanted: int
    pool: int
    chosen: int


def replay_count(in_domain_train: int, share: float) -> int:
    """How many replay rows make `share` of the train rows: share = replay / (in_domain + replay)."""
    return round(in_domain_train * share / (1.0 - share)) if share > 0 else 0


def choose_replay(pool: pa.Table, wanted: int, seed: int) -> pa.Table:
    """`wanted` utterances of `pool` in a seeded pseudo-random order (all of them when the pool is smaller)."""
    ids = pool["utt_id"].to_pylist()
    order = sorted(range(len(ids)), key=lambda i: unit_hash(seed, "replay\0" + ids[i]))[:wanted]
    return pool.take(pa.array(sorted(order), pa.int64()))


def replay_pool(table: pa.Table, exclude_row_ids: pa.Array | None = None) -> pa.Table:
    """The utterances of a judged, split table that may be replayed: kept by the quality filters, in a train group,
    and (for another output) from no recording that `exclude_row_ids` holds. For this output's own rows, pass the
    ones outside `languages` (`~in_languages`)."""
    mask = pc.and_(pc.is_null(table["reason"]), pc.equal(table["split"], TRAIN))
    if exclude_row_ids is not None:
        mask = pc.and_(mask, pc.invert(pc.is_in(table["row_id"], exclude_row_ids)))
    return table.filter(mask)


def finish(table: pa.Table, replayed: pa.Table | None) -> pa.Table:
    """The judged, split table with the language filter applied (reason `language` where the utterance is outside
    `languages` and was not chosen for replay) and a `replay` column; chosen rows of another output (utt_ids this
    table lacks) are appended."""
    chosen = set() if replayed is None else set(replayed["utt_id"].to_pylist())
    is_replay = pa.array([u in chosen for u in table["utt_id"].to_pylist()], pa.bool_())
    reason = _first_reason(table["reason"], pc.and_(pc.invert(table["in_languages"]), pc.invert(is_replay)),
                           LANGUAGE)
    table = table.set_column(table.schema.get_field_index("reason"), "reason", reason).append_column("replay",
                                                                                                     is_replay)
    if replayed is not None:
        other = replayed.filter(pc.invert(pc.is_in(replayed["utt_id"], table["utt_id"])))
        other = other.append_column("replay", pa.array([True] * other.num_rows, pa.bool_()))
        table = pa.concat_tables([table, other.select(table.column_names).cast(table.schema)])
    return table


def counts_by_reason(table: pa.Table) -> dict[str, int]:
    """Dropped utterances by reason, most frequent first."""
    dropped = table.filter(pc.is_valid(table["reason"]))
    if not dropped.num_rows:
        return {}
    rows = dropped.group_by("reason").aggregate([("utt_id", "count")]).to_pylist()
    return {r["reason"]: r["utt_id_count"] for r in sorted(rows, key=lambda r: (-r["utt_id_count"], r["reason"]))}


def label_text(text: str, sentences: list[dict] | None, language: str | None, tags: bool) -> str:
    """The training text: the segment's text; with `tags`, each sentence followed by its language tag, as the
    model writes them (`Guten Tag.<de-DE> Hello.<en-US>`): a sentence's own tag, else the utterance's language."""
    if not tags:
        return text
    parts = [(s["text"], s.get("language") or language) for s in sentences or [] if s.get("text")]
    if not parts:
        parts = [(text, language)]
    return " ".join(f"{t}<{lang}>" if lang else t for t, lang in parts)
