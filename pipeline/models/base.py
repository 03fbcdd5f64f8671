"""The narrow contract between the pipeline and a speech model.

Everything outside `pipeline/models/` sees only these dataclasses: plain numpy audio in, plain text out,
one-to-one and in order. A model adapter is chosen by a config line (`model_adapter`), so swapping the model never
touches the stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np


@dataclass(frozen=True)
class ModelCard:
    """What the job must know about a checkpoint before any work starts (read from its config, not its weights)."""

    model_path: str
    model_class: str
    sample_rate: int
    prompt_dictionary: dict[str, int]
    att_context_sizes: tuple[tuple[int, int], ...]

    @property
    def locales(self) -> tuple[str, ...]:
        """The locales a row may ask for (`auto` excluded), sorted."""
        return tuple(sorted(k for k in self.prompt_dictionary if k != "auto"))

    @property
    def most_accurate_att_context_size(self) -> tuple[int, int] | None:
        """The widest right context the checkpoint offers: the default, since batch work has no latency budget."""
        return max(self.att_context_sizes, key=lambda c: (c[1], c[0])) if self.att_context_sizes else None


@dataclass(frozen=True)
class ModelSettings:
    """How an actor loads and runs the model."""

    model_path: str
    att_context_size: tuple[int, int] | None = None
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "float32"  # float32 | bfloat16 | float16 (autocast on GPU only)
    batch_size: int = 16
    max_batch_seconds: float | None = None  # cap on padded audio seconds per forward pass (duration buckets)
    timestamps: bool = False  # word timestamps
    confidence: bool = False  # word confidence


@dataclass(frozen=True)
class AudioItem:
    """One mono stream to transcribe: float32 samples at the model's rate, and the prompt to condition it on."""

    samples: np.ndarray
    target_lang: str = "auto"


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
