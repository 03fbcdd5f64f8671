"""Locales as the checkpoint knows them: aliases resolved to the canonical locale, once.

The checkpoint's `model_defaults.prompt_dictionary` maps names to prompt indices, with aliases sharing an index
(`en` and `en-US` are 0, `de`/`de-DE` 9, `es` is `es-US` (3) while `es-ES`/`esES` are 2, `no`/`no-NO` 27, `auto`
101; see pipeline/models/released.py). The model conditions on the index, and it writes its language tags in the
`xx-YY` form (`<de-DE>`). So a requested name is resolved to its *canonical locale*: the first `xx-YY` (or `xxx-YY`)
name in the dictionary's order with the same index (for the released dictionary: `de` -> `de-DE`, `es` -> `es-US`,
`ja-JA` -> `ja-JP`, `hi-HI` -> `hi-IN`). That is what the model is prompted with, what is compared with its tags,
and what the output calls `prompt_locale`.

Forgiven in a request: case, surrounding blanks and `_` for `-` (`EN-us` -> `en-US`, `de_de` -> `de-DE`), and the
YAML 1.1 reading of a bare `no` (Norwegian) as the boolean false (`False`), in a dictionary key or in a value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

AUTO = "auto"
_LOCALE_FORM = re.compile(r"^[a-z]{2,3}-[A-Z]{2}$")


class UnknownLocale(ValueError):
    """A requested language the checkpoint has no prompt for; the message lists the canonical locales."""


def yaml_name(value: object) -> object:
    """A language name as written, undoing YAML 1.1's reading of a bare `no` (Norwegian) as the boolean false (which
    a string field then holds as `False`): the one place that knows this, for dictionary keys, manifests and the
    job's `target_lang` alike. Anything else is returned as it is."""
    if value is False or (isinstance(value, str) and value.strip() in ("False", "false")):
        return "no"
    return value


def dictionary_key(key: object) -> str:
    """A prompt-dictionary key as a name."""
    return str(yaml_name(key))


def _folded(name: str) -> str:
    return name.strip().replace("_", "-").casefold()


@dataclass(frozen=True)
class Locales:
    """The checkpoint's prompt dictionary, with every name resolved to its canonical locale."""

    indices: Mapping[str, int]  # every name of the dictionary (aliases included) -> prompt index
    canonical_of_index: Mapping[int, str]  # prompt index -> canonical locale (or `auto`)
    folded: Mapping[str, str]  # casefolded name with `-` for `_` -> canonical locale

    @classmethod
    def from_dictionary(cls, dictionary: Mapping[object, int]) -> "Locales":
        indices = {dictionary_key(k): int(v) for k, v in dictionary.items()}
        canonical: dict[int, str] = {}
        for name, index in indices.items():  # dictionary order: the first xx-YY name of an index wins
            if _LOCALE_FORM.match(name) and index not in canonical:
                canonical[index] = name
        for name, index in indices.items():  # an index with no xx-YY name (e.g. `auto`) keeps its first name
            canonical.setdefault(index, name)
        folded: dict[str, str] = {}
        for name, index in indices.items():
            folded.setdefault(_folded(name), canonical[index])
        return cls(indices=indices, canonical_of_index=canonical, folded=folded)

    @property
    def canonical(self) -> tuple[str, ...]:
        """The canonical locales a row may ask for (`auto` excluded), sorted."""
        return tuple(sorted({c for c in self.canonical_of_index.values() if c != AUTO}))

    def resolve(self, requested: object) -> str:
        """The canonical locale (or `auto`) for a requested name; `UnknownLocale` if the checkpoint has none."""
        requested = yaml_name(requested)
        if not isinstance(requested, str):
            raise UnknownLocale(f"target_lang must be a string, got {type(requested).__name__} {requested!r}")
        name = requested.strip()
        if name in self.indices:
            return self.canonical_of_index[self.indices[name]]
        found = self.folded.get(_folded(name))
        if found is not None:
            return found
        raise UnknownLocale(f"unknown target_lang {requested!r}; this checkpoint knows: "
                            f"{', '.join(self.canonical)}, auto (and their aliases)")

    def index(self, locale: str) -> int:
        """The prompt index of a canonical locale (or of any name the dictionary has)."""
        return self.indices[locale] if locale in self.indices else self.indices[self.resolve(locale)]
