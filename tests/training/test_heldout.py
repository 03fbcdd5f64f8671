"""Tests for what issue 24 added around the demo model: the telephone/noise/silence conditions (training.channels),
recombined training sentences (training.callcentre.Recombiner), the job-like synthesis settings
(training.synth_speech), the hand-written evaluation set (training.heldout) and its scoring (training.evaluate)."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
import soundfile as sf

from training import callcentre, channels, heldout, synth_speech
from training.evaluate import HELDOUT_TARGETS, _first_word_lost, check_targets, heldout_summary
from tests.audio_factory import tone

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not on PATH (apt-get install espeak-ng)")


# --- channels -----------------------------------------------------------------------------------------------------


def _speech_like(seconds: float = 1.0) -> np.ndarray:
    """A tone with a 1.5 kHz and a 6 kHz part: the second is what an 8 kHz channel must remove."""
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 1500 * t) + 0.2 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)


def _band_power(audio: np.ndarray, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / 16000)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].sum())


@pytest.mark.parametrize("channel", ["mulaw8k", "mp3_8k"])
def test_telephone_channels_keep_the_length_and_the_voice_band_and_drop_what_8_khz_cannot_carry(channel) -> None:
    clean = _speech_like()
    out = channels.apply_channel(clean, channel)
    assert out.dtype == np.float32 and len(out) == len(clean)
    assert _band_power(out, 1400, 1600) > 0.5 * _band_power(clean, 1400, 1600)
    assert _band_power(out, 5000, 7000) < 1e-3 * _band_power(clean, 5000, 7000)
    assert np.array_equal(channels.apply_channel(clean, "clean"), clean)


def test_mulaw_is_8_bit() -> None:
    values = channels.mulaw(np.linspace(-1, 1, 10_000, dtype=np.float32))
    assert len(np.unique(values)) <= 256


def test_pad_puts_exact_silence_around_the_speech() -> None:
    speech = tone(0.5, freq=300)
    padded = channels.pad(speech, 0.25, 0.5)
    assert len(padded) == len(speech) + 4000 + 8000
    assert not padded[:4000].any() and not padded[-8000:].any()
    assert np.array_equal(padded[4000:-8000], speech)


@pytest.mark.parametrize("colour", channels.NOISE_COLOURS)
def test_noise_lands_at_the_asked_snr_against_the_speech_not_the_silence(colour) -> None:
    speech = channels.pad(_speech_like(2.0), 1.0, 1.0)  # half the clip silent
    noisy = channels.add_noise(speech, 15.0, colour, np.random.default_rng(0))
    noise = noisy - speech
    voiced = np.abs(speech) > 1e-4
    snr = 10 * np.log10(np.mean(speech[voiced] ** 2) / np.mean(noise ** 2))
    assert abs(snr - 15.0) < 0.5, snr


def test_noise_colours_have_their_spectral_tilt() -> None:
    rng = np.random.default_rng(1)
    tilt = {c: _band_power(n, 50, 500) / _band_power(n, 4000, 7500)
            for c in channels.NOISE_COLOURS for n in [channels.coloured_noise(64_000, c, rng)]}
    assert tilt["white"] < tilt["pink"] < tilt["brown"]
    with pytest.raises(channels.ChannelError):
        channels.apply_channel(_speech_like(), "gsm")


# --- recombined sentences -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("locale", ["en-US", "es-ES", "de-DE", "fr-FR"])
def test_recombined_sentences_use_domain_words_avoid_the_held_out_class_and_the_excluded(locale) -> None:
    grammar = callcentre.load(locale)
    plain = callcentre.TrainSentences(locale, random.Random(3))
    excluded = frozenset(callcentre.sentence_key(plain.next()) for _ in range(50))
    mixed = callcentre.TrainSentences(locale, random.Random(4), variety=1.0, variety_rng=random.Random(5),
                                      exclude=excluded)
    drawn = [mixed.next() for _ in range(300)]
    fillings = [re_ for re_ in (heldout._template_regex(grammar, t) for t in grammar.templates)]
    import re

    new_orders = [s for s in drawn if not any(re.fullmatch(p, s, re.IGNORECASE) for p in fillings)]
    assert len(new_orders) > 150  # most are not template fillings
    for sentence in drawn:
        assert all(w in grammar.words for w in callcentre._words(sentence)), sentence
        assert not callcentre.is_heldout(locale, sentence)
        assert callcentre.sentence_key(sentence) not in excluded
        assert sentence[0].isupper() or sentence[0] in "¿¡"


def test_variety_zero_draws_exactly_the_plain_sentences() -> None:
    plain = callcentre.TrainSentences("de-DE", random.Random(9))
    same = callcentre.TrainSentences("de-DE", random.Random(9), variety=0.0, variety_rng=random.Random(1))
    assert [plain.next() for _ in range(100)] == [same.next() for _ in range(100)]


# --- job-like synthesis -------------------------------------------------------------------------------------------

TINY = ["hours=0.01", "test_clips_per_locale=1", "dev_clips_per_locale=1", "test_mixed_clips=1", "dev_mixed_clips=1"]


def test_conditions_do_not_change_the_sentences_and_voices_of_a_plan() -> None:
    """Silence, noise and channels come from their own generator: turning them on leaves the base set's draws (the
    shipped model's data and test set) as they were."""
    base = synth_speech.plan_clips(synth_speech.load_config(["output_dir=x", *TINY]))
    job = synth_speech.plan_clips(synth_speech.load_config(
        ["output_dir=x", *TINY, "lead_silence=[0,1]", "trail_silence=[0,1]", "noise_prob=0.5",
         "channels=[clean,mulaw8k,mp3_8k]", "channel_weights=[1,1,1]"]))
    for split in synth_speech.SPLITS:
        # Train: silence counts towards `hours`, so the job-like plan stops sooner; the clips it has are the same.
        n = len(job[split])
        assert n == len(base[split]) or (split == "train" and 0 < n < len(base[split]))
        assert [(c.sentences, c.variant, c.speed, c.pitch, c.pauses) for c in base[split][:n]] == \
            [(c.sentences, c.variant, c.speed, c.pitch, c.pauses) for c in job[split]]
    train = job["train"] + job["test"]
    assert {c.channel for c in train} > {"clean"} and any(c.noise for c in train) and any(c.lead > 0.3 for c in train)
    assert all(c.lead == 0 and c.channel == "clean" and c.noise is None for s in base.values() for c in s)


