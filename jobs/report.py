"""Accuracy and coverage report over a transcription output: per-language WER/CER, failures, language confusion.

    python -m jobs.report output_path=s3://calls/transcripts [run_id=<id>] [report_path=<folder>]

Reads `<output_path>/recordings/*.parquet` (local or any fsspec URL, e.g. `s3://`) and `<output_path>/runs/*.json`,
and writes `report.json`, `report.md` and `report.png` to `<output_path>/report/` (with `run_id=`:
`<output_path>/report/<run_id>/`), or to `report_path=`.

Figures (all in `report.json`; `report.md` shows rates as percentages):

* Rows are grouped by the language they are known to be in where it is known: the locale the row was forced to
  (the job's `target_lang` or the manifest row's `lang`/`target_lang`; `prompt_locale` where the output has it),
  else by the language the model detected (`language`); a row with neither (a failed row in `auto` mode, a
  transcript in which the model wrote no language tag) is grouped as `unknown`. Each language row says how many of
  its rows were grouped by the reference and how many by detection (`grouped_by`). So a row forced to `es-ES` and
  heard as `ja-JP` is scored under `es-ES` (by WER), not under `ja-JP` (by CER); the confusion table shows the
  disagreement. A row `all` covers every row. (`connectors.transcripts.row_language`: the export of training data
  and the notebooks use the same rule.)
* WER and CER are corpus figures: sum(word_errors) / sum(ref_words) and sum(char_errors) / sum(ref_chars) over the
  *scored* rows (a reference, no error, counts present), never the mean of per-row rates. The primary metric is
  CER for ja/ko/zh/th (`pipeline.scoring.primary_metric_for`), else WER; `all` has one only when every scored
  language shares it.
* Raw (unnormalised) corpus figures: the output has per-row raw *rates* only, so the raw counts are derived per row
  exactly as `pipeline.scoring.score` defines them: raw_ref_words = len(reference.split()),
  raw_ref_chars = len(" ".join(reference.split())), raw errors = round(raw_rate * raw reference length), or, for a
  reference with no words/characters, the hypothesis' words/characters (all insertions). A group whose rows lack
  a raw rate gets no raw figures.
* Language confusion: transcribed rows (error is null) counted by target (the row's `target_lang`: a locale when it
  was forced by the job or the manifest row, `auto` for rows run in auto mode) against the detected `language`.
* By default every row in the folder counts. A resumed job writes one `run_id` per resume into one output, each
  row once, so all rows is the whole dataset; the report lists the runs and says when there are several.
"""

from __future__ import annotations

import io
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc

from omegaconf import MISSING

from connectors.output_store import RECORDINGS, NotAnOutput, OutputStore
from connectors.storage import filesystem
from jobs.config import ConfigError, load_structured
from connectors.transcripts import FROM_REFERENCE, error_stage, row_language
from pipeline.records import RECORDINGS_SCHEMA
from pipeline.scoring import primary_metric_for

UNKNOWN = "unknown"
AUTO = "auto"
ALL = "all"

# The recordings columns the report and the comparison read (the rest of a row is never loaded).
COLUMNS = ["row_id", "duration", "text", "language", "target_lang", "reference_text", "wer", "cer", "raw_wer",
           "raw_cer", "word_errors", "ref_words", "char_errors", "ref_chars", "error", "error_stage", "model",
           "att_context_size", "run_id", "prompt_locale"]
_COUNTS = ("word_errors", "ref_words", "char_errors", "ref_chars")
_RAW_COUNTS = ("raw_word_errors", "raw_ref_words", "raw_char_errors", "raw_ref_chars")


@dataclass(frozen=True)
class ReportConfig:
    output_path: str = MISSING  # a transcription output (local or s3://)
    run_id: Optional[str] = None  # only the rows of this run
    report_path: Optional[str] = None  # where to write (default <output_path>/report[/<run_id>])


def conform(table: pa.Table, columns: list[str] = COLUMNS) -> pa.Table:
    """`table` with exactly `columns`, typed as in RECORDINGS_SCHEMA; a missing column is all null."""
    arrays = []
    for name in columns:
        field = RECORDINGS_SCHEMA.field(name)
        if name in table.column_names:
            arrays.append(table[name].cast(field.type))
        else:
            arrays.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema([RECORDINGS_SCHEMA.field(n) for n in columns]))


