"""The rows that flow between stages, and the Arrow schemas of the output tables.

Every stage takes and returns rows with an explicit schema: Ray Data infers a column that is all null in one block
as Arrow `null`, and the next block then fails to cast, so nothing here is left to inference.

A row is a *recording* from the manifest on: its segments travel nested inside it (lhotse's Recording with its
SupervisionSegments), so nothing has to regroup segments later (no shuffle, no barrier). A recording longer than a
work block is the one exception: decoding hands it on in *pieces* (PIECE_FIELDS: rows of the same recording, each
with the segments cut since the last), so that no task or actor call holds more than a work block of audio; the
assembly stage puts the pieces back together (pipeline.pieces) before the recording becomes its output row. Between
decoding and inference a segment carries its audio as 16-bit PCM at 16 kHz (half the bytes of float32; the
quantisation noise is 96 dB under full scale, far below any recording's noise floor).

A row carries its own fate: `error` (the message) and `error_stage` (manifest, fetch, decode, language, inference)
are null while the row is healthy. A stage that fails on a row sets them and passes the row on; later stages skip it;
the writer sees every row, good or bad.
"""

from __future__ import annotations

import pyarrow as pa

from connectors.audio_source import DATA_FIELD
from connectors.audio_source import FIELDS as AUDIO_SOURCE_FIELDS
from connectors.storage import redact

ERROR_STAGES = ("manifest", "fetch", "decode", "language", "inference")

ERROR_FIELDS = [
    pa.field("error", pa.string()),  # what went wrong, in one line (credentials redacted)
    pa.field("error_stage", pa.string()),  # where: one of ERROR_STAGES
]

# A manifest row (or a file found under `audio_dir`), read and resolved: its options are final from here on.
SOURCE_FIELDS = [
    pa.field("row_id", pa.string(), nullable=False),  # identity: manifest + audio + channel choice (see manifests)
    pa.field("source_hash", pa.string()),  # the line's content: an edited line replaces its earlier row
    pa.field("manifest", pa.string()),  # the manifest's normalised URL, or the audio_dir folder
    pa.field("line", pa.int64()),  # 1-based line number in the manifest
    pa.field("audio_filepath", pa.string()),  # as written in the manifest
    *AUDIO_SOURCE_FIELDS,  # where the audio is (connectors.audio_source): audio_url resolved, a slice, member, row
    pa.field("manifest_duration", pa.float64()),
    pa.field("reference_text", pa.string()),
    pa.field("metadata", pa.string()),  # every other manifest field, as a JSON object
    # The row's options, merged with the job's and checked once, when the manifest is read:
    pa.field("target_lang", pa.string()),  # as asked (the row's target_lang/lang, else the job's)
    pa.field("prompt_locale", pa.string()),  # its canonical locale (`de` -> `de-DE`), or `auto`
    pa.field("channel_mode", pa.string()),  # mix | split
    pa.field("channel", pa.int32()),  # one channel only (as NeMo's channel_selector), or null
    *ERROR_FIELDS,
]
SOURCE_SCHEMA = pa.schema(SOURCE_FIELDS)

# What one decode task and one actor call work on: recordings totalling about compute.block_seconds of audio. A row
# may carry its audio bytes (a tar member, a table cell) to its decode task; decoding drops them.
WORK_BLOCK_SCHEMA = pa.schema([pa.field("block", pa.int64()),
                               pa.field("rows", pa.list_(pa.struct(SOURCE_FIELDS + [DATA_FIELD])))])

# What decoding learns about a recording.
AUDIO_FIELDS = [
    pa.field("duration", pa.float64()),  # seconds decoded (of the longest channel); null if nothing was
    pa.field("speech_seconds", pa.float64()),  # seconds sent to the model: the segments' lengths, all channels
    pa.field("source_sample_rate", pa.int32()),
    pa.field("source_channels", pa.int32()),
    pa.field("warnings", pa.list_(pa.string())),  # things a user should know about a row that did not fail
]

