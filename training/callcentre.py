"""The call-centre domain of the demo model: sentences made from the plain files under `training/domain/<locale>/`.

Each locale has `templates.txt` (one sentence template per line) and `slots.txt` (`[name]` opens a slot, each
following line is one option; an option may hold slots itself, e.g. `{month} {ordinal}`). A sentence is a template
drawn with weight 1 + ln(its number of fillings) (so that fixed phrases, a third of the templates, are about an
eighth of the sentences: the test set is all combinations, and a prediction network fed mostly fixed phrases
learns to complete them whatever it hears), its slots filled by uniform draws, its first letter capitalised.
Numbers are written as spoken.

Held-out sentences, the same for every seed. A stranger who generates a fresh test set from another seed must not
hear sentences the shipped model was trained on, so the held-out part of the sentence space is fixed by the text
alone: a sentence of a template with at least `MIN_HELDOUT_CAPACITY` fillings is held out when a hash of
(locale, sentence) falls in one of `HELDOUT_BUCKETS` buckets (`is_heldout`). Training never uses a held-out
sentence; dev and test use only held-out sentences, i.e. new combinations of the domain's words. Fixed phrases
("Please hold the line.") and templates with few fillings ("{yes}.") are never held out: there is nothing new to
combine in them.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

DOMAIN_DIR = Path(__file__).resolve().parent / "domain"
SLOT_RE = re.compile(r"\{([a-z_]+)\}")
MIN_HELDOUT_CAPACITY = 50
HELDOUT_BUCKETS = (0,)  # of 10: a tenth of the combinations of each large template is held out


class DomainError(ValueError):
    """A domain file is malformed (an unknown or empty slot, a cycle)."""


@dataclass(frozen=True)
class Grammar:
    locale: str
    templates: tuple[str, ...]
    slots: dict[str, tuple[str, ...]]

    @functools.cached_property
    def template_capacity(self) -> tuple[int, ...]:
        return tuple(self.count(t) for t in self.templates)

    @functools.cached_property
    def template_weights(self) -> tuple[float, ...]:
        return tuple(1.0 + math.log(n) for n in self.template_capacity)

    def count(self, text: str, _seen: tuple[str, ...] = ()) -> int:
        """Number of fillings of `text` (duplicates included)."""
        total = 1
        for name in SLOT_RE.findall(text):
            if name in _seen:
                raise DomainError(f"{self.locale}: slot {{{name}}} refers to itself")
            total *= sum(self.count(option, _seen + (name,)) for option in self.slots[name])
        return total

    def fill(self, text: str, rng: random.Random) -> str:
        return SLOT_RE.sub(lambda m: self.fill(rng.choice(self.slots[m.group(1)]), rng), text)

    def draw(self, rng: random.Random) -> tuple[int, str]:
        """(template index, sentence): a template drawn by `template_weights`, then its slots."""
        index = rng.choices(range(len(self.templates)), weights=self.template_weights)[0]
        return index, capitalise(self.fill(self.templates[index], rng))

    def heldout_eligible(self, template_index: int) -> bool:
        """Whether sentences of this template can be held out (it has enough fillings to combine anew)."""
        return self.template_capacity[template_index] >= MIN_HELDOUT_CAPACITY

    def fillings(self, text: str) -> list[str]:
        """Every filling of `text` (use on small templates only)."""
        match = SLOT_RE.search(text)
        if match is None:
            return [text]
        head, tail = text[:match.start()], text[match.end():]
        return [head + o + rest for option in self.slots[match.group(1)] for o in self.fillings(option)
                for rest in self.fillings(tail)]

    @functools.cached_property
    def small_template_sentences(self) -> frozenset[str]:
        """Every sentence of the templates with fewer than MIN_HELDOUT_CAPACITY fillings: never held out."""
        return frozenset(capitalise(f) for t, n in zip(self.templates, self.template_capacity)
                         if n < MIN_HELDOUT_CAPACITY for f in self.fillings(t))

    @functools.cached_property
    def words(self) -> frozenset[str]:
        """Every word a sentence of this locale can contain (casefolded, punctuation removed)."""
        found: set[str] = set()
        for text in list(self.templates) + [o for options in self.slots.values() for o in options]:
            found.update(_words(SLOT_RE.sub(" ", text)))
        return frozenset(found)


def capitalise(sentence: str) -> str:
    for i, ch in enumerate(sentence):
        if ch.isalpha():
            return sentence[:i] + ch.upper() + sentence[i + 1:]
    return sentence


def _words(text: str) -> list[str]:
    return [w.strip("'") for w in re.split(r"[^\w']+", text.casefold()) if w.strip("'")]


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def locales() -> tuple[str, ...]:
    return tuple(sorted(p.name for p in DOMAIN_DIR.iterdir() if (p / "templates.txt").exists()))


@functools.lru_cache(maxsize=None)
def load(locale: str) -> Grammar:
    """Read and check `training/domain/<locale>/`: every slot used is defined and non-empty, no slot refers to
    itself, every slot defined is used."""
    folder = DOMAIN_DIR / locale
    if not (folder / "templates.txt").exists():
        raise DomainError(f"no domain files for {locale!r} in {DOMAIN_DIR} (known: {', '.join(locales())})")
    templates = tuple(_lines(folder / "templates.txt"))
    slots: dict[str, list[str]] = {}
    current = None
    for line in _lines(folder / "slots.txt"):
        header = re.fullmatch(r"\[([a-z_]+)\]", line)
        if header:
            current = header.group(1)
            if current in slots:
                raise DomainError(f"{locale}: slot [{current}] defined twice")
            slots[current] = []
        elif current is None:
            raise DomainError(f"{locale}/slots.txt: {line!r} before any [slot]")
        else:
            slots[current].append(line)
    grammar = Grammar(locale, templates, {k: tuple(v) for k, v in slots.items()})
    used = {name for text in templates + tuple(o for v in slots.values() for o in v) for name in SLOT_RE.findall(text)}
    if used - set(slots):
        raise DomainError(f"{locale}: undefined slots {sorted(used - set(slots))}")
    if set(slots) - used:
        raise DomainError(f"{locale}: slots never used {sorted(set(slots) - used)}")
    empty = [k for k, v in slots.items() if not v]
    if empty:
        raise DomainError(f"{locale}: empty slots {empty}")
    for template in templates:
        grammar.count(template)  # raises on a cycle
    return grammar


def is_heldout(locale: str, sentence: str) -> bool:
    """The fixed held-out class of a sentence (see the module docstring), independent of any seed."""
    digest = hashlib.sha1(f"{locale}\t{sentence}".encode("utf-8")).digest()
    return (int.from_bytes(digest[:4], "big") % 10 in HELDOUT_BUCKETS
            and sentence not in load(locale).small_template_sentences)


class TrainSentences:
    """Endless training sentences of a locale at the grammar's own frequencies, held-out sentences excluded.

    With `variety` > 0, that share of the sentences is not a template filling but a new arrangement of the domain's
    words (`Recombiner`), drawn from `variety_rng` (so that `variety=0` draws exactly what it drew before) - a model
    fed only fillings of forty templates learns to complete a template from its first words whatever it hears.
    `exclude`: sentences never produced (normalised by `sentence_key`), e.g. a hand-written evaluation set."""

    def __init__(self, locale: str, rng: random.Random, variety: float = 0.0,
                 variety_rng: random.Random | None = None, exclude: frozenset[str] = frozenset()):
        self.grammar, self.rng, self.variety, self.exclude = load(locale), rng, variety, exclude
        self.recombiner = Recombiner(self.grammar, variety_rng or random.Random(f"{locale}:variety"))

    def _filling(self) -> str:
        while True:
            _, sentence = self.grammar.draw(self.rng)
            if not is_heldout(self.grammar.locale, sentence):
                return sentence

    def next(self) -> str:
        while True:
            sentence = self._filling()
            if self.variety > 0 and self.recombiner.rng.random() < self.variety:
                sentence = self.recombiner.recombine(sentence, self._filling)
            if is_heldout(self.grammar.locale, sentence) or sentence_key(sentence) in self.exclude:
                continue
            return sentence


def sentence_key(sentence: str) -> str:
    """A sentence as its words (casefolded, punctuation dropped): what WER compares."""
    return " ".join(_words(sentence))


class Recombiner:
    """New word orders from template fillings, four ways (equally likely):
    - `splice`: the start of one sentence and the end of another, cut at word boundaries;
    - `fragment`: a run of at least two words from inside a sentence;
    - `swap`: a sentence's comma-separated clauses in reverse order ("Thank you, goodbye." -> "Goodbye, thank you.");
    - `join`: two sentences as one, joined by a comma, no pause between them.
    Casing follows the grammar: a word that starts a new position is lower-cased only if the grammar writes it in
    lower case somewhere after a sentence's start (so names, German nouns and "I" keep their capitals)."""

    KINDS = ("splice", "fragment", "swap", "join")

    def __init__(self, grammar: Grammar, rng: random.Random):
        self.grammar, self.rng = grammar, rng
        # Words written in lower case where they do not open a sentence: anywhere but first in a template, or
        # anywhere in a slot option (an option is never capitalised by the grammar itself).
        options = {o for values in grammar.slots.values() for o in values}
        lower: set[str] = set()
        for text in list(grammar.templates) + sorted(options):
            for i, word in enumerate(SLOT_RE.sub(" ", text).split()):
                word = word.strip(".,?!¿¡")
                if (i > 0 or text in options) and word and word == word.lower():
                    lower.add(word)
        self._lower = frozenset(lower)

    def _decap(self, text: str) -> str:
        head, _, rest = text.partition(" ")
        bare = head.lstrip("¿¡")
        if bare and bare.lower() in self._lower and bare.strip(".,?!").lower() in self._lower:
            head = head[: len(head) - len(bare)] + bare[0].lower() + bare[1:]
        return head + (" " + rest if rest else "")

    def recombine(self, sentence: str, another) -> str:
        kind = self.rng.choice(self.KINDS)
        words = sentence.split()
        if kind == "splice" or (kind == "swap" and ", " not in sentence):
            other = another().split()
            if len(words) < 2 or len(other) < 2:
                return sentence
            i, j = self.rng.randint(1, len(words) - 1), self.rng.randint(1, len(other) - 1)
            return capitalise(" ".join(words[:i] + [self._decap(" ".join(other[j:]))]))
        if kind == "fragment":
            if len(words) < 3:
                return sentence
            n = self.rng.randint(2, len(words) - 1)
            start = self.rng.randint(0, len(words) - n)
            return capitalise(self._decap(" ".join(words[start:start + n])))
        if kind == "swap":
            clauses = [c.strip() for c in sentence.rstrip(".?!").split(", ")]
            end = sentence[-1] if sentence[-1] in ".?!" else "."
            clauses = clauses[1:] + clauses[:1]
            return capitalise(", ".join(self._decap(c) for c in clauses) + end)
        second = another()
        return capitalise(sentence.rstrip(".?!") + ", " + self._decap(second))


def heldout_pool(locale: str, n: int, seed: int) -> list[str]:
    """`n` distinct held-out sentences of `locale` in an order drawn from `seed`."""
    grammar = load(locale)
    rng = random.Random(f"{seed}:{locale}:heldout")
    out: list[str] = []
    seen: set[str] = set()
    for _ in range(200 * n + 1000):
        if len(out) == n:
            break
        _, sentence = grammar.draw(rng)
        if sentence not in seen and is_heldout(locale, sentence):
            seen.add(sentence)
            out.append(sentence)
    if len(out) < n:
        raise DomainError(f"{locale}: only {len(out)} distinct held-out sentences found, {n} asked")
    return out
