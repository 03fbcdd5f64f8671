"""The transcription job's specification: every setting, its default and its one line of documentation, defined once.

    python -m jobs.transcribe key=value ...          # over the defaults below (conf/transcribe.yaml mirrors them)
    python -m jobs.spec --write                      # regenerate conf/transcribe.yaml and the README's table

Top-level keys are the ones a NeMo user already types (`model_path`, `dataset_manifest`, `audio_dir`, `output_path`,
`target_lang`, `att_context_size`, `batch_size`, `timestamps`, `strip_lang_tags`); the rest sit in sections, as
NeMo's scripts nest `decoding.*`: `audio` (fetching, decoding, channels), `segmenting` (cutting long recordings),
`compute` (devices, actors, work blocks, the cluster), `output` (files, commits, progress) and `resume`. Each stage
takes its own section: the decode stage `audio` and `segmenting`, the committer `output`; the inference actor takes
only the model's own settings (`pipeline.models.base.ModelSettings`), which the plan resolves from these
(jobs/plan.py).

`conf/transcribe.yaml` and the README's configuration table are generated from these dataclasses, and a test fails
when either drifts from them. Old flat names (before sections existed) are accepted for one release with a
deprecation line (`RENAMED`), so existing commands keep working.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING

from jobs.config import ConfigError, load_structured
from pipeline.decode import AudioSpec
from pipeline.graph import ComputeSpec
from pipeline.locales import yaml_name
from pipeline.models.base import DTYPES
from pipeline.options import CHANNEL_MODES
from pipeline.models.released import MAX_SEGMENT_SECONDS
from pipeline.segmenter import SegmentPolicy
from pipeline.settings import setting

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "conf" / "transcribe.yaml"
README = ROOT / "README.md"

ON_SETTINGS_CHANGE = ("refuse", "redo", "keep")


@dataclass(frozen=True)
class OutputSpec:
    rows_per_file: int = setting(10000, "recordings per pair of Parquet files (about: a commit takes whole blocks)")
    commit_seconds: float = setting(300.0, "commit what is finished at least this often, even if fewer rows: a job "
                                           "killed at any time keeps what it finished before then")
    progress_seconds: float = setting(30.0, "seconds between progress lines in the log (0 = none)")
    lease_seconds: float = setting(120.0, "a job holds output_path with a lease it renews; another job may take "
                                          "over a lease not renewed for this long (a killed job)")


@dataclass(frozen=True)
class ResumeSpec:
    retry_failed: bool = setting(True, "a rerun transcribes rows that failed before again (false: they count "
                                       "as done)")
    on_settings_change: str = setting("refuse", "when output_path holds rows made with other settings that change "
                                                "the transcript: refuse (exit 2) | redo (transcribe them again, "
                                                "replacing them) | keep (keep them; do only new rows)")


@dataclass(frozen=True)
class JobSpec:
    model_path: str = setting("nvidia/nemotron-3.5-asr-streaming-0.6b",
                              "a .nemo file (local, or s3://... copied once per node) or a pretrained name")
    model_adapter: str = setting("nemotron_rnnt", "the model adapter (pipeline/models/), or module:Class of your "
                                                  "own")
    # Any: a string or a list (OmegaConf's str would refuse the list); `check` allows only those.
    dataset_manifest: Any = setting(None, "what to transcribe, chosen by what it holds: JSON-lines manifest(s) (.gz "
                                          "too), WebDataset .tar shards, Parquet/Arrow files or a folder of them "
                                          "(audio bytes in an `audio` column); a path (an existing file is that "
                                          "file, whatever characters its name holds), a glob, {0..N} braces, a "
                                          "comma-separated list, or a list [a, b] (any names); each must match; local "
                                          "or any fsspec URL")
    tarred_audio_filepaths: Optional[str] = setting(None, "a NeMo tarred dataset's shards (audio__OP_0..N_CL_.tar, "
                                                          "audio_{0..N}.tar, a glob); dataset_manifest is then its "
                                                          "manifest, or one per shard")
    audio_dir: Optional[str] = setting(None, "instead of a manifest: every audio file under this folder or prefix")
    output_path: str = setting(MISSING, "output folder, local or s3:// (required); a rerun into it resumes")
    target_lang: str = setting("auto", "a locale or alias of the checkpoint (en-US, de, ...) or auto; a manifest "
                                       "row's target_lang or lang overrides it")
    att_context_size: Optional[list[int]] = setting(None, "[left,right] encoder context, one the checkpoint "
                                                          "offers; null = its most accurate (widest right context)")
    batch_size: int = setting(16, "segments per forward pass")
    timestamps: bool = setting(False, "word timestamps (segments.words) and timed sentences")
    confidence: bool = setting(False, "word confidence (max-prob), per word, segment and recording")
    strip_lang_tags: bool = setting(True, "text never has tags; false also keeps the tagged hypothesis in raw_text")
    audio: AudioSpec = setting(doc="fetching, decoding, channels", factory=AudioSpec)
    segmenting: SegmentPolicy = setting(doc="cutting long recordings into segments at pauses",
                                        factory=SegmentPolicy)
    compute: ComputeSpec = setting(doc="devices, actors, work blocks, the cluster", factory=ComputeSpec)
    output: OutputSpec = setting(doc="output files, commits, progress", factory=OutputSpec)
    resume: ResumeSpec = setting(doc="reruns into the same output_path", factory=ResumeSpec)


# Old flat names -> their place now (accepted for one release with a deprecation line).
RENAMED = {
    "channel_mode": "audio.channel_mode", "channel_names": "audio.channel_names",
    "max_duration": "audio.max_duration", "max_file_mb": "audio.max_file_mb",
    "max_segment_seconds": "segmenting.max_seconds", "min_segment_seconds": "segmenting.min_seconds",
    "segment_overlap_seconds": "segmenting.overlap_seconds",
    "device": "compute.device", "dtype": "compute.dtype", "max_batch_seconds": "compute.max_batch_seconds",
    "gpus_per_actor": "compute.gpus_per_actor", "cpus_per_actor": "compute.cpus_per_actor",
    "min_actors": "compute.min_actors", "max_actors": "compute.max_actors", "decode_cpus": "compute.decode_cpus",
    "decode_memory_mb": "compute.decode_memory_mb", "ray_address": "compute.ray_address",
    "rows_per_file": "output.rows_per_file",
}
# Keys that no longer mean anything, and why.
REMOVED = {
    "wave_rows": "the job is one streaming pass that commits continuously (output.commit_seconds)",
    "batches_per_call": "an actor sorts one work block's segments (compute.block_seconds)",
    "rows_per_block": "work blocks are sized by audio (compute.block_seconds, compute.block_rows)",
}

# Settings that change what a row's transcript is: a rerun into an output made with other values refuses (or redoes,
# or keeps, see resume.on_settings_change). The rest (batching, devices, timestamps, output files) do not.
TRANSCRIPT_SETTINGS = ("model_path", "model_adapter", "att_context_size", "target_lang", "audio.channel_mode",
                       "segmenting.max_seconds", "segmenting.min_seconds", "segmenting.overlap_seconds")


def load_spec(overrides: list[str], config_file: str | Path | None = DEFAULT_CONFIG) -> JobSpec:
    """The job's spec from conf/transcribe.yaml and `key=value` overrides, checked as far as it can be without the
    data or the checkpoint."""
    spec = load_structured(JobSpec, overrides, config_file, example="/data/out", renamed=RENAMED, removed=REMOVED)
    spec = _normalised(spec)
    check(spec)
    return spec


def _normalised(spec: JobSpec) -> JobSpec:
    return dataclasses.replace(spec, target_lang=yaml_name(spec.target_lang).strip(),
                               dataset_manifest=_manifest_value(spec.dataset_manifest))


def _manifest_value(value: Any) -> str | list[str] | None:
    """dataset_manifest as a string or a list of strings. YAML makes `123` a number (a str field used to turn it
    into '123'); anything else that is not a path is refused here, with the entry it is about."""
    def path(item: Any, what: str) -> str:
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            return str(item)
        if not isinstance(item, str):
            kind = "an object" if isinstance(item, dict) else "a list" if isinstance(item, list) else repr(item)
            raise ConfigError(f"{what}; got {kind}")
        return item

    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        entries = [path(item, f"dataset_manifest entry {i} must be a path or a glob")
                   for i, item in enumerate(value, 1)]
        for i, entry in enumerate(entries, 1):
            if not entry.strip():
                raise ConfigError(f"dataset_manifest entry {i} is empty")
        return entries
    return path(value, "dataset_manifest must be a path, a glob, a comma-separated list or a list of them")


def _finite(name: str, value: float | None, low: float, high: float, *, low_open: bool = False) -> None:
    if value is None:
        return
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ConfigError(f"{name} must be in {bracket}{low:g}, {high:g}], got {value!r}")


def check(spec: JobSpec) -> None:
    """Checks that need neither the data nor the checkpoint: every number in a sane range, every choice known."""
    if bool(spec.dataset_manifest) == bool(spec.audio_dir):
        raise ConfigError("set exactly one of dataset_manifest (JSON-lines manifests) or audio_dir (a folder)")
    if spec.tarred_audio_filepaths and not spec.dataset_manifest:
        raise ConfigError("tarred_audio_filepaths needs dataset_manifest (the manifest that lists the members)")
    if not spec.output_path.strip():
        raise ConfigError("output_path is required (e.g. output_path=/data/out)")
    c, a, s, o = spec.compute, spec.audio, spec.segmenting, spec.output
    _finite("batch_size", spec.batch_size, 1, 65536)
    if c.dtype not in DTYPES:
        raise ConfigError(f"compute.dtype must be one of {', '.join(DTYPES)}, got {c.dtype!r}")
    if c.device not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", c.device):
        raise ConfigError(f"compute.device must be auto, cpu, cuda or cuda:N, got {c.device!r}")
    if spec.att_context_size is not None and len(spec.att_context_size) != 2:
        raise ConfigError(f"att_context_size is [left, right], e.g. [56,13]; got {spec.att_context_size}")
    _finite("compute.max_batch_seconds", c.max_batch_seconds, 0, 1e6, low_open=True)
    _finite("compute.gpus_per_actor", c.gpus_per_actor, 0, 64, low_open=True)
    _finite("compute.cpus_per_actor", c.cpus_per_actor, 0, 1024, low_open=True)
    _finite("compute.model_threads", c.model_threads, 1, 1024)
    _finite("compute.actor_memory_mb", c.actor_memory_mb, 64, 1 << 30)
    _finite("compute.resource_wait_seconds", c.resource_wait_seconds, 0, 86400)
    _finite("compute.decode_cpus", c.decode_cpus, 0, 1024, low_open=True)
    _finite("compute.decode_memory_mb", c.decode_memory_mb, 64, 1 << 20)
    _finite("compute.block_seconds", c.block_seconds, 1, 86400)
    _finite("compute.block_rows", c.block_rows, 1, 1 << 20)
    if c.min_actors < 1 or (c.max_actors is not None and c.max_actors < c.min_actors):
        raise ConfigError(f"need 1 <= compute.min_actors <= compute.max_actors, got {c.min_actors}, "
                          f"{c.max_actors}")
    if a.channel_mode not in CHANNEL_MODES:
        raise ConfigError(f"audio.channel_mode must be mix or split, got {a.channel_mode!r}")
    _finite("audio.max_duration", a.max_duration, 0, 7 * 86400.0, low_open=True)
    _finite("audio.max_file_mb", a.max_file_mb, 0, 1 << 22, low_open=True)
    _finite("audio.fetch_timeout", a.fetch_timeout, 0, 3600, low_open=True)
    _finite("segmenting.max_seconds", s.max_seconds, 1, MAX_SEGMENT_SECONDS)
    _finite("segmenting.min_seconds", s.min_seconds, 0, s.max_seconds, low_open=True)
    _finite("segmenting.overlap_seconds", s.overlap_seconds, 0, s.min_seconds)
    if s.overlap_seconds >= s.min_seconds:
        raise ConfigError("need segmenting.overlap_seconds < segmenting.min_seconds")
    _finite("segmenting.frame_seconds", s.frame_seconds, 0.001, 1.0)
    _finite("segmenting.pause_seconds", s.pause_seconds, s.frame_seconds, s.min_seconds)
    _finite("segmenting.silence_db", s.silence_db, -100, 0)
    _finite("segmenting.relative_db", s.relative_db, 0, 100)
    _finite("segmenting.min_contrast_db", s.min_contrast_db, 0, 100)
    _finite("output.rows_per_file", o.rows_per_file, 1, 10_000_000)
    _finite("output.commit_seconds", o.commit_seconds, 1, 86400)
    _finite("output.progress_seconds", o.progress_seconds, 0, 86400)
    _finite("output.lease_seconds", o.lease_seconds, 5, 86400)
    if spec.resume.on_settings_change not in ON_SETTINGS_CHANGE:
        raise ConfigError(f"resume.on_settings_change must be one of {', '.join(ON_SETTINGS_CHANGE)}, "
                          f"got {spec.resume.on_settings_change!r}")


def get(spec: Any, dotted: str) -> Any:
    """A setting by its dotted name (`audio.channel_mode`)."""
    for part in dotted.split("."):
        spec = getattr(spec, part)
    return spec


# --- generated documentation ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One key as documented: its dotted name, its default as YAML writes it, its one line."""

    key: str
    default: str
    doc: str
    section: str  # "" for top-level keys


