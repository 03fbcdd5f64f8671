"""The transcription job's plan: everything decided and checked before any work starts, each setting resolved once.

`plan(overrides)` loads the spec (keys, types, ranges), finds the inputs, reads the checkpoint's card (its config, no
weights), and resolves what later stages take as final: the output store (a normalised `output_path`), the latency
setting that runs (`att_context_size`), the job's target as a canonical locale, and the model's own settings. A
failure is a `ConfigError` (one `error:` line, exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.inputs import InputError, InputSource, find_inputs
from connectors.model_store import fingerprint, localize
from connectors.output_store import OutputStore
from connectors.storage import ensure_output_folder, redact
from jobs.config import ConfigError
from jobs.spec import TRANSCRIPT_SETTINGS, JobSpec, get, load_spec
from pipeline.locales import UnknownLocale
from pipeline.models import adapter_class
from pipeline.models.base import ModelCard, ModelSettings


@dataclass(frozen=True)
class Plan:
    spec: JobSpec  # as loaded; what differs from it after resolving is in the fields below
    inputs: list[InputSource]
    store: OutputStore
    card: ModelCard
    model: ModelSettings  # att_context_size resolved: the one that runs
    prompt_locale: str  # the job's target_lang as a canonical locale (or auto)
    model_fingerprint: str  # the checkpoint's content (a file replaced under the same path is another model)

    @property
    def att_context_size(self) -> list[int] | None:
        return list(self.model.att_context_size) if self.model.att_context_size else None

    def transcript_settings(self) -> dict:
        """The settings that change a transcript, as compared between runs (resolved: the latency setting that
        runs, the target as its canonical locale)."""
        values = {key: get(self.spec, key) for key in TRANSCRIPT_SETTINGS}
        values["att_context_size"] = self.att_context_size
        values["target_lang"] = self.prompt_locale
        values["model_fingerprint"] = self.model_fingerprint
        return values


def check_inputs(spec: JobSpec) -> list[InputSource]:
    """The inputs (each manifest normalised and once, each non-empty; or the audio folder), and the output folder
    creatable (a bucket must already exist: the job never creates one)."""
    try:
        inputs = find_inputs(spec.dataset_manifest, spec.audio_dir, spec.tarred_audio_filepaths)
    except InputError as error:
        raise ConfigError(str(error)) from None
    try:
        ensure_output_folder(spec.output_path)
    except Exception as error:  # noqa: BLE001
        raise ConfigError(f"cannot use output_path {redact(spec.output_path)!r}: {redact(str(error))}") from None
    return inputs


def check_model(spec: JobSpec, card: ModelCard) -> tuple[tuple[int, int] | None, str]:
    """The att_context_size that runs (the most accurate unless one is asked for) and the job's target as a canonical
    locale, both checked against the checkpoint."""
    try:
        return card.resolve_att_context_size(spec.att_context_size), card.languages.resolve(spec.target_lang)
    except (UnknownLocale, ValueError) as error:
        raise ConfigError(str(error)) from None


def model_settings(spec: JobSpec, att_context_size: tuple[int, int] | None) -> ModelSettings:
    c = spec.compute
    # A CPU actor's torch threads: what Ray reserved for it unless told (Ray sets OMP_NUM_THREADS to that too).
    threads = c.model_threads or max(1, round(c.cpus_per_actor))
    return ModelSettings(model_path=spec.model_path, att_context_size=att_context_size, batch_size=spec.batch_size,
                         max_batch_seconds=c.max_batch_seconds, timestamps=spec.timestamps,
                         confidence=spec.confidence, device=c.device, dtype=c.dtype, threads=threads)


def plan(overrides: list[str]) -> Plan:
    spec = load_spec(overrides)
    inputs = check_inputs(spec)
    try:
        card = adapter_class(spec.model_adapter).describe(localize(spec.model_path))
        content = fingerprint(spec.model_path)
    except Exception as error:  # noqa: BLE001 - a checkpoint we cannot read is a config fault
        raise ConfigError(f"cannot read the checkpoint {redact(spec.model_path)!r}: {type(error).__name__}: "
                          f"{redact(str(error))}") from None
    att, locale = check_model(spec, card)
    return Plan(spec=spec, inputs=inputs, store=OutputStore.at(spec.output_path), card=card,
                model=model_settings(spec, att), prompt_locale=locale, model_fingerprint=content)