def read_recordings(output_path: str, run_id: str | None = None, columns: list[str] = COLUMNS) -> pa.Table:
    """The committed recordings rows of an output folder (only `columns`, typed as in the output schema), optionally
    of one run. ConfigError when there is nothing to read."""
    store = OutputStore.at(output_path)
    try:
        store.check()
    except NotAnOutput as error:
        raise ConfigError(str(error)) from None
    table = store.read_table(RECORDINGS, {name: RECORDINGS_SCHEMA.field(name).type for name in columns})
    if run_id is not None:
        table = table.filter(pc.equal(table["run_id"], run_id))
        if table.num_rows == 0:
            runs = sorted(set(store.read_table(RECORDINGS, {"run_id": pa.string()})["run_id"].to_pylist()) - {None})
            raise ConfigError(f"no rows of run_id={run_id} in {output_path}; runs there: {', '.join(runs) or 'none'}")
    return table


def write_files(folder: str, files: dict[str, bytes]) -> list[str]:
    """Write each `name: bytes` into `folder` (local or object storage); returns the full paths."""
    fs, path = filesystem(folder)
    fs.makedirs(path, exist_ok=True)
    written = []
    for name, data in files.items():
        with fs.open(f"{path}/{name}", "wb") as handle:
            handle.write(data)
        written.append(f"{folder.rstrip('/')}/{name}")
    return written


# ---------------------------------------------------------------------------------------------------------- figures


def rate(errors: int | None, total: int | None) -> float | None:
    return errors / total if errors is not None and total else None


def context_label(value) -> str | None:
    """`[56, 13]` -> `"[56,13]"`, so settings can be compared and printed."""
    return None if value is None else "[" + ",".join(str(v) for v in value) + "]"


def scored_mask(table: pa.Table) -> pa.ChunkedArray:
    """Rows that count for WER/CER: a reference, no error, and the counts behind the rates."""
    mask = pc.and_(pc.is_null(table["error"]), pc.is_valid(table["reference_text"]))
    for name in _COUNTS:
        mask = pc.and_(mask, pc.is_valid(table[name]))
    return mask


def raw_counts(reference: str | None, hypothesis: str | None, raw_wer: float | None,
               raw_cer: float | None) -> tuple[int | None, int | None, int | None, int | None]:
    """(raw word errors, raw reference words, raw char errors, raw reference chars) of one scored row, derived from
    its stored raw rates with the definitions of `pipeline.scoring.score` (see the module docstring)."""
    ref = " ".join((reference or "").split())
    hyp = " ".join((hypothesis or "").split())
    ref_words, ref_chars = len(ref.split()), len(ref)
    if ref_words:
        word_errors = None if raw_wer is None else round(raw_wer * ref_words)
    else:
        word_errors = len(hyp.split())
    if ref_chars:
        char_errors = None if raw_cer is None else round(raw_cer * ref_chars)
    else:
        char_errors = len(hyp)
    return word_errors, ref_words, char_errors, ref_chars


def _with_keys(table: pa.Table) -> pa.Table:
    """Add the grouping keys and per-row flags/counts that the report sums."""
    scored = scored_mask(table)
    grouping, source = row_language(table)
    language = pc.fill_null(grouping, UNKNOWN)
    detected = pc.fill_null(table["language"], UNKNOWN)
    target = pc.fill_null(table["target_lang"], UNKNOWN)
    failed = pc.is_valid(table["error"])
    by_reference = pc.fill_null(pc.equal(source, FROM_REFERENCE), False)
    columns = {
        "_language": language,
        "_detected": detected,
        "_by_reference": pc.cast(by_reference, pa.int64()),
        "_by_detected": pc.cast(pc.and_(pc.invert(by_reference), pc.is_valid(source)), pa.int64()),
        "_target": target,
        "_failed": pc.cast(failed, pa.int64()),
        "_scored": pc.cast(scored, pa.int64()),
        "_duration": pc.fill_null(table["duration"], 0.0),
    }
    for name in _COUNTS:
        columns[f"_{name}"] = pc.if_else(scored, table[name], 0)
    # Raw counts per scored row (in Python for exact str.split() semantics; only scored rows are visited).
    raw = [[0] * table.num_rows for _ in _RAW_COUNTS]
    raw_missing = [0] * table.num_rows
    positions = pc.indices_nonzero(pc.fill_null(scored, False))
    picked = table.select(["reference_text", "text", "raw_wer", "raw_cer"]).take(positions).to_pydict()
    indices = positions.to_pylist()
    for k, i in enumerate(indices):
        counts = raw_counts(picked["reference_text"][k], picked["text"][k], picked["raw_wer"][k],
                            picked["raw_cer"][k])
        raw_missing[i] = int(any(c is None for c in counts))
        for j, c in enumerate(counts):
            raw[j][i] = c or 0
    for name, values in zip(_RAW_COUNTS, raw):
        columns[f"_{name}"] = pa.array(values, pa.int64())
    columns["_raw_missing"] = pa.array(raw_missing, pa.int64())
    for name, values in columns.items():
        table = table.append_column(name, values)
    return table


