"""The rows that flow between stages, and the Arrow schemas of the output tables.

Every stage takes and returns rows with an explicit schema: Ray Data infers a column that is all null in one block
as Arrow `null`, and the next block then fails to cast, so nothing here is left to inference.

A row carries its own fate: `error` is null while the row is healthy. A stage that fails on a row writes the error
(prefixed with the stage, e.g. `decode: empty file (0 bytes)`) and passes the row on; later stages skip it; the
writer sees every row, good or bad.

Between decoding and assembly a row is a *segment*: one cut of one channel of one recording (lhotse's
SupervisionSegment: recording id, channel, start, duration). A recording that failed before it could be cut travels
as a single segment row with `segment_index` null and its error.
"""

from __future__ import annotations

import pyarrow as pa

from connectors.storage import redact

# A manifest row (or a file found under `audio_dir`), as read.
SOURCE_FIELDS = [
    pa.field("row_id", pa.string(), nullable=False),
    pa.field("manifest", pa.string()),  # where the row came from (null for audio_dir)
    pa.field("line", pa.int64()),  # 1-based line number in the manifest
    pa.field("audio_filepath", pa.string()),  # as written in the manifest
    pa.field("audio_url", pa.string()),  # resolved against the manifest's folder
    pa.field("manifest_duration", pa.float64()),
    pa.field("reference_text", pa.string()),
    pa.field("row_target_lang", pa.string()),  # the row's own `target_lang` or `lang`, if any
    pa.field("row_channel_mode", pa.string()),  # the row's own `channel_mode` (mix | split), if any
    pa.field("row_channel", pa.int32()),  # the row's own `channel` (one channel only, as NeMo's channel_selector)
    pa.field("metadata", pa.string()),  # every other manifest field, as a JSON object
    pa.field("error", pa.string()),
]
SOURCE_SCHEMA = pa.schema(SOURCE_FIELDS)

# After decoding and cutting: one row per segment, the audio as float32 little-endian bytes at 16 kHz mono.
SEGMENT_FIELDS = [
    pa.field("segment_index", pa.int32()),  # order within the channel; null for a recording that failed whole
    pa.field("channel", pa.int32()),  # null in mix mode
    pa.field("start", pa.float64()),  # seconds from the recording's start
    pa.field("end", pa.float64()),
    pa.field("overlap_before", pa.float64()),  # seconds shared with the previous segment (forced cut in speech)
    pa.field("channel_mode", pa.string()),
    pa.field("source_sample_rate", pa.int32()),
    pa.field("source_channels", pa.int32()),
]
DECODED_SCHEMA = pa.schema(SOURCE_FIELDS + SEGMENT_FIELDS + [pa.field("samples", pa.large_binary())])

WORD_TYPE = pa.struct([
    pa.field("word", pa.string()),
    pa.field("start", pa.float64()),  # seconds: from the segment's start after inference, absolute in the output
    pa.field("end", pa.float64()),
    pa.field("confidence", pa.float64()),
])

SENTENCE_TYPE = pa.struct([
    pa.field("text", pa.string()),
    pa.field("language", pa.string()),  # the tag the model wrote after the sentence
    pa.field("start", pa.float64()),  # absolute, when timestamps are on
    pa.field("end", pa.float64()),
])

# After inference: the raw hypothesis with its language tags.
TRANSCRIBED_SCHEMA = pa.schema(
    SOURCE_FIELDS + SEGMENT_FIELDS + [
        pa.field("target_lang", pa.string()),
        pa.field("raw_text", pa.string()),
        pa.field("num_tokens", pa.int32()),
        pa.field("words", pa.list_(WORD_TYPE)),
        pa.field("confidence", pa.float64()),
    ]
)

RUN_FIELDS = [
    pa.field("model", pa.string()),
    pa.field("att_context_size", pa.list_(pa.int32())),
    pa.field("run_id", pa.string()),
]

# Output table `segments/`: one row per segment. Documented in the README ("Output schema").
SEGMENTS_SCHEMA = pa.schema([
    pa.field("row_id", pa.string(), nullable=False),  # the recording's row_id
    pa.field("segment_index", pa.int32()),
    pa.field("channel", pa.int32()),
    pa.field("speaker", pa.string()),
    pa.field("start", pa.float64()),
    pa.field("end", pa.float64()),
    pa.field("text", pa.string()),
    pa.field("language", pa.string()),
    pa.field("sentences", pa.list_(SENTENCE_TYPE)),
    pa.field("words", pa.list_(WORD_TYPE)),  # timestamps=true
    pa.field("confidence", pa.float64()),  # confidence=true: mean word confidence
    pa.field("target_lang", pa.string()),
    pa.field("raw_text", pa.string()),
    pa.field("error", pa.string()),
    pa.field("audio_filepath", pa.string()),
    *RUN_FIELDS,
])

TURN_TYPE = pa.struct([
    pa.field("start", pa.float64()),
    pa.field("end", pa.float64()),
    pa.field("channel", pa.int32()),
    pa.field("speaker", pa.string()),
    pa.field("text", pa.string()),
])

# Output table `recordings/`: one row per input row.
RECORDINGS_SCHEMA = pa.schema([
    pa.field("row_id", pa.string(), nullable=False),
    pa.field("audio_filepath", pa.string()),
    pa.field("duration", pa.float64()),
    pa.field("text", pa.string()),
    pa.field("language", pa.string()),
    pa.field("language_shares", pa.map_(pa.string(), pa.float64())),
    pa.field("target_lang", pa.string()),
    pa.field("language_mismatch", pa.bool_()),  # a locale was asked for and another was heard
    pa.field("confidence", pa.float64()),
    pa.field("channel_mode", pa.string()),
    pa.field("num_segments", pa.int32()),
    pa.field("conversation", pa.list_(TURN_TYPE)),  # split mode: both sides' turns in time order
    pa.field("reference_text", pa.string()),
    pa.field("wer", pa.float64()),
    pa.field("cer", pa.float64()),
    pa.field("raw_wer", pa.float64()),
    pa.field("raw_cer", pa.float64()),
    pa.field("word_errors", pa.int64()),
    pa.field("ref_words", pa.int64()),
    pa.field("char_errors", pa.int64()),
    pa.field("ref_chars", pa.int64()),
    pa.field("error", pa.string()),
    pa.field("raw_text", pa.string()),
    pa.field("manifest", pa.string()),
    pa.field("line", pa.int64()),
    pa.field("audio_url", pa.string()),
    pa.field("manifest_duration", pa.float64()),
    pa.field("source_sample_rate", pa.int32()),
    pa.field("source_channels", pa.int32()),
    pa.field("metadata", pa.string()),
    *RUN_FIELDS,
])

# What the assembly stage hands the sink: a recording row with its segments nested, written as two tables.
ASSEMBLED_SCHEMA = pa.schema(list(RECORDINGS_SCHEMA) + [pa.field("segments", pa.list_(pa.struct(list(SEGMENTS_SCHEMA))))])


def to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows (dicts) as a table of exactly `schema`: missing keys are null, extra keys are dropped."""
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)


def with_error(row: dict, stage: str, message: str) -> dict:
    """Mark a row failed at `stage`, keeping the first error if it already had one. Credentials in the message (a
    signed URL's signature, a key) are redacted: errors end up in Parquet files that many people read."""
    if not row.get("error"):
        row["error"] = redact(f"{stage}: {message}")
    return row
