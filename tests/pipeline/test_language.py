"""Tests for pipeline.language: splitting, stripping and shares of language-tagged text."""

from __future__ import annotations

import dataclasses
import re

import pytest

from pipeline.language import (
    LANG_TAG_PATTERN,
    LANG_TAG_RE,
    LanguageSpan,
    dominant_language,
    language_shares,
    split_by_language,
    strip_language_tags,
    tags_in,
)

MULTI = "Hallo Welt.<de-DE> Hello world.<en-US> Hola mundo.<es-ES>"


def test_pattern_is_the_documented_one() -> None:
    assert LANG_TAG_PATTERN == r"<([a-z]{2,3}-[A-Z]{2})>"
    assert isinstance(LANG_TAG_RE, re.Pattern)
    assert LANG_TAG_RE.pattern == LANG_TAG_PATTERN


def test_several_sentences_in_several_languages() -> None:
    assert split_by_language(MULTI) == [
        LanguageSpan("Hallo Welt.", "de-DE"),
        LanguageSpan("Hello world.", "en-US"),
        LanguageSpan("Hola mundo.", "es-ES"),
    ]
    assert tags_in(MULTI) == ["de-DE", "en-US", "es-ES"]


def test_tag_only_at_the_very_end_closes_all_the_text() -> None:
    raw = "Bonjour tout le monde. Comment ça va?<fr-FR>"
    assert split_by_language(raw) == [
        LanguageSpan("Bonjour tout le monde. Comment ça va?", "fr-FR"),
    ]


def test_no_tag_at_all_gives_one_untagged_span() -> None:
    assert split_by_language("just some text") == [LanguageSpan("just some text", None)]
    assert tags_in("just some text") == []


def test_trailing_untagged_text_gets_none_or_the_fallback() -> None:
    raw = "Hallo Welt.<de-DE> and then some"
    assert split_by_language(raw) == [
        LanguageSpan("Hallo Welt.", "de-DE"),
        LanguageSpan("and then some", None),
    ]
    assert split_by_language(raw, fallback="en-US") == [
        LanguageSpan("Hallo Welt.", "de-DE"),
        LanguageSpan("and then some", "en-US"),
    ]


def test_tag_glued_to_a_word() -> None:
    raw = "dijo que he<es-ES> said hi<en-US>"
    assert split_by_language(raw) == [
        LanguageSpan("dijo que he", "es-ES"),
        LanguageSpan("said hi", "en-US"),
    ]
    assert strip_language_tags(raw) == "dijo que he said hi"


def test_two_tags_in_a_row_drop_the_empty_span_but_tags_in_keeps_them() -> None:
    raw = "Hallo.<de-DE><de-DE> Hi.<en-US>"
    assert split_by_language(raw) == [
        LanguageSpan("Hallo.", "de-DE"),
        LanguageSpan("Hi.", "en-US"),
    ]
    assert tags_in(raw) == ["de-DE", "de-DE", "en-US"]
    # The text before the first of two different tags belongs to that first tag.
    assert split_by_language("Hola.<es-ES><en-US>") == [LanguageSpan("Hola.", "es-ES")]
    assert tags_in("Hola.<es-ES><en-US>") == ["es-ES", "en-US"]


def test_leading_tag_and_tag_only_text_give_no_spans() -> None:
    assert split_by_language("<en-US>Hello.<de-DE>") == [LanguageSpan("Hello.", "de-DE")]
    assert split_by_language("<de-DE>") == []
    assert split_by_language("   ") == []
    assert split_by_language("") == []


def test_leading_and_inner_whitespace_is_stripped_and_collapsed() -> None:
    raw = "   Hallo   Welt.<de-DE>\t  Hi.<en-US>  rest  "
    assert split_by_language(raw) == [
        LanguageSpan("Hallo Welt.", "de-DE"),
        LanguageSpan("Hi.", "en-US"),
        LanguageSpan("rest", None),
    ]


def test_three_letter_language_code() -> None:
    assert split_by_language("你好<yue-HK>") == [LanguageSpan("你好", "yue-HK")]


def test_things_that_are_not_locale_tags_are_left_alone() -> None:
    raw = "a <unk> b <EN-us> c <en-us> d"
    assert tags_in(raw) == []
    assert strip_language_tags(raw) == raw
    assert split_by_language(raw) == [LanguageSpan(raw, None)]