_SUMS = ["_failed", "_scored", "_duration", "_by_reference", "_by_detected", *(f"_{n}" for n in _COUNTS),
         *(f"_{n}" for n in _RAW_COUNTS),
         "_raw_missing"]


def _group_sums(table: pa.Table, keys: list[str]) -> list[dict]:
    """One dict per group: the keys, `rows`, and the sums of _SUMS (named without the leading underscore)."""
    if keys:
        grouped = table.group_by(keys).aggregate([("row_id", "count"), *((c, "sum") for c in _SUMS)])
        out = []
        for row in grouped.to_pylist():
            item = {k: row[k] for k in keys}
            item["rows"] = row["row_id_count"]
            item.update({c[1:]: row[f"{c}_sum"] or 0 for c in _SUMS})
            out.append(item)
        return out
    item = {"rows": table.num_rows}
    item.update({c[1:]: pc.sum(table[c]).as_py() or 0 for c in _SUMS})
    return [item]


def _language_row(name: str, sums: dict, primary_metric: str | None) -> dict:
    wer = rate(sums["word_errors"], sums["ref_words"])
    cer = rate(sums["char_errors"], sums["ref_chars"])
    raw_ok = sums["scored"] > 0 and sums["raw_missing"] == 0
    row = {
        "language": name,
        "recordings": sums["rows"],
        "transcribed": sums["rows"] - sums["failed"],
        "failed": sums["failed"],
        "grouped_by": {"reference": sums["by_reference"], "detected": sums["by_detected"]},
        "audio_hours": sums["duration"] / 3600.0,
        "scored_rows": sums["scored"],
        **{n: sums[n] for n in _COUNTS},
        "wer": wer,
        "cer": cer,
        "primary_metric": primary_metric,
        "primary": {"wer": wer, "cer": cer}.get(primary_metric or ""),
        **{n: (sums[n] if raw_ok else None) for n in _RAW_COUNTS},
        "raw_wer": rate(sums["raw_word_errors"], sums["raw_ref_words"]) if raw_ok else None,
        "raw_cer": rate(sums["raw_char_errors"], sums["raw_ref_chars"]) if raw_ok else None,
    }
    return row


def _sort_key(value: str, last: tuple[str, ...]) -> tuple[int, str]:
    return (last.index(value) + 1 if value in last else 0, value)


