"""Word and character error rates for transcripts, with one documented normaliser.

Counts come from jiwer 4 (``process_words`` / ``process_characters``), and every
rate is computed here from those counts, so a row's rate and its counts always
agree and corpus rates can be summed honestly.

Choices made here:

* ``normalize_text`` is the single normaliser for the normalised metrics (see
  its docstring). Raw metrics see the text as given, with only whitespace runs
  collapsed (so they count case, punctuation and any language tags left in).
* WER tokens are whitespace-separated words. For Japanese, Chinese, Thai and
  Korean that is mostly meaningless (few or no spaces), so those languages have
  CER as their primary metric.
* CER is jiwer's: on the normalised strings, where each remaining space (one
  per word boundary after collapsing) counts as a character, like jiwer does.
  Caveat: in unspaced scripts a punctuation mark that only one side has becomes
  a space on that side, so it still costs one character error.
* A row whose normalised reference is empty has ``wer``/``cer`` None (a rate
  over zero reference units is undefined) and ``ref_words``/``ref_chars`` 0, but
  its errors are the hypothesis' words/characters (all insertions), so corpus
  totals still charge for text hallucinated over silence.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import jiwer

from pipeline.language import LANG_TAG_RE

__all__ = [
    "CER_PRIMARY_LANGUAGES",
    "CorpusScore",
    "Score",
    "corpus_score",
    "normalize_text",
    "primary_metric_for",
    "score",
]

# Languages (the part of the locale before '-', e.g. ja-JP -> ja) written
# without spaces between words, for which CER is the meaningful metric.
CER_PRIMARY_LANGUAGES = frozenset({"ja", "ko", "zh", "th"})

# ASCII apostrophe and the typographic right single quote (U+2019, which NFKC
# does not fold): both spell the apostrophe in "don't"; both are kept as "'".
_APOSTROPHES = frozenset({"'", "\u2019"})
_LOCALE_SPLIT_RE = re.compile(r"[-_]")


def _is_word_char(ch: str) -> bool:
    # Letters, marks and numbers make up words; an apostrophe between two of
    # them is part of the word ("don't", "l'eau", "rock'n'roll").
    return unicodedata.category(ch)[0] in "LMN"


def normalize_text(text: str) -> str:
    """The normaliser used for the normalised WER/CER.

    In order:

    1. Unicode NFKC (full-width letters -> ASCII, composed/decomposed é agree).
    2. Remove language tags (``<en-US>``), each replaced by a space. Done before
       casefolding because the tag pattern is case-sensitive.
    3. Casefold, then NFKC again (casefolding can un-normalise a few strings).
    4. Replace every punctuation or symbol character (Unicode categories P* and
       S*) by a space, except an apostrophe (``'`` or ``’``) with a word
       character (L*, M*, N*) on both sides, which is kept as ``'``. So
       ``don't`` stays, ``'quoted'`` and ``dogs'`` lose theirs, ``well-known``
       becomes ``well known``.
    5. Collapse whitespace runs to one space and strip.
    """
    text = unicodedata.normalize("NFKC", text)
    text = LANG_TAG_RE.sub(" ", text)
    text = unicodedata.normalize("NFKC", text.casefold())
    out: list[str] = []
    last = len(text) - 1
    for i, ch in enumerate(text):
        category = unicodedata.category(ch)
        if category[0] not in "PS":
            out.append(ch)
        elif (
            ch in _APOSTROPHES
            and 0 < i < last
            and _is_word_char(text[i - 1])
            and _is_word_char(text[i + 1])
        ):
            out.append("'")
        else:
            out.append(" ")
    return " ".join("".join(out).split())


def primary_metric_for(language: str | None) -> str:
    """``"cer"`` for ja/ko/zh/th locales (``ja-JP``, ``zh_CN``, ``ko``...), else ``"wer"``."""
    if not language:
        return "wer"
    base = _LOCALE_SPLIT_RE.split(language.strip(), maxsplit=1)[0].lower()
    return "cer" if base in CER_PRIMARY_LANGUAGES else "wer"


@dataclass(frozen=True)
class Score:
    """Error rates and counts for one reference/hypothesis pair."""

    wer: float | None  # word_errors / ref_words on normalised text; None when ref_words == 0
    cer: float | None  # char_errors / ref_chars on normalised text (spaces count); None when ref_chars == 0
    raw_wer: float | None  # WER on the unnormalised text (whitespace split only); None when it has no words
    raw_cer: float | None  # CER on the unnormalised text (whitespace collapsed only); None when empty
    word_errors: int  # substitutions + deletions + insertions, normalised words
    ref_words: int  # normalised reference length in words
    char_errors: int  # substitutions + deletions + insertions, normalised characters
    ref_chars: int  # normalised reference length in characters (spaces included)
    primary_metric: str  # "cer" for ja/ko/zh/th, else "wer"

    @property
    def primary(self) -> float | None:
        """The value of the primary metric (``cer`` or ``wer``)."""
        return self.cer if self.primary_metric == "cer" else self.wer


def _word_counts(reference: str, hypothesis: str) -> tuple[int, int]:
    """(errors, reference words) over whitespace tokens; inputs already whitespace-collapsed."""
    if not reference:
        return len(hypothesis.split()), 0
    out = jiwer.process_words(reference, hypothesis)
    return (
        out.substitutions + out.deletions + out.insertions,
        out.substitutions + out.deletions + out.hits,
    )


def _char_counts(reference: str, hypothesis: str) -> tuple[int, int]:
    """(errors, reference characters); inputs already whitespace-collapsed and stripped."""
    if not reference:
        return len(hypothesis), 0
    out = jiwer.process_characters(reference, hypothesis)
    return (
        out.substitutions + out.deletions + out.insertions,
        out.substitutions + out.deletions + out.hits,
    )


def _rate(errors: int, total: int) -> float | None:
    return errors / total if total else None


def score(reference: str, hypothesis: str, language: str | None = None) -> Score:
    """Score one row; ``language`` (a locale such as ``ja-JP``) only picks the primary metric.

    An empty normalised reference gives ``wer``/``cer`` None with
    ``ref_words``/``ref_chars`` 0 and the hypothesis' words/characters as errors
    (see the module docstring).
    """
    ref_norm = normalize_text(reference)
    hyp_norm = normalize_text(hypothesis)
    word_errors, ref_words = _word_counts(ref_norm, hyp_norm)
    char_errors, ref_chars = _char_counts(ref_norm, hyp_norm)

    # Raw: text as given, only whitespace runs collapsed (jiwer's WER does that
    # anyway; doing it for CER too keeps double spaces from counting).
    ref_raw = " ".join(reference.split())
    hyp_raw = " ".join(hypothesis.split())
    raw_word_errors, raw_ref_words = _word_counts(ref_raw, hyp_raw)
    raw_char_errors, raw_ref_chars = _char_counts(ref_raw, hyp_raw)

    return Score(
        wer=_rate(word_errors, ref_words),
        cer=_rate(char_errors, ref_chars),
        raw_wer=_rate(raw_word_errors, raw_ref_words),
        raw_cer=_rate(raw_char_errors, raw_ref_chars),
        word_errors=word_errors,
        ref_words=ref_words,
        char_errors=char_errors,
        ref_chars=ref_chars,
        primary_metric=primary_metric_for(language),
    )


@dataclass(frozen=True)
class CorpusScore:
    """Totals over many rows; rates are ratios of summed counts."""

    rows: int
    wer: float | None  # sum(word_errors) / sum(ref_words); None when sum(ref_words) == 0
    cer: float | None  # sum(char_errors) / sum(ref_chars); None when sum(ref_chars) == 0
    word_errors: int
    ref_words: int
    char_errors: int
    ref_chars: int


def corpus_score(scores: Iterable[Score]) -> CorpusScore:
    """Corpus WER/CER from summed counts, never the mean of per-row rates.

    Summing weights each row by its reference length, so a one-word row with
    one error does not count as much as a fifty-word row with fifty errors.
    Rows with an empty reference add their insertions to the errors and nothing
    to the reference length. ``scores`` is iterated once.
    """
    rows = word_errors = ref_words = char_errors = ref_chars = 0
    for s in scores:
        rows += 1
        word_errors += s.word_errors
        ref_words += s.ref_words
        char_errors += s.char_errors
        ref_chars += s.ref_chars
    return CorpusScore(
        rows=rows,
        wer=_rate(word_errors, ref_words),
        cer=_rate(char_errors, ref_chars),
        word_errors=word_errors,
        ref_words=ref_words,
        char_errors=char_errors,
        ref_chars=ref_chars,
    )
