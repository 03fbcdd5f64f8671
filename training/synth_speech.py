"""Multilingual synthetic speech for training and testing a small Nemotron-class model: espeak-ng voices reading
sentences of a domain, written as 16 kHz mono FLAC with NeMo manifests. Two domains:
- `callcentre` (the demo model's): sentences from the plain files in training/domain/<locale>/ (`training.callcentre`);
- `general` (the broad recipe, for a GPU): everyday sentences from the templates in `training.synth_text`.

    python -m training.synth_speech output_dir=build/synth seed=0               # generate (key=value over
                                                                                # conf/synth_speech.yaml: call-centre)
    python -m training.synth_speech --config conf/synth_speech_broad.yaml output_dir=build/synth   # the broad set
    python -m training.synth_speech --check build/synth                         # verify the held-out split
    python -m training.synth_speech --bundle-espeak build/espeak                # espeak-ng for a machine without apt

Output (`output_dir`):
    audio/{train,dev,test}/<split>-NNNNNN.flac
    {train,dev,test}_manifest.json   one JSON object per line: audio_filepath (relative to the manifest), duration,
                                     text ("Guten Tag.<de-DE> Hello there.<en-US>": every sentence followed by its
                                     language tag), lang (the locale, or `auto` for a mixed-language clip), and
                                     voices, variant, heldout_voice, speed, pitch, locales, lead_seconds,
                                     trail_seconds, noise, snr_db, transmission (clean | mulaw8k | mp3_8k)
    summary.json                     sizes per split and locale, the held-out voices, the settings

How the set is made:
- Sentences, `general`: for each locale a pool of distinct template sentences (`training.synth_text.sentence_pool`);
  the first `test_sentences_per_locale` go to test, the next `dev_sentences_per_locale` to dev, the rest to train.
  A sentence is in one split only, also inside mixed-language clips.
- Sentences, `callcentre`: dev and test draw distinct sentences from the domain's fixed held-out class (new
  combinations of its words, the same class for every seed: `training.callcentre.is_heldout`); train draws at the
  grammar's own frequencies and never a held-out sentence. So a test set made from any seed is held out from a model
  trained on any other seed's training set.
- Voices: espeak-ng's voice for the locale with a voice variant (`de+m3`: a different speaker model), a speed
  (words per minute), a pitch and a word gap, drawn per clip. The `heldout_variants` are never used in train; in
  dev and test `heldout_voice_fraction` of each locale's clips use them (spread evenly, the first clip of each
  locale included, cycling through the held-out variants), the rest use training variants.
- Clips: 1..`max_sentences` sentences of one locale (`lang` = the locale), or, for `mixed_fraction` of the training
  clips and `*_mixed_clips` of dev/test, 2-3 sentences from at least two locales read by the same variant
  (`lang` = `auto`). Sentences are joined with 0.15-0.5 s of silence.
- Job-like conditions (all off in conf/synth_speech.yaml, on in conf/synth_speech_finetune.yaml; `training.channels`):
  silence before and after the speech (`lead_silence`, `trail_silence`), background noise of a colour and SNR on
  `noise_prob` of the clips, a transmission per clip (`channels`/`channel_weights`: clean, 8 kHz mu-law, 8 kHz MP3),
  and for `callcentre` training sentences `variety`, the share recombined from the templates' words
  (`callcentre.Recombiner`); `exclude_sentence_files` keeps a hand-written evaluation set out of training. They are
  drawn from a generator of their own, so turning them on leaves every sentence, voice and speed of a plan as it was.
- Deterministic: everything is drawn from `seed` before synthesis, and espeak-ng's output is deterministic, so the
  same seed and espeak-ng version give byte-identical manifests (and audio). `hours` is planned from an estimate of
  the speaking rate; summary.json has the real figure.

espeak-ng runs as a subprocess per sentence (`espeak-ng -v <voice>+<variant> -s <speed> -p <pitch> -g <gap> -w
out.wav "text"`), in a process pool of `workers` (0: one per CPU). It synthesises about 250x faster than real time
per core, so hours of audio take minutes. On a machine without apt, `--bundle-espeak DIR` (run where apt works)
unpacks the Debian packages into DIR with a stub in place of libpcaudio (audio playback, never used with -w, and
the only dependency that pulls PulseAudio and ALSA), keeping only the four languages' dictionaries; then set
`espeak_root=DIR`.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import MISSING

from jobs.config import ConfigError, load_structured
from training import callcentre, channels
from training.cli import config_file_arg
from training.synth_text import LANGUAGES, sentence_pool

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "conf" / "synth_speech.yaml"
SPLITS = ("train", "dev", "test")
DOMAINS = ("callcentre", "general")
SAMPLE_RATE = 16000
# espeak-ng's voice for each locale.
VOICES = {"en-US": "en-us", "es-ES": "es", "de-DE": "de", "fr-FR": "fr-fr"}
# Speaking rate of espeak-ng at 175 words per minute, in characters per second (measured: 15-19 over the four
# languages); only used to plan how many clips make `hours`.
CHARS_PER_SECOND_AT_175 = 17.0
PAUSE_SECONDS = (0.15, 0.5)
# The Debian packages of espeak-ng minus libpcaudio0 (replaced by a stub: see bundle_espeak).
ESPEAK_PACKAGES = ("espeak-ng", "libespeak-ng1", "espeak-ng-data", "libsonic0")
_LIBDIR = "usr/lib/x86_64-linux-gnu"




class SplitError(AssertionError):
    """The generated set breaks its held-out rules (a sentence or a held-out voice in two splits)."""


@dataclass
class SynthConfig:
    output_dir: str = MISSING
    seed: int = 0
    domain: str = "callcentre"  # callcentre (training/domain/) | general (training.synth_text)
    hours: float = 1.0
    locales: list[str] = field(default_factory=lambda: ["en-US", "es-ES", "de-DE", "fr-FR"])
    test_sentences_per_locale: int = 200
    dev_sentences_per_locale: int = 60
    max_train_sentences_per_locale: int = 8000
    test_clips_per_locale: int = 100
    dev_clips_per_locale: int = 30
    test_mixed_clips: int = 60
    dev_mixed_clips: int = 20
    mixed_fraction: float = 0.15
    max_sentences: int = 2
    train_variants: list[str] = field(default_factory=lambda: [
        "m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f5", "klatt", "klatt2", "klatt3", "max", "robert",
        "linda", "steph", "quincy", "paul", "anika", "benjamin", "adam"])
    heldout_variants: list[str] = field(default_factory=lambda: ["m7", "f4", "klatt4"])
    heldout_voice_fraction: float = 0.5
    speed: list[int] = field(default_factory=lambda: [135, 195])
    pitch: list[int] = field(default_factory=lambda: [30, 70])
    word_gap: list[int] = field(default_factory=lambda: [0, 2])
    # What the job's audio has and the plain synthesis lacks (all off by default: the base set of the shipped model).
    variety: float = 0.0  # share of training sentences recombined (callcentre.Recombiner), not template fillings
    lead_silence: list[float] = field(default_factory=lambda: [0.0, 0.0])  # seconds before the speech, uniform
    trail_silence: list[float] = field(default_factory=lambda: [0.0, 0.0])  # seconds after it
    noise_prob: float = 0.0  # share of clips with background noise
    noise_colours: list[str] = field(default_factory=lambda: list(channels.NOISE_COLOURS))
    noise_snr_db: list[float] = field(default_factory=lambda: [10.0, 40.0])
    # Lists, not a mapping: an override of a mapping would be merged into the file's keys, not replace them.
    channels: list[str] = field(default_factory=lambda: ["clean"])  # of channels.CHANNELS, drawn by weight
    channel_weights: list[float] = field(default_factory=lambda: [1.0])
    exclude_sentence_files: list[str] = field(default_factory=list)  # never train on these (one sentence a line)
    workers: int = 0
    espeak_bin: str = "espeak-ng"
    espeak_root: Optional[str] = None


def load_config(overrides: list[str], config_file: str | Path = DEFAULT_CONFIG) -> SynthConfig:
    cfg: SynthConfig = load_structured(SynthConfig, overrides, config_file, example="build/synth")
    if cfg.domain not in DOMAINS:
        raise ConfigError(f"domain must be one of {', '.join(DOMAINS)}, got {cfg.domain!r}")
    known = callcentre.locales() if cfg.domain == "callcentre" else tuple(LANGUAGES)
    unknown = [loc for loc in cfg.locales if loc not in known or loc not in VOICES]
    if unknown:
        raise ConfigError(f"no {cfg.domain} sentences or voice for {unknown}; known: {', '.join(known)}")
    if set(cfg.train_variants) & set(cfg.heldout_variants):
        raise ConfigError(f"variants both in train and held out: {sorted(set(cfg.train_variants) & set(cfg.heldout_variants))}")
    if not cfg.train_variants or not cfg.heldout_variants:
        raise ConfigError("need at least one training and one held-out voice variant")
    bad = [c for c in cfg.channels if c not in channels.CHANNELS] + \
        [c for c in cfg.noise_colours if c not in channels.NOISE_COLOURS]
    if len(cfg.channels) != len(cfg.channel_weights):
        raise ConfigError(f"channels {list(cfg.channels)} and channel_weights {list(cfg.channel_weights)} differ in length")
    if bad or not cfg.channels or not cfg.noise_colours:
        raise ConfigError(f"unknown channels or noise colours {bad}: channels {', '.join(channels.CHANNELS)}, "
                          f"noise colours {', '.join(channels.NOISE_COLOURS)}")
    if cfg.hours < 0 or cfg.max_sentences < 1 or not 0 <= cfg.mixed_fraction <= 1:
        raise ConfigError("need hours >= 0, max_sentences >= 1, 0 <= mixed_fraction <= 1")
    return cfg


# ------------------------------------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class ClipPlan:
    clip_id: str
    split: str
    sentences: tuple[tuple[str, str], ...]  # (locale, text)
    variant: str
    heldout_voice: bool
    speed: int
    pitch: int
    gap: int
    pauses: tuple[float, ...]  # silence after each sentence but the last, seconds
    lead: float = 0.0  # silence before the speech, seconds
    trail: float = 0.0  # silence after it
    noise: Optional[str] = None  # noise colour, or None for none
    snr_db: float = 0.0
    channel: str = "clean"
    noise_seed: int = 0

    @property
    def lang(self) -> str:
        locales = {loc for loc, _ in self.sentences}
        return next(iter(locales)) if len(locales) == 1 else "auto"

    @property
    def text(self) -> str:
        return " ".join(f"{text}<{loc}>" for loc, text in self.sentences)


def _estimate_seconds(sentences, speed: int, pauses) -> float:
    chars = sum(len(text) for _, text in sentences)
    return chars / (CHARS_PER_SECOND_AT_175 * speed / 175.0) + 0.3 * len(sentences) + sum(pauses)


def read_sentence_files(paths) -> frozenset[str]:
    """The sentences of plain text files (one a line, # comments), as `callcentre.sentence_key`s."""
    keys = set()
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                keys.add(callcentre.sentence_key(line))
    return frozenset(keys)


class _Cycle:
    """Endless draws from a list: each pass through it in a new random order."""

    def __init__(self, items: list, rng: random.Random):
        self.items, self.rng, self.order = list(items), rng, []

    def next(self):
        if not self.order:
            self.order = self.items[:]
            self.rng.shuffle(self.order)
        return self.order.pop()


def split_pools(cfg: SynthConfig) -> dict[str, dict[str, list[str]]]:
    """{split: {locale: sentences}}, disjoint by construction (`general`; `callcentre`: dev and test only)."""
    if cfg.domain == "callcentre":
        pools = {"dev": {}, "test": {}}
        for loc in cfg.locales:
            pool = callcentre.heldout_pool(loc, cfg.test_sentences_per_locale + cfg.dev_sentences_per_locale, cfg.seed)
            pools["test"][loc] = pool[:cfg.test_sentences_per_locale]
            pools["dev"][loc] = pool[cfg.test_sentences_per_locale:]
        return pools
    clip_seconds = 3.0 * (1 + cfg.max_sentences) / 2
    train_needed = int(cfg.hours * 3600 / clip_seconds * (1 + cfg.max_sentences) / 2 / len(cfg.locales)) + 1
    train_n = min(cfg.max_train_sentences_per_locale, max(train_needed, 50))
    pools: dict[str, dict[str, list[str]]] = {s: {} for s in SPLITS}
    for loc in cfg.locales:
        n_test, n_dev = cfg.test_sentences_per_locale, cfg.dev_sentences_per_locale
        pool = sentence_pool(loc, n_test + n_dev + train_n, cfg.seed)
        pools["test"][loc] = pool[:n_test]
        pools["dev"][loc] = pool[n_test:n_test + n_dev]
        pools["train"][loc] = pool[n_test + n_dev:]
    return pools


def plan_clips(cfg: SynthConfig) -> dict[str, list[ClipPlan]]:
    """Every clip of every split, drawn from the seed alone."""
    pools = split_pools(cfg)
    plans: dict[str, list[ClipPlan]] = {}
    for split in SPLITS:
        rng = random.Random(f"{cfg.seed}:{split}:clips")
        # Silence, noise and channel come from a generator of their own: with them off, the plan is the same.
        crng = random.Random(f"{cfg.seed}:{split}:conditions")
        if split == "train" and cfg.domain == "callcentre":
            exclude = read_sentence_files(cfg.exclude_sentence_files)
            sentences = {loc: callcentre.TrainSentences(loc, rng, cfg.variety, random.Random(f"{cfg.seed}:{loc}:variety"),
                                                        exclude) for loc in cfg.locales}
        else:
            sentences = {loc: _Cycle(pools[split][loc], rng) for loc in cfg.locales}
        train_variants = _Cycle(cfg.train_variants, rng)
        seen = {key: 0 for key in cfg.locales + ["auto"]}  # clips so far per locale (or auto)
        heldout_cycle = {key: i for i, key in enumerate(seen)}  # locales start at different held-out variants
        clips: list[ClipPlan] = []

        def voice(key: str) -> tuple[str, bool]:
            # Held out for the k-th clip of a key when ceil((k+1) f) > ceil(k f): an even spread, the first clip of
            # every locale included, so even a tiny set hears a held-out voice in each locale.
            k, f = seen[key], cfg.heldout_voice_fraction
            seen[key] += 1
            if split != "train" and math.ceil((k + 1) * f) > math.ceil(k * f):
                variant = cfg.heldout_variants[heldout_cycle[key] % len(cfg.heldout_variants)]
                heldout_cycle[key] += 1
                return variant, True
            return train_variants.next(), False

        def make(chosen: list[tuple[str, str]], key: str) -> ClipPlan:
            variant, heldout = voice(key)
            pauses = tuple(round(rng.uniform(*PAUSE_SECONDS), 3) for _ in chosen[1:])
            noisy = cfg.noise_prob > 0 and crng.random() < cfg.noise_prob
            return ClipPlan(
                clip_id=f"{split}-{len(clips):06d}", split=split, sentences=tuple(chosen), variant=variant,
                heldout_voice=heldout, speed=rng.randint(*cfg.speed), pitch=rng.randint(*cfg.pitch),
                gap=rng.randint(*cfg.word_gap), pauses=pauses,
                lead=round(crng.uniform(*cfg.lead_silence), 3), trail=round(crng.uniform(*cfg.trail_silence), 3),
                noise=crng.choice(cfg.noise_colours) if noisy else None,
                snr_db=round(crng.uniform(*cfg.noise_snr_db), 1) if noisy else 0.0,
                channel=crng.choices(cfg.channels, weights=cfg.channel_weights)[0],
                noise_seed=crng.getrandbits(32))

        def single(loc: str) -> ClipPlan:
            n = rng.randint(1, cfg.max_sentences)
            return make([(loc, sentences[loc].next()) for _ in range(n)], loc)

        def mixed() -> ClipPlan:
            n = rng.randint(2, 3) if len(cfg.locales) > 1 else 1
            locs = rng.sample(cfg.locales, min(n, len(cfg.locales)))
            if n > len(locs):
                locs.append(rng.choice(locs))
            rng.shuffle(locs)
            return make([(loc, sentences[loc].next()) for loc in locs], "auto")

        if split == "train":
            seconds, target = 0.0, cfg.hours * 3600
            while seconds < target:
                clip = mixed() if len(cfg.locales) > 1 and rng.random() < cfg.mixed_fraction else \
                    single(cfg.locales[len(clips) % len(cfg.locales)])
                clips.append(clip)
                seconds += _estimate_seconds(clip.sentences, clip.speed, clip.pauses) + clip.lead + clip.trail
        else:
            per_locale = cfg.test_clips_per_locale if split == "test" else cfg.dev_clips_per_locale
            n_mixed = cfg.test_mixed_clips if split == "test" else cfg.dev_mixed_clips
            for _ in range(per_locale):
                for loc in cfg.locales:
                    clips.append(single(loc))
            if len(cfg.locales) > 1:
                for _ in range(n_mixed):
                    clips.append(mixed())
        plans[split] = clips
    return plans


# ------------------------------------------------------------------------------------------------------ synthesis


def espeak_command(cfg_bin: str, root: str | None) -> tuple[list[str], dict[str, str]]:
    """The espeak-ng command prefix and environment: the system's, or an unpacked bundle's."""
    env = dict(os.environ)
    if not root:
        return [cfg_bin], env
    root_path = Path(root).resolve()
    libdir = root_path / _LIBDIR
    env["LD_LIBRARY_PATH"] = os.pathsep.join([str(libdir)] + ([env["LD_LIBRARY_PATH"]]
                                                                if env.get("LD_LIBRARY_PATH") else []))
    return [str(root_path / "usr/bin/espeak-ng"), f"--path={libdir}"], env


def _espeak_wav(prefix: list[str], env: dict, voice: str, speed: int, pitch: int, gap: int, text: str,
                wav: str):
    import numpy as np
    import soundfile as sf
    import soxr

    cmd = prefix + ["-v", voice, "-s", str(speed), "-p", str(pitch), "-g", str(gap), "-w", wav, text]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode != 0 or not os.path.exists(wav):
        raise RuntimeError(f"espeak-ng failed ({result.returncode}) for {voice!r} {text!r}: {result.stderr.strip()}")
    audio, rate = sf.read(wav, dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, rate, SAMPLE_RATE, quality="HQ")
    return np.asarray(audio, dtype=np.float32)


def speak(text: str, locale: str, variant: str, speed: int = 160, pitch: int = 50, gap: int = 0,
          espeak_bin: str = "espeak-ng", espeak_root: str | None = None):
    """One sentence read by espeak-ng's voice for `locale` with a voice `variant`: 16 kHz mono float32 samples."""
    prefix, env = espeak_command(espeak_bin, espeak_root)
    with tempfile.TemporaryDirectory(prefix="espeak-") as tmp:
        return _espeak_wav(prefix, env, f"{VOICES[locale]}+{variant}", speed, pitch, gap, text, f"{tmp}/s.wav")


def render_clip(job: tuple) -> tuple[str, int]:
    """Synthesise one clip to FLAC; returns (clip_id, number of samples)."""
    import numpy as np
    import soundfile as sf

    plan, out_path, prefix, env = job
    parts = []
    with tempfile.TemporaryDirectory(prefix="espeak-") as tmp:
        for i, (loc, text) in enumerate(plan.sentences):
            voice = f"{VOICES[loc]}+{plan.variant}"
            parts.append(_espeak_wav(prefix, env, voice, plan.speed, plan.pitch, plan.gap, text, f"{tmp}/{i}.wav"))
            if i < len(plan.pauses):
                parts.append(np.zeros(int(plan.pauses[i] * SAMPLE_RATE), dtype=np.float32))
    audio = channels.pad(np.clip(np.concatenate(parts), -1.0, 1.0), plan.lead, plan.trail)
    if plan.noise:
        audio = channels.add_noise(audio, plan.snr_db, plan.noise, np.random.default_rng(plan.noise_seed))
    audio = channels.apply_channel(audio, plan.channel)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(out_path, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return plan.clip_id, len(audio)


def _manifest_entry(plan: ClipPlan, samples: int) -> dict:
    return {
        "audio_filepath": f"audio/{plan.split}/{plan.clip_id}.flac",
        "duration": round(samples / SAMPLE_RATE, 4),
        "text": plan.text,
        "lang": plan.lang,
        "locales": sorted({loc for loc, _ in plan.sentences}),
        "voices": [f"{VOICES[loc]}+{plan.variant}" for loc, _ in plan.sentences],
        "variant": plan.variant,
        "heldout_voice": plan.heldout_voice,
        "speed": plan.speed,
        "pitch": plan.pitch,
        "lead_seconds": plan.lead,
        "trail_seconds": plan.trail,
        "noise": plan.noise,
        "snr_db": plan.snr_db,
        "transmission": plan.channel,  # not `channel`: in a manifest that is the audio channel to read
    }


def espeak_version(prefix: list[str], env: dict) -> str:
    result = subprocess.run(prefix + ["--version"], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"cannot run espeak-ng ({' '.join(prefix)}): {result.stderr.strip()}")
    return result.stdout.strip().splitlines()[0].split("Data at:")[0].strip()


def generate(cfg: SynthConfig, log=print) -> dict:
    """Plan, synthesise and write the set into `cfg.output_dir`; returns the summary (also summary.json)."""
    out = Path(cfg.output_dir)
    prefix, env = espeak_command(cfg.espeak_bin, cfg.espeak_root)
    version = espeak_version(prefix, env)
    started = time.monotonic()
    plans = plan_clips(cfg)
    jobs = [(p, str(out / "audio" / p.split / f"{p.clip_id}.flac"), prefix, env)
            for split in SPLITS for p in plans[split]]
    workers = cfg.workers or os.cpu_count() or 1
    log(f"synthesising {len(jobs)} clips with {version} on {workers} worker(s)")
    if workers == 1:
        samples = dict(map(render_clip, jobs))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            samples = dict(pool.map(render_clip, jobs, chunksize=max(1, min(64, len(jobs) // (4 * workers)))))
    summary: dict = {"seed": cfg.seed, "domain": cfg.domain, "espeak": version, "sample_rate": SAMPLE_RATE,
                     "heldout_variants": list(cfg.heldout_variants), "train_variants": list(cfg.train_variants),
                     "splits": {}, "config": asdict(cfg) | {"output_dir": None, "workers": None}}
    for split in SPLITS:
        entries = [_manifest_entry(p, samples[p.clip_id]) for p in plans[split]]
        manifest = out / f"{split}_manifest.json"
        manifest.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries), encoding="utf-8")
        by_lang: dict[str, float] = {}
        for e in entries:
            by_lang[e["lang"]] = round(by_lang.get(e["lang"], 0.0) + e["duration"], 4)
        summary["splits"][split] = {
            "clips": len(entries), "hours": round(sum(e["duration"] for e in entries) / 3600, 4),
            "seconds_by_lang": dict(sorted(by_lang.items())),
            "sentences": len({s for p in plans[split] for s in p.sentences}),
            "heldout_voice_clips": sum(e["heldout_voice"] for e in entries),
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log(f"wrote {out} in {time.monotonic() - started:.1f} s: " + ", ".join(
        f"{s} {v['clips']} clips {v['hours']:.3f} h" for s, v in summary["splits"].items()))
    return summary


# ---------------------------------------------------------------------------------------------------------- checks


def read_manifest(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def check_split(output_dir: str | Path) -> dict:
    """Verify the held-out rules of a generated set; raises SplitError, else returns counts.

    - no sentence (locale, text) is in two splits; `callcentre`: every dev and test sentence is in the domain's
      held-out class and no training sentence is;
    - no held-out voice variant is in train, and every clip marked `heldout_voice` uses one;
    - dev and test each have held-out-voice clips in every locale they have clips of;
    - every audio file exists.
    """
    from pipeline.language import split_by_language

    out = Path(output_dir)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    heldout = set(summary["heldout_variants"])
    sentences: dict[str, set[tuple[str, str]]] = {}
    variants: dict[str, set[str]] = {}
    report: dict = {}
    for split in SPLITS:
        entries = read_manifest(out / f"{split}_manifest.json")
        sentences[split] = {(span.language, span.text) for e in entries for span in split_by_language(e["text"])}
        variants[split] = {e["variant"] for e in entries}
        missing = [e["audio_filepath"] for e in entries if not (out / e["audio_filepath"]).exists()]
        if missing:
            raise SplitError(f"{split}: {len(missing)} audio files missing, e.g. {missing[0]}")
        wrong = [e["audio_filepath"] for e in entries if e["heldout_voice"] != (e["variant"] in heldout)]
        if wrong:
            raise SplitError(f"{split}: heldout_voice flag disagrees with the variant for {wrong[0]}")
        if split != "train":
            locales = {loc for e in entries for loc in e["locales"]}
            covered = {loc for e in entries if e["heldout_voice"] for loc in e["locales"]}
            if locales - covered:
                raise SplitError(f"{split}: no held-out voice for {sorted(locales - covered)}")
        report[split] = {"clips": len(entries), "sentences": len(sentences[split]),
                         "variants": sorted(variants[split])}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        shared = sentences[a] & sentences[b]
        if shared:
            raise SplitError(f"{len(shared)} sentences in both {a} and {b}, e.g. {sorted(shared)[0]}")
    if summary.get("domain") == "callcentre":
        for split in SPLITS:
            wrong = sorted(s for s in sentences[split] if callcentre.is_heldout(*s) != (split != "train"))
            if wrong:
                raise SplitError(f"{split}: {len(wrong)} sentences on the wrong side of the held-out class, "
                                 f"e.g. {wrong[0]}")
    if variants["train"] & heldout:
        raise SplitError(f"held-out voice variants in train: {sorted(variants['train'] & heldout)}")
    report["heldout_variants"] = sorted(heldout)
    return report


# ------------------------------------------------------------------------------------------ espeak-ng for the GPU box

_PCAUDIO_STUB = r"""
/* Stand-in for libpcaudio.so.0 (audio playback). espeak-ng links it, but never plays audio when writing a file
   (-w); the real library pulls in PulseAudio and ALSA. Every call fails cleanly. */
#include <stddef.h>
#include <stdint.h>
struct audio_object;
struct audio_object *create_audio_device_object(const char *d, const char *a, const char *s) { return NULL; }
int audio_object_open(struct audio_object *o, int format, uint32_t rate, uint8_t channels) { return -1; }
void audio_object_close(struct audio_object *o) {}
void audio_object_destroy(struct audio_object *o) {}
int audio_object_write(struct audio_object *o, const void *data, size_t bytes) { return -1; }
int audio_object_drain(struct audio_object *o) { return 0; }
int audio_object_flush(struct audio_object *o) { return 0; }
const char *audio_object_strerror(struct audio_object *o, int error) { return "no audio output (stub)"; }
"""


def bundle_espeak(dest: str | Path, languages=("en", "es", "de", "fr"), log=print) -> Path:
    """Unpack espeak-ng's Debian packages into `dest` for a machine without apt (needs apt-get, dpkg-deb, gcc).

    `apt-get download` fetches espeak-ng, libespeak-ng1, espeak-ng-data and libsonic0 (about 4.8 MB of .deb); they
    are unpacked with `dpkg-deb -x` (nothing is installed); libpcaudio0 is replaced by a stub compiled here; the
    dictionaries of other languages, docs and man pages are dropped. Use with `espeak_root=<dest>`.
    """
    dest = Path(dest).resolve()
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="espeak-debs-") as tmp:
        subprocess.run(["apt-get", "download", *ESPEAK_PACKAGES], cwd=tmp, check=True)
        debs = sorted(Path(tmp).glob("*.deb"))
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
        (dest / "PACKAGES").write_text("".join(d.name + "\n" for d in debs))
    libdir = dest / _LIBDIR
    stub = dest / "pcaudio_stub.c"
    stub.write_text(_PCAUDIO_STUB)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wl,-soname,libpcaudio.so.0", "-o",
                    str(libdir / "libpcaudio.so.0"), str(stub)], check=True)
    data = libdir / "espeak-ng-data"
    for dictionary in data.glob("*_dict"):
        if dictionary.name[: -len("_dict")] not in languages:
            dictionary.unlink()
    shutil.rmtree(dest / "usr/share", ignore_errors=True)
    (dest / "usr/bin/speak-ng").unlink(missing_ok=True)
    # Links become copies: a carried folder may not keep them.
    for link in sorted(p for p in dest.rglob("*") if p.is_symlink()):
        target = link.resolve()
        link.unlink()
        if target.is_file():
            shutil.copy2(target, link)
    prefix, env = espeak_command("espeak-ng", str(dest))
    env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": env["LD_LIBRARY_PATH"]}
    log(f"{espeak_version(prefix, env)} unpacked into {dest} "
        f"({sum(f.stat().st_size for f in dest.rglob('*') if f.is_file()) / 1e6:.1f} MB)")
    return dest


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--check":
        if len(argv) != 2:
            print("usage: python -m training.synth_speech --check OUTPUT_DIR", file=sys.stderr)
            return 2
        try:
            print(json.dumps(check_split(argv[1]), indent=2))
        except SplitError as error:
            print(f"split check failed: {error}", file=sys.stderr)
            return 1
        return 0
    if argv and argv[0] == "--bundle-espeak":
        if len(argv) != 2:
            print("usage: python -m training.synth_speech --bundle-espeak DEST_DIR", file=sys.stderr)
            return 2
        bundle_espeak(argv[1])
        return 0
    config_file, argv = config_file_arg(argv, DEFAULT_CONFIG)
    try:
        cfg = load_config(argv, config_file)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    generate(cfg)
    print(json.dumps(check_split(cfg.output_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
