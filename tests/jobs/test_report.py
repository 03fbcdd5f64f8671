"""jobs.report: corpus figures from hand-built recordings with known counts, the files it writes (local and S3),
and once over the real job's output (tiny model), each figure checked again with DuckDB over the Parquet."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import jiwer
import pyarrow.parquet as pq
import pytest

from jobs.report import build_report, main, raw_counts, render_markdown
from pipeline.records import RECORDINGS_SCHEMA, to_table
from pipeline.scoring import score
from tests.audio_factory import write_tone

PNG = b"\x89PNG\r\n\x1a\n"


def scored_row(row_id: str, reference: str, hypothesis: str, language: str, target_lang: str = "auto",
               **extra) -> dict:
    """A transcribed row scored the way the pipeline scores it (pipeline.scoring.score)."""
    s = score(reference, hypothesis, language)
    return {"row_id": row_id, "reference_text": reference, "text": hypothesis, "language": language,
            "target_lang": target_lang, "duration": 10.0, "wer": s.wer, "cer": s.cer, "raw_wer": s.raw_wer,
            "raw_cer": s.raw_cer, "word_errors": s.word_errors, "ref_words": s.ref_words,
            "char_errors": s.char_errors, "ref_chars": s.ref_chars, "model": "base.nemo",
            "att_context_size": [56, 13], "run_id": "20261121T000000Z-aaaaaa", **extra}


def failed_row(row_id: str, error: str, target_lang: str | None = "auto", **extra) -> dict:
    return {"row_id": row_id, "error": error, "target_lang": target_lang, "model": "base.nemo",
            "att_context_size": [56, 13], "run_id": "20261121T000000Z-aaaaaa", **extra}


ROWS = [
    # en-US: 1 error in 10 words and 2 in 2: corpus WER 3/12 = 0.25, where the mean of row WERs is 0.55.
    scored_row("en1", "The cat sat on the mat today, in the sun.", "the cat sat on the mat today in the son", "en-US"),
    scored_row("en2", "hello world", "goodbye moon", "en-US", target_lang="en-US", duration=20.0),
    # en-US without a reference: counted, not scored.
    {**scored_row("en3", "x", "anything", "en-US"), "reference_text": None, "wer": None, "cer": None,
     "raw_wer": None, "raw_cer": None, "word_errors": None, "ref_words": None, "char_errors": None,
     "ref_chars": None},
    # Forced German, detected English: a confusion.
    {**scored_row("de1", "x", "good morning", "en-US", target_lang="de-DE"), "reference_text": None,
     "wer": None, "cer": None, "raw_wer": None, "raw_cer": None, "word_errors": None, "ref_words": None,
     "char_errors": None, "ref_chars": None},
    # Japanese: 1 of 9 characters wrong (CER 1/9), the only "word" wrong (WER 1.0): primary metric CER.
    scored_row("ja1", "今日は良い天気です。", "今日はいい天気です", "ja-JP", target_lang="ja-JP", duration=6.0),
    # Failures at three stages; a failed row has no detected language.
    failed_row("f1", "fetch: file not found: s3://b/missing.wav"),
    failed_row("f2", "decode: empty file (0 bytes)", reference_text="ignored"),
    failed_row("f3", "decode: no audio stream"),
    failed_row("f4", "manifest: line 9 is not valid JSON", target_lang=None),
]


def by_language(report: dict) -> dict:
    return {r["language"]: r for r in report["languages"]}


def test_corpus_figures_are_summed_counts_not_mean_rates():
    report = build_report(to_table(ROWS, RECORDINGS_SCHEMA))
    en = by_language(report)["en-US"]
    # de1 (forced to de-DE, heard as en-US) counts under de-DE: 3 en-US rows.
    assert (en["word_errors"], en["ref_words"], en["scored_rows"], en["recordings"]) == (3, 12, 2, 3)
    assert en["wer"] == 3 / 12 == 0.25
    assert en["wer"] != (0.1 + 1.0) / 2  # the mean of the row WERs would be 0.55
    assert en["cer"] == (1 + 11) / (39 + 11)
    assert en["primary_metric"] == "wer" and en["primary"] == en["wer"]
    assert en["audio_hours"] == (10 + 20 + 10) / 3600
    assert en["failed"] == 0 and en["transcribed"] == 3

    ja = by_language(report)["ja-JP"]
    assert (ja["char_errors"], ja["ref_chars"], ja["word_errors"], ja["ref_words"]) == (1, 9, 1, 1)
    assert ja["primary_metric"] == "cer" and ja["primary"] == ja["cer"] == 1 / 9 and ja["wer"] == 1.0

    everything = report["all"]
    assert everything["wer"] == (3 + 1) / (12 + 1) and everything["cer"] == (12 + 1) / (50 + 9)
    assert everything["primary_metric"] is None  # WER for en-US, CER for ja-JP: no single primary metric
    assert everything["recordings"] == 9 and everything["scored_rows"] == 3


def test_raw_figures_are_corpus_figures_of_the_raw_counts():
    report = build_report(to_table(ROWS, RECORDINGS_SCHEMA))
    en = by_language(report)["en-US"]
    # Raw: "The"/"today,"/"sun." count as errors: 3 of 10, and 2 of 2.
    assert (en["raw_word_errors"], en["raw_ref_words"]) == (3 + 2, 10 + 2)
    assert en["raw_wer"] == 5 / 12
    # Independently: jiwer over the raw strings, as pipeline.scoring.score defines them.
    scored = [r for r in ROWS if r.get("reference_text") and not r.get("error") and r["language"] == "en-US"]
    words = [jiwer.process_words(" ".join(r["reference_text"].split()), " ".join(r["text"].split())) for r in scored]
    chars = [jiwer.process_characters(" ".join(r["reference_text"].split()), " ".join(r["text"].split()))
             for r in scored]
    assert en["raw_word_errors"] == sum(w.substitutions + w.deletions + w.insertions for w in words)
    assert en["raw_char_errors"] == sum(c.substitutions + c.deletions + c.insertions for c in chars)
    assert en["raw_ref_chars"] == sum(c.substitutions + c.deletions + c.hits for c in chars)
    assert en["raw_cer"] == en["raw_char_errors"] / en["raw_ref_chars"]


def test_raw_counts_of_an_empty_reference_are_the_insertions():
    assert raw_counts("  ", "two words", None, None) == (2, 0, 9, 0)
    assert raw_counts("a  b", "a c", 0.5, 1 / 3) == (1, 2, 1, 3)


def test_row_counts_failures_by_stage_and_confusion():
    report = build_report(to_table(ROWS, RECORDINGS_SCHEMA))
    assert report["rows"] == {"total": 9, "transcribed": 5, "failed": 4,
                              "failed_by_stage": {"decode": 2, "fetch": 1, "manifest": 1},
                              "with_reference": 4, "scored": 3}
    unknown = by_language(report)["unknown"]
    assert (unknown["recordings"], unknown["failed"], unknown["scored_rows"], unknown["wer"]) == (4, 4, 0, None)
    assert [r["language"] for r in report["languages"]] == ["de-DE", "en-US", "ja-JP", "unknown"]

    confusion = report["language_confusion"]
    assert confusion["rows"] == 5  # transcribed rows only
    assert confusion["targets"] == ["de-DE", "en-US", "ja-JP", "auto"]
    assert confusion["detected"] == ["en-US", "ja-JP"]
    assert confusion["counts"] == [[1, 0], [1, 0], [0, 1], [2, 0]]
    cells = {(c["target"], c["detected"]): c["rows"] for c in confusion["cells"]}
    assert cells == {("de-DE", "en-US"): 1, ("en-US", "en-US"): 1, ("ja-JP", "ja-JP"): 1, ("auto", "en-US"): 2}
    assert confusion["agreement"]["de-DE"] == {"rows": 1, "matching": 0, "share": 0.0}
    assert confusion["agreement"]["ja-JP"]["share"] == 1.0
    assert not report["multiple_runs"] and report["notes"] == []


def test_rows_are_grouped_by_the_reference_language_where_known_else_the_detected_one():
    """The demo's case: a row forced to es-ES and heard as ja-JP is scored under es-ES, by WER, not under ja-JP by
    CER; rows in auto mode go by what was detected; each group says which way its rows were placed."""
    rows = [
        scored_row("es1", "hola buenos días", "こんにちは", "ja-JP", target_lang="es-ES"),
        scored_row("es2", "hola amigo", "hola amigo", "es-ES", target_lang="es-ES"),
        scored_row("ja1", "今日は良い天気です。", "今日はいい天気です", "ja-JP"),  # auto: detected
        failed_row("f1", "decode: empty file (0 bytes)", target_lang="es-ES"),  # known though it failed
        failed_row("f2", "fetch: file not found: x.wav"),  # auto and failed: unknown
    ]
    report = build_report(to_table(rows, RECORDINGS_SCHEMA))
    es, ja, unknown = (by_language(report)[k] for k in ("es-ES", "ja-JP", "unknown"))
    assert (es["recordings"], es["scored_rows"], es["failed"]) == (3, 2, 1)
    assert es["grouped_by"] == {"reference": 3, "detected": 0}
    assert es["primary_metric"] == "wer" and es["primary"] == es["wer"] == (3 + 0) / (3 + 2)
    assert (ja["recordings"], ja["grouped_by"]) == (1, {"reference": 0, "detected": 1})
    assert ja["primary_metric"] == "cer" and ja["cer"] == 1 / 9
    assert (unknown["recordings"], unknown["grouped_by"]) == (1, {"reference": 0, "detected": 0})
    # The confusion still shows what was heard.
    assert {(c["target"], c["detected"]): c["rows"] for c in report["language_confusion"]["cells"]} == {
        ("es-ES", "ja-JP"): 1, ("es-ES", "es-ES"): 1, ("auto", "ja-JP"): 1}
    markdown = render_markdown(report)
    assert "| es-ES | 3 | reference 3 |" in markdown and "| ja-JP | 1 | detected 1 |" in markdown
    assert "else under the language the model detected" in markdown


def test_prompt_locale_is_the_known_language_where_the_output_has_it():
    """The canonical locale (`de-DE` for target_lang `de`) names the group; outputs from before it existed (no
    prompt_locale) group by target_lang."""
    row = scored_row("de1", "guten tag", "guten tag", "de-DE", target_lang="de")
    older = to_table([row], RECORDINGS_SCHEMA).drop_columns(["prompt_locale"])
    assert [r["language"] for r in build_report(older)["languages"]] == ["de"]
    table = to_table([dict(row, prompt_locale="de-DE")], RECORDINGS_SCHEMA)
    assert [r["language"] for r in build_report(table)["languages"]] == ["de-DE"]
    auto = to_table([dict(row, target_lang="auto", prompt_locale="auto", language="fr-FR")], RECORDINGS_SCHEMA)
    assert [(r["language"], r["grouped_by"]) for r in build_report(auto)["languages"]] == [
        ("fr-FR", {"reference": 0, "detected": 1})]


def test_several_runs_are_all_counted_and_said():
    rows = [dict(r, run_id="20261121T000000Z-aaaaaa" if i < 5 else "20261122T000000Z-bbbbbb")
            for i, r in enumerate(ROWS)]
    report = build_report(to_table(rows, RECORDINGS_SCHEMA))
    assert report["multiple_runs"] and report["rows"]["total"] == 9
    assert [(r["run_id"], r["rows"], r["failed"]) for r in report["runs"]] == [
        ("20261121T000000Z-aaaaaa", 5, 0), ("20261122T000000Z-bbbbbb", 4, 4)]
    assert "2 runs" in report["notes"][0] and "run_id=" in report["notes"][0]


def test_mixed_settings_and_repeated_rows_are_warned():
    rows = ROWS + [dict(ROWS[0], att_context_size=[56, 0])]
    report = build_report(to_table(rows, RECORDINGS_SCHEMA))
    assert report["duplicate_row_ids"] == 1
    assert any("att_context_size" in n and "[56,0]" in n for n in report["notes"])
    assert any("repeat a row_id" in n for n in report["notes"])


def test_empty_table():
    report = build_report(to_table([], RECORDINGS_SCHEMA))
    assert report["rows"]["total"] == 0 and report["all"]["wer"] is None and report["languages"] == []
    assert report["language_confusion"]["counts"] == []


def write_output(folder: Path, rows: list[dict], run_id: str = "20261121T000000Z-aaaaaa",
                 att_context_size=(56, 13)) -> Path:
    """An output folder as the job writes it: recordings/part-<run_id>-*.parquet and runs/<run_id>.json."""
    (folder / "recordings").mkdir(parents=True, exist_ok=True)
    (folder / "runs").mkdir(exist_ok=True)
    rows = [dict(r, run_id=run_id, att_context_size=list(att_context_size)) for r in rows]
    pq.write_table(to_table(rows, RECORDINGS_SCHEMA), folder / "recordings" / f"part-{run_id}-00000-0.parquet")
    (folder / "runs" / f"{run_id}.json").write_text(json.dumps(
        {"run_id": run_id, "att_context_size": list(att_context_size), "config": {"model_path": "base.nemo"},
         "summary": {"rows": len(rows)}}))
    return folder


def test_cli_writes_json_md_png_that_agree_with_the_parquet(tmp_path, capsys):
    out = write_output(tmp_path / "out", ROWS)
    (out / "recordings" / ".part-x.parquet.tmp").write_bytes(b"half a file")  # an uncommitted file is skipped
    assert main([f"output_path={out}"]) == 0
    folder = out / "report"
    report = json.loads((folder / "report.json").read_text())
    assert (folder / "report.png").read_bytes().startswith(PNG)
    markdown = (folder / "report.md").read_text()
    assert "| en-US | 3 | reference 1, detected 2 | 0 |" in markdown
    assert "WER 25.00 %" in markdown and "CER 11.11 %" in markdown
    assert "![report](report.png)" in markdown
    assert report["output_path"] == str(out) and report["run_id_filter"] is None
    assert report["run_records"]["20261121T000000Z-aaaaaa"]["att_context_size"] == [56, 13]

    # Independently: DuckDB over the Parquet.
    glob = f"{out}/recordings/*.parquet"
    for language, wer, cer, n in duckdb.sql(
            f"select coalesce(nullif(target_lang, 'auto'), language, 'unknown'), sum(word_errors) / sum(ref_words), "
            f"sum(char_errors) / sum(ref_chars), count(*) filter (where ref_words is not null) from '{glob}' "
            f"where error is null and reference_text is not null group by all").fetchall():
        row = {r["language"]: r for r in report["languages"]}[language]
        assert row["wer"] == pytest.approx(wer, rel=1e-12) and row["cer"] == pytest.approx(cer, rel=1e-12)
        assert row["scored_rows"] == n
    stages = dict(duckdb.sql(f"select split_part(error, ':', 1), count(*) from '{glob}' where error is not null "
                             f"group by all").fetchall())
    assert report["rows"]["failed_by_stage"] == stages
    hours = duckdb.sql(f"select sum(duration) / 3600 from '{glob}'").fetchall()[0][0]
    assert report["audio_hours"] == pytest.approx(hours, rel=1e-12)
    assert "wrote" in capsys.readouterr().out


def test_cli_one_run_of_several(tmp_path):
    out = write_output(tmp_path / "out", ROWS[:5], run_id="20261121T000000Z-aaaaaa")
    write_output(out, ROWS[5:], run_id="20261122T000000Z-bbbbbb")
    assert main([f"output_path={out}"]) == 0
    everything = json.loads((out / "report" / "report.json").read_text())
    assert everything["multiple_runs"] and everything["rows"]["total"] == 9
    assert "2 runs in this output" in (out / "report" / "report.md").read_text()

    assert main([f"output_path={out}", "run_id=20261122T000000Z-bbbbbb"]) == 0
    one = json.loads((out / "report" / "20261122T000000Z-bbbbbb" / "report.json").read_text())
    assert one["run_id_filter"] == "20261122T000000Z-bbbbbb" and not one["multiple_runs"]
    assert one["rows"]["total"] == 4 and one["rows"]["failed"] == 4

    custom = tmp_path / "elsewhere"
    assert main([f"output_path={out}", f"report_path={custom}"]) == 0
    assert sorted(p.name for p in custom.iterdir()) == ["report.json", "report.md", "report.png"]


def test_cli_errors(tmp_path, capsys):
    assert main(["output_path"]) == 2
    assert main([f"output_path={tmp_path}", "colour=blue"]) == 2
    assert main([]) == 2
    assert main([f"output_path={tmp_path / 'nothing'}"]) == 2
    out = write_output(tmp_path / "out", ROWS)
    assert main([f"output_path={out}", "run_id=nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown configuration key 'colour'" in err and "output_path is required" in err
    assert f"{tmp_path / 'nothing'} is not a transcription output" in err
    assert "runs there: 20261121T000000Z-aaaaaa" in err


def test_cli_on_s3(tmp_path, s3fs_client, bucket):
    local = write_output(tmp_path / "out", ROWS)
    s3fs_client.put(str(local / "recordings"), f"{bucket}/out/recordings", recursive=True)
    s3fs_client.put(str(local / "runs"), f"{bucket}/out/runs", recursive=True)
    assert main([f"output_path=s3://{bucket}/out"]) == 0
    assert sorted(p.rsplit("/", 1)[-1] for p in s3fs_client.ls(f"{bucket}/out/report")) == [
        "report.json", "report.md", "report.png"]
    report = json.loads(s3fs_client.cat(f"{bucket}/out/report/report.json"))
    assert report["all"]["wer"] == 4 / 13 and report["rows"]["failed"] == 4
    assert s3fs_client.cat(f"{bucket}/out/report/report.png").startswith(PNG)


def test_report_over_the_real_job_output(ray_session, tiny_model, tmp_path):
    """The real job (tiny model, random weights) over a manifest with references and a missing file, then the
    report over its output; figures checked against DuckDB over the Parquet."""
    from jobs.transcribe import plan, run

    audio = tmp_path / "audio"
    audio.mkdir()
    write_tone(audio / "a.wav", 1.0)
    write_tone(audio / "b.flac", 0.8, fmt="FLAC")
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(x) for x in [
        {"audio_filepath": "audio/a.wav", "text": "hello there general kenobi"},
        {"audio_filepath": "audio/b.flac", "text": "hola amigo", "lang": "es-ES"},
        {"audio_filepath": "audio/missing.wav", "text": "never heard"},
    ]) + "\n")
    out = tmp_path / "out"
    summary = run(plan([f"model_path={tiny_model}", f"dataset_manifest={manifest}", f"output_path={out}"]))
    assert summary.rows == 3

    assert main([f"output_path={out}"]) == 0
    report = json.loads((out / "report" / "report.json").read_text())
    assert (out / "report" / "report.png").read_bytes().startswith(PNG)
    assert (out / "report" / "report.md").read_text().startswith("# Transcription report")

    glob = f"{out}/recordings/*.parquet"
    wer, cer, scored = duckdb.sql(f"select sum(word_errors) / sum(ref_words), sum(char_errors) / sum(ref_chars), "
                                  f"count(*) from '{glob}' where error is null and reference_text is not null"
                                  ).fetchall()[0]
    assert report["rows"]["total"] == 3 and report["rows"]["failed"] == 1
    assert report["rows"]["failed_by_stage"] == {"fetch": 1}
    assert report["all"]["scored_rows"] == scored == 2
    assert report["all"]["wer"] == pytest.approx(wer, rel=1e-12)
    assert report["all"]["cer"] == pytest.approx(cer, rel=1e-12)
    targets = dict(duckdb.sql(f"select target_lang, count(*) from '{glob}' where error is null group by all"
                              ).fetchall())
    confusion = report["language_confusion"]
    assert {t: sum(row) for t, row in zip(confusion["targets"], confusion["counts"])} == targets
    assert report["runs"][0]["run_id"] == summary.run_id and report["att_context_sizes"] == ["[56,13]"]
    assert report["run_records"][summary.run_id]["summary"]["rows"] == 3
