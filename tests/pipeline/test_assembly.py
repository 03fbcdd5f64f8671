"""Tests for pipeline.assembly: a transcribed recording (its segments nested) into its output row (segments in order,
overlap words kept once, language from tags, conversation view, scores, run columns, errors)."""

from __future__ import annotations

import random

import pytest

from pipeline import assembly
from pipeline.assembly import RunInfo, assemble_block
from pipeline.records import ASSEMBLED_SCHEMA, TRANSCRIBED_SCHEMA, to_table
from pipeline.scoring import score

RUN = RunInfo(run_id="20260101T000000Z-abc123", model="s3://b/models/tiny.nemo", att_context_size=(56, 13))
SCORE_FIELDS = ("wer", "cer", "raw_wer", "raw_cer", "word_errors", "ref_words", "char_errors", "ref_chars")


def _seg(index: int | None, start: float | None, end: float | None, raw_text: str | None, *, channel: int | None = None,
         overlap: float = 0.0, target_lang: str = "auto", **extra) -> dict:
    """One transcribed segment with its recording's fields (the recording is built from them by `_recording`)."""
    row = {name: None for name in TRANSCRIBED_SCHEMA.names}
    row.update(row_id="rec-1", audio_filepath="calls/a.wav", audio_url="/data/calls/a.wav", manifest="/data/m.jsonl",
               line=4, manifest_duration=30.0, metadata='{"call_id": "c-1"}', segment_index=index, channel=channel,
               start=start, end=end, overlap_before=overlap if index is not None else None,
               channel_mode="mix" if channel is None else "split", source_sample_rate=44100,
               source_channels=1 if channel is None else 2, target_lang=target_lang, prompt_locale=target_lang,
               raw_text=raw_text, num_tokens=None if raw_text is None else len(raw_text.split()))
    row.update(extra)
    return row


def _error_row(error: str, **extra) -> dict:
    """A recording that failed before it was cut (or, beside segments, after some were): its `stage: message`."""
    return _seg(None, None, None, None, error=error, **{"source_sample_rate": None, "source_channels": None, **extra})


def _split_error(error: str | None) -> tuple[str | None, str | None]:
    if not error:
        return None, None
    stage, _, message = error.partition(": ")
    return stage, message


def _recording(rows: list[dict]) -> dict:
    """The TRANSCRIBED row of one recording from `_seg` rows: the recording's fields, its segments nested, its
    error (from an `_error_row`), its duration (the end of its last segment, as decoding reports it)."""
    segment_keys = {"segment_index", "channel", "start", "end", "overlap_before", "raw_text", "num_tokens", "words",
                    "confidence", "error", "error_stage"}
    failed = [r for r in rows if r["segment_index"] is None]
    base = failed[0] if failed else rows[0]
    recording = {k: v for k, v in base.items() if k not in segment_keys}
    recording["error_stage"], recording["error"] = _split_error(failed[0]["error"] if failed else None)
    segments = []
    for r in rows:
        if r["segment_index"] is None:
            continue
        segment = {k: r.get(k) for k in segment_keys}
        segment["error_stage"], segment["error"] = _split_error(r.get("error"))
        segments.append(segment)
    recording["segments"] = segments
    recording["duration"] = max((x["end"] for x in segments), default=None)
    if segments:  # a recording's own fields come from its segments' rows
        recording.update(source_sample_rate=rows[-1]["source_sample_rate"] or recording["source_sample_rate"])
    return recording


def assemble_recording(rows: list[dict], run: RunInfo) -> dict:
    """assembly.assemble_recording over `_seg` rows; errors read back as `stage: message` for the assertions."""
    out = assembly.assemble_recording(_recording(rows), run)
    if out["error"]:
        out["error"] = f"{out['error_stage']}: {out['error']}"
    for segment in out["segments"]:
        if segment["error"]:
            segment["error"] = f"{segment['error_stage']}: {segment['error']}"
    return out


def assemble_group(table, run: RunInfo):
    return assemble_block(to_table([_recording(table)], TRANSCRIBED_SCHEMA), run)


# --- order and overlap ----------------------------------------------------------------------------------------------


