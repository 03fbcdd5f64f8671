"""Model adapters, chosen by name (`model_adapter` in the config). Imported lazily: NeMo costs seconds and ~1 GB."""

from __future__ import annotations

import importlib

ADAPTERS = {
    "nemotron_rnnt": "pipeline.models.nemo_rnnt:NemotronRNNT",
}


def adapter_class(name: str):
    """The adapter class registered under `name`, or a `module:Class` path for one of your own."""
    target = ADAPTERS.get(name, name)
    if ":" not in target:
        raise ValueError(f"unknown model_adapter {name!r}; known: {', '.join(ADAPTERS)} (or module:Class)")
    module, cls = target.split(":", 1)
    return getattr(importlib.import_module(module), cls)