def _yaml_value(value: Any) -> str:
    if value is MISSING or value == MISSING:
        return "???"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else f"{value:.1f}"
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    return str(value)


def entries(schema: type = JobSpec, section: str = "") -> list[Entry]:
    out: list[Entry] = []
    for f in dataclasses.fields(schema):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore
        if dataclasses.is_dataclass(default):
            out.extend(entries(type(default), f.name))
            continue
        key = f"{section}.{f.name}" if section else f.name
        out.append(Entry(key, _yaml_value(default), f.metadata.get("doc", ""), section))
    return out


def section_docs() -> dict[str, str]:
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(JobSpec)
            if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory())}


def render_yaml() -> str:
    """conf/transcribe.yaml, as generated from the spec."""
    lines = ["# nemotron-batch: defaults of `python -m jobs.transcribe`. Override any key: key=value (sections: "
             "audio.channel_mode=split).",
             "# GENERATED from jobs/spec.py by `python -m jobs.spec --write`: edit the spec, not this file.", ""]
    docs = section_docs()
    current = None
    for e in entries():
        name = e.key.rsplit(".", 1)[-1]
        if e.section != current:
            current = e.section
            if current:
                lines += ["", f"{current}:  # {docs[current]}"]
        indent = "  " if e.section else ""
        lines.append(f"{indent}{name}: {e.default}  # {e.doc}")
    return "\n".join(lines) + "\n"