def test_segments_reordered_by_index() -> None:
    rows = [_seg(0, 0.0, 10.0, "one two<en-US>"), _seg(1, 10.0, 20.0, "three four<en-US>"),
            _seg(2, 20.0, 25.5, "five<en-US>"), _seg(3, 25.5, 30.0, "six<en-US>")]
    expected = assemble_recording(rows, RUN)
    assert expected["text"] == "one two three four five six"
    assert [s["segment_index"] for s in expected["segments"]] == [0, 1, 2, 3]
    assert [s["text"] for s in expected["segments"]] == ["one two", "three four", "five", "six"]
    assert [(s["start"], s["end"]) for s in expected["segments"]] == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.5),
                                                                      (25.5, 30.0)]
    assert (expected["num_segments"], expected["duration"]) == (4, 30.0)
    for seed in range(5):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        assert assemble_recording(shuffled, RUN) == expected


def test_forced_cut_overlap_removes_shared_words() -> None:
    rows = [_seg(1, 19.0, 30.0, "For calling, how can I help?<en-US>", overlap=1.0),
            _seg(0, 0.0, 20.0, "thank you for calling<en-US>")]
    rec = assemble_recording(rows, RUN)
    assert rec["text"] == "thank you for calling how can I help?"
    assert [s["text"] for s in rec["segments"]] == ["thank you for calling", "how can I help?"]
    assert rec["duration"] == 30.0


def test_pause_cut_keeps_repeated_words() -> None:
    """Without overlap (a cut at a pause) a repetition is speech, not a duplicate."""
    rows = [_seg(0, 0.0, 20.0, "thank you for calling<en-US>"),
            _seg(1, 20.0, 30.0, "for calling how can I help<en-US>", overlap=0.0)]
    rec = assemble_recording(rows, RUN)
    assert rec["text"] == "thank you for calling for calling how can I help"
    assert [s["text"] for s in rec["segments"]] == ["thank you for calling", "for calling how can I help"]


def test_overlap_is_merged_against_the_unmerged_previous_segment() -> None:
    """Three forced cuts in a row: each segment is compared with the previous segment's own words."""
    rows = [_seg(0, 0.0, 20.0, "a b c d"), _seg(1, 19.0, 39.0, "c d e f", overlap=1.0),
            _seg(2, 38.0, 50.0, "e f g", overlap=1.0)]
    rec = assemble_recording(rows, RUN)
    assert [s["text"] for s in rec["segments"]] == ["a b c d", "e f", "g"]
    assert rec["text"] == "a b c d e f g"


# --- language -------------------------------------------------------------------------------------------------------


def test_tags_stripped_and_language_shares_by_characters() -> None:
    # 11 characters of German, 32 of English.
    rows = [_seg(0, 0.0, 12.0, "Hallo Welt.<de-DE>"), _seg(1, 12.0, 30.0, "Good morning, how are you today?<en-US>")]
    rec = assemble_recording(rows, RUN)
    assert rec["text"] == "Hallo Welt. Good morning, how are you today?"
    assert "<" not in rec["text"]
    assert rec["language"] == "en-US"
    assert rec["language_shares"] == pytest.approx({"de-DE": 11 / 43, "en-US": 32 / 43})
    assert list(rec["language_shares"]) == ["de-DE", "en-US"]  # first-occurrence order
    assert [(s["text"], s["language"]) for s in rec["segments"]] == [
        ("Hallo Welt.", "de-DE"), ("Good morning, how are you today?", "en-US")]
    assert rec.get("raw_text") is None  # keep_raw_text False by default
    assert all(s["raw_text"] is None for s in rec["segments"])
    assert all(rec.get(f) is None for f in SCORE_FIELDS)  # no reference, no scores


def test_untagged_text_in_auto_mode_has_no_language() -> None:
    rec = assemble_recording([_seg(0, 0.0, 2.0, "just words")], RUN)
    assert (rec["text"], rec["language"], rec["language_shares"]) == ("just words", None, {})
    tail = assemble_recording([_seg(0, 0.0, 2.0, "Hola.<es-ES> and then some untagged words")], RUN)
    assert (tail["text"], tail["language"], tail["language_shares"]) == (
        "Hola. and then some untagged words", "es-ES", {"es-ES": 1.0})


