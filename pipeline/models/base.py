"""The narrow contract between the pipeline and a speech model.

Everything outside `pipeline/models/` sees only these dataclasses: plain numpy audio in, plain text out,
one-to-one and in order. A model adapter is chosen by a config line (`model_adapter`), so swapping the model never
touches the stages. An adapter class provides:

- `describe(model_path) -> ModelCard` (static): what the job must know before any work starts, from the
  checkpoint's config (no weights);
- `__init__(spec)`: load the model once, from the job's resolved spec (`jobs.spec.JobSpec`: `model_path`,
  `att_context_size`, `batch_size`, `timestamps`, `confidence`, `compute.device`, `compute.dtype`, ...);
- `transcribe(items) -> outputs`: exactly one output per item, in the items' order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol, Sequence

import numpy as np

from pipeline.locales import Locales


@dataclass(frozen=True)
class ModelCard:
    """What the job must know about a checkpoint before any work starts (read from its config, not its weights)."""

    model_path: str
    model_class: str
    sample_rate: int
    prompt_dictionary: dict[str, int]  # every name (aliases included) -> prompt index, in the checkpoint's order
    att_context_sizes: tuple[tuple[int, int], ...]  # as the checkpoint lists them (order and members vary)

    @cached_property
    def languages(self) -> Locales:
        return Locales.from_dictionary(self.prompt_dictionary)

    @property
    def locales(self) -> tuple[str, ...]:
        """The canonical locales a row may ask for (`auto` excluded), sorted."""
        return self.languages.canonical

    @property
    def most_accurate_att_context_size(self) -> tuple[int, int] | None:
        """The widest right context the checkpoint offers (whatever the list's order): the default, since batch work
        has no latency budget."""
        return max(self.att_context_sizes, key=lambda c: (c[1], c[0])) if self.att_context_sizes else None


@dataclass(frozen=True)
class AudioItem:
    """One mono stream to transcribe: float32 samples at the model's rate, and the canonical locale (or `auto`) to
    condition it on."""

    samples: np.ndarray
    prompt_locale: str = "auto"


@dataclass(frozen=True)
class WordTiming:
    """One decoded word, seconds from the start of its item. `word` may still carry a language tag (`he<es-ES>`)."""

    word: str
    start: float
    end: float
    confidence: float | None = None


@dataclass(frozen=True)
class ModelOutput:
    """The model's answer for one item. `raw_text` keeps the language tags: the language stage reads them.
    `words` is filled when timestamps were asked for; `confidence` when confidence was."""

    raw_text: str
    num_tokens: int = 0
    words: list[WordTiming] = field(default_factory=list)
    confidence: float | None = None


class SpeechModel(Protocol):
    """What an adapter provides. `transcribe` returns exactly one output per item, in the items' order."""

    card: ModelCard

    def transcribe(self, items: Sequence[AudioItem]) -> list[ModelOutput]: ...