def build_report(recordings: pa.Table) -> dict:
    """The report's figures from a recordings table (columns of RECORDINGS_SCHEMA; missing ones count as null).

    Pure: no I/O. `main` adds where the data came from and the run records. See the module docstring for the
    definitions; every rate is a ratio of summed counts.
    """
    table = _with_keys(conform(recordings).combine_chunks())

    # Per language, then all.
    languages = []
    for sums in sorted(_group_sums(table, ["_language"]), key=lambda s: _sort_key(s["_language"], (UNKNOWN,))):
        languages.append(_language_row(sums["_language"], sums, primary_metric_for(
            None if sums["_language"] == UNKNOWN else sums["_language"])))
    metrics = {r["primary_metric"] for r in languages if r["scored_rows"]}
    everything = _language_row(ALL, _group_sums(table, [])[0], metrics.pop() if len(metrics) == 1 else None)

    # Row counts and failures by stage.
    errors = [e for e in table["error"].to_pylist() if e]
    # The stage column (outputs before it existed: the message's "<stage>: " prefix).
    by_stage = Counter(stage for stage, error in zip(error_stage(table).to_pylist(), table["error"].to_pylist())
                       if error and stage)
    rows = {
        "total": table.num_rows,
        "transcribed": table.num_rows - len(errors),
        "failed": len(errors),
        "failed_by_stage": dict(sorted(by_stage.items(), key=lambda kv: (-kv[1], kv[0]))),
        "with_reference": pc.sum(pc.cast(pc.is_valid(table["reference_text"]), pa.int64())).as_py() or 0,
        "scored": everything["scored_rows"],
    }

    # Language confusion over transcribed rows.
    ok = table.filter(pc.is_null(table["error"]))
    cells = _group_sums(ok, ["_target", "_detected"]) if ok.num_rows else []
    targets = sorted({c["_target"] for c in cells}, key=lambda v: _sort_key(v, (AUTO, UNKNOWN)))
    detected = sorted({c["_detected"] for c in cells}, key=lambda v: _sort_key(v, (UNKNOWN,)))
    counts = [[0] * len(detected) for _ in targets]
    for c in cells:
        counts[targets.index(c["_target"])][detected.index(c["_detected"])] = c["rows"]
    agreement = {}
    for i, target in enumerate(targets):
        if target in (AUTO, UNKNOWN):
            continue
        total = sum(counts[i])
        matching = counts[i][detected.index(target)] if target in detected else 0
        agreement[target] = {"rows": total, "matching": matching, "share": rate(matching, total)}
    confusion = {
        "rows": ok.num_rows,
        "targets": targets,
        "detected": detected,
        "counts": counts,
        "cells": [{"target": c["_target"], "detected": c["_detected"], "rows": c["rows"]}
                  for c in sorted(cells, key=lambda c: (targets.index(c["_target"]), detected.index(c["_detected"])))],
        "agreement": agreement,
    }

    # Runs, settings, and what a reader should know.
    runs = []
    run_ids = pc.fill_null(table["run_id"], UNKNOWN)
    for run_id in sorted(set(run_ids.to_pylist())):
        part = table.filter(pc.equal(run_ids, run_id))
        runs.append({
            "run_id": run_id,
            "rows": part.num_rows,
            "failed": pc.sum(part["_failed"]).as_py() or 0,
            "models": sorted(set(part["model"].to_pylist()) - {None}),
            "att_context_sizes": sorted({context_label(v) for v in part["att_context_size"].to_pylist()} - {None}),
        })
    notes = []
    if len(runs) > 1:
        notes.append(f"{len(runs)} runs in this output ({', '.join(r['run_id'] for r in runs)}): the figures cover the "
                     f"rows of all of them (a resumed job writes one run_id per resume, each row once); "
                     f"run_id=<id> limits the report to one run.")
    models = sorted({m for r in runs for m in r["models"]})
    contexts = sorted({c for r in runs for c in r["att_context_sizes"]})
    if len(models) > 1:
        notes.append(f"warning: the rows come from {len(models)} models ({', '.join(models)}): figures mix them.")
    if len(contexts) > 1:
        notes.append(f"warning: the rows were produced at {len(contexts)} att_context_size settings "
                     f"({', '.join(contexts)}): figures mix them.")
    duplicates = table.num_rows - pc.count_distinct(table["row_id"]).as_py()
    if duplicates:
        notes.append(f"warning: {duplicates} row(s) repeat a row_id already counted: those inputs count twice.")
    if rows["with_reference"] == 0:
        notes.append("no row has a reference text (manifest `text`): no WER/CER.")

    return {
        "rows": rows,
        "audio_hours": everything["audio_hours"],
        "languages": languages,
        "all": everything,
        "language_confusion": confusion,
        "runs": runs,
        "multiple_runs": len(runs) > 1,
        "models": models,
        "att_context_sizes": contexts,
        "duplicate_row_ids": duplicates,
        "notes": notes,
        "definitions": {
            "wer": "corpus WER: sum(word_errors) / sum(ref_words) over scored rows (reference, no error)",
            "cer": "corpus CER: sum(char_errors) / sum(ref_chars) over scored rows",
            "primary": "CER for ja/ko/zh/th (pipeline.scoring.primary_metric_for), else WER",
            "raw": "raw_wer/raw_cer: corpus figures on unnormalised text; counts derived per row from the stored raw "
                   "rates and the reference length as pipeline.scoring.score defines it",
            "language": "the locale the row was forced to (target_lang / prompt_locale: the reference's language) "
                        "where one was, else the detected `language`; `unknown` when neither is known; "
                        "`grouped_by` counts the rows grouped each way",
            "confusion": "transcribed rows: target_lang (a forced locale, or `auto`) x detected language",
            "rates": "fractions (0.125 = 12.5 %); null where the reference length is 0",
        },
    }