def test_forced_target_lang_is_the_fallback() -> None:
    plain = assemble_recording([_seg(0, 0.0, 2.0, "guten tag", target_lang="de-DE")], RUN)
    assert (plain["text"], plain["language"], plain["language_shares"], plain["target_lang"]) == (
        "guten tag", "de-DE", {"de-DE": 1.0}, "de-DE")
    assert plain["segments"][0]["language"] == "de-DE" and plain["segments"][0]["target_lang"] == "de-DE"
    # 'hello' (5) tagged en-US; 'guten tag wie geht es' (21) untagged, so the forced locale's.
    mixed = assemble_recording([_seg(0, 0.0, 2.0, "hello<en-US>", target_lang="de-DE"),
                                _seg(1, 2.0, 5.0, "guten tag wie geht es", target_lang="de-DE")], RUN)
    assert mixed["text"] == "hello guten tag wie geht es"
    assert mixed["language"] == "de-DE"
    assert mixed["language_shares"] == pytest.approx({"en-US": 5 / 26, "de-DE": 21 / 26})
    assert [s["language"] for s in mixed["segments"]] == ["en-US", "de-DE"]


def test_language_shares_count_overlap_words_once() -> None:
    rows = [_seg(0, 0.0, 20.0, "uno dos tres<es-ES>"),
            _seg(1, 19.0, 30.0, "uno dos tres<es-ES> good morning everyone<en-US>", overlap=1.0)]
    rec = assemble_recording(rows, RUN)
    assert rec["text"] == "uno dos tres good morning everyone"  # holds today
    # The text has 12 characters of Spanish and 21 of English.
    assert rec["language_shares"] == pytest.approx({"es-ES": 12 / 33, "en-US": 21 / 33})
    assert rec["language"] == "en-US"


# --- split mode -----------------------------------------------------------------------------------------------------


def test_split_mode_conversation() -> None:
    run = RunInfo("run", "m", (56, 13), channel_names=("agent",))
    rows = [
        _seg(1, 12.0, 24.0, "anything else<en-US>", channel=0),
        _seg(0, 0.0, 6.0, "hello how can I help<en-US>", channel=0),
        _seg(0, 0.0, 5.0, "", channel=2),  # a silent third channel: no turn
        _seg(1, 6.0, 12.0, "my order is late<en-US>", channel=1),
        _seg(0, 3.0, 6.0, "hi<en-US>", channel=1),  # the customer answers after the agent
        _seg(2, 12.0, 24.0, "no thanks<en-US>", channel=1),
    ]
    random.Random(1).shuffle(rows)
    rec = assemble_recording(rows, run)
    assert rec["channel_mode"] == "split"
    assert [(s["channel"], s["segment_index"], s["speaker"]) for s in rec["segments"]] == [
        (0, 0, "agent"), (0, 1, "agent"), (1, 0, "channel_1"), (1, 1, "channel_1"), (1, 2, "channel_1"),
        (2, 0, "channel_2")]
    assert rec["conversation"] == [
        {"start": 0.0, "end": 6.0, "channel": 0, "speaker": "agent", "text": "hello how can I help"},
        {"start": 3.0, "end": 6.0, "channel": 1, "speaker": "channel_1", "text": "hi"},
        {"start": 6.0, "end": 12.0, "channel": 1, "speaker": "channel_1", "text": "my order is late"},
        {"start": 12.0, "end": 24.0, "channel": 0, "speaker": "agent", "text": "anything else"},
        {"start": 12.0, "end": 24.0, "channel": 1, "speaker": "channel_1", "text": "no thanks"},
    ]
    assert rec["text"] == " ".join(t["text"] for t in rec["conversation"]) == (
        "hello how can I help hi my order is late anything else no thanks")
    assert (rec["num_segments"], rec["duration"], rec["error"]) == (6, 24.0, None)
    assert rec["language"] == "en-US" and rec["language_shares"] == {"en-US": 1.0}


def test_split_mode_overlap_is_per_channel() -> None:
    run = RunInfo("run", "m", None, channel_names=("agent", "customer"))
    rows = [_seg(0, 0.0, 6.0, "a b c", channel=0), _seg(0, 0.0, 6.0, "x y", channel=1),
            _seg(1, 5.0, 9.0, "b c d", channel=0, overlap=1.0), _seg(1, 5.0, 9.0, "y z", channel=1, overlap=1.0)]
    rec = assemble_recording(rows, run)
    assert [(s["speaker"], s["text"]) for s in rec["segments"]] == [
        ("agent", "a b c"), ("agent", "d"), ("customer", "x y"), ("customer", "z")]
    assert [t["text"] for t in rec["conversation"]] == ["a b c", "x y", "d", "z"]
    assert rec["text"] == "a b c x y d z"


