"""Before/after accuracy of two transcription outputs of the same manifest (e.g. a base model vs its fine-tune).

    python -m jobs.compare before=s3://x/base after=s3://x/finetuned [output=<file.md>]
                           [before_run_id=<id>] [after_run_id=<id>]

Writes `output` (default `<after>/compare/compare.md`) and the same figures as JSON beside it (`.json` instead of
`.md`), and prints the table and any warnings.

* Rows are joined on `row_id` (stable across runs of the same manifest). Figures cover only the rows present in both
  outputs, error-free in both, with a reference and the WER/CER counts in both (`compared` rows).
* WER/CER are corpus figures over those rows: sum(errors) / sum(reference length), never a mean of row rates.
  change = after - before; relative change = (after - before) / before (null when before is 0).
* A row's language (the grouping key) is its `target_lang` when the job or the manifest forced one, else the
  language that the *before* run detected (`unknown` when none), so both columns of a line cover the same rows
  even when the new model detects another language; rows whose detected language changed are counted.
* Warnings (printed and written) when the outputs differ in att_context_size (the Parquet column, and
  `runs/*.json`), in their set of rows (only in before / only in after), in a row's target_lang or reference, or
  when one side mixes several att_context_size settings or repeats a row_id. Model names differ on purpose: both
  are shown, never warned about.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc
from omegaconf import MISSING

from connectors.output_store import OutputStore
from jobs.config import ConfigError, load_structured
from jobs.report import (UNKNOWN, conform, context_label, pct, rate, read_recordings, scored_mask, to_json,
                         write_files)
from connectors.transcripts import row_language
from pipeline.scoring import primary_metric_for

_COUNTS = ("word_errors", "ref_words", "char_errors", "ref_chars")
SIDES = ("before", "after")


@dataclass(frozen=True)
class CompareConfig:
    before: str = MISSING  # the transcription output before (e.g. the base model's)
    after: str = MISSING  # and after (e.g. the fine-tuned model's)
    output: Optional[str] = None  # where to write compare.md/.json (default <after>/compare/compare.md)
    before_run_id: Optional[str] = None  # only this run's rows of `before`
    after_run_id: Optional[str] = None  # only this run's rows of `after`


def _dedupe(table: pa.Table) -> tuple[pa.Table, int]:
    """One row per row_id (the latest run's when a row_id repeats); returns the number of dropped rows."""
    if pc.count_distinct(table["row_id"]).as_py() == table.num_rows:
        return table, 0
    order = table.sort_by([("row_id", "ascending"), ("run_id", "descending")])
    ids = order["row_id"].to_pylist()
    keep = [i == 0 or ids[i] != ids[i - 1] for i in range(len(ids))]
    return order.filter(pa.array(keep)), table.num_rows - sum(keep)


def _side_info(table: pa.Table) -> dict:
    return {
        "rows": table.num_rows,
        "models": sorted(set(table["model"].to_pylist()) - {None}),
        "att_context_sizes": sorted({context_label(v) for v in table["att_context_size"].to_pylist()} - {None}),
        "run_ids": sorted(set(table["run_id"].to_pylist()) - {None}),
    }


def _change(before: float | None, after: float | None) -> tuple[float | None, float | None]:
    if before is None or after is None:
        return None, None
    return after - before, ((after - before) / before if before else None)


def _figures(name: str, rows: int, before: dict, after: dict, primary_metric: str | None) -> dict:
    out: dict = {"language": name, "rows": rows, "primary_metric": primary_metric}
    for metric, errors, total in (("wer", "word_errors", "ref_words"), ("cer", "char_errors", "ref_chars")):
        a, b = rate(before[errors], before[total]), rate(after[errors], after[total])
        change, relative = _change(a, b)
        out.update({f"{metric}_before": a, f"{metric}_after": b, f"{metric}_change": change,
                    f"{metric}_relative_change": relative})
    for side, sums in (("before", before), ("after", after)):
        out.update({f"{n}_{side}": sums[n] for n in _COUNTS})
    if primary_metric:
        out.update({f"primary_{k}": out[f"{primary_metric}_{k}"] for k in ("before", "after", "change",
                                                                        "relative_change")})
    else:
        out.update({f"primary_{k}": None for k in ("before", "after", "change", "relative_change")})
    return out


def compare(a: pa.Table, b: pa.Table) -> dict:
    """Before (`a`) vs after (`b`) over the rows compared in both (see the module docstring). Pure: no I/O."""
    a, b = conform(a), conform(b)
    info = {"before": _side_info(a), "after": _side_info(b)}
    warnings = []
    (a, dup_a), (b, dup_b) = _dedupe(a), _dedupe(b)
    for side, dropped in (("before", dup_a), ("after", dup_b)):
        if dropped:
            warnings.append(f"{side}: {dropped} row(s) repeat a row_id; the latest run's row is used")
    for side in SIDES:
        if len(info[side]["att_context_sizes"]) > 1:
            warnings.append(f"{side} mixes att_context_size settings ({', '.join(info[side]['att_context_sizes'])})")
    if info["before"]["att_context_sizes"] != info["after"]["att_context_sizes"]:
        warnings.append(f"att_context_size differs: before {', '.join(info['before']['att_context_sizes']) or '–'}, "
                        f"after {', '.join(info['after']['att_context_sizes']) or '–'}: latency settings differ, "
                        f"not only the model")

    ids_a, ids_b = set(a["row_id"].to_pylist()), set(b["row_id"].to_pylist())
    only_a, only_b = len(ids_a - ids_b), len(ids_b - ids_a)
    if only_a or only_b:
        warnings.append(f"the row sets differ: {only_a} row(s) only in before, {only_b} only in after "
                        f"({len(ids_a & ids_b)} row(s) in both; only those are compared)")

    keep = ["row_id", "language", "target_lang", "reference_text", "error", *_COUNTS]
    # One rule for a row's language everywhere (report, export, notebooks): the locale it was forced to, else the
    # language the before-run heard.
    left = a.select(keep).append_column("_scored", scored_mask(a)).append_column("_group", row_language(a)[0])
    right = b.select(keep).append_column("_scored", scored_mask(b))
    joined = left.join(right, "row_id", join_type="inner", left_suffix="_a", right_suffix="_b")
    rows = joined.to_pylist()

    target_differs = sum(1 for r in rows if r["target_lang_a"] != r["target_lang_b"])
    reference_differs = sum(1 for r in rows if r["reference_text_a"] != r["reference_text_b"])
    if target_differs:
        warnings.append(f"target_lang differs in {target_differs} row(s) present in both")
    if reference_differs:
        warnings.append(f"reference_text differs in {reference_differs} row(s) present in both: not the same manifest?")

    compared = [r for r in rows if r["_scored_a"] and r["_scored_b"]]
    groups: dict[str, dict] = {}
    for r in compared:
        key = r["_group"] or UNKNOWN
        group = groups.setdefault(key, {"rows": 0, "before": dict.fromkeys(_COUNTS, 0),
                                        "after": dict.fromkeys(_COUNTS, 0)})
        group["rows"] += 1
        for n in _COUNTS:
            group["before"][n] += r[f"{n}_a"]
            group["after"][n] += r[f"{n}_b"]
    languages = [
        _figures(key, g["rows"], g["before"], g["after"], primary_metric_for(None if key == UNKNOWN else key))
        for key, g in sorted(groups.items(), key=lambda kv: (kv[0] == UNKNOWN, kv[0]))
    ]
    totals = {side: {n: sum(g[side][n] for g in groups.values()) for n in _COUNTS} for side in SIDES}
    metrics = {row["primary_metric"] for row in languages}
    everything = _figures("all", len(compared), totals["before"], totals["after"],
                          metrics.pop() if len(metrics) == 1 else None)

    counts = {
        "before": a.num_rows,
        "after": b.num_rows,
        "in_both": len(rows),
        "only_in_before": only_a,
        "only_in_after": only_b,
        "failed_in_before": sum(1 for r in rows if r["error_a"] is not None),
        "failed_in_after": sum(1 for r in rows if r["error_b"] is not None),
        "without_reference": sum(1 for r in rows if r["reference_text_a"] is None or r["reference_text_b"] is None),
        "compared": len(compared),
        "target_lang_differs": target_differs,
        "reference_differs": reference_differs,
        "detected_language_changed": sum(1 for r in compared if r["language_a"] != r["language_b"]),
    }
    if rows and not compared:
        warnings.append("no row is error-free with a reference in both outputs: nothing to compare")
    return {"before": info["before"], "after": info["after"], "rows": counts, "languages": languages,
            "all": everything, "warnings": warnings}


def _fmt_change(value: float | None, relative: float | None) -> str:
    if value is None:
        return "–"
    text = f"{100 * value:+.2f} pt"
    return text + (f" ({100 * relative:+.1f} %)" if relative is not None else "")


def render_markdown(result: dict) -> str:
    before, after, counts = result["before"], result["after"], result["rows"]
    lines = ["# Before / after", ""]
    for side, info in (("before", before), ("after", after)):
        where = f"`{info['path']}` " if info.get("path") else ""
        lines.append(f"- **{side}**: {where}model {', '.join(info['models']) or '–'}, att_context_size "
                     f"{', '.join(info['att_context_sizes']) or '–'}, {info['rows']} row(s), "
                     f"run(s) {', '.join(info['run_ids']) or '–'}")
    lines += ["", f"Compared rows: {counts['compared']} (in both and error-free with a reference in both); "
                  f"in both {counts['in_both']}, only in before {counts['only_in_before']}, only in after "
                  f"{counts['only_in_after']}, failed in before {counts['failed_in_before']}, failed in after "
                  f"{counts['failed_in_after']}, without reference {counts['without_reference']}, detected language "
                  f"changed {counts['detected_language_changed']}.", ""]
    for warning in result["warnings"]:
        lines.append(f"- **warning**: {warning}")
    if result["warnings"]:
        lines.append("")
    header = ["language", "rows", "primary", "WER before", "WER after", "WER change", "CER before", "CER after",
              "CER change"]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for r in [*result["languages"], result["all"]]:
        name = f"**{r['language']}**" if r["language"] == "all" else r["language"]
        cells = [name, r["rows"], (r["primary_metric"] or "mixed").upper()]
        for metric in ("wer", "cer"):
            cells += [pct(r[f"{metric}_before"]), pct(r[f"{metric}_after"]),
                      _fmt_change(r[f"{metric}_change"], r[f"{metric}_relative_change"])]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "Corpus figures (summed errors / summed reference length). Change in percentage points; "
                  "relative change = (after - before) / before.", ""]
    return "\n".join(lines)


