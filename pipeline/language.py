"""Language tags in Nemotron ASR output: splitting, stripping and language shares.

In ``auto`` mode the model closes each sentence with a locale tag, e.g.
``"Hallo Welt.<de-DE> Hello world.<en-US>"``. The tags are ordinary tokens, so
the decoder can also glue one to a word (``"he<es-ES>"``), put one only at the
very end, emit none at all, or emit them even when a language was forced. The
functions here are pure string functions (no NeMo import) so they can run on
CPU workers, in tests, and in scoring.

Choices made here (documented because callers depend on them):

* A tag *closes* a span: the text before a tag belongs to that tag's language.
* Span text and stripped text have all whitespace runs collapsed to one space
  and are stripped, so ``" ".join(s.text for s in split_by_language(t)) ==
  strip_language_tags(t)`` for every ``t``.
* Empty spans (two tags in a row, a tag at the start, whitespace-only text
  between tags) are dropped together with their tag. A tag that closes no text
  says nothing about any text, and dropping it keeps every span non-empty.
  Callers that need every emitted tag use :func:`tags_in`.
* Shares are measured in characters of span text (``len(span.text)``, spaces
  between words included), not in words, because words do not exist as
  whitespace tokens in Japanese/Chinese/Thai.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "LANG_TAG_PATTERN",
    "LANG_TAG_RE",
    "LanguageSpan",
    "dominant_language",
    "language_shares",
    "split_by_language",
    "strip_language_tags",
    "tags_in",
]

# A locale tag like <en-US> (or a three-letter language such as <yue-HK>).
# Wider than NeMo's default strip pattern (`\s*<[a-z]{2}-[A-Z]{2}>`) only in
# allowing three-letter language codes. The single capturing group is the
# locale; `re.split` relies on there being exactly one group.
LANG_TAG_PATTERN = r"<([a-z]{2,3}-[A-Z]{2})>"
LANG_TAG_RE = re.compile(LANG_TAG_PATTERN)


@dataclass(frozen=True)
class LanguageSpan:
    """One stretch of decoder text and the language of the tag that closed it."""

    # The text with tags removed, whitespace runs collapsed, stripped; never
    # empty when produced by split_by_language.
    text: str
    # The tag that closed this span (e.g. "de-DE"); None (or the caller's
    # fallback) for trailing text with no tag after it.
    language: str | None


def _collapse(text: str) -> str:
    # str.split() with no argument splits on runs of any Unicode whitespace and
    # drops leading/trailing whitespace, so this collapses and strips at once.
    return " ".join(text.split())


def tags_in(raw_text: str) -> list[str]:
    """All language tags in ``raw_text``, in order, duplicates kept (e.g. ``["de-DE", "en-US"]``)."""
    return LANG_TAG_RE.findall(raw_text)


def split_by_language(raw_text: str, fallback: str | None = None) -> list[LanguageSpan]:
    """Cut raw decoder text at each tag; the text before a tag belongs to that tag's language.

    ``"Hallo Welt.<de-DE> Hello world.<en-US>"`` gives
    ``[LanguageSpan("Hallo Welt.", "de-DE"), LanguageSpan("Hello world.", "en-US")]``.

    Trailing text with no tag after it gets ``fallback`` (default None), so text
    with no tag at all is one span of language ``fallback``. Spans whose text is
    empty after collapsing whitespace are dropped along with their tag (see the
    module docstring); use :func:`tags_in` to see every tag.
    """
    # With one capturing group, re.split alternates text and tag:
    # [text0, tag1, text1, tag2, ..., textN]; textN is the untagged remainder.
    parts = LANG_TAG_RE.split(raw_text)
    spans: list[LanguageSpan] = []
    for i in range(0, len(parts), 2):
        text = _collapse(parts[i])
        if not text:
            continue
        language = parts[i + 1] if i + 1 < len(parts) else fallback
        spans.append(LanguageSpan(text=text, language=language))
    return spans


def strip_language_tags(raw_text: str) -> str:
    """Remove every language tag and normalise the whitespace left behind.

    Each tag is replaced by a space (a tag marks a sentence boundary, so
    ``"Hello<en-US>Hallo"`` must not become ``"HelloHallo"``), then whitespace
    runs are collapsed to one space and the result is stripped:
    ``"Hola.<es-ES> Hi"`` -> ``"Hola. Hi"``, ``"he<es-ES>"`` -> ``"he"``.
    Angle-bracket text that is not a locale tag (e.g. ``"<unk>"``) is kept.
    """
    return _collapse(LANG_TAG_RE.sub(" ", raw_text))


def _char_counts(spans: Iterable[LanguageSpan], fallback: str | None) -> dict[str, int]:
    # Integer counts in first-occurrence order: the dict order is what breaks
    # ties in dominant_language, and comparing ints avoids float-rounding ties.
    counts: dict[str, int] = {}
    for span in spans:
        language = span.language if span.language is not None else fallback
        if language is None:
            continue
        counts[language] = counts.get(language, 0) + len(span.text)
    return counts


def language_shares(spans: Iterable[LanguageSpan], fallback: str | None = None) -> dict[str, float]:
    """Share of each language by characters of span text, in first-occurrence order.

    Spans with language None count for ``fallback`` if given, else are ignored.
    The shares sum to 1.0 (up to float rounding); ``{}`` when no counted span
    has any characters.
    """
    counts = _char_counts(spans, fallback)
    total = sum(counts.values())
    if total == 0:
        return {}
    return {language: n / total for language, n in counts.items()}


def dominant_language(spans: Iterable[LanguageSpan], fallback: str | None = None) -> str | None:
    """The language with the most characters; ties go to the language seen first.

    Untagged spans count for ``fallback`` (as in :func:`language_shares`). When
    nothing is counted (no spans, or only untagged ones and no fallback) the
    result is ``fallback`` — e.g. the forced ``target_lang``, or None.
    """
    counts = _char_counts(spans, fallback)
    if sum(counts.values()) == 0:
        return fallback
    # max() returns the first maximal item, and counts is in first-occurrence order.
    return max(counts, key=counts.__getitem__)