def test_mix_mode_has_no_conversation_and_no_speakers() -> None:
    rec = assemble_recording([_seg(0, 0.0, 2.0, "hi<en-US>")], RunInfo("run", "m", None, channel_names=("agent",)))
    assert rec.get("conversation") is None
    assert rec["segments"][0]["speaker"] is None and rec["segments"][0]["channel"] is None


def test_run_info_speaker_names() -> None:
    run = RunInfo("run", "m", None, channel_names=("agent", "customer"))
    assert [run.speaker(c) for c in (None, 0, 1, 2, 7)] == [None, "agent", "customer", "channel_2", "channel_7"]
    assert RunInfo("run", "m", None).speaker(0) == "channel_0"
    assert run.columns() == {"model": "m", "model_fingerprint": None, "run_id": "run", "att_context_size": None}
    assert RUN.columns() == {"model": RUN.model, "model_fingerprint": None, "run_id": RUN.run_id,
                             "att_context_size": [56, 13]}


# --- errors ---------------------------------------------------------------------------------------------------------


def test_error_only_row() -> None:
    rec = assemble_recording([_error_row("fetch: file not found: /data/calls/a.wav", reference_text="hello")], RUN)
    assert rec["error"] == "fetch: file not found: /data/calls/a.wav"
    assert (rec["num_segments"], rec["segments"], rec["duration"]) == (0, [], None)
    for field in ("text", "language", "language_shares", "conversation", "raw_text", *SCORE_FIELDS):
        assert rec.get(field) is None, field
    # Source and run columns are filled on failed rows too.
    assert (rec["row_id"], rec["line"], rec["reference_text"], rec["metadata"]) == (
        "rec-1", 4, "hello", '{"call_id": "c-1"}')
    assert (rec["model"], rec["run_id"], rec["att_context_size"]) == (RUN.model, RUN.run_id, [56, 13])


def test_segment_inference_error_fails_the_recording() -> None:
    rows = [_seg(0, 0.0, 20.0, "hello there<en-US>", reference_text="hello there"),
            _seg(1, 20.0, 30.0, None, error="inference: RuntimeError: out of memory", reference_text="hello there")]
    rec = assemble_recording(rows, RUN)
    assert rec["error"] == "inference: RuntimeError: out of memory"
    for field in ("text", "language", "language_shares", *SCORE_FIELDS):
        assert rec.get(field) is None, field
    assert rec["num_segments"] == 2 and rec["duration"] == 30.0
    assert [(s.get("text"), s["error"]) for s in rec["segments"]] == [
        ("hello there", None), (None, "inference: RuntimeError: out of memory")]


def test_a_language_error_from_reading_is_the_recordings_error() -> None:
    error = "language: unknown target_lang 'xx-XX'; this checkpoint knows: en-US, auto (and their aliases)"
    rec = assemble_recording([_error_row(error, target_lang="xx-XX", prompt_locale=None)], RUN)
    assert (rec["error"], rec.get("text"), rec["num_segments"]) == (error, None, 0)
    assert rec["target_lang"] == "xx-XX" and rec["prompt_locale"] is None


def test_language_mismatch_compares_with_the_canonical_prompt_locale() -> None:
    """A row asked for `de` (prompted as de-DE): German tags are no mismatch; English tags are."""
    same = assemble_recording([_seg(0, 0.0, 2.0, "Guten Tag.<de-DE>", target_lang="de", prompt_locale="de-DE")], RUN)
    assert (same["target_lang"], same["prompt_locale"], same["language"], same["language_mismatch"]) == (
        "de", "de-DE", "de-DE", False)
    assert same["language_shares"] == {"de-DE": 1.0}
    other = assemble_recording([_seg(0, 0.0, 2.0, "Good day.<en-US>", target_lang="de", prompt_locale="de-DE")], RUN)
    assert (other["language"], other["language_mismatch"]) == ("en-US", True)


def test_failure_after_some_segments() -> None:
    """decode failed midway: the segments cut before the failure, then the error row. The recording is failed (and
    not scored); the transcript of the audio before the failure is kept."""
    rows = [_error_row("decode: audio contains NaN or Inf samples at 40.0 s", reference_text="one two",
                       source_sample_rate=44100, source_channels=1),
            _seg(0, 0.0, 30.0, "one two<en-US>", reference_text="one two")]
    rec = assemble_recording(rows, RUN)
    assert rec["error"] == "decode: audio contains NaN or Inf samples at 40.0 s"
    assert (rec["num_segments"], rec["duration"]) == (1, 30.0)
    assert [s["text"] for s in rec["segments"]] == ["one two"]
    assert rec["text"] == "one two"
    assert all(rec.get(f) is None for f in SCORE_FIELDS)


