"""Reading a transcription output's rows: the stage of a row's error, and the language a row is known to be in.

For the jobs and notebooks that *read* an output (the export of training data, the report, the notebooks), which
get its tables from `connectors.output_store.OutputStore` (`read_table`, `read_whole`, `run_records`). They must
work on outputs written before and after a change of columns:

* `error_stage` (the stage of a failure: manifest, fetch, decode, language, inference) is read when the output has
  it; an older output has only `error` as `<stage>: <message>`, whose part before the first ': ' is the stage.
* `prompt_locale` (the canonical locale a row was conditioned on, e.g. `de-DE` for `target_lang=de`) is preferred
  to `target_lang` when present.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["error_stage", "known_language", "row_language"]

AUTO = "auto"
# Where the language a row is grouped or labelled by came from (see `row_language`).
FROM_REFERENCE = "reference"
FROM_DETECTED = "detected"


def error_stage(table: pa.Table) -> pa.ChunkedArray:
    """The stage of each row's error (null where there is none): the `error_stage` column where the output has one,
    else the part of `error` before the first ': '."""
    if "error_stage" in table.column_names and table["error_stage"].null_count < table.num_rows:
        return table["error_stage"]
    errors = table["error"]
    has_stage = pc.fill_null(pc.match_substring(errors, ": "), False)
    prefix = pc.list_element(pc.split_pattern(errors, ": ", max_splits=1), 0)
    return pc.if_else(has_stage, prefix, pa.scalar(None, pa.string()))


def known_language(table: pa.Table) -> pa.ChunkedArray:
    """The locale each row is known to be in, null where none is: the prompt it was conditioned on (`prompt_locale`
    where the output has it, else `target_lang`), when that was forced by the job or the manifest row (`lang` /
    `target_lang`) rather than `auto`."""
    forced = table["target_lang"].cast(pa.string())
    if "prompt_locale" in table.column_names:
        forced = pc.coalesce(table["prompt_locale"].cast(pa.string()), forced)
    is_auto = pc.fill_null(pc.equal(forced, AUTO), True)
    return pc.if_else(is_auto, pa.scalar(None, pa.string()), forced)


def row_language(table: pa.Table, detected: str = "language") -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """(language, source) of each row: the known language (`known_language`) where there is one, source
    `reference`; else the language the model detected (column `detected`), source `detected`; null and null when
    neither is known. The report groups WER/CER by it, the export labels utterances with it, the notebooks follow."""
    known = known_language(table)
    heard = table[detected].cast(pa.string())
    language = pc.coalesce(known, heard)
    source = pc.if_else(pc.is_valid(known), FROM_REFERENCE,
                        pc.if_else(pc.is_valid(heard), FROM_DETECTED, pa.scalar(None, pa.string())))
    return language, source
