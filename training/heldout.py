"""The hand-written evaluation set: sentences written apart from the generator, synthesised under job-like conditions.

`training/heldout/<locale>.txt` hold in-domain sentences (only words of `training/domain/<locale>/`) that are not
fillings of the domain's templates (`check_sentences` verifies both); `training/heldout/synthesis.yaml` says how to
read them (voices held out from every training set, speeds and pitches outside the base set's ranges) and under which
conditions (clean, leading silence, telephone channels, noise: `training.channels`). The training data never holds
one of these sentences (`exclude_sentence_files` in conf/synth_speech_finetune.yaml).

    python -m training.heldout output_dir=build/heldout        # audio/<condition>/*.flac and manifest.json
    python -m training.evaluate MODEL build/heldout/manifest.json --contexts 56,13

manifest.json: one JSON object per line with audio_filepath, duration, text (`sentence<xx-XX>`), lang, condition,
variant, speed, pitch, lead_seconds, heldout_voice (always true).
"""

from __future__ import annotations

import json
import random
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from omegaconf import MISSING

from jobs.config import ConfigError, load_structured
from training import callcentre, channels
from training.cli import config_file_arg

HELDOUT_DIR = Path(__file__).resolve().parent / "heldout"
DEFAULT_CONFIG = HELDOUT_DIR / "synthesis.yaml"


@dataclass
class Condition:
    lead: list[float] = field(default_factory=lambda: [0.0, 0.0])  # seconds of silence before the speech, uniform
    trail: list[float] = field(default_factory=lambda: [0.0, 0.0])
    channel: str = "clean"  # training.channels.CHANNELS
    noise: Optional[str] = None  # a noise colour, or none
    snr_db: float = 20.0


@dataclass
class HeldoutConfig:
    output_dir: str = MISSING
    seed: int = 24
    locales: list[str] = field(default_factory=lambda: ["en-US", "es-ES", "de-DE", "fr-FR"])
    variants: list[str] = field(default_factory=lambda: ["m7", "f4", "klatt4"])
    speeds: list[int] = field(default_factory=lambda: [150])
    pitches: list[int] = field(default_factory=lambda: [50])
    word_gap: list[int] = field(default_factory=lambda: [0, 0])
    conditions: dict[str, Condition] = field(default_factory=lambda: {"clean": Condition()})
    espeak_bin: str = "espeak-ng"
    espeak_root: Optional[str] = None


def load_config(overrides: list[str], config_file: str | Path = DEFAULT_CONFIG) -> HeldoutConfig:
    cfg: HeldoutConfig = load_structured(HeldoutConfig, overrides, config_file, example="build/heldout")
    for name, cond in cfg.conditions.items():
        if cond.channel not in channels.CHANNELS or (cond.noise is not None and cond.noise not in channels.NOISE_COLOURS):
            raise ConfigError(f"condition {name}: channel must be one of {channels.CHANNELS}, noise one of "
                              f"{channels.NOISE_COLOURS} or null")
    return cfg


def sentences(locale: str) -> list[str]:
    path = HELDOUT_DIR / f"{locale}.txt"
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _template_regex(grammar: callcentre.Grammar, text: str) -> str:
    """A regular expression that matches exactly the fillings of `text` (slots expanded recursively)."""
    out, pos = [], 0
    for match in callcentre.SLOT_RE.finditer(text):
        out.append(re.escape(text[pos:match.start()]))
        out.append("(?:" + "|".join(_template_regex(grammar, o) for o in grammar.slots[match.group(1)]) + ")")
        pos = match.end()
    out.append(re.escape(text[pos:]))
    return "".join(out)


def check_sentences(locale: str) -> dict[str, list]:
    """What is wrong with a locale's hand-written sentences: `unknown_words` (not in the domain), `fillings` (a
    sentence some template generates, with that template), `duplicates`. All empty when the set is as meant."""
    grammar = callcentre.load(locale)
    patterns = [(t, re.compile(_template_regex(grammar, t), re.IGNORECASE)) for t in grammar.templates]
    lines = sentences(locale)
    return {
        "unknown_words": [(s, w) for s in lines for w in callcentre._words(s) if w not in grammar.words],
        "fillings": [(s, t) for s in lines for t, p in patterns if p.fullmatch(s)],
        "duplicates": sorted({s for s in lines if lines.count(s) > 1}),
    }


@dataclass(frozen=True)
class Reading:
    locale: str
    index: int
    text: str
    variant: str
    speed: int
    pitch: int
    gap: int


def plan_readings(cfg: HeldoutConfig) -> list[Reading]:
    """One reading per sentence; the variants cycle per locale so each voice reads about as many sentences."""
    rng = random.Random(f"{cfg.seed}:heldout")
    out = []
    for loc in cfg.locales:
        for i, text in enumerate(sentences(loc)):
            out.append(Reading(loc, i, text, cfg.variants[i % len(cfg.variants)], rng.choice(cfg.speeds),
                               rng.choice(cfg.pitches), rng.randint(*cfg.word_gap)))
    return out


def generate(cfg: HeldoutConfig, log=print) -> Path:
    import soundfile as sf

    from training.synth_speech import SAMPLE_RATE, VOICES, _espeak_wav, espeak_command

    out = Path(cfg.output_dir)
    prefix, env = espeak_command(cfg.espeak_bin, cfg.espeak_root)
    rng = random.Random(f"{cfg.seed}:conditions")
    entries = []
    readings = plan_readings(cfg)
    with tempfile.TemporaryDirectory(prefix="heldout-") as tmp:
        for r in readings:
            speech = _espeak_wav(prefix, env, f"{VOICES[r.locale]}+{r.variant}", r.speed, r.pitch, r.gap, r.text,
                                 f"{tmp}/s.wav")
            for name, cond in cfg.conditions.items():
                lead, trail = round(rng.uniform(*cond.lead), 3), round(rng.uniform(*cond.trail), 3)
                audio = channels.pad(speech, lead, trail)
                if cond.noise:
                    audio = channels.add_noise(audio, cond.snr_db, cond.noise, np.random.default_rng(rng.getrandbits(32)))
                audio = channels.apply_channel(audio, cond.channel)
                rel = f"audio/{name}/{r.locale}-{r.index:03d}.flac"
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(out / rel, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
                entries.append({"audio_filepath": rel, "duration": round(len(audio) / SAMPLE_RATE, 4),
                                "text": f"{r.text}<{r.locale}>", "lang": r.locale, "condition": name,
                                "variant": r.variant, "speed": r.speed, "pitch": r.pitch, "lead_seconds": lead,
                                "heldout_voice": True})
    (out / "manifest.json").write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries),
                                       encoding="utf-8")
    log(f"wrote {len(entries)} clips ({len(readings)} sentences x {len(cfg.conditions)} conditions) to {out}")
    return out / "manifest.json"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--check"]:
        problems = {loc: check_sentences(loc) for loc in callcentre.locales()}
        print(json.dumps(problems, indent=2, ensure_ascii=False))
        return 1 if any(v for p in problems.values() for v in p.values()) else 0
    config_file, argv = config_file_arg(argv, DEFAULT_CONFIG)
    try:
        cfg = load_config(argv, config_file)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    generate(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