# --- scores and raw text --------------------------------------------------------------------------------------------


def test_reference_text_scored_on_the_joined_text() -> None:
    ref = "Guten Tag, alle. Wie geht es?"
    rows = [_seg(0, 0.0, 10.0, "guten tag<de-DE>", reference_text=ref),
            _seg(1, 10.0, 20.0, "wie geht's<de-DE>", reference_text=ref)]
    rec = assemble_recording(rows, RUN)
    assert rec["text"] == "guten tag wie geht's"
    expected = score(ref, "guten tag wie geht's", "de-DE")
    for field in SCORE_FIELDS:
        assert rec[field] == getattr(expected, field), field
    # Normalised: 'guten tag alle wie geht es' vs 'guten tag wie geht's': 'alle' and 'es' deleted, 'geht' -> 'geht's'.
    assert (rec["word_errors"], rec["ref_words"], rec["wer"]) == (3, 6, 0.5)


def test_reference_scored_against_text_without_tags() -> None:
    rec = assemble_recording([_seg(0, 0.0, 2.0, "hello world<en-US>", reference_text="hello world")], RUN)
    assert tuple(rec[f] for f in SCORE_FIELDS) == (0.0, 0.0, 0.0, 0.0, 0, 2, 0, 11)


def test_empty_hypothesis_is_scored() -> None:
    rec = assemble_recording([_seg(0, 0.0, 2.0, "", reference_text="hello there")], RUN)
    assert (rec["text"], rec["language"], rec["language_shares"], rec["error"]) == ("", None, {}, None)
    assert (rec["wer"], rec["word_errors"], rec["ref_words"]) == (1.0, 2, 2)
    assert rec["segments"][0]["text"] == ""


def test_keep_raw_text() -> None:
    rows = [_seg(0, 0.0, 10.0, "Hallo.<de-DE>"), _seg(1, 10.0, 20.0, "Hi there.<en-US>")]
    kept = assemble_recording(rows, RunInfo("run", "m", (56, 3), keep_raw_text=True))
    dropped = assemble_recording(rows, RunInfo("run", "m", (56, 3), keep_raw_text=False))
    assert kept["raw_text"] == "Hallo.<de-DE> Hi there.<en-US>"
    assert [s["raw_text"] for s in kept["segments"]] == ["Hallo.<de-DE>", "Hi there.<en-US>"]
    assert dropped.get("raw_text") is None
    assert [s["raw_text"] for s in dropped["segments"]] == [None, None]
    assert kept["text"] == dropped["text"] == "Hallo. Hi there."
    assert kept["att_context_size"] == [56, 3]


def test_raw_text_kept_on_a_failed_segment() -> None:
    rows = [_seg(0, 0.0, 2.0, "hello<en-US>", error="inference: boom", reference_text="hello")]
    rec = assemble_recording(rows, RunInfo("r", "m", None, keep_raw_text=True))
    assert rec["error"] == "inference: boom"
    assert rec.get("text") is None and rec.get("language") is None and rec.get("wer") is None
    assert rec["segments"][0]["raw_text"] == "hello<en-US>"
    assert rec["segments"][0].get("text") is None


# --- assemble_group ------------------------------------------------------------------------------------------------


def test_assemble_group_table() -> None:
    rows = [_seg(1, 12.0, 30.0, "Good morning, how are you today?<en-US>", reference_text="good morning"),
            _seg(0, 0.0, 12.0, "Hallo Welt.<de-DE>", reference_text="good morning")]
    table = assemble_group(rows, RUN)
    assert table.schema == ASSEMBLED_SCHEMA
    assert table.num_rows == 1
    row = table.to_pylist()[0]
    assert row["text"] == "Hallo Welt. Good morning, how are you today?"
    assert row["language"] == "en-US"
    assert dict(row["language_shares"]) == pytest.approx({"de-DE": 11 / 43, "en-US": 32 / 43})
    assert (row["num_segments"], row["duration"], row["channel_mode"], row["conversation"]) == (2, 30.0, "mix", None)
    assert (row["source_sample_rate"], row["source_channels"], row["manifest_duration"]) == (44100, 1, 30.0)
    assert (row["att_context_size"], row["run_id"], row["model"]) == ([56, 13], RUN.run_id, RUN.model)
    assert (row["metadata"], row["audio_url"], row["line"]) == ('{"call_id": "c-1"}', "/data/calls/a.wav", 4)
    assert row["wer"] == score("good morning", row["text"], "en-US").wer
    assert [(s["segment_index"], s["text"], s["language"], s["row_id"]) for s in row["segments"]] == [
        (0, "Hallo Welt.", "de-DE", "rec-1"), (1, "Good morning, how are you today?", "en-US", "rec-1")]
    assert {s["run_id"] for s in row["segments"]} == {RUN.run_id}


