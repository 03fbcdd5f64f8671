"""Tests for pipeline.scoring: the normaliser, per-row scores and corpus totals."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.scoring import (
    CER_PRIMARY_LANGUAGES,
    CorpusScore,
    Score,
    corpus_score,
    normalize_text,
    primary_metric_for,
    score,
)


# --- normalize_text -------------------------------------------------------------------


def test_normalize_case_and_punctuation() -> None:
    assert normalize_text("Hello, World!") == "hello world"
    assert normalize_text("  Well-known   $5 (approx.)  ") == "well known 5 approx"


def test_normalize_nfkc_full_width() -> None:
    assert normalize_text("ＨＥＬＬＯ ｗｏｒｌｄ１２") == "hello world12"


def test_normalize_composed_and_decomposed_agree() -> None:
    composed = "Caf\u00e9"
    decomposed = "Cafe\u0301"
    assert composed != decomposed
    assert normalize_text(composed) == normalize_text(decomposed) == "caf\u00e9"


def test_normalize_casefold() -> None:
    assert normalize_text("STRASSE Straße") == "strasse strasse"


def test_normalize_apostrophes() -> None:
    assert normalize_text("Don't stop, 'quoted' dogs' rock'n'roll") == "don't stop quoted dogs rock'n'roll"
    # The typographic apostrophe is folded to the ASCII one inside a word.
    assert normalize_text("Don\u2019t") == "don't"
    assert normalize_text("L'eau") == "l'eau"


def test_normalize_removes_language_tags() -> None:
    assert normalize_text("Hallo Welt.<de-DE> Hello world.<en-US>") == "hallo welt hello world"
    assert normalize_text("he<es-ES>llo") == "he llo"


def test_normalize_cjk_punctuation() -> None:
    assert normalize_text("今日は、良い天気です。") == "今日は 良い天気です"


# --- score ----------------------------------------------------------------------------


def test_word_errors_hand_computed() -> None:
    # 1 substitution (sat -> sit) + 1 deletion (the) over 6 reference words.
    s = score("the cat sat on the mat", "the cat sit on mat")
    assert s.word_errors == 2
    assert s.ref_words == 6
    assert s.wer == 2 / 6
    # Characters: 22 in the reference (spaces count); a -> i (1) + deleting "the " (4) = 5.
    assert s.char_errors == 5
    assert s.ref_chars == 22
    assert s.cer == 5 / 22
    assert s.primary_metric == "wer"
    assert s.primary == 2 / 6


def test_cer_hand_computed_short_pair() -> None:
    # kitten -> sitting: k->s, e->i, +g = 3 edits over 6 characters.
    s = score("kitten", "sitting")
    assert (s.char_errors, s.ref_chars, s.cer) == (3, 6, 0.5)
    assert (s.word_errors, s.ref_words, s.wer) == (1, 1, 1.0)


def test_spaces_count_as_characters() -> None:
    # "ab cd" -> "abcd": one deleted space over 5 characters; as words, 1 sub + 1 del over 2.
    s = score("ab cd", "abcd")
    assert (s.char_errors, s.ref_chars, s.cer) == (1, 5, 0.2)
    assert (s.word_errors, s.ref_words, s.wer) == (2, 2, 1.0)


def test_case_and_punctuation_folded_but_raw_counts_them() -> None:
    s = score("Hello, World!", "hello world")
    assert s.wer == 0.0
    assert s.cer == 0.0
    assert s.word_errors == 0
    assert s.char_errors == 0
    # Raw tokens "Hello," "World!" vs "hello" "world": 2 substitutions over 2.
    assert s.raw_wer == 1.0
    # Raw chars: H->h, W->w, delete "," and "!" = 4 over 13.
    assert s.raw_cer == 4 / 13


def test_full_width_letters_score_zero_after_nfkc() -> None:
    s = score("hello world", "ＨＥＬＬＯ ｗｏｒｌｄ")
    assert (s.wer, s.cer) == (0.0, 0.0)
    assert s.raw_wer == 1.0


def test_composed_vs_decomposed_score_zero_after_nfkc() -> None:
    s = score("caf\u00e9", "cafe\u0301")
    assert (s.wer, s.cer) == (0.0, 0.0)
    # Raw: é vs e + combining acute = 1 substitution + 1 insertion over 4 characters.
    assert s.raw_wer == 1.0
    assert s.raw_cer == 0.5


def test_apostrophes_kept_so_contractions_count() -> None:
    assert score("don't", "don\u2019t").wer == 0.0
    s = score("don't go", "dont go")
    assert (s.word_errors, s.ref_words, s.wer) == (1, 2, 0.5)
    assert (s.char_errors, s.ref_chars) == (1, 8)


def test_language_tags_in_hypothesis_ignored_when_normalised() -> None:
    s = score("Hallo Welt. Hello world.", "Hallo Welt.<de-DE> Hello world.<en-US>")
    assert (s.wer, s.cer) == (0.0, 0.0)
    # Raw: "Welt.<de-DE>" and "world.<en-US>" are substituted tokens, 2 of 4.
    assert s.raw_wer == 0.5


def test_japanese_cer_hand_computed() -> None:
    s = score("今日は良い天気です", "今日は悪い天気です", language="ja-JP")
    assert s.primary_metric == "cer"
    assert (s.char_errors, s.ref_chars) == (1, 9)
    assert s.cer == 1 / 9
    assert s.primary == 1 / 9
    # One whitespace token each: WER is 1 substitution over 1 "word" — why CER is primary.
    assert (s.word_errors, s.ref_words, s.wer) == (1, 1, 1.0)


def test_japanese_final_punctuation_is_ignored() -> None:
    s = score("今日は良い天気です。", "今日は良い天気です", language="ja-JP")
    assert (s.char_errors, s.ref_chars, s.cer) == (0, 9, 0.0)


@pytest.mark.parametrize(
    ("language", "metric"),
    [
        ("ja-JP", "cer"),
        ("ko-KR", "cer"),
        ("zh-CN", "cer"),
        ("th-TH", "cer"),
        ("zh_TW", "cer"),
        ("ja", "cer"),
        ("JA-jp", "cer"),
        ("en-US", "wer"),
        ("de-DE", "wer"),
        ("jav-ID", "wer"),
        ("", "wer"),
        (None, "wer"),
    ],
)
def test_primary_metric(language: str | None, metric: str) -> None:
    assert primary_metric_for(language) == metric
    assert score("a", "a", language=language).primary_metric == metric


def test_cer_primary_languages() -> None:
    assert CER_PRIMARY_LANGUAGES == {"ja", "ko", "zh", "th"}


def test_empty_reference_rates_none_but_insertions_counted() -> None:
    s = score("", "uh huh")
    assert (s.wer, s.cer, s.raw_wer, s.raw_cer) == (None, None, None, None)
    assert (s.word_errors, s.ref_words) == (2, 0)
    assert (s.char_errors, s.ref_chars) == (6, 0)
    assert s.primary is None


def test_reference_empty_after_normalisation() -> None:
    s = score("!!! ...", "")
    assert (s.wer, s.cer) == (None, None)
    assert (s.word_errors, s.ref_words, s.char_errors, s.ref_chars) == (0, 0, 0, 0)
    # The raw reference does have two tokens and 7 characters, all deleted.
    assert s.raw_wer == 1.0
    assert s.raw_cer == 1.0


def test_both_empty() -> None:
    s = score("", "")
    assert s == Score(
        wer=None,
        cer=None,
        raw_wer=None,
        raw_cer=None,
        word_errors=0,
        ref_words=0,
        char_errors=0,
        ref_chars=0,
        primary_metric="wer",
    )


def test_empty_hypothesis_is_all_deletions() -> None:
    s = score("a b", "")
    assert (s.word_errors, s.ref_words, s.wer) == (2, 2, 1.0)
    assert (s.char_errors, s.ref_chars, s.cer) == (3, 3, 1.0)


def test_insertions_can_push_wer_above_one() -> None:
    s = score("yes", "yes yes yes")
    assert (s.word_errors, s.ref_words, s.wer) == (2, 1, 2.0)


def test_score_is_frozen() -> None:
    s = score("a", "a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.wer = 1.0  # type: ignore[misc]


# --- corpus_score ---------------------------------------------------------------------


def test_corpus_score_sums_counts_not_mean_of_rates() -> None:
    nine = "one two three four five six seven eight nine"  # 9 words, 36 letters + 8 spaces = 44 chars
    rows = [
        score("a", "b"),  # 1/1 word, 1/1 char
        score(nine, nine),  # 0/9 words, 0/44 chars
        score("", "x"),  # empty reference: 1 inserted word, 1 inserted char, rate None
    ]
    assert [r.wer for r in rows] == [1.0, 0.0, None]
    mean_of_row_wers = (1.0 + 0.0) / 2
    c = corpus_score(rows)
    assert c == CorpusScore(
        rows=3,
        wer=2 / 10,
        cer=2 / 45,
        word_errors=2,
        ref_words=10,
        char_errors=2,
        ref_chars=45,
    )
    assert c.wer != mean_of_row_wers


def test_corpus_score_accepts_a_generator() -> None:
    pairs = [("the cat sat on the mat", "the cat sit on mat"), ("kitten", "sitting")]
    c = corpus_score(score(r, h) for r, h in pairs)
    assert (c.rows, c.word_errors, c.ref_words, c.wer) == (2, 3, 7, 3 / 7)
    assert (c.char_errors, c.ref_chars, c.cer) == (8, 28, 8 / 28)


def test_corpus_score_empty() -> None:
    assert corpus_score([]) == CorpusScore(
        rows=0, wer=None, cer=None, word_errors=0, ref_words=0, char_errors=0, ref_chars=0
    )
