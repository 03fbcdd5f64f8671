"""Stage: the Ray actor that owns one model adapter.

Ray Data's contract for stateful work: the model loads once in `__init__` (per actor, not per batch), `__call__`
maps a batch. One call is one work block: the actor takes the segments of all its healthy recordings, hands them to
the adapter in one call (the adapter sorts them by duration into batches, so padding stays small), and puts each
hypothesis back into its recording. Every row's prompt was resolved when the manifest was read (`prompt_locale`);
nothing is checked again here.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import TYPE_CHECKING

import pyarrow as pa

from connectors.model_store import localize
from pipeline.decode import from_pcm16
from pipeline.models import adapter_class
from pipeline.models.base import AudioItem
from pipeline.records import TRANSCRIBED_SCHEMA, to_table, with_error

if TYPE_CHECKING:
    from jobs.spec import JobSpec

log = logging.getLogger(__name__)


class TranscriptionActor:
    def __init__(self, spec: "JobSpec"):
        import dataclasses

        self.model = adapter_class(spec.model_adapter)(dataclasses.replace(spec, model_path=localize(spec.model_path)))

    def __call__(self, batch: pa.Table) -> pa.Table:
        recordings = batch.to_pylist()
        pending: list[dict] = []  # segments to transcribe, each knowing its recording
        for recording in recordings:
            # A recording that failed midway keeps the segments cut before the failure: they are transcribed too.
            for segment in recording["segments"] or []:
                segment["prompt_locale"] = recording["prompt_locale"]
                pending.append(segment)
        for segment, output in zip(pending, self._transcribe(pending)):
            segment.pop("samples", None)
            if isinstance(output, Exception):
                with_error(segment, "inference", f"{type(output).__name__}: {output}")
            else:
                segment["raw_text"] = output.raw_text
                segment["num_tokens"] = output.num_tokens
                segment["words"] = [asdict(w) for w in output.words] or None
                segment["confidence"] = output.confidence
        return to_table(recordings, TRANSCRIBED_SCHEMA)

    def _transcribe(self, segments: list[dict]) -> list:
        """One output (or the exception) per segment. One bad clip must not fail its batch-mates: on a batch error
        the segments are retried one by one, so only the culprit carries the error."""
        items = [AudioItem(samples=from_pcm16(s["samples"]), prompt_locale=s["prompt_locale"]) for s in segments]
        if not items:
            return []
        try:
            return self.model.transcribe(items)
        except Exception as error:  # noqa: BLE001
            log.warning("a block of %d segments failed (%s); retrying them one by one", len(items), error)
        results: list = []
        for item in items:
            try:
                results.extend(self.model.transcribe([item]))
            except Exception as error:  # noqa: BLE001
                results.append(error)
        return results