def test_assemble_group_error_only_keeps_schema() -> None:
    table = assemble_group([_error_row("decode: empty file (0 bytes)")], RUN)
    assert table.schema == ASSEMBLED_SCHEMA
    assert table["error"].to_pylist() == ["empty file (0 bytes)"]
    assert table["error_stage"].to_pylist() == ["decode"]
    assert table["segments"].to_pylist() == [[]]
    assert table["num_segments"].to_pylist() == [0]
    assert table["text"].to_pylist() == [None] and table["duration"].to_pylist() == [None]


@pytest.mark.parametrize("raw", ["¿", "¿<es-ES>", " . ,", "?!<en-US> ¿"])
def test_punctuation_alone_is_no_speech(raw) -> None:
    run = RunInfo("run", "m", (56, 13), channel_names=("agent", "customer"), keep_raw_text=True)
    rows = [_seg(0, 0.0, 5.0, raw, channel=1), _seg(1, 5.0, 9.0, "¿Puedo hablar con Ana?<es-ES>", channel=1),
            _seg(0, 0.0, 4.0, "Hello.<en-US>", channel=0)]
    rec = assemble_recording(rows, run)
    silent = next(s for s in rec["segments"] if (s["channel"], s["segment_index"]) == (1, 0))
    assert (silent["text"], silent["language"], silent["sentences"], silent["words"]) == ("", None, [], None)
    assert silent["raw_text"] == raw  # what the model wrote stays visible
    assert [t["text"] for t in rec["conversation"]] == ["Hello.", "¿Puedo hablar con Ana?"]
    assert rec["language_shares"] == pytest.approx({"es-ES": 22 / 28, "en-US": 6 / 28}, abs=0.05)


def _timed(words: list[tuple[str, float, float]]) -> list[dict]:
    """Model word times: seconds from the segment's start."""
    return [{"word": w, "start": s, "end": e, "confidence": None} for w, s, e in words]


def test_split_mode_turns_follow_the_words_when_they_are_timed() -> None:
    """A segment starts where the segmenter cut, often in silence: with word times the turns start at the first word,
    and a long silence inside one side's segment ends a turn, so the two sides interleave as spoken."""
    run = RunInfo("run", "m", (56, 13), channel_names=("agent", "customer"))
    agent = _seg(0, 0.0, 12.0, "Hello. Anything else?<en-US>", channel=0,
                 words=_timed([("Hello.", 0.2, 0.8), ("Anything", 8.0, 8.5), ("else?<en-US>", 8.6, 9.1)]))
    customer = _seg(0, 0.0, 12.0, "Hi, my order is late.<en-US>", channel=1,
                    words=_timed([("Hi,", 2.0, 2.3), ("my", 2.4, 2.6), ("order", 2.7, 3.0), ("is", 3.1, 3.2),
                                  ("late.<en-US>", 3.3, 3.8)]))
    rec = assemble_recording([agent, customer], run)
    assert rec["conversation"] == [
        {"start": 0.2, "end": 0.8, "channel": 0, "speaker": "agent", "text": "Hello."},
        {"start": 2.0, "end": 3.8, "channel": 1, "speaker": "customer", "text": "Hi, my order is late."},
        {"start": 8.0, "end": 9.1, "channel": 0, "speaker": "agent", "text": "Anything else?"},
    ]
    assert rec["text"] == "Hello. Hi, my order is late. Anything else?"
    # Without word times a turn is a segment, ordered by the segment's start.
    plain = assemble_recording([_seg(0, 0.0, 12.0, "Hello. Anything else?<en-US>", channel=0),
                                _seg(0, 0.0, 12.0, "Hi, my order is late.<en-US>", channel=1)], run)
    assert [t["text"] for t in plain["conversation"]] == ["Hello. Anything else?", "Hi, my order is late."]