# ---------------------------------------------------------------------------------------------------------- output


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f} %"


def _md_table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(report: dict) -> str:
    rows = report["rows"]
    scope = report.get("run_id_filter")
    lines = ["# Transcription report", ""]
    if report.get("output_path"):
        lines.append(f"Output: `{report['output_path']}`  ")
    lines.append(f"Rows: {'run ' + scope if scope else 'all runs in the folder'} "
                 f"({len(report['runs'])} run(s): {', '.join(r['run_id'] for r in report['runs'])})  ")
    lines.append(f"Models: {', '.join(report['models']) or '–'}; att_context_size: "
                 f"{', '.join(report['att_context_sizes']) or '–'}  ")
    if report.get("generated_at"):
        lines.append(f"Generated: {report['generated_at']}")
    lines.append("")
    for note in report["notes"]:
        lines.append(f"- {note}")
    if report["notes"]:
        lines.append("")

    lines += ["## Rows", ""]
    stages = ", ".join(f"{k} {v}" for k, v in rows["failed_by_stage"].items()) or "none"
    lines += _md_table(["total", "transcribed", "failed", "failed by stage", "with reference", "scored", "audio hours"],
                       [[rows["total"], rows["transcribed"], rows["failed"], stages, rows["with_reference"],
                         rows["scored"], f"{report['audio_hours']:.3f}"]])

    lines += ["", "## Accuracy by language", "",
              "Corpus figures: summed errors / summed reference length over scored rows (a reference, no error). "
              "Primary: CER for ja/ko/zh/th, else WER. A row counts under the language it was forced to (the "
              "reference's language: the job's or the manifest row's `target_lang`/`lang`) where there is one, "
              "else under the language the model detected; *grouped by* says how many rows were placed each way.",
              ""]
    table = []
    for r in [*report["languages"], report["all"]]:
        name = f"**{r['language']}**" if r["language"] == ALL else r["language"]
        primary = f"{r['primary_metric'].upper()} {pct(r['primary'])}" if r["primary_metric"] else "– (mixed)"
        grouped = ", ".join(f"{k} {n}" for k, n in r["grouped_by"].items() if n) or "–"
        table.append([name, r["recordings"], grouped, r["failed"], f"{r['audio_hours']:.3f}", r["scored_rows"],
                      primary, pct(r["wer"]), pct(r["cer"]), pct(r["raw_wer"]), pct(r["raw_cer"]),
                      f"{r['word_errors']}/{r['ref_words']}", f"{r['char_errors']}/{r['ref_chars']}"])
    lines += _md_table(["language", "recordings", "grouped by", "failed", "audio h", "scored", "primary", "WER",
                        "CER", "raw WER", "raw CER", "word errors/ref words", "char errors/ref chars"], table)

    confusion = report["language_confusion"]
    lines += ["", "## Language confusion", "",
              f"Transcribed rows ({confusion['rows']}): target (`target_lang`: forced locale, or `auto`) down, "
              "detected `language` across.", ""]
    if confusion["targets"]:
        lines += _md_table(["target \\ detected", *confusion["detected"]],
                           [[t, *confusion["counts"][i]] for i, t in enumerate(confusion["targets"])])
        if confusion["agreement"]:
            lines += ["", "Detected = forced target: " + ", ".join(
                f"{t} {a['matching']}/{a['rows']}" for t, a in confusion["agreement"].items())]
    else:
        lines.append("No transcribed rows.")
    lines += ["", "![report](report.png)", ""]
    return "\n".join(lines)


