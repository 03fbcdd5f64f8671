"""The narrow contract between the pipeline and a speech model.

Everything outside `pipeline/models/` sees only these dataclasses: plain numpy audio in, plain text out,
one-to-one and in order. A model adapter is chosen by a config line (`model_adapter`), so swapping the model never
touches the stages. An adapter class provides:

- `describe(model_path) -> ModelCard` (static): what the job must know before any work starts, from the
  checkpoint's config (no weights);
- `__init__(settings: ModelSettings)`: load the model once, from its own small settings (never the job's whole
  configuration: a second engine needs to know nothing of manifests, outputs or clusters);
- `transcribe(items) -> outputs`: exactly one output per item, in the items' order.

`ModelCard` is the one place that reads what a checkpoint offers; `resolve_att_context_size` is the one place that
turns a wish into the latency setting that runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from pipeline.locales import Locales

PCM_SCALE = 32768.0  # 16-bit PCM full scale
DTYPES = ("float32", "bfloat16", "float16")  # ModelSettings.dtype


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

    def resolve_att_context_size(self, wanted) -> tuple[int, int] | None:
        """The latency setting to run: `wanted` ([left, right]) if the checkpoint offers it, the most accurate one if
        `wanted` is None. ValueError for one it does not offer (NeMo would only warn and run it anyway)."""
        if wanted is None:
            return self.most_accurate_att_context_size
        pair = (int(wanted[0]), int(wanted[1]))
        if self.att_context_sizes and pair not in self.att_context_sizes:
            offered = " ".join(f"[{a},{b}]" for a, b in self.att_context_sizes)
            raise ValueError(f"att_context_size [{pair[0]},{pair[1]}] is not offered by the checkpoint: {offered}")
        return pair


@dataclass(frozen=True)
class ModelSettings:
    """What an adapter needs to load and run its model, resolved by the job (nothing else of the job's settings)."""

    model_path: str  # a local checkpoint file or a pretrained name (object-store paths are copied down first)
    att_context_size: tuple[int, int] | None = None  # the latency setting to run; None: the checkpoint's most accurate
    batch_size: int = 16  # items per forward pass
    max_batch_seconds: float | None = None  # also cap a forward pass at this many padded audio seconds
    timestamps: bool = False  # word timings (ModelOutput.words)
    confidence: bool = False  # word confidence
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "float32"  # float32 | bfloat16 | float16 (autocast)
    threads: int | None = None  # torch threads on a CPU (None: torch's own choice)


@dataclass(frozen=True)
class AudioItem:
    """One mono stream to transcribe at the model's rate, and the canonical locale (or `auto`) to condition it on.

    `samples` is float32 in [-1, 1), or 16-bit PCM as it travels between stages: an adapter converts it with
    `as_float32()` one batch at a time, so a long recording's segments never exist as float copies all at once."""

    samples: np.ndarray
    prompt_locale: str = "auto"

    @property
    def num_samples(self) -> int:
        return len(self.samples)

    def as_float32(self) -> np.ndarray:
        if self.samples.dtype == np.int16:
            return self.samples.astype(np.float32) / PCM_SCALE
        return np.asarray(self.samples, dtype=np.float32)


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

