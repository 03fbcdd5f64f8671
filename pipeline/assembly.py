"""Stage: turn transcribed rows into output rows: languages out of the tags, tags out of the text, scores, run info."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from pipeline.language import dominant_language, language_shares, split_by_language, strip_language_tags
from pipeline.records import TRANSCRIPT_SCHEMA, to_table
from pipeline.scoring import score


@dataclass(frozen=True)
class RunInfo:
    """Columns that are the same for every row of a run, so a table mixing runs stays interpretable."""

    run_id: str
    model: str
    att_context_size: tuple[int, int] | None
    keep_raw_text: bool = False


def assemble_row(row: dict, run: RunInfo) -> dict:
    raw = row.get("raw_text")
    target = row.get("target_lang")
    if raw is not None and not row.get("error"):
        # A forced locale is the language of untagged text; in `auto` mode untagged text has no known language.
        fallback = target if target and target != "auto" else None
        spans = split_by_language(raw, fallback=fallback)
        row["text"] = strip_language_tags(raw)
        row["language"] = dominant_language(spans, fallback=fallback)
        row["language_shares"] = language_shares(spans, fallback=fallback)
        if row.get("reference_text") is not None:
            s = score(row["reference_text"], row["text"], row["language"] or fallback)
            row.update(wer=s.wer, cer=s.cer, raw_wer=s.raw_wer, raw_cer=s.raw_cer, word_errors=s.word_errors,
                       ref_words=s.ref_words, char_errors=s.char_errors, ref_chars=s.ref_chars)
    if not run.keep_raw_text:
        row["raw_text"] = None
    row["model"] = run.model
    row["att_context_size"] = list(run.att_context_size) if run.att_context_size else None
    row["run_id"] = run.run_id
    return row


def assemble_batch(batch: pa.Table, run: RunInfo) -> pa.Table:
    return to_table([assemble_row(row, run) for row in batch.to_pylist()], TRANSCRIPT_SCHEMA)