def render_png(report: dict) -> bytes:
    """Primary metric per language (bars) and the language confusion (heat map), as PNG bytes (Agg, no pyplot)."""
    from matplotlib.figure import Figure

    scored = [r for r in report["languages"] if r["primary"] is not None]
    confusion = report["language_confusion"]
    width = max(10.0, 4.0 + 0.6 * (len(scored) + len(confusion["detected"])))
    fig = Figure(figsize=(width, 4.8), layout="constrained")
    bars, heat = fig.subplots(1, 2, width_ratios=[max(1, len(scored)), max(1, len(confusion["detected"]))])

    if scored:
        values = [100 * r["primary"] for r in scored]
        colors = ["tab:orange" if r["primary_metric"] == "cer" else "tab:blue" for r in scored]
        drawn = bars.bar(range(len(scored)), values, color=colors)
        bars.set_xticks(range(len(scored)), [r["language"] for r in scored], rotation=45, ha="right")
        bars.bar_label(drawn, [f"{r['primary_metric'].upper()} {v:.1f}\nn={r['scored_rows']}"
                               for r, v in zip(scored, values)], fontsize=8)
        bars.set_ylim(0, max(values) * 1.25 or 1)
    else:
        bars.text(0.5, 0.5, "no scored rows\n(no references)", ha="center", va="center", transform=bars.transAxes)
        bars.set_xticks([])
    bars.set_ylabel("error rate (%)")
    bars.set_title("Primary metric per language (WER blue, CER orange)")

    if confusion["targets"]:
        counts = confusion["counts"]
        image = heat.imshow(counts, cmap="Blues", aspect="auto")
        heat.set_xticks(range(len(confusion["detected"])), confusion["detected"], rotation=45, ha="right")
        heat.set_yticks(range(len(confusion["targets"])), confusion["targets"])
        peak = max(max(r) for r in counts) or 1
        for i, row in enumerate(counts):
            for j, n in enumerate(row):
                heat.text(j, i, str(n), ha="center", va="center", fontsize=8,
                          color="white" if n > peak / 2 else "black")
        fig.colorbar(image, ax=heat, shrink=0.8, label="rows")
    else:
        heat.text(0.5, 0.5, "no transcribed rows", ha="center", va="center", transform=heat.transAxes)
    heat.set_xlabel("detected language")
    heat.set_ylabel("target_lang")
    heat.set_title("Language confusion (transcribed rows)")

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def to_json(data: dict) -> bytes:
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return (json.dumps(clean(data), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def make_report(output_path: str, run_id: str | None = None) -> dict:
    """`build_report` over an output folder, with where the figures came from and the run records."""
    report = build_report(read_recordings(output_path, run_id))
    records = OutputStore.at(output_path).run_records()
    run_records = {}
    for run in report["runs"]:
        record = records.get(run["run_id"])
        if record is None:
            report["notes"].append(f"run {run['run_id']} has no runs/{run['run_id']}.json (the job did not finish?)")
            continue
        run_records[run["run_id"]] = {
            "att_context_size": record.get("att_context_size"),
            "model": (record.get("config") or {}).get("model_path"),
            "target_lang": (record.get("config") or {}).get("target_lang"),
            "model_class": record.get("model_class"),
            "summary": record.get("summary"),
        }
        json_context = context_label(record.get("att_context_size"))
        if json_context and run["att_context_sizes"] and run["att_context_sizes"] != [json_context]:
            report["notes"].append(f"warning: run {run['run_id']}: runs/*.json says att_context_size {json_context}, "
                                   f"its rows say {', '.join(run['att_context_sizes'])}")
    return {
        "output_path": output_path,
        "run_id_filter": run_id,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **report,
        "run_records": run_records,
    }


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args_in):
        print(__doc__)
        return 0
    try:
        cfg = load_structured(ReportConfig, args_in, None, example="/data/out")
        output_path = cfg.output_path.rstrip("/")
        report = make_report(output_path, cfg.run_id or None)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    folder = cfg.report_path or (f"{output_path}/report/{cfg.run_id}" if cfg.run_id else f"{output_path}/report")
    written = write_files(folder, {"report.json": to_json(report), "report.md": render_markdown(report).encode(),
                                   "report.png": render_png(report)})
    all_ = report["all"]
    rows = report["rows"]
    print(f"rows      {rows['total']} ({rows['transcribed']} transcribed, {rows['failed']} failed)")
    print(f"runs      {len(report['runs'])}" + (" (all rows counted)" if report["multiple_runs"] else ""))
    print(f"WER/CER   {pct(all_['wer'])} / {pct(all_['cer'])} over {all_['scored_rows']} scored row(s)")
    for note in report["notes"]:
        print(note)
    print("wrote     " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
