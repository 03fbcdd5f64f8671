"""jobs.compare: before/after figures over the rows scored in both outputs, with exact changes and the warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from jobs.compare import compare, main
from pipeline.records import RECORDINGS_SCHEMA, to_table


def row(row_id: str, word_errors: int, ref_words: int, char_errors: int, ref_chars: int, *, language="en-US",
        target_lang="auto", model="base.nemo", att=(56, 13), run_id="20261121T000000Z-aaaaaa", **extra) -> dict:
    return {"row_id": row_id, "language": language, "target_lang": target_lang, "reference_text": f"ref {row_id}",
            "text": "hyp", "duration": 5.0, "word_errors": word_errors, "ref_words": ref_words,
            "char_errors": char_errors, "ref_chars": ref_chars, "wer": word_errors / ref_words,
            "cer": char_errors / ref_chars, "model": model, "att_context_size": list(att), "run_id": run_id, **extra}


BEFORE = [
    # en-US: 8 of 16 words, 20 of 80 characters wrong.
    row("r1", 6, 10, 15, 50),
    row("r2", 2, 6, 5, 30),
    # ja-JP: primary metric CER; 4 of 16 characters.
    row("r3", 1, 1, 4, 16, language="ja-JP", target_lang="ja-JP"),
    # Rows that must not count: failed in after, no reference, only in before.
    row("r4", 1, 4, 1, 20),
    {**row("r5", 0, 1, 0, 1), "reference_text": None, "word_errors": None, "ref_words": None, "char_errors": None,
     "ref_chars": None, "wer": None, "cer": None},
    row("gone", 9, 9, 9, 9),
]
AFTER = [
    # 4 of 16 words, 10 of 80 characters; detected German on r2 (auto mode): still grouped as before's en-US.
    row("r1", 3, 10, 8, 50, model="tuned.nemo", att=(56, 0), run_id="20261122T000000Z-bbbbbb"),
    row("r2", 1, 6, 2, 30, language="de-DE", model="tuned.nemo", att=(56, 0), run_id="20261122T000000Z-bbbbbb"),
    row("r3", 1, 1, 2, 16, language="ja-JP", target_lang="ja-JP", model="tuned.nemo", att=(56, 0),
        run_id="20261122T000000Z-bbbbbb"),
    {**row("r4", 0, 4, 0, 20, model="tuned.nemo", att=(56, 0), run_id="20261122T000000Z-bbbbbb"),
     "error": "decode: no audio stream"},
    {**row("r5", 0, 1, 0, 1, target_lang="en-US", model="tuned.nemo", att=(56, 0), run_id="20261122T000000Z-bbbbbb"),
     "reference_text": None},
    row("new1", 5, 5, 5, 5, model="tuned.nemo", att=(56, 0), run_id="20261122T000000Z-bbbbbb"),
    row("new2", 5, 5, 5, 5, model="tuned.nemo", att=(56, 0), run_id="20261122T000000Z-bbbbbb"),
]


def table(rows):
    return to_table(rows, RECORDINGS_SCHEMA)


def test_before_after_figures_and_exact_changes():
    result = compare(table(BEFORE), table(AFTER))
    langs = {r["language"]: r for r in result["languages"]}
    assert list(langs) == ["en-US", "ja-JP"]

    en = langs["en-US"]
    assert en["rows"] == 2 and en["primary_metric"] == "wer"
    assert (en["word_errors_before"], en["ref_words_before"], en["word_errors_after"]) == (8, 16, 4)
    assert en["wer_before"] == 0.5 and en["wer_after"] == 0.25
    assert en["wer_change"] == -0.25 and en["wer_relative_change"] == -0.5
    assert en["cer_before"] == 0.25 and en["cer_after"] == 0.125 and en["cer_relative_change"] == -0.5
    assert en["primary_before"] == 0.5 and en["primary_relative_change"] == -0.5
    # Not the mean of the row rates (mean before (0.6 + 1/3) / 2, after (0.3 + 1/6) / 2).
    assert en["wer_before"] != (0.6 + 2 / 6) / 2

    ja = langs["ja-JP"]
    assert ja["primary_metric"] == "cer" and ja["primary_before"] == 0.25 and ja["primary_after"] == 0.125
    assert ja["primary_change"] == -0.125 and ja["primary_relative_change"] == -0.5
    assert ja["wer_before"] == ja["wer_after"] == 1.0 and ja["wer_change"] == 0.0 and ja["wer_relative_change"] == 0.0

    everything = result["all"]
    assert everything["rows"] == 3 and everything["primary_metric"] is None
    assert everything["wer_before"] == 9 / 17 and everything["wer_after"] == 5 / 17
    assert everything["wer_relative_change"] == (5 / 17 - 9 / 17) / (9 / 17)
    assert everything["cer_before"] == 24 / 96 and everything["cer_after"] == 12 / 96

    assert result["rows"] == {"before": 6, "after": 7, "in_both": 5, "only_in_before": 1, "only_in_after": 2,
                              "failed_in_before": 0, "failed_in_after": 1, "without_reference": 1, "compared": 3,
                              "target_lang_differs": 1, "reference_differs": 0, "detected_language_changed": 1}
    assert result["before"]["models"] == ["base.nemo"] and result["after"]["models"] == ["tuned.nemo"]


def test_warnings_on_settings_row_sets_and_target_lang():
    warnings = compare(table(BEFORE), table(AFTER))["warnings"]
    assert any("att_context_size differs" in w and "[56,13]" in w and "[56,0]" in w for w in warnings)
    assert any("1 row(s) only in before, 2 only in after" in w for w in warnings)
    assert any("target_lang differs in 1 row" in w for w in warnings)
    assert not any("base.nemo" in w or "tuned.nemo" in w for w in warnings)  # models differ on purpose


def test_same_output_twice_has_no_change_and_no_warning():
    result = compare(table(BEFORE), table(BEFORE))
    assert result["warnings"] == []
    assert all(r["wer_change"] == 0.0 and r["wer_relative_change"] == 0.0 for r in result["languages"])
    assert result["rows"]["compared"] == 5


def test_zero_before_has_no_relative_change_and_repeats_are_warned():
    a = [row("r1", 0, 10, 0, 50)]
    b = [row("r1", 2, 10, 3, 50, run_id="1-old"), row("r1", 1, 10, 1, 50, run_id="2-new")]
    result = compare(table(a), table(b))
    en = result["languages"][0]
    assert en["wer_change"] == 0.1 and en["wer_relative_change"] is None
    assert en["word_errors_after"] == 1  # the latest run's row
    assert any("repeat a row_id" in w for w in result["warnings"])


def write_output(folder: Path, rows: list[dict], run_id: str, att) -> Path:
    (folder / "recordings").mkdir(parents=True)
    (folder / "runs").mkdir()
    pq.write_table(table(rows), folder / "recordings" / f"part-{run_id}-00000-0.parquet")
    (folder / "runs" / f"{run_id}.json").write_text(json.dumps({"run_id": run_id, "att_context_size": att}))
    return folder


def test_cli_writes_markdown_and_json_and_prints_the_table(tmp_path, capsys):
    a = write_output(tmp_path / "a", BEFORE, "20261121T000000Z-aaaaaa", [56, 13])
    b = write_output(tmp_path / "b", AFTER, "20261122T000000Z-bbbbbb", [56, 0])
    assert main([f"before={a}", f"after={b}", f"output={tmp_path / 'cmp.md'}"]) == 0
    printed = capsys.readouterr()
    markdown = (tmp_path / "cmp.md").read_text()
    result = json.loads((tmp_path / "cmp.json").read_text())
    assert "| en-US | 2 | WER | 50.00 % | 25.00 % | -25.00 pt (-50.0 %) |" in markdown
    assert "| en-US | 2 | WER |" in printed.out and "att_context_size differs" in printed.err
    assert "tuned.nemo" in markdown and "base.nemo" in markdown
    assert result["before"]["path"] == str(a) and result["languages"][0]["wer_relative_change"] == -0.5
    assert any(w.startswith("runs/*.json: att_context_size differs") for w in result["warnings"])

    # Default output: <after>/compare/compare.md (+ .json).
    assert main([f"before={a}", f"after={b}"]) == 0
    assert sorted(p.name for p in (b / "compare").iterdir()) == ["compare.json", "compare.md"]
    assert main([f"before={a}"]) == 2 and main([f"before={a}", f"after={tmp_path / 'none'}"]) == 2