def test_the_fine_tuning_set_never_holds_a_hand_written_sentence_nor_an_evaluation_voice() -> None:
    from omegaconf import OmegaConf

    cfg = synth_speech.load_config(["output_dir=x", "hours=0.3"], synth_speech.ROOT / "conf" / "synth_speech_finetune.yaml")
    written = synth_speech.read_sentence_files(cfg.exclude_sentence_files)
    assert len(written) == sum(len(heldout.sentences(loc)) for loc in cfg.locales)
    plan = synth_speech.plan_clips(cfg)["train"]
    assert not {callcentre.sentence_key(t) for c in plan for _, t in c.sentences} & written
    evaluation_voices = set(OmegaConf.load(heldout.DEFAULT_CONFIG)["variants"])
    assert not evaluation_voices & set(cfg.train_variants)


def test_config_rejects_an_unknown_channel() -> None:
    with pytest.raises(synth_speech.ConfigError, match="unknown channels"):
        synth_speech.load_config(["output_dir=x", "channels=[gsm]"])
    with pytest.raises(synth_speech.ConfigError, match="differ in length"):
        synth_speech.load_config(["output_dir=x", "channels=[clean,mulaw8k]"])


@needs_espeak
def test_job_like_clips_have_the_planned_silence_and_channel(tmp_path) -> None:
    cfg = synth_speech.load_config([f"output_dir={tmp_path}", *TINY, "workers=1", "lead_silence=[0.5,0.5]",
                                    "trail_silence=[0.3,0.3]", "channels=[mulaw8k]"])
    synth_speech.generate(cfg, log=lambda *_: None)
    entries = synth_speech.read_manifest(tmp_path / "train_manifest.json")
    assert entries and all(e["transmission"] == "mulaw8k" and e["lead_seconds"] == 0.5 for e in entries)
    audio, rate = sf.read(tmp_path / entries[0]["audio_filepath"], dtype="float32")
    assert rate == 16000
    assert np.abs(audio[:int(0.45 * rate)]).max() < 0.01 < np.abs(audio[int(0.5 * rate):]).max()
    assert _band_power(audio, 4500, 8000) < 1e-3 * _band_power(audio, 0, 4000)
    # The extra fields do not collide with the project's manifest keys (`channel` is the audio channel to read).
    from tests.connectors.test_manifests import parse_manifest

    path = tmp_path / "train_manifest.json"
    assert all(row["error"] is None for row in parse_manifest(str(path), path.read_bytes()))