def run_record_warnings(before: dict, after: dict) -> list[str]:
    """att_context_size as the run records (`runs/*.json`) of the compared runs state it."""
    def settings(records: dict, run_ids: list[str]) -> list[str]:
        return sorted({context_label(records[r].get("att_context_size")) or "default"
                       for r in run_ids if r in records})

    a = settings(before["records"], before["run_ids"])
    b = settings(after["records"], after["run_ids"])
    if a and b and a != b:
        return [f"runs/*.json: att_context_size differs: before {', '.join(a)}, after {', '.join(b)}"]
    return []


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if any(x in ("-h", "--help") for x in args_in):
        print(__doc__)
        return 0
    try:
        cfg = load_structured(CompareConfig, args_in, None, example="/data/out")
        paths = {side: getattr(cfg, side).rstrip("/") for side in SIDES}
        tables = {side: read_recordings(paths[side], getattr(cfg, f"{side}_run_id") or None) for side in SIDES}
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    result = compare(tables["before"], tables["after"])
    sides = {}
    for side in SIDES:
        result[side]["path"] = paths[side]
        sides[side] = {"records": OutputStore.at(paths[side]).run_records(), "run_ids": result[side]["run_ids"]}
    result["warnings"] += run_record_warnings(sides["before"], sides["after"])

    output = cfg.output or f"{paths['after']}/compare/compare.md"
    folder, _, name = output.rpartition("/")
    stem = name[:-3] if name.endswith(".md") else name
    markdown = render_markdown(result)
    written = write_files(folder or ".", {f"{stem}.md": markdown.encode(), f"{stem}.json": to_json(result)})
    print(markdown)
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print("wrote " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
