"""NeMo-style configuration: a typed dataclass's defaults <- a YAML file <- `key=value` overrides.

One loader for every job that takes `key=value` overrides (transcribe, report, compare, export, the training jobs).
OmegaConf's structured configs give the types: an unknown key or a value of the wrong type is an error that names the
key. Every failure is a `ConfigError` with one clear message; a job prints it and exits with code 2.

Renamed keys: a job may accept an old name for one release (`renamed={"channel_mode": "audio.channel_mode"}`); the
value goes to the new key and one deprecation line is logged. Removed keys (`removed={"wave_rows": "why"}`) are
accepted, ignored, and also logged.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

T = TypeVar("T")
log = logging.getLogger("nemotron_batch.config")


class ConfigError(ValueError):
    """A configuration the job cannot run with: one message, exit code 2."""


def run_command(work: Callable[[], Any], *, job: str = "job", verbose: bool = False) -> int:
    """The common end of a job's `main`: the run's log file and a quiet console (jobs/console.py: the job's own
    timestamped lines on the terminal, other libraries' messages in the log, all of it with `verbose`), credentials
    redacted in every record of this process whoever makes it, an embedded Ray that asks for no token, `work()` run;
    a `ConfigError` is one `error: ...` line (credentials redacted) and exit code 2, a summary its `lines()` and 0.
    Any other failure prints its traceback and the log's path, and is raised."""
    from connectors.redaction import install_redaction
    from connectors.storage import redact
    from jobs.console import RunLog

    install_redaction()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with RunLog(job, verbose):
        try:
            summary = work()
        except ConfigError as error:
            print(f"error: {redact(str(error))}", file=sys.stderr)
            return 2
    print("\n".join(summary.lines()))
    return getattr(summary, "exit_code", 0)


def field_names(schema: type) -> list[str]:
    """Every key of a (nested) config dataclass, dotted: `model_path`, ..., `audio.channel_mode`, ..."""
    names: list[str] = []
    for f in dataclasses.fields(schema):
        sub = f.type if isinstance(f.type, type) else None
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore
        if dataclasses.is_dataclass(default):
            names.extend(f"{f.name}.{n}" for n in field_names(type(default)))
        elif sub is not None and dataclasses.is_dataclass(sub):
            names.extend(f"{f.name}.{n}" for n in field_names(sub))
        else:
            names.append(f.name)
    return names


def _writable(node: Any) -> None:
    """Frozen dataclasses make read-only OmegaConf nodes, nested ones included; merging needs them writable."""
    if isinstance(node, DictConfig):
        OmegaConf.set_readonly(node, False)
        for key in node.keys():
            _writable(node._get_node(key))


def _rename(pairs: dict[str, Any], renamed: dict[str, str], removed: dict[str, str], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs.items():
        if key in renamed:
            log.warning("deprecated key %r (%s): use %s=...; the old name is accepted until the next release",
                        key, where, renamed[key])
            out[renamed[key]] = value
        elif key in removed:
            log.warning("key %r (%s) is no longer used and is ignored: %s", key, where, removed[key])
        else:
            out[key] = value
    return out


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def load_structured(schema: type[T], overrides: list[str], config_file: str | Path | None, *, example: str = "...",
                    hint: str = "", renamed: dict[str, str] | None = None,
                    removed: dict[str, str] | None = None) -> T:
    """Defaults (the dataclass) <- the YAML file (if it exists) <- `key=value` overrides, type-checked."""
    renamed, removed = renamed or {}, removed or {}
    try:
        base = OmegaConf.structured(schema)
        _writable(base)
        layers = [base]
        if config_file is not None and Path(config_file).exists():
            from_file = OmegaConf.to_container(OmegaConf.load(config_file))
            if renamed or removed:
                from_file = _rename(_flatten(from_file), renamed, removed, f"in {Path(config_file).name}")
                layers.append(OmegaConf.from_dotlist([]))
                for key, value in from_file.items():  # type: ignore[union-attr]
                    OmegaConf.update(layers[-1], key, value, force_add=True)
            else:
                layers.append(OmegaConf.create(from_file))
        given = OmegaConf.from_dotlist(list(overrides))
        if renamed or removed:
            pairs = _rename(_flatten(OmegaConf.to_container(given)), renamed, removed, "on the command line")
            given = OmegaConf.create()
            for key, value in pairs.items():
                OmegaConf.update(given, key, value, force_add=True)
        layers.append(given)
        return OmegaConf.to_object(OmegaConf.merge(*layers))  # type: ignore[return-value]
    except (ConfigKeyError, ConfigAttributeError) as error:
        known = ", ".join(field_names(schema))
        raise ConfigError(f"unknown configuration key {error.full_key!r}. Known keys: {known}{hint}") from None
    except MissingMandatoryValue as error:
        raise ConfigError(f"{error.full_key} is required (e.g. {error.full_key}={example})") from None
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        raise ConfigError(f"bad value for {key}: {str(error).splitlines()[0]}") from None
    except yaml.YAMLError as error:  # a value OmegaConf parses as YAML: `key=[a` or an unquoted `[` in a list
        raise ConfigError(f"cannot read the configuration: {_yaml_problem(error)}") from None
    except ValueError as error:  # a section's own check (its dataclass __post_init__)
        raise ConfigError(f"bad settings: {error}") from None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML parse error in one line: what is wrong and in which text (a value, or the file's line)."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    text = (mark.buffer or "").rstrip("\0") if mark is not None else ""
    where = f" in {text!r}" if text and "\n" not in text.strip() else (f" at line {mark.line + 1}" if mark else "")
    return f"not valid YAML ({problem}){where}"