# --- the hand-written set -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("locale", ["en-US", "es-ES", "de-DE", "fr-FR"])
def test_hand_written_sentences_are_in_domain_and_no_template_filling(locale) -> None:
    assert len(heldout.sentences(locale)) >= 40
    assert heldout.check_sentences(locale) == {"unknown_words": [], "fillings": [], "duplicates": []}


def test_the_filling_check_catches_a_template_filling() -> None:
    grammar = callcentre.load("en-US")
    import re

    pattern = heldout._template_regex(grammar, "My {id_item} is {digits}.")
    assert re.fullmatch(pattern, "My zip code is one two three four.")
    assert not re.fullmatch(pattern, "The zip code is one two three four.")


@needs_espeak
def test_heldout_generation_reads_each_sentence_once_through_every_condition(tmp_path) -> None:
    cfg = heldout.load_config([f"output_dir={tmp_path}", "locales=[fr-FR]"])
    cfg.conditions = {k: cfg.conditions[k] for k in ("clean", "lead_1s", "mp3_8k")}
    manifest = heldout.generate(cfg, log=lambda *_: None)
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]
    n = len(heldout.sentences("fr-FR"))
    assert len(entries) == 3 * n and {e["condition"] for e in entries} == {"clean", "lead_1s", "mp3_8k"}
    by = {(e["condition"], e["audio_filepath"].rsplit("/", 1)[1]): e for e in entries}
    clean, late = by[("clean", "fr-FR-000.flac")], by[("lead_1s", "fr-FR-000.flac")]
    assert late["lead_seconds"] == 1.0 and late["duration"] >= clean["duration"] + 1.0 - 1e-3
    a, _ = sf.read(tmp_path / clean["audio_filepath"], dtype="float32")
    b, _ = sf.read(tmp_path / late["audio_filepath"], dtype="float32")
    assert np.allclose(a, b[16000:16000 + len(a)], atol=1e-4)  # the same reading, a second later
    assert {e["variant"] for e in entries} <= set(cfg.variants)


# --- scoring ------------------------------------------------------------------------------------------------------


def test_first_word_lost_compares_normalised_words() -> None:
    assert _first_word_lost("Hello, thank you.<en-US>", "thank you<en-US>")
    assert not _first_word_lost("Hello, thank you.<en-US>", "hello thank you.<en-US>")
    assert _first_word_lost("Hello.<en-US>", "")


def test_heldout_targets_read_the_worst_telephone_condition_and_the_largest_silence_effect() -> None:
    def cond(wer):
        return {"wer_given": wer}

    ctx = {"by_condition": {"clean": cond(0.10), "lead": cond(0.13), "lead_1s": cond(0.09), "mulaw8k": cond(0.2),
                            "mp3_8k": cond(0.3)},
           "lead_effect": {"lead": 0.03, "lead_1s": -0.01}, "lid_accuracy_auto": 0.98, "tag_agreement_given": 1.0}
    summary = heldout_summary(ctx)
    assert summary["telephone_wer_given"] == 0.3 and summary["lead_effect_max"] == 0.03
    met = {k: v["met"] for k, v in check_targets(summary, HELDOUT_TARGETS).items()}
    assert met == {"clean_wer_given": True, "telephone_wer_given": False, "lid_accuracy_auto": True,
                   "tag_agreement_given": True, "lead_effect_max": False}