def render_table() -> str:
    """The README's configuration table, as generated from the spec."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for e in entries():
        default = "required" if e.default == "???" else f"`{e.default}`"
        rows.append(f"| `{e.key}` | {default} | {e.doc.replace('|', '&#124;')} |")
    old = ", ".join(f"`{k}` -> `{v}`" for k, v in RENAMED.items())
    gone = ", ".join(f"`{k}` ({why})" for k, why in REMOVED.items())
    rows += ["", f"Old flat names still accepted for one release (with a deprecation line): {old}. "
             f"Accepted and ignored: {gone}."]
    return "\n".join(rows)


def render_help() -> str:
    width = max(len(e.key) for e in entries())
    lines = []
    for e in entries():
        lines.append(f"  {e.key:<{width}}  {e.default:<12} {e.doc}")
    return "\n".join(lines)


TABLE_BEGIN = "<!-- spec-table: generated by `python -m jobs.spec --write` -->"
TABLE_END = "<!-- /spec-table -->"


def readme_with_table(readme: str) -> str:
    start, end = readme.index(TABLE_BEGIN), readme.index(TABLE_END)
    return readme[: start + len(TABLE_BEGIN)] + "\n" + render_table() + "\n" + readme[end:]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--write"]:
        DEFAULT_CONFIG.write_text(render_yaml(), encoding="utf-8")
        README.write_text(readme_with_table(README.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"wrote {DEFAULT_CONFIG} and the table in {README}")
        return 0
    print(render_help())
    return 0


if __name__ == "__main__":
    sys.exit(main())
