"""One helper for the job's settings: a dataclass field with its one line of documentation.

The stages define the settings they take (the decode stage its `AudioSpec`, the segmenter its `SegmentPolicy`, the
graph its `ComputeSpec`); `jobs/spec.py` composes them into the job's spec and generates conf/ and the README table
from these docs, so each setting is defined, defaulted and documented once.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from omegaconf import MISSING


def setting(default: Any = MISSING, doc: str = "", *, factory: Any = None) -> Any:
    """A dataclass field with its one line of documentation (shown by --help, in conf/ and in the README)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})
