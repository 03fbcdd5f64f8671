"""pipeline.pseudo_labels on hand-written output tables (real words, known figures): each filter and its reason,
duplicates, splits that never put one recording in two, replay shares, tagged text; and the readers' compatibility
with outputs before and after the `error_stage` / `prompt_locale` columns."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
import pytest

from connectors.transcripts import error_stage, row_language
from pipeline import pseudo_labels as labels


def recording(row_id: str, **extra) -> dict:
    base = {"row_id": row_id, "audio_url": f"/audio/{row_id}.wav", "audio_filepath": f"{row_id}.wav",
            "target_lang": "auto", "language": "en-US", "language_mismatch": False, "channel_mode": "mix",
            "source_channels": 1, "duration": 60.0, "metadata": None}
    return {**base, **extra}


def segment(row_id: str, index: int, start: float, end: float, text: str = "hello there how are you", **extra):
    base = {"row_id": row_id, "segment_index": index, "channel": None, "start": start, "end": end, "text": text,
            "language": "en-US", "confidence": 0.95}
    return {**base, **extra}


def tables(recordings: list[dict], segments: list[dict]) -> tuple[pa.Table, pa.Table]:
    def table(rows, columns):
        return pa.table({k: pa.array([r.get(k) for r in rows], t) for k, t in columns.items()})

    return table(recordings, labels.RECORDING_COLUMNS), table(segments, labels.SEGMENT_COLUMNS)


def judged(recordings, segments, filters=labels.Filters(), seed=0) -> dict[str, str | None]:
    table = labels.judge(labels.utterances(*tables(recordings, segments)), filters, seed)
    return dict(zip(table["utt_id"].to_pylist(), table["reason"].to_pylist()))


def test_each_filter_drops_with_its_reason_and_the_first_failing_one_counts():
    recordings = [
        recording("ok"),
        recording("failed", error="decode: corrupt or unsupported audio: decoding failed at 12.0 s"),
        recording("mismatch", target_lang="de-DE", language="en-US", language_mismatch=True),
        recording("scored", reference_text="hello there", wer=0.5, cer=0.2),
        recording("auto_untagged", language=None),
    ]
    segments = [
        segment("ok", 0, 0.0, 5.0),
        segment("ok", 1, 5.0, 5.3),  # too short
        segment("ok", 2, 5.3, 7.0, text="   "),  # empty
        segment("ok", 3, 7.0, 8.0, text="a" * 60),  # 60 chars per second
        segment("ok", 4, 8.0, 12.0, confidence=0.5),
        segment("ok", 5, 12.0, 16.0, confidence=None),
        segment("ok", 6, 16.0, 20.0, error="inference: out of memory", text=None),  # stage of the segment
        segment("failed", 0, 0.0, 5.0),  # transcribed before the recording failed
        segment("mismatch", 0, 0.0, 5.0),
        segment("scored", 0, 0.0, 5.0),
        segment("auto_untagged", 0, 0.0, 5.0, language=None),
    ]
    filters = labels.Filters(min_duration=0.5, max_duration=30, max_chars_per_second=25, min_confidence=0.9,
                             max_wer=0.3)
    reasons = judged(recordings, segments, filters)
    assert reasons == {
        "ok-m-0000": None, "ok-m-0001": "duration", "ok-m-0002": "empty_text", "ok-m-0003": "chars_per_second",
        "ok-m-0004": "confidence", "ok-m-0005": "no_confidence", "ok-m-0006": "error:inference",
        "failed-m-0000": "error:decode", "mismatch-m-0000": "language_mismatch", "scored-m-0000": "wer",
        "auto_untagged-m-0000": "no_language"}
    # Every filter off: only what can never be trained on goes.
    off = labels.Filters(drop_errors=False, drop_language_mismatch=False)
    assert {k for k, v in judged(recordings, segments, off).items() if v} == {
        "ok-m-0002", "ok-m-0006", "auto_untagged-m-0000"}
    assert judged([recording("z")], [segment("z", 0, 3.0, 3.0)], off) == {"z-m-0000": "duration"}  # no audio
    # A reference only counts where there is one: WER filters never touch rows without.
    assert judged(recordings, segments, labels.Filters(max_wer=0.0))["ok-m-0000"] is None


def test_a_segment_that_overlaps_the_previous_one_of_its_channel_is_a_forced_cut():
    recordings = [recording("r", channel_mode="split", source_channels=2)]
    segments = [segment("r", 0, 0.0, 30.0, channel=0), segment("r", 1, 29.0, 40.0, channel=0),
                segment("r", 0, 0.0, 12.0, channel=1), segment("r", 1, 12.0, 20.0, channel=1)]
    reasons = judged(recordings, segments)
    assert reasons == {"r-c0-0000": None, "r-c0-0001": "forced_cut", "r-c1-0000": None, "r-c1-0001": None}


def test_duplicate_texts_beyond_the_limit_are_dropped_in_a_seeded_order():
    recordings = [recording(f"r{i}") for i in range(6)]
    segments = [segment(f"r{i}", 0, 0.0, 3.0, text="thank you for calling") for i in range(6)]
    segments.append(segment("r0", 1, 3.0, 6.0, text="something else entirely"))
    reasons = judged(recordings, segments, labels.Filters(max_per_text=2))
    assert Counter(reasons.values()) == Counter({None: 3, "duplicate_text": 4})
    assert reasons["r0-m-0001"] is None
    other = judged(recordings, segments, labels.Filters(max_per_text=2), seed=7)
    assert Counter(other.values()) == Counter(reasons.values())
    assert {k for k, v in other.items() if v is None} != {k for k, v in reasons.items() if v is None}


def test_the_language_is_the_forced_one_where_known_else_the_segments_detected_one():
    recordings = [recording("forced", target_lang="es-ES", language="ja-JP"),
                  recording("auto", target_lang="auto", language="en-US"),
                  recording("new", target_lang="de", prompt_locale="de-DE", language="de-DE")]
    segments = [segment("forced", 0, 0, 3, language="ja-JP"), segment("auto", 0, 0, 3, language="fr-FR"),
                segment("new", 0, 0, 3, language="de-DE")]
    table = labels.utterances(*tables(recordings, segments))
    got = {r["utt_id"]: (r["language"], r["language_source"]) for r in table.to_pylist()}
    assert got == {"forced-m-0000": ("es-ES", "reference"), "auto-m-0000": ("fr-FR", "detected"),
                   "new-m-0000": ("de-DE", "reference")}


def test_error_stage_is_read_from_its_column_when_the_output_has_one_else_from_the_message():
    old = pa.table({"error": ["fetch: file not found: s3://b/x.wav", None, "no stage here"]})
    assert error_stage(old).to_pylist() == ["fetch", None, None]
    new = pa.table({"error": ["file not found: s3://b/x.wav", None], "error_stage": ["fetch", None]})
    assert error_stage(new).to_pylist() == ["fetch", None]
    language, source = row_language(pa.table({"target_lang": ["auto", "es-ES", None], "prompt_locale": [None] * 3,
                                              "language": ["en-US", "ja-JP", None]}))
    assert language.to_pylist() == ["en-US", "es-ES", None] and source.to_pylist() == ["detected", "reference", None]


def _split_table(n: int, metadata=lambda i: None) -> pa.Table:
    recordings = [recording(f"r{i:04d}", metadata=metadata(i)) for i in range(n)]
    segments = [segment(f"r{i:04d}", k, 3.0 * k, 3.0 * k + 3.0) for i in range(n) for k in range(2)]
    return labels.utterances(*tables(recordings, segments))


def test_splits_keep_each_recording_and_each_group_in_one_split_and_hold_their_shares():
    splits = labels.Splits(shares={"train": 0.8, "validation": 0.1, "test": 0.1})
    table, missing = labels.assign_splits(_split_table(2000), splits)
    per_recording = {}
    for row_id, split in zip(table["row_id"].to_pylist(), table["split"].to_pylist()):
        assert per_recording.setdefault(row_id, split) == split
    shares = Counter(per_recording.values())
    assert missing == 0 and abs(shares["train"] / 2000 - 0.8) < 0.04 and abs(shares["test"] / 2000 - 0.1) < 0.03

    # Grouped by a manifest field: a call's recordings stay together; recordings without the field are counted.
    calls = _split_table(300, metadata=lambda i: json.dumps({"call_id": f"c{i // 3}"}) if i < 290 else None)
    grouped, missing = labels.assign_splits(calls, labels.Splits(shares=splits.shares, split_by="call_id"))
    by_call = {}
    for group, split in zip(grouped["group"].to_pylist(), grouped["split"].to_pylist()):
        assert by_call.setdefault(group, split) == split
    assert missing == 10 and len(by_call) == 97 + 10

    # A recording keeps its split when the output grows and the export runs again.
    again, _ = labels.assign_splits(_split_table(2500), splits)
    before = dict(zip(table["row_id"].to_pylist(), table["split"].to_pylist()))
    after = dict(zip(again["row_id"].to_pylist(), again["split"].to_pylist()))
    assert all(after[k] == v for k, v in before.items())


def test_replay_takes_its_share_of_the_train_rows_from_other_languages_in_train_groups():
    recordings = [recording(f"de{i}", language="de-DE") for i in range(40)] + \
                 [recording(f"en{i}") for i in range(40)]
    segments = [segment(r["row_id"], 0, 0, 3, language=r["language"]) for r in recordings]
    splits = labels.Splits(shares={"train": 0.75, "test": 0.25})
    table = labels.judge(labels.utterances(*tables(recordings, segments)), labels.Filters(languages=("de-DE",)))
    table, _ = labels.assign_splits(table, splits)
    train = sum(1 for r in table.to_pylist() if r["in_languages"] and r["split"] == "train")
    pool = labels.replay_pool(table.filter(pa.compute.invert(table["in_languages"])))
    assert set(pool["split"].to_pylist()) == {"train"} and set(pool["language"].to_pylist()) == {"en-US"}
    wanted = labels.replay_count(train, 0.2)
    assert wanted == round(train / 4)  # 20 % of the train rows: replay = in-domain x 0.2 / 0.8
    final = labels.finish(table, labels.choose_replay(pool, wanted, seed=0))
    rows = final.to_pylist()
    kept_train = [r for r in rows if r["reason"] is None and r["split"] == "train"]
    assert sum(r["replay"] for r in kept_train) == wanted
    assert sum(r["replay"] for r in kept_train) / len(kept_train) == pytest.approx(0.2, abs=0.02)
    assert all(r["reason"] == "language" for r in rows if r["language"] == "en-US" and not r["replay"])
    assert not any(r["replay"] for r in rows if r["split"] != "train")

    # Replay from another output: never a recording this output has; appended as replay rows.
    other = labels.assign_splits(labels.judge(labels.utterances(*tables(
        [recording("de0"), recording("x1", language="fr-FR")],
        [segment("de0", 0, 0, 3), segment("x1", 0, 0, 3, language="fr-FR")])), labels.Filters()),
        labels.Splits(shares={"train": 1.0}))[0]
    pool = labels.replay_pool(other, exclude_row_ids=pa.compute.unique(table["row_id"]))
    assert pool["row_id"].to_pylist() == ["x1"]
    final = labels.finish(table, labels.choose_replay(pool, 5, seed=0))
    assert final.num_rows == table.num_rows + 1 and final.to_pylist()[-1]["replay"]


def test_label_text_with_and_without_language_tags():
    sentences = [{"text": "Guten Tag.", "language": "de-DE"}, {"text": "Hello.", "language": None}]
    assert labels.label_text("Guten Tag. Hello.", sentences, "en-US", tags=False) == "Guten Tag. Hello."
    assert labels.label_text("Guten Tag. Hello.", sentences, "en-US", tags=True) == "Guten Tag.<de-DE> Hello.<en-US>"
    assert labels.label_text("Hola.", [], "es-ES", tags=True) == "Hola.<es-ES>"


def test_utterance_ids_have_no_dots_and_name_channel_and_index():
    assert labels.utterance_id("3f2a", 1, 3) == "3f2a-c1-0003" and labels.utterance_id("3f2a", None, 12) == \
        "3f2a-m-0012"


def test_an_output_with_no_segments_selects_nothing_without_failing():
    table = labels.utterances(*tables([recording("failed", error="fetch: file not found: x.wav")], []))
    filters = labels.Filters(min_confidence=0.5, max_per_text=1, languages=("de-DE",), max_chars_per_second=20)
    table, missing = labels.assign_splits(labels.judge(table, filters), labels.Splits())
    final = labels.finish(table, labels.choose_replay(labels.replay_pool(table), 3, seed=0))
    assert final.num_rows == 0 and missing == 0 and labels.counts_by_reason(final) == {}


def test_a_slices_utterances_are_placed_in_its_file():
    """A recording that is a slice (NeMo offset) has segment times from the slice's start: its utterances are cut
    from the file at the slice's offset plus those times; a whole file's stay as they are."""
    recordings = [recording("slice", audio_offset=120.5), recording("whole")]
    segments = [segment("slice", 0, 0.25, 3.0), segment("whole", 0, 0.25, 3.0)]
    got = {r["utt_id"]: (r["start"], r["end"], r["duration"])
           for r in labels.utterances(*tables(recordings, segments)).to_pylist()}
    assert got == {"slice-m-0000": (120.75, 123.5, 2.75), "whole-m-0000": (0.25, 3.0, 2.75)}
