"""Stage: a recording's transcribed segments into its output row (with its segments nested for the committer).

A light stage after the inference actors (`Assembler`: a small actor pool that reserves no CPU). A recording's
segments travel inside its row, so nothing regroups them, except
for a recording longer than a work block: it arrives in pieces, which the job's PieceStore gathers (pipeline.pieces);
the piece that completes the set makes the recording's one output row, the others none. Segments are put back in
order per channel; across a forced cut
(a cut that had to fall in speech, so the segments overlap) the words the two segments share are kept once. Language
tags become `language`/`language_shares` and leave the text. In split mode the turns of all channels, merged in
time order, form the conversation view.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from connectors.redaction import install_redaction
from connectors.storage import redact

from pipeline.language import (
    LanguageSpan,
    dominant_language,
    language_shares,
    split_by_language,
    strip_language_tags,
    tags_in,
)
from pipeline.pieces import gather
from pipeline.records import ASSEMBLED_SCHEMA, to_table
from pipeline.scoring import score
from pipeline.segmenter import merge_overlap


@dataclass(frozen=True)
class RunInfo:
    """Columns that are the same for every row of a run, so a table mixing runs stays interpretable."""

    run_id: str
    model: str
    att_context_size: tuple[int, int] | None
    keep_raw_text: bool = False
    model_fingerprint: str | None = None  # the checkpoint's content (connectors.model_store.fingerprint)
    channel_names: tuple[str, ...] = ()

    def speaker(self, channel: int | None) -> str | None:
        if channel is None:
            return None
        return self.channel_names[channel] if channel < len(self.channel_names) else f"channel_{channel}"

    def columns(self) -> dict:
        return {"model": self.model, "model_fingerprint": self.model_fingerprint, "run_id": self.run_id,
                "att_context_size": list(self.att_context_size) if self.att_context_size else None}


def _drop_leading_words(spans: list[LanguageSpan], count: int) -> list[LanguageSpan]:
    kept = []
    for span in spans:
        words = span.text.split()
        if count >= len(words):
            count -= len(words)
            continue
        kept.append(LanguageSpan(" ".join(words[count:]), span.language))
        count = 0
    return kept


def sentences_and_words(spans: list[LanguageSpan], words: list[dict] | None, offset: float, limit: float,
                        fallback: str | None, after: float | None = None) -> tuple[list[dict], list[dict]]:
    """Sentences (text, language from the tag that closes them, start/end when timed) and tag-free words with
    absolute times, clamped to the segment's end `limit` (the last frame's end can round past it). Words starting
    before `after` (the previous segment's last word, across a forced cut) duplicate that segment's words and are
    dropped."""
    if not words:
        return [{"text": sp.text, "language": sp.language, "start": None, "end": None} for sp in spans], []
    sentences: list[dict] = []
    clean_words: list[dict] = []
    current: list[dict] = []

    def close(language: str | None) -> None:
        if current:
            sentences.append({"text": " ".join(w["word"] for w in current), "language": language,
                              "start": current[0]["start"], "end": current[-1]["end"]})
            current.clear()

    for w in words:
        start, end = min(offset + w["start"], limit), min(offset + w["end"], limit)
        tags = tags_in(w["word"])
        text = strip_language_tags(w["word"])
        if text and (after is None or start >= after):
            word = {"word": text, "start": start, "end": end, "confidence": w.get("confidence")}
            current.append(word)
            clean_words.append(word)
        if tags:
            close(tags[-1])
    close(fallback)
    return sentences, clean_words


def forced_locale(recording: dict) -> str | None:
    """The locale the row was conditioned on, unless `auto`: the language of text the model left untagged."""
    locale = recording.get("prompt_locale")
    return locale if locale and locale != "auto" else None


def _segment_row(row: dict, recording: dict, run: RunInfo, previous_words: list[str] | None,
                 previous_end: float | None) -> tuple[dict, list[LanguageSpan], list[str]]:
    """The output row of one segment, its language spans, and its own words (before overlap removal)."""
    fallback = forced_locale(recording)
    out = {"row_id": recording["row_id"], "segment_index": row["segment_index"], "channel": row["channel"],
           "speaker": run.speaker(row["channel"]), "start": row["start"], "end": row["end"],
           "target_lang": recording.get("target_lang"), "prompt_locale": recording.get("prompt_locale"),
           "error": row.get("error"), "error_stage": row.get("error_stage"),
           "audio_filepath": redact(recording.get("audio_filepath")), "confidence": row.get("confidence"),
           "raw_text": row.get("raw_text") if run.keep_raw_text else None, **run.columns()}
    raw = row.get("raw_text")
    if raw is None or row.get("error"):
        return out, [], []
    timed_words = row.get("words")
    untagged = strip_language_tags(raw)
    if not any(ch.isalnum() for ch in untagged):
        # No letter or digit: punctuation alone is not speech (a small model writes a stray "¿" over silence, for
        # instance). The segment is empty, as a silent one; raw_text keeps what the model wrote.
        raw, untagged, timed_words = "", "", None
    words = untagged.split()
    forced_cut = (row.get("overlap_before") or 0) > 0
    kept = merge_overlap(previous_words, words) if previous_words and forced_cut else words
    # The words shared with the previous segment count once: for the text and for the languages.
    spans = _drop_leading_words(split_by_language(raw, fallback=fallback), len(words) - len(kept))
    out["text"] = " ".join(kept)
    out["language"] = dominant_language(spans, fallback=fallback)
    out["sentences"], timed = sentences_and_words(spans, timed_words, row["start"] or 0.0, row["end"], fallback,
                                                  after=previous_end if forced_cut else None)
    out["words"] = timed or None
    return out, spans, words


# In split mode with word times, a silence longer than this within one side's segment starts a new turn.
TURN_GAP_SECONDS = 1.0


def conversation_turns(segments: list[dict]) -> list[dict]:
    """Both sides' turns in time order. Without word times a turn is a segment (it starts near its first word when the
    segmenter trims a leading pause, its end is the cut); with them (`timestamps=true`) a turn runs from its first
    word to its last, and a silence over TURN_GAP_SECONDS inside a segment splits it, so the turns interleave as they
    were spoken."""
    turns = []
    for seg in segments:
        base = {"channel": seg["channel"], "speaker": seg["speaker"]}
        words = seg.get("words") or []
        if not words:
            turns.append({"start": seg["start"], "end": seg["end"], **base, "text": seg["text"]})
            continue
        run = [words[0]]
        for word in [*words[1:], None]:
            if word is not None and word["start"] - run[-1]["end"] <= TURN_GAP_SECONDS:
                run.append(word)
                continue
            turns.append({"start": run[0]["start"], "end": run[-1]["end"], **base,
                          "text": " ".join(w["word"] for w in run)})
            run = [word]
    turns.sort(key=lambda t: (t["start"], t["channel"]))
    return [{k: t[k] for k in ("start", "end", "channel", "speaker", "text")} for t in turns]


RECORDING_KEYS = ("row_id", "source_hash", "audio_filepath", "target_lang", "prompt_locale", "channel_mode",
                  "reference_text", "manifest", "line", "audio_url", "audio_offset", "audio_member",
                  "audio_row", "manifest_duration", "duration", "speech_seconds",
                  "source_sample_rate", "source_channels", "metadata", "error", "error_stage", "warnings", "pieces")


def assemble_recording(recording: dict, run: RunInfo) -> dict:
    """A transcribed recording (its segments nested) as its output row, its segments as output rows nested in it."""
    out = {k: recording.get(k) for k in RECORDING_KEYS}
    for key in ("audio_filepath", "audio_url", "audio_member", "manifest", "metadata"):  # a signed URL is a credential
        out[key] = redact(out[key])
    out.update(run.columns())
    rows = sorted(recording.get("segments") or [], key=lambda r: (r.get("channel") or 0, r["segment_index"]))
    if not out["error"]:  # a failed segment fails its recording (the first failure is the recording's error)
        failed = next((r for r in rows if r.get("error")), None)
        if failed is not None:
            out["error"], out["error_stage"] = failed["error"], failed["error_stage"]

    segments, spans, raw_texts = [], [], []
    previous: dict[int | None, list[str]] = {}
    previous_end: dict[int | None, float] = {}
    for row in rows:
        channel = row.get("channel")
        seg, seg_spans, words = _segment_row(row, recording, run, previous.get(channel), previous_end.get(channel))
        previous[channel] = words
        if seg.get("words"):
            previous_end[channel] = seg["words"][-1]["end"]
        segments.append(seg)
        spans.extend(seg_spans)
        if row.get("raw_text"):
            raw_texts.append(row["raw_text"])

    out["segments"] = segments
    out["num_segments"] = len(segments)
    spoken = [s for s in segments if s.get("text")]
    if out["channel_mode"] == "split":
        turns = conversation_turns(spoken)
        out["conversation"] = turns
    else:
        turns = spoken
    # No segment and no error: nothing in the recording was speech (segmenting.method=vad): an empty transcript.
    if (segments or (recording.get("duration") is not None and not out["error"])) \
            and not any(s.get("error") for s in segments):
        fallback = forced_locale(recording)
        out["text"] = " ".join(s["text"] for s in turns)
        out["language"] = dominant_language(spans, fallback=fallback)
        out["language_shares"] = language_shares(spans, fallback=fallback)
        out["language_mismatch"] = bool(fallback and out["language"] and out["language"] != fallback)
        confidences = [s["confidence"] for s in segments if s.get("confidence") is not None]
        out["confidence"] = sum(confidences) / len(confidences) if confidences else None
        if run.keep_raw_text:
            out["raw_text"] = " ".join(raw_texts)
        if out.get("reference_text") is not None and not out["error"]:
            s = score(out["reference_text"], out["text"], out["language"] or fallback)
            out.update(wer=s.wer, cer=s.cer, raw_wer=s.raw_wer, raw_cer=s.raw_cer, word_errors=s.word_errors,
                       ref_words=s.ref_words, char_errors=s.char_errors, ref_chars=s.ref_chars)
    return out


def assemble_block(batch: pa.Table, run: RunInfo, pieces=None) -> pa.Table:
    """Ray `map_batches` UDF: transcribed recordings in, output rows (segments nested) out. A piece of a recording
    goes to the job's PieceStore (`pieces`, a Ray actor handle) and makes an output row only if it completed the
    recording."""
    install_redaction()  # idempotent: this worker's log records carry no credential
    out = []
    for recording in batch.to_pylist():
        if recording.get("piece") is not None:
            assert pieces is not None, "a recording in pieces needs the job's PieceStore"
            recording = gather(pieces, recording)
            if recording is None:
                continue
        out.append(assemble_recording(recording, run))
    return to_table(out, ASSEMBLED_SCHEMA)


class Assembler:
    """`assemble_block` as a Ray Data actor: a stage of plain tasks that reserve no CPU runs each task in a fresh
    worker process once the node has more workers than CPUs (Ray kills a task worker idle for a second then), and
    starting one (interpreter, Ray, pyarrow, this module) costs more CPU than assembling a work block of short clips.
    A few long-lived actors start once per job."""

    def __init__(self, run: RunInfo, pieces=None):
        self.run = run
        self.pieces = pieces

    def __call__(self, batch: pa.Table) -> pa.Table:
        return assemble_block(batch, self.run, self.pieces)