def test_strip_language_tags() -> None:
    assert strip_language_tags("Hola.<es-ES> Hi") == "Hola. Hi"
    assert strip_language_tags("he<es-ES>") == "he"
    assert strip_language_tags("Hello<en-US>Hallo") == "Hello Hallo"
    assert strip_language_tags("  Hola.<es-ES>   Hi  there <en-US> ") == "Hola. Hi there"
    assert strip_language_tags(MULTI) == "Hallo Welt. Hello world. Hola mundo."
    assert strip_language_tags("<de-DE><en-US>") == ""
    for raw in (MULTI, "he<es-ES>", "x<de-DE><de-DE>y<en-US>", "<fr-FR>a"):
        assert "<" not in strip_language_tags(raw)


@pytest.mark.parametrize(
    "raw",
    [
        MULTI,
        "dijo que he<es-ES> said hi<en-US>",
        "Hallo.<de-DE><de-DE> Hi.<en-US>",
        "   Hallo   Welt.<de-DE>\t  Hi.<en-US>  rest  ",
        "no tags here",
        "<en-US>",
        "",
    ],
)
def test_joined_spans_equal_stripped_text(raw: str) -> None:
    assert " ".join(s.text for s in split_by_language(raw)) == strip_language_tags(raw)


def test_language_span_is_frozen() -> None:
    span = LanguageSpan("a", "en-US")
    with pytest.raises(dataclasses.FrozenInstanceError):
        span.text = "b"  # type: ignore[misc]


def test_language_shares_by_characters() -> None:
    # "Guten Tag." is 10 characters, "Hi." 3, "Servus." 7: de-DE 17, en-US 3.
    spans = split_by_language("Guten Tag.<de-DE> Hi.<en-US> Servus.<de-DE>")
    shares = language_shares(spans)
    assert shares == {"de-DE": 17 / 20, "en-US": 3 / 20}
    assert list(shares) == ["de-DE", "en-US"]
    assert shares["de-DE"] == 0.85
    assert shares["en-US"] == 0.15


def test_language_shares_untagged_text_ignored_or_counted_for_fallback() -> None:
    # "Hallo Welt." is 11 characters, the untagged "okay" 4.
    spans = split_by_language("Hallo Welt.<de-DE> okay")
    assert language_shares(spans) == {"de-DE": 1.0}
    assert language_shares(spans, fallback="en-US") == {"de-DE": 11 / 15, "en-US": 4 / 15}
    # The fallback merges with the same tagged language.
    assert language_shares(spans, fallback="de-DE") == {"de-DE": 1.0}


def test_language_shares_empty() -> None:
    assert language_shares([]) == {}
    assert language_shares(split_by_language("untagged")) == {}
    assert language_shares(split_by_language("untagged"), fallback="fr-FR") == {"fr-FR": 1.0}


def test_dominant_language_by_characters_not_by_span_count() -> None:
    # en-US has two spans ("Hi." + "Yo." = 6 characters) but de-DE has more characters (10).
    spans = split_by_language("Hi.<en-US> Guten Tag.<de-DE> Yo.<en-US>")
    assert dominant_language(spans) == "de-DE"


def test_dominant_language_ties_go_to_first_occurrence() -> None:
    assert dominant_language(split_by_language("abc<en-US> xyz<de-DE>")) == "en-US"
    assert dominant_language(split_by_language("xyz<de-DE> abc<en-US>")) == "de-DE"
    # de-DE 2 + 2 = 4, en-US 4: a tie, de-DE was seen first.
    assert dominant_language(split_by_language("ab<de-DE> abcd<en-US> cd<de-DE>")) == "de-DE"


def test_dominant_language_falls_back_when_nothing_is_tagged() -> None:
    assert dominant_language([]) is None
    assert dominant_language([], fallback="fr-FR") == "fr-FR"
    untagged = split_by_language("no tags at all")
    assert dominant_language(untagged) is None
    assert dominant_language(untagged, fallback="fr-FR") == "fr-FR"


def test_dominant_language_forced_target_with_other_tags_emitted() -> None:
    # Forced de-DE; the model tagged a short English sentence and left the rest untagged.
    spans = split_by_language("Hi.<en-US> Das ist ein langer deutscher Satz")
    assert dominant_language(spans, fallback="de-DE") == "de-DE"
    assert dominant_language(spans) == "en-US"
