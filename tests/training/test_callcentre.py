"""The call-centre domain (training.callcentre): the plain files parse, sentences are grammatical fillings, and the
held-out class is fixed by the text alone, so a test set from any seed is held out from training on any seed."""

from __future__ import annotations

import random
import re

import pytest

from training import callcentre

LOCALES = ("de-DE", "en-US", "es-ES", "fr-FR")


def test_every_locale_has_templates_and_slots_that_resolve() -> None:
    assert callcentre.locales() == LOCALES
    for locale in LOCALES:
        grammar = callcentre.load(locale)
        assert len(grammar.templates) >= 30, locale
        assert 150 <= len(grammar.words) <= 500, locale  # a narrow domain: a few hundred words
        assert all(n >= 1 for n in grammar.template_capacity)
        assert sum(grammar.template_capacity) > 1_000_000, locale


def test_sentences_are_filled_capitalised_and_punctuated() -> None:
    rng = random.Random(0)
    for locale in LOCALES:
        grammar = callcentre.load(locale)
        for _ in range(300):
            _, sentence = grammar.draw(rng)
            assert "{" not in sentence and "}" not in sentence
            first = next(ch for ch in sentence if ch.isalpha())
            assert first.isupper(), sentence
            assert sentence[-1] in ".?!", sentence
            assert not re.search(r"\s{2}|\s[,.?]", sentence), sentence
            assert set(callcentre._words(sentence)) <= grammar.words


def test_heldout_class_is_a_tenth_of_large_templates_and_never_a_fixed_phrase() -> None:
    rng = random.Random(1)
    grammar = callcentre.load("en-US")
    large = [s for i, s in (grammar.draw(rng) for _ in range(4000)) if grammar.heldout_eligible(i)]
    share = sum(callcentre.is_heldout("en-US", s) for s in large) / len(large)
    assert 0.06 < share < 0.14
    assert not callcentre.is_heldout("en-US", "Please hold the line.")
    assert all(not callcentre.is_heldout("en-US", s) for s in grammar.small_template_sentences)


def test_training_never_draws_a_heldout_sentence_and_pools_only_do() -> None:
    for locale in LOCALES:
        train = callcentre.TrainSentences(locale, random.Random(3))
        drawn = {train.next() for _ in range(3000)}
        assert not any(callcentre.is_heldout(locale, s) for s in drawn)
        for seed in (0, 1):
            pool = callcentre.heldout_pool(locale, 100, seed)
            assert len(set(pool)) == 100 and all(callcentre.is_heldout(locale, s) for s in pool)
            assert not set(pool) & drawn
        assert callcentre.heldout_pool(locale, 50, 0) == callcentre.heldout_pool(locale, 50, 0)
        assert callcentre.heldout_pool(locale, 50, 0) != callcentre.heldout_pool(locale, 50, 1)


def test_a_broken_domain_file_is_a_clear_error(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "xx-XX"
    folder.mkdir()
    (folder / "templates.txt").write_text("Call {nobody}.\n")
    (folder / "slots.txt").write_text("[somebody]\nAnna\n")
    monkeypatch.setattr(callcentre, "DOMAIN_DIR", tmp_path)
    callcentre.load.cache_clear()
    try:
        with pytest.raises(callcentre.DomainError, match="undefined slots"):
            callcentre.load("xx-XX")
        (folder / "slots.txt").write_text("[nobody]\nme {nobody}\n")
        with pytest.raises(callcentre.DomainError, match="refers to itself"):
            callcentre.load("xx-XX")
    finally:
        callcentre.load.cache_clear()
