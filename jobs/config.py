"""The transcription job's configuration: `conf/transcribe.yaml` plus `key=value` overrides, as NeMo scripts take.

Parsed into a typed dataclass (OmegaConf structured config, so an unknown key or a wrong type is an error), then
checked against the data and the checkpoint before any work starts. Every failure here is a `ConfigError` with one
clear message; the job prints it and exits non-zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, TypeVar

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from connectors.storage import expand, filesystem
from pipeline.models.base import ModelCard

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "transcribe.yaml"
DTYPES = ("float32", "bfloat16", "float16")
T = TypeVar("T")


class ConfigError(ValueError):
    pass


@dataclass
class TranscribeConfig:
    # What to transcribe and where to write it.
    model_path: str = "nvidia/nemotron-3.5-asr-streaming-0.6b"
    dataset_manifest: Optional[str] = None
    audio_dir: Optional[str] = None
    output_path: str = MISSING
    # How the model runs.
    model_adapter: str = "nemotron_rnnt"
    target_lang: str = "auto"
    att_context_size: Optional[list[int]] = None
    strip_lang_tags: bool = True
    timestamps: bool = False
    confidence: bool = False
    batch_size: int = 16
    batches_per_call: int = 16
    max_batch_seconds: Optional[float] = None
    # Compute.
    device: str = "auto"
    dtype: str = "float32"
    gpus_per_actor: float = 1.0
    cpus_per_actor: float = 1.0
    min_actors: int = 1
    max_actors: Optional[int] = None
    decode_cpus: float = 1.0
    decode_memory_mb: int = 512
    rows_per_block: int = 4
    # Long audio and stereo.
    channel_mode: str = "mix"
    channel_names: list[str] = field(default_factory=list)
    max_segment_seconds: float = 30.0
    min_segment_seconds: float = 10.0
    segment_overlap_seconds: float = 1.0
    # Inputs that are too big become error rows.
    max_duration: float = 4 * 3600.0
    max_file_mb: float = 4096.0
    # Output.
    rows_per_file: int = 10_000
    wave_rows: int = 50_000
    ray_address: Optional[str] = None


def load_structured(schema: type[T], overrides: list[str], config_file: str | Path, *, example: str = "...",
                    hint: str = "") -> T:
    """Defaults (the dataclass) <- the YAML file (if it exists) <- `key=value` overrides, type-checked; every OmegaConf
    failure as one ConfigError that names the key. Shared by the jobs that take NeMo-style overrides."""
    try:
        layers = [OmegaConf.structured(schema)]
        if Path(config_file).exists():
            layers.append(OmegaConf.load(config_file))
        return OmegaConf.to_object(OmegaConf.merge(*layers, OmegaConf.from_dotlist(overrides)))  # type: ignore
    except (ConfigKeyError, ConfigAttributeError) as error:
        known = ", ".join(schema.__dataclass_fields__)  # type: ignore[attr-defined]
        raise ConfigError(f"unknown configuration key {error.full_key!r}. Known keys: {known}{hint}") from None
    except MissingMandatoryValue as error:
        raise ConfigError(f"{error.full_key} is required (e.g. {error.full_key}={example})") from None
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        raise ConfigError(f"bad value for {key}: {str(error).splitlines()[0]}") from None


def load_config(overrides: list[str], config_file: str | Path = DEFAULT_CONFIG) -> TranscribeConfig:
    """The transcription job's configuration, checked as far as it can be without the data or the checkpoint."""
    cfg = load_structured(TranscribeConfig, overrides, config_file, example="/data/out")
    check_settings(cfg)
    return cfg


def check_settings(cfg: TranscribeConfig) -> None:
    """Checks that need neither the data nor the checkpoint."""
    if bool(cfg.dataset_manifest) == bool(cfg.audio_dir):
        raise ConfigError("set exactly one of dataset_manifest (JSON-lines manifests) or audio_dir (a folder)")
    if cfg.batch_size < 1 or cfg.batches_per_call < 1:
        raise ConfigError(f"batch_size and batches_per_call must be >= 1, got {cfg.batch_size}, "
                          f"{cfg.batches_per_call}")
    if cfg.dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {cfg.dtype!r}")
    if cfg.device not in ("auto", "cpu", "cuda") and not cfg.device.startswith("cuda:"):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {cfg.device!r}")
    if cfg.att_context_size is not None and len(cfg.att_context_size) != 2:
        raise ConfigError(f"att_context_size is [left, right], e.g. [56,13]; got {cfg.att_context_size}")
    if cfg.min_actors < 1 or (cfg.max_actors is not None and cfg.max_actors < cfg.min_actors):
        raise ConfigError(f"need 1 <= min_actors <= max_actors, got {cfg.min_actors}, {cfg.max_actors}")
    if min(cfg.max_duration, cfg.max_file_mb, cfg.rows_per_block, cfg.rows_per_file, cfg.wave_rows) <= 0:
        raise ConfigError("max_duration, max_file_mb, rows_per_block, rows_per_file and wave_rows must be positive")
    if cfg.channel_mode not in ("mix", "split"):
        raise ConfigError(f"channel_mode must be mix or split, got {cfg.channel_mode!r}")
    if not 0 < cfg.min_segment_seconds <= cfg.max_segment_seconds:
        raise ConfigError("need 0 < min_segment_seconds <= max_segment_seconds")
    if not 0 <= cfg.segment_overlap_seconds < cfg.min_segment_seconds:
        raise ConfigError("need 0 <= segment_overlap_seconds < min_segment_seconds")


def check_inputs(cfg: TranscribeConfig) -> list[str]:
    """The manifest files (or [] for audio_dir), checked to exist and be non-empty; the output folder creatable."""
    manifests: list[str] = []
    if cfg.dataset_manifest:
        manifests = expand(cfg.dataset_manifest)
        if not manifests:
            raise ConfigError(f"dataset_manifest {cfg.dataset_manifest!r} matches no file")
        for url in manifests:
            fs, path = filesystem(url)
            if not fs.size(path):
                raise ConfigError(f"manifest {url} is empty: nothing to transcribe")
    else:
        fs, path = filesystem(cfg.audio_dir)
        if not fs.isdir(path):
            raise ConfigError(f"audio_dir {cfg.audio_dir!r} is not a folder")
    try:
        fs, path = filesystem(cfg.output_path)
        fs.makedirs(path, exist_ok=True)
    except Exception as error:  # noqa: BLE001
        raise ConfigError(f"cannot create output_path {cfg.output_path!r}: {type(error).__name__}: {error}") from None
    return manifests


def check_model(cfg: TranscribeConfig, card: ModelCard) -> tuple[int, int] | None:
    """The att_context_size to use (the most accurate by default), and target_lang checked against the checkpoint."""
    if cfg.target_lang != "auto" and cfg.target_lang not in card.prompt_dictionary:
        raise ConfigError(f"target_lang {cfg.target_lang!r} is not in the checkpoint's prompt dictionary; "
                          f"use auto or one of: {', '.join(card.locales)}")
    if cfg.att_context_size is None:
        return card.most_accurate_att_context_size
    wanted = (int(cfg.att_context_size[0]), int(cfg.att_context_size[1]))
    if card.att_context_sizes and wanted not in card.att_context_sizes:
        offered = " ".join(f"[{a},{b}]" for a, b in card.att_context_sizes)
        raise ConfigError(f"att_context_size [{wanted[0]},{wanted[1]}] is not offered by the checkpoint: {offered}")
    return wanted
