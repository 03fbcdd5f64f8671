"""A row's options, resolved once: what the manifest row asks for, merged with the job's settings and checked.

Every later stage reads the resolved values and checks nothing again: `target_lang` (as asked: the row's own
`target_lang` or `lang`, else the job's), `prompt_locale` (its canonical locale, or `auto`: what the model is
prompted with and what its tags are compared with), `channel_mode` (mix | split) and `channel` (one channel, as
NeMo's `channel_selector`). A row whose options cannot be honoured gets its error here: a locale the checkpoint does
not know (stage `language`), an unknown channel mode (stage `manifest`).
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.manifests import ManifestRow
from pipeline.locales import Locales, UnknownLocale
from pipeline.records import with_error

CHANNEL_MODES = ("mix", "split")


@dataclass(frozen=True)
class JobDefaults:
    """The job-level options a row falls back on."""

    target_lang: str
    channel_mode: str


def source_row(row: ManifestRow, defaults: JobDefaults, locales: Locales) -> dict:
    """The row as the pipeline carries it (see `pipeline.records.SOURCE_SCHEMA`), its options resolved."""
    out = row.as_dict()
    requested_lang = out.pop("requested_lang")
    requested_mode = out.pop("requested_channel_mode")
    out["channel"] = out.pop("requested_channel")
    error = out.pop("error")
    out["error"] = out["error_stage"] = None
    out["target_lang"] = requested_lang if requested_lang is not None else defaults.target_lang
    out["channel_mode"] = requested_mode or defaults.channel_mode
    if error:
        return with_error(out, "manifest", error)
    if out["channel_mode"] not in CHANNEL_MODES:
        return with_error(out, "manifest", f"unknown channel_mode {out['channel_mode']!r}; use mix or split")
    try:
        out["prompt_locale"] = locales.resolve(out["target_lang"])
    except UnknownLocale as unknown:
        return with_error(out, "language", str(unknown))
    return out
