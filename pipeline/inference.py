"""Stage: the Ray actor that owns one model adapter.

Ray Data's contract for stateful work: the model loads once in `__init__` (per actor, not per batch), `__call__`
maps a batch. The actor resolves each row's prompt (the row's own `target_lang`/`lang`, else the job's), refuses a
locale the checkpoint does not know as that row's error, and hands the healthy rows to the adapter in one call; the
adapter groups them by duration to cut padding.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace

import pyarrow as pa

from connectors.model_store import localize
from pipeline.audio import from_pcm_bytes
from pipeline.models import adapter_class
from pipeline.models.base import AudioItem, ModelSettings
from pipeline.records import TRANSCRIBED_SCHEMA, to_table, with_error

log = logging.getLogger(__name__)


class TranscriptionActor:
    def __init__(self, settings: ModelSettings, adapter: str, target_lang: str):
        self.model = adapter_class(adapter)(replace(settings, model_path=localize(settings.model_path)))
        self.target_lang = target_lang
        self.known = set(self.model.card.prompt_dictionary)
        self.locales = ", ".join(self.model.card.locales)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        pending = []
        for row in rows:
            row["target_lang"] = row.get("row_target_lang") or self.target_lang
            if row.get("error"):
                continue
            if row["target_lang"] not in self.known:
                with_error(row, "language", f"unknown target_lang {row['target_lang']!r}; "
                                            f"this checkpoint knows: {self.locales}, auto")
                continue
            pending.append(row)
        for row, output in zip(pending, self._transcribe(pending)):
            if isinstance(output, Exception):
                with_error(row, "inference", f"{type(output).__name__}: {output}")
            else:
                row["raw_text"] = output.raw_text
                row["num_tokens"] = output.num_tokens
                row["words"] = [asdict(w) for w in output.words] or None
                row["confidence"] = output.confidence
        return to_table(rows, TRANSCRIBED_SCHEMA)

    def _transcribe(self, rows: list[dict]) -> list:
        """One output (or the exception) per row. One bad clip must not fail its batch-mates: on a batch error the
        rows are retried one by one, so only the culprit carries the error."""
        items = [AudioItem(samples=from_pcm_bytes(r["samples"]), target_lang=r["target_lang"]) for r in rows]
        if not items:
            return []
        try:
            return self.model.transcribe(items)
        except Exception as error:  # noqa: BLE001
            log.warning("batch of %d failed (%s); retrying its rows one by one", len(items), error)
        results: list = []
        for item in items:
            try:
                results.extend(self.model.transcribe([item]))
            except Exception as error:  # noqa: BLE001
                results.append(error)
        return results