# One cut of one channel (lhotse's SupervisionSegment: channel, start, end).
CUT_FIELDS = [
    pa.field("segment_index", pa.int32()),  # order within the channel
    pa.field("channel", pa.int32()),  # null when the channels were mixed
    pa.field("start", pa.float64()),  # seconds from the recording's start
    pa.field("end", pa.float64()),
    pa.field("overlap_before", pa.float64()),  # seconds shared with the previous segment (a forced cut in speech)
]
DECODED_SEGMENT = pa.struct(CUT_FIELDS + [pa.field("samples", pa.large_binary())])  # int16 little-endian, 16 kHz

# A recording handed on in pieces (pipeline.decode.decode_block): null on a recording that travels whole. Every piece
# carries the source columns; only the final one carries what decoding learnt at the end (AUDIO_FIELDS but the rate
# and channels, and the error of a failure midway).
PIECE_FIELDS = [
    pa.field("piece", pa.int32()),  # 0, 1, 2, ... in the order cut
    pa.field("final_piece", pa.bool_()),  # true on the last piece
]
DECODED_SCHEMA = pa.schema(SOURCE_FIELDS + AUDIO_FIELDS + PIECE_FIELDS
                           + [pa.field("segments", pa.list_(DECODED_SEGMENT))])

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

# After inference: each segment's raw hypothesis (language tags kept), the audio gone.
TRANSCRIBED_SEGMENT = pa.struct(CUT_FIELDS + [
    pa.field("raw_text", pa.string()),
    pa.field("num_tokens", pa.int32()),
    pa.field("words", pa.list_(WORD_TYPE)),
    pa.field("confidence", pa.float64()),
    *ERROR_FIELDS,
])
TRANSCRIBED_SCHEMA = pa.schema(SOURCE_FIELDS + AUDIO_FIELDS + PIECE_FIELDS
                               + [pa.field("segments", pa.list_(TRANSCRIBED_SEGMENT))])

RUN_FIELDS = [
    pa.field("model", pa.string()),
    pa.field("model_fingerprint", pa.string()),  # the checkpoint's content: a file replaced under one path differs
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
    pa.field("prompt_locale", pa.string()),
    pa.field("raw_text", pa.string()),
    *ERROR_FIELDS,
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
    pa.field("speech_seconds", pa.float64()),
    pa.field("text", pa.string()),
    pa.field("language", pa.string()),
    pa.field("language_shares", pa.map_(pa.string(), pa.float64())),
    pa.field("target_lang", pa.string()),
    pa.field("prompt_locale", pa.string()),
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
    *ERROR_FIELDS,
    pa.field("warnings", pa.list_(pa.string())),
    pa.field("raw_text", pa.string()),
    pa.field("manifest", pa.string()),
    pa.field("line", pa.int64()),
    pa.field("audio_url", pa.string()),
    # Where in `audio_url` the audio is (connectors.audio_source), null when it is the whole file: a slice's start in
    # seconds (segment and word times are from the slice's start), a tar shard's member, a table file's row (0-based).
    pa.field("audio_offset", pa.float64()),
    pa.field("audio_member", pa.string()),
    pa.field("audio_row", pa.int64()),
    pa.field("manifest_duration", pa.float64()),
    pa.field("source_sample_rate", pa.int32()),
    pa.field("source_channels", pa.int32()),
    pa.field("metadata", pa.string()),
    pa.field("source_hash", pa.string()),
    *RUN_FIELDS,
])

# What the assembly stage hands the committer: a recording row with its segments nested, written as two tables;
# `pieces` (how many pieces it travelled in, null when whole) is not written: the driver tells the PieceStore which
# recordings it committed (pipeline.pieces).
ASSEMBLED_SCHEMA = pa.schema(list(RECORDINGS_SCHEMA) + [pa.field("pieces", pa.int32()),
                                                        pa.field("segments", pa.list_(pa.struct(list(SEGMENTS_SCHEMA))))])


def to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows (dicts) as a table of exactly `schema`: missing keys are null, extra keys are dropped."""
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)


def with_error(row: dict, stage: str, message: str) -> dict:
    """Mark a row failed at `stage`, keeping the first error if it already had one. Credentials in the message (a
    signed URL's signature, a key) are redacted: errors end up in Parquet files that many people read."""
    assert stage in ERROR_STAGES, stage
    if not row.get("error"):
        row["error"] = redact(message)
        row["error_stage"] = stage
    return row
