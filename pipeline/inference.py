"""Stage: the Ray actor that owns one model adapter.

Ray Data's contract for stateful work: the model loads once in `__init__` (per actor, for the whole job), `__call__`
maps a batch. One call is one work block: the actor takes the segments of all its recordings, hands them to the
adapter in one call (the adapter sorts them by duration into batches, so padding stays small), and puts each
hypothesis back into its recording. Every row's prompt was resolved when the manifest was read (`prompt_locale`);
nothing is checked again here.

The actor stays lean because on an accelerator its Python time is time the device waits: the audio is read straight
from the block's Arrow buffers (no copy into Python objects), the recordings' own columns pass through untouched,
and only the model's answers are built row by row.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.model_store import localize
from connectors.redaction import install_redaction, redact
from pipeline.models import adapter_class
from pipeline.models.base import AudioItem, ModelSettings
from pipeline.records import TRANSCRIBED_SCHEMA, TRANSCRIBED_SEGMENT, WORD_TYPE

log = logging.getLogger(__name__)

_CUT_FIELDS = ("segment_index", "channel", "start", "end", "overlap_before")


def segment_audio(segments: pa.StructArray) -> list[np.ndarray]:
    """Each segment's 16-bit samples, as views of the Arrow buffers of the `samples` field (no copy: the adapter
    converts them to float one batch at a time)."""
    samples = segments.field("samples")
    if isinstance(samples, pa.ChunkedArray):
        samples = samples.combine_chunks()
    offsets = np.frombuffer(samples.buffers()[1], dtype=np.int64)[samples.offset: samples.offset + len(samples) + 1]
    data = samples.buffers()[2]
    pcm = np.frombuffer(data, dtype="<i2") if data is not None else np.zeros(0, dtype="<i2")
    return [pcm[offsets[i] // 2: offsets[i + 1] // 2] for i in range(len(samples))]


@dataclass(frozen=True)
class InferenceSettings:
    """What the inference stage takes: which adapter, the model's own settings (resolved by the job), and how long to
    wait on storage when an object-store checkpoint is copied to this node."""

    adapter: str  # a registered adapter name (pipeline.models.ADAPTERS) or module:Class
    model: ModelSettings
    fetch_timeout: float = 60.0


class TranscriptionActor:
    def __init__(self, settings: InferenceSettings):
        install_redaction()  # this actor's log records (NeMo's, botocore's) carry no credential
        local = localize(settings.model.model_path, timeout=settings.fetch_timeout)
        self.model = adapter_class(settings.adapter)(dataclasses.replace(settings.model, model_path=local))

    def __call__(self, batch: pa.Table) -> pa.Table:
        # A recording that failed midway keeps the segments cut before the failure: they are transcribed too.
        lists = batch["segments"].combine_chunks()
        segments = lists.flatten()
        counts = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False)
        locales = np.repeat(np.array(batch["prompt_locale"].to_pylist(), dtype=object), counts)
        items = [AudioItem(samples=s, prompt_locale=loc) for s, loc in zip(segment_audio(segments), locales)]
        results = self._transcribe(items)

        raw_text, num_tokens, words, confidence, error, stage = [], [], [], [], [], []
        for output in results:
            failed = isinstance(output, Exception)
            raw_text.append(None if failed else output.raw_text)
            num_tokens.append(None if failed else output.num_tokens)
            words.append(None if failed or not output.words else
                         [{"word": w.word, "start": w.start, "end": w.end, "confidence": w.confidence}
                          for w in output.words])
            confidence.append(None if failed else output.confidence)
            error.append(redact(f"{type(output).__name__}: {output}") if failed else None)
            stage.append("inference" if failed else None)
        fields = {f.name: f for f in TRANSCRIBED_SEGMENT}
        columns = [segments.field(name) for name in _CUT_FIELDS] + [
            pa.array(raw_text, fields["raw_text"].type), pa.array(num_tokens, fields["num_tokens"].type),
            pa.array(words, pa.list_(WORD_TYPE)), pa.array(confidence, fields["confidence"].type),
            pa.array(error, pa.string()), pa.array(stage, pa.string())]
        transcribed = pa.StructArray.from_arrays(columns, fields=list(TRANSCRIBED_SEGMENT))
        offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
        nested = pa.ListArray.from_arrays(offsets, transcribed)
        out = batch.drop_columns(["segments"]).append_column("segments", nested)
        return out.select(TRANSCRIBED_SCHEMA.names).cast(TRANSCRIBED_SCHEMA)

    def _transcribe(self, items: list[AudioItem]) -> list:
        """One output (or the exception) per segment. One bad clip must not fail its batch-mates: on a batch error
        the segments are retried one by one, so only the culprit carries the error."""
        if not items:
            return []
        try:
            return self.model.transcribe(items)
        except Exception as error:  # noqa: BLE001
            log.warning("a block of %d segments failed (%s); retrying them one by one", len(items), redact(str(error)))
        results: list = []
        for item in items:
            try:
                results.extend(self.model.transcribe([item]))
            except Exception as error:  # noqa: BLE001
                results.append(error)
        return results
