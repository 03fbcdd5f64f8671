"""Tests for the demo-model training job: synthetic speech (training.synth_speech, training.synth_text), the training
loop and its pieces (training.recipe), and the job (training.train_demo_model).

Everything here is sized for two CPU cores: a few espeak-ng clips, a ~0.35M-parameter model of the real class, a
handful of steps. Only the synthesis tests need espeak-ng; the training tests read tones (no espeak-ng).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training import synth_speech
from training.synth_text import LANGUAGES, capacity, sentence_pool
from tests.audio_factory import tone

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not on PATH (apt-get install espeak-ng)")

TINY_SYNTH = ["hours=0.01", "test_clips_per_locale=2", "dev_clips_per_locale=1", "test_mixed_clips=2",
              "dev_mixed_clips=1", "workers=2"]
TINY_MODEL = dict(n_layers=2, d_model=64, n_heads=4, vocab_size=128, pred_hidden=64, joint_hidden=64, dropout=0.0,
                  spec_augment=False, subsampling_conv_channels=16)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a busy two-core machine OpenMP's spinning threads made
    these tests up to 20x slower (78 s against 18 s for the file)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _synth(out: Path, *extra: str) -> Path:
    cfg = synth_speech.load_config([f"output_dir={out}", *TINY_SYNTH, *extra])
    synth_speech.generate(cfg, log=lambda *_: None)
    return out


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not on PATH (apt-get install espeak-ng)")
    return _synth(tmp_path_factory.mktemp("synth") / "a", "seed=7")


# --- sentences ----------------------------------------------------------------------------------------------------


def test_sentence_pools_are_large_distinct_and_written_as_sentences() -> None:
    for locale in LANGUAGES:
        assert capacity(locale) > 10_000, locale
        pool = sentence_pool(locale, 600, seed=0)
        assert len(pool) == len(set(pool)) == 600, locale
        assert all(s[0].isupper() or s[0] in "¿¡" for s in pool), locale
        assert all(s[-1] in ".?!" for s in pool), locale
        assert pool == sentence_pool(locale, 600, seed=0)
        assert pool != sentence_pool(locale, 600, seed=1)


# --- synthesis ----------------------------------------------------------------------------------------------------


@needs_espeak
def test_generation_is_deterministic_from_the_seed(synth_dir, tmp_path) -> None:
    again = _synth(tmp_path / "b", "seed=7", "workers=1")
    assert _digest(again) == _digest(synth_dir)  # manifests, summary and every FLAC byte-identical
    other = _synth(tmp_path / "c", "seed=8")
    assert (other / "train_manifest.json").read_bytes() != (synth_dir / "train_manifest.json").read_bytes()


@needs_espeak
def test_clips_are_16k_mono_flac_with_tagged_text(synth_dir) -> None:
    for split in synth_speech.SPLITS:
        entries = synth_speech.read_manifest(synth_dir / f"{split}_manifest.json")
        assert entries, split
        locales = set()
        for e in entries:
            info = sf.info(synth_dir / e["audio_filepath"])
            assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
            assert abs(info.frames / 16000 - e["duration"]) < 1e-3
            assert e["text"].endswith(">") and f"<{e['locales'][0]}>" in e["text"]
            locales.update(e["locales"])
            if e["lang"] == "auto":
                assert len(e["locales"]) >= 2
            else:
                assert e["locales"] == [e["lang"]]
        assert locales == {"en-US", "es-ES", "de-DE", "fr-FR"}, split
    test = synth_speech.read_manifest(synth_dir / "test_manifest.json")
    assert any(e["lang"] == "auto" for e in test)


@needs_espeak
def test_held_out_split_is_disjoint_in_sentences_and_voices(synth_dir) -> None:
    report = synth_speech.check_split(synth_dir)
    heldout = set(report["heldout_variants"])
    assert heldout and not heldout & set(report["train"]["variants"])
    for split in ("dev", "test"):
        entries = synth_speech.read_manifest(synth_dir / f"{split}_manifest.json")
        for locale in ("en-US", "es-ES", "de-DE", "fr-FR"):
            assert any(e["heldout_voice"] and locale in e["locales"] for e in entries), (split, locale)


@needs_espeak
def test_split_check_catches_a_leaked_sentence_and_a_leaked_voice(synth_dir, tmp_path) -> None:
    leaky = tmp_path / "leaky"
    shutil.copytree(synth_dir, leaky)
    train = synth_speech.read_manifest(leaky / "train_manifest.json")
    test = synth_speech.read_manifest(leaky / "test_manifest.json")

    def write(entries):
        (leaky / "train_manifest.json").write_text("".join(json.dumps(e) + "\n" for e in entries))

    write(train + [dict(train[0], text=test[0]["text"])])
    with pytest.raises(synth_speech.SplitError, match="sentences in both train and test"):
        synth_speech.check_split(leaky)
    heldout_entry = next(e for e in test if e["heldout_voice"])
    write(train + [dict(train[0], variant=heldout_entry["variant"], heldout_voice=True)])
    with pytest.raises(synth_speech.SplitError, match="held-out voice variants in train"):
        synth_speech.check_split(leaky)


@needs_espeak
def test_manifests_parse_with_the_project_connector(synth_dir) -> None:
    from tests.connectors.test_manifests import parse_manifest

    for split in synth_speech.SPLITS:
        path = synth_dir / f"{split}_manifest.json"
        rows = parse_manifest(str(path), path.read_bytes())
        entries = synth_speech.read_manifest(path)
        assert len(rows) == len(entries)
        for row, entry in zip(rows, entries):
            assert row["error"] is None
            assert row["reference_text"] == entry["text"]
            assert row["requested_lang"] == entry["lang"]
            assert Path(row["audio_url"]).exists()
            assert json.loads(row["metadata"])["variant"] == entry["variant"]


@needs_espeak
def test_the_broad_recipes_general_domain_still_generates(tmp_path) -> None:
    out = _synth(tmp_path / "g", "domain=general", "seed=3")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["domain"] == "general" and summary["splits"]["train"]["clips"] > 0
    synth_speech.check_split(out)


def test_config_rejects_a_variant_both_trained_and_held_out() -> None:
    with pytest.raises(synth_speech.ConfigError, match="both in train and held out"):
        synth_speech.load_config(["output_dir=x", "heldout_variants=[m1]"])
    with pytest.raises(synth_speech.ConfigError, match="unknown configuration key"):
        synth_speech.load_config(["output_dir=x", "nope=1"])


# --- training pieces ----------------------------------------------------------------------------------------------


def test_torch_rnnt_loss_matches_nemo() -> None:
    import torch
    from nemo.collections.asr.losses.rnnt import RNNTLoss

    from training.recipe import rnnt_loss_torch

    gen = torch.Generator().manual_seed(0)
    B, T, U, V = 3, 9, 4, 7
    log_probs = torch.randn(B, T, U + 1, V + 1, generator=gen).log_softmax(-1)
    targets = torch.randint(0, V, (B, U), generator=gen)
    t_len, u_len = torch.tensor([9, 7, 5]), torch.tensor([4, 2, 3])
    for name in ("default", "pytorch"):  # warprnnt_numba (CPU kernel) and NeMo's reference PyTorch loss
        nemo_in = log_probs.clone().requires_grad_(True)
        want = RNNTLoss(num_classes=V, reduction=None, loss_name=name)(
            log_probs=nemo_in, targets=targets, input_lengths=t_len, target_lengths=u_len)
        want.sum().backward()
        ours_in = log_probs.clone().requires_grad_(True)
        got = rnnt_loss_torch(ours_in, targets, t_len, u_len, blank=V)
        got.sum().backward()
        assert torch.allclose(got, want, atol=1e-4, rtol=0), name
        assert torch.allclose(ours_in.grad, nemo_in.grad, atol=1e-4), name
    # Raw logits give the same value as their log-softmax (the joint returns logits on GPU, log-probs on CPU).
    logits = torch.randn(B, T, U + 1, V + 1, generator=gen)
    assert torch.allclose(rnnt_loss_torch(logits, targets, t_len, u_len, V),
                          rnnt_loss_torch(logits.log_softmax(-1), targets, t_len, u_len, V), atol=1e-5)


def test_lookahead_sampler_covers_every_size_in_each_run_of_len_sizes_steps() -> None:
    from pipeline.models.released import ATT_CONTEXT_SIZES
    from training.recipe import LookaheadSampler

    n = len(ATT_CONTEXT_SIZES)
    sampler = LookaheadSampler(ATT_CONTEXT_SIZES, seed=0)
    draws = [sampler.next_index() for _ in range(4 * n)]
    for block in range(4):
        assert sorted(draws[n * block: n * block + n]) == list(range(n))
    assert draws != list(range(n)) * 4  # shuffled, not a fixed cycle
    state = sampler.state_dict()
    ahead = [sampler.next_index() for _ in range(7)]
    again = LookaheadSampler(ATT_CONTEXT_SIZES, seed=0)
    again.load_state_dict(state)
    assert [again.next_index() for _ in range(7)] == ahead


def test_epoch_batches_respect_the_padded_budget_and_cover_every_clip() -> None:
    from training.recipe import epoch_batches

    durations = np.random.default_rng(0).uniform(1, 8, 200)
    batches = epoch_batches(durations, batch_seconds=30, max_clips=16, seed=0, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(200))
    assert all(len(b) <= 16 and (len(b) == 1 or durations[b].max() * len(b) <= 30) for b in batches)
    assert batches == epoch_batches(durations, 30, 16, seed=0, epoch=0)
    assert batches != epoch_batches(durations, 30, 16, seed=0, epoch=1)


# --- the training loop (tones, no espeak-ng) -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tone_set(tmp_path_factory) -> Path:
    """A tiny manifest of tones with real tagged sentences (single-language and one mixed clip)."""
    folder = tmp_path_factory.mktemp("tones")
    (folder / "audio").mkdir()
    texts = [(loc, sentence_pool(loc, 3, seed=0)) for loc in ("en-US", "es-ES", "de-DE", "fr-FR")]
    entries = []
    for i in range(8):
        loc, pool = texts[i % 4]
        text, lang = f"{pool[i // 4]}<{loc}>", loc
        if i == 7:
            text, lang = f"{texts[0][1][2]}<en-US> {texts[2][1][2]}<de-DE>", "auto"
        seconds = 1.5 + 0.25 * (i % 3)
        noise = 0.05 * np.random.default_rng(i).standard_normal(int(seconds * 16000)).astype(np.float32)
        sf.write(folder / "audio" / f"{i}.flac", tone(seconds, freq=200 + 90 * i) + noise, 16000)
        entries.append({"audio_filepath": f"audio/{i}.flac", "duration": seconds, "text": text, "lang": lang})
    for name in ("train_manifest.json", "test_manifest.json"):
        (folder / name).write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries))
    return folder


@pytest.fixture(scope="module")
def tokenizer_dir(tone_set, tmp_path_factory) -> Path:
    from training.recipe import LOCALES, read_manifest, train_tokenizer

    texts = [e["text"] for e in read_manifest(tone_set / "train_manifest.json")]
    return train_tokenizer(texts, LOCALES, 96, tmp_path_factory.mktemp("tok"))


def _trainer(tone_set, tokenizer_dir, **settings):
    from training.recipe import ClipSet, DemoModelSpec, Trainer, TrainSettings, build_demo_model

    model = build_demo_model(DemoModelSpec(**TINY_MODEL), tokenizer_dir, seed=0)
    data = ClipSet(tone_set / "train_manifest.json", model.tokenizer, threads=2)
    defaults = dict(steps=4, batch_seconds=8.0, lr=3e-3, warmup_steps=1, log_every=100, checkpoint_every=100)
    return Trainer(model, data, TrainSettings(**(defaults | settings)), "cpu", log_fn=lambda *_: None)


def test_language_tags_are_single_tokens(tone_set, tokenizer_dir) -> None:
    trainer = _trainer(tone_set, tokenizer_dir)
    tokenizer = trainer.model.tokenizer
    for locale in ("en-US", "es-ES", "de-DE", "fr-FR"):
        ids = tokenizer.text_to_ids(f"Hola.<{locale}>")
        assert tokenizer.ids_to_tokens(ids[-1:]) == [f"<{locale}>"]
    # The released checkpoint's prompt dictionary, aliases included.
    assert trainer.prompts["auto"] == 101 and trainer.prompts["de-DE"] == trainer.prompts["de"] == 9
    assert trainer.prompts["en"] == trainer.prompts["en-US"] == 0 and trainer.prompts["es"] == 3


def test_training_steps_run_and_every_lookahead_is_really_used(tone_set, tokenizer_dir, monkeypatch) -> None:
    from training.recipe import RELEASED_ATT_CONTEXT_SIZES

    trainer = _trainer(tone_set, tokenizer_dir, steps=4)
    used = []
    original = trainer.model.encoder._create_masks

    def recording(att_context_size, *args, **kwargs):  # what the encoder's own training-mode draw picked
        used.append(list(att_context_size))
        return original(att_context_size, *args, **kwargs)

    monkeypatch.setattr(trainer.model.encoder, "_create_masks", recording)
    outs = []
    assert trainer.run(on_step=lambda step, out: outs.append(out)) is True
    assert len(outs) == 4 and all(o["finite"] and np.isfinite(float(o["loss"])) for o in outs)
    assert used == [o["att_context_size"] for o in outs]
    assert sorted(map(tuple, used)) == sorted(map(tuple, RELEASED_ATT_CONTEXT_SIZES))
    assert trainer.loss_fn.impl == "torch"  # CPU: the vectorised PyTorch loss


def test_loss_decreases_on_a_repeated_batch(tone_set, tokenizer_dir) -> None:
    trainer = _trainer(tone_set, tokenizer_dir, steps=1000, ctc_weight=0.0, noise_snr_db=[200.0, 200.0],
                       gain_db=[0.0, 0.0])
    batch = [0, 1, 2, 3]
    losses = [float(trainer.train_step(batch)["loss"]) for _ in range(10)]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.8 * losses[0], losses


def test_prompts_mixed_clips_always_auto(tone_set, tokenizer_dir) -> None:
    trainer = _trainer(tone_set, tokenizer_dir, auto_prompt_prob=0.0)
    assert trainer.prompt_indices([7]).tolist() == [101]  # the mixed clip
    assert trainer.prompt_indices([0, 1, 2, 3]).tolist() == [0, 2, 9, 8]  # en-US, es-ES, de-DE, fr-FR
    trainer = _trainer(tone_set, tokenizer_dir, auto_prompt_prob=1.0)
    assert trainer.prompt_indices([0, 1, 2, 3]).tolist() == [101] * 4


def test_ctc_only_steps_train_the_encoder_alone_then_the_rnnt_joins(tone_set, tokenizer_dir) -> None:
    trainer = _trainer(tone_set, tokenizer_dir, ctc_only_steps=1, ctc_weight=0.3)
    joint_before = [p.detach().clone() for p in trainer.model.joint.parameters()]
    first = trainer.train_step([0, 1, 2, 3])
    assert first["rnnt"] is None and float(first["loss"]) == float(first["ctc"])
    # AdamW's weight decay aside, the joint got no gradient: it did not take part.
    assert all(p.grad is None for p in trainer.model.joint.parameters())
    second = trainer.train_step([0, 1, 2, 3])
    assert second["rnnt"] is not None and second["ctc"] is not None
    assert any(not np.allclose(a.numpy(), b.detach().numpy()) for a, b in
               zip(joint_before, trainer.model.joint.parameters()))


def test_frozen_encoder_phase_trains_the_rnnt_alone_on_its_own_schedule(tone_set, tokenizer_dir) -> None:
    settings = dict(steps=5, ctc_only_steps=1, frozen_encoder_steps=2, encoder_lr_scale=0.25, rnnt_warmup_steps=2,
                    warmup_steps=1, ctc_weight=0.3)
    trainer = _trainer(tone_set, tokenizer_dir, **settings)
    model = trainer.model

    def snapshot(module):
        return [p.detach().clone() for p in module.parameters()]

    assert trainer.train_step([0, 1, 2, 3])["rnnt"] is None  # the CTC phase
    encoder, ctc_head, joint = snapshot(model.encoder), snapshot(trainer.ctc_head), snapshot(model.joint)
    for _ in range(2):  # the frozen phase: RNNT only, the encoder and the CTC head untouched
        out = trainer.train_step([0, 1, 2, 3])
        assert out["rnnt"] is not None and out["ctc"] is None and out["finite"]
    assert all(np.array_equal(a.numpy(), b.detach().numpy()) for a, b in zip(encoder, model.encoder.parameters()))
    assert all(np.array_equal(a.numpy(), b.detach().numpy()) for a, b in zip(ctc_head, trainer.ctc_head.parameters()))
    assert any(not np.array_equal(a.numpy(), b.detach().numpy()) for a, b in zip(joint, model.joint.parameters()))
    out = trainer.train_step([0, 1, 2, 3])  # then everything trains, the encoder side at lr * encoder_lr_scale
    assert out["rnnt"] is not None and out["ctc"] is not None
    assert any(not np.array_equal(a.numpy(), b.detach().numpy()) for a, b in zip(encoder, model.encoder.parameters()))
    lrs = {g["encoder_side"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert lrs[True] == pytest.approx(0.25 * lrs[False])
    # Two schedules: the CTC phase's cosine ends at step 1; the RNNT phase warms up again from step 1.
    lr, floor = trainer.settings.lr, trainer.settings.lr * trainer.settings.min_lr_ratio
    assert trainer.lr_at(0) == pytest.approx(lr)
    assert [trainer.lr_at(s) for s in (1, 2, 3, 4)] == pytest.approx([lr / 2, lr, lr, (lr + floor) / 2])


def test_prediction_network_history_masking_and_the_ctc_input(tone_set, tokenizer_dir) -> None:
    import torch

    trainer = _trainer(tone_set, tokenizer_dir, decoder_mask_prob=0.5, ctc_input="prompted")
    targets = torch.randint(0, trainer.blank, (8, 50), generator=torch.Generator().manual_seed(0))
    masked = trainer._mask_history(targets)
    hidden = masked == trainer.blank
    assert 0.35 < float(hidden.float().mean()) < 0.65
    assert torch.equal(masked[~hidden], targets[~hidden])
    out = trainer.train_step([0, 1, 2, 3])
    assert out["finite"] and out["rnnt"] is not None
    # The CTC head reads what the joint reads (after the prompt kernel), or the encoder's own output.
    encoded = torch.randn(2, trainer.model.cfg.encoder.d_model, 7)
    logits, lengths = trainer._ctc_logits(encoded, torch.tensor([7, 5]))
    assert logits.shape == (2, 7, trainer.blank + 1) and lengths.tolist() == [7, 5]
    assert torch.allclose(logits, trainer.ctc_head(encoded.transpose(1, 2)))
    assert _trainer(tone_set, tokenizer_dir, decoder_mask_prob=0.0)._mask_history(targets) is targets


def test_identity_prompt_kernel_passes_the_encoder_output_through_then_learns_the_prompt(tone_set,
                                                                                       tokenizer_dir) -> None:
    import torch

    trainer = _trainer(tone_set, tokenizer_dir, identity_prompt_init=True, normalise_input=False)
    model = trainer.model.eval()
    signal, lengths, _, _ = trainer.data.batch([0, 1], "cpu", blank=0)
    with torch.no_grad():
        encoded, _ = model.forward(input_signal=signal, input_signal_length=lengths,
                                   prompt_indices=torch.tensor([0, 101]))
    assert torch.allclose(encoded, trainer._encoder_out, atol=1e-5)
    model.train()
    trainer.train_step([0, 1, 2, 3])
    prompt_columns = model.prompt_kernel[0].weight[:, model.cfg.encoder.d_model:]
    assert float(prompt_columns.abs().sum()) > 0  # the prompt gets its say by training


def test_xscale_init_scales_the_subsampling_output_as_nemos_xscaling_would(tone_set, tokenizer_dir) -> None:
    import torch

    plain = _trainer(tone_set, tokenizer_dir, normalise_input=False)
    scaled = _trainer(tone_set, tokenizer_dir, normalise_input=False, xscale_init=True)
    assert scaled.model.cfg.encoder.xscaling is False  # the released configuration's value stays
    signal, lengths, _, _ = plain.data.batch([0, 1], "cpu", blank=0)
    with torch.no_grad():
        features, feature_len = plain.model.preprocessor(input_signal=signal, length=lengths)
        a, _ = plain.model.encoder.pre_encode(features.transpose(1, 2), feature_len)
        b, _ = scaled.model.encoder.pre_encode(features.transpose(1, 2), feature_len)
    d = plain.model.cfg.encoder.d_model
    assert torch.allclose(b, a * d ** 0.5, rtol=1e-4, atol=1e-5)


def test_input_normalisation_folded_into_the_first_conv_equals_normalised_features(tone_set, tokenizer_dir) -> None:
    import copy

    import torch

    from training.recipe import normalise_first_conv

    trainer = _trainer(tone_set, tokenizer_dir)
    model = trainer.model.eval()
    signal, lengths, _, _ = trainer.data.batch([0, 1], "cpu", blank=0)
    original = copy.deepcopy(model.encoder.pre_encode.conv[0])
    mean, std = normalise_first_conv(model, signal, lengths)
    assert -20 < mean < 5 and std > 0.5
    with torch.no_grad():
        features, _ = model.preprocessor(input_signal=signal, length=lengths)
        x = features.transpose(1, 2)[:, None]  # (B, 1, T, F) as the subsampling takes it
        want = original((x - mean) / std)
        got = model.encoder.pre_encode.conv[0](x)
    # Equal away from the zero-padded borders (2 rows and columns at most for a 3x3 kernel).
    assert torch.allclose(got[..., 2:-2, 2:-2], want[..., 2:-2, 2:-2], atol=1e-4)


def test_telephone_band_limits_and_quantises() -> None:
    import torch

    from training.recipe import telephone

    t = torch.arange(16000) / 16000
    signal = (0.3 * torch.sin(2 * torch.pi * 500 * t) + 0.3 * torch.sin(2 * torch.pi * 6000 * t))[None]
    out = telephone(signal, torch.tensor([[3600.0]]))
    spectrum = torch.fft.rfft(out[0]).abs()
    assert spectrum[6000] < 0.01 * spectrum[500]  # 1 Hz bins: the 6 kHz tone is gone, 500 Hz stays
    assert out.abs().max() <= 1.0 and len(torch.unique(out)) <= 256  # 8-bit mu-law levels


def test_dev_evaluation_reports_wer_and_language_id_and_leaves_training_state(tone_set, tokenizer_dir) -> None:
    from training.recipe import ClipSet

    trainer = _trainer(tone_set, tokenizer_dir)
    trainer.dev = ClipSet(tone_set / "test_manifest.json", trainer.model.tokenizer, threads=2)
    trainer.run(max_steps=2)
    before = list(trainer.model.encoder.att_context_size)
    result = trainer.dev_eval()
    assert trainer.model.training and list(trainer.model.encoder.att_context_size) == before
    for key in ("wer_given_56_13", "wer_given_56_0", "wer_auto_56_13", "lid_accuracy_auto_56_13",
                "wer_ctc_given_56_13"):
        assert result[key] is not None and result[key] >= 0, key
    assert 0 <= result["lid_accuracy_auto_56_13"] <= 1


def test_resumed_run_matches_an_uninterrupted_one(tone_set, tokenizer_dir, tmp_path) -> None:
    straight = _trainer(tone_set, tokenizer_dir)
    straight.run(max_steps=4)
    first = _trainer(tone_set, tokenizer_dir)
    first.run(max_steps=2, checkpoint_path=tmp_path / "state.pt")
    resumed = _trainer(tone_set, tokenizer_dir)
    resumed.load_checkpoint(tmp_path / "state.pt")
    assert resumed.step == 2
    resumed.run(max_steps=4)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert straight.lookahead_counts == resumed.lookahead_counts


# --- the job ------------------------------------------------------------------------------------------------------


def test_config_file_matches_the_dataclass() -> None:
    from omegaconf import OmegaConf

    from training.train_demo_model import DEFAULT_CONFIG, TrainDemoConfig

    from training.recipe import DemoModelSpec

    conf = DEFAULT_CONFIG.parent
    for path in (DEFAULT_CONFIG, conf / "train_demo_gpu.yaml"):
        loaded = OmegaConf.to_container(OmegaConf.load(path))
        assert set(loaded) == set(TrainDemoConfig.__dataclass_fields__), path
        assert set(loaded["model"]) == set(DemoModelSpec.__dataclass_fields__), path
    # The fine-tune keeps the saved model's shapes: no `model` section.
    loaded = OmegaConf.to_container(OmegaConf.load(conf / "train_demo_finetune.yaml"))
    assert set(loaded) == set(TrainDemoConfig.__dataclass_fields__) - {"model"}
    for path in (synth_speech.DEFAULT_CONFIG, conf / "synth_speech_broad.yaml", conf / "synth_speech_finetune.yaml"):
        assert set(OmegaConf.load(path)) == set(synth_speech.SynthConfig.__dataclass_fields__), path


def test_job_trains_saves_a_small_nemo_that_the_adapter_loads_and_resumes(tone_set, tmp_path) -> None:
    from training import train_demo_model
    from pipeline.models.base import AudioItem, ModelSettings
    from pipeline.models.nemo_rnnt import NemotronRNNT
    from pipeline.models.released import PROMPT_DICTIONARY

    model_keys = [f"model.{k}={v}" for k, v in TINY_MODEL.items()] + ["model.vocab_size=96"]
    common = [f"data_dir={tone_set}", f"work_dir={tmp_path / 'work'}", "batch_seconds=8", "warmup_steps=1",
              "device=cpu", "eval_limit=5", "ctc_only_steps=1", "augment_from_step=1", "eval_every=2",
              "dev_manifest=test_manifest.json", "dev_limit=4", *model_keys]
    assert train_demo_model.main(common + ["steps=2"]) == 0
    metrics = json.loads((tmp_path / "work" / "metrics.json").read_text())
    assert metrics["finished"] is True and metrics["training"]["steps"] == 2
    assert [e["step"] for e in metrics["training"]["dev_curve"]] == [2]
    assert all(h["cpu_seconds_per_step"] > 0 for h in metrics["training"]["loss_curve"])
    assert set(metrics["targets"]) == {"wer_given_56_13", "wer_given_56_0", "lid_accuracy_auto_56_13"}
    evaluation = metrics["evaluation"]
    assert evaluation["clips"] == 5 and set(evaluation["contexts"]) == {"56_13", "56_0"}
    assert 0 <= evaluation["contexts"]["56_0"]["lid_accuracy_auto"] <= 1
    nemo = tmp_path / "work" / "demo.nemo"
    assert metrics["model"]["nemo_mb"] < 20 and nemo.stat().st_size < 20e6

    adapter = NemotronRNNT(ModelSettings(model_path=str(nemo), att_context_size=(56, 0), device="cpu", threads=1))
    assert adapter.card.prompt_dictionary == PROMPT_DICTIONARY
    assert adapter.card.att_context_sizes == ((56, 3), (56, 0), (56, 6), (56, 13))
    audio, _ = sf.read(tone_set / "audio" / "0.flac", dtype="float32")
    out = adapter.transcribe([AudioItem(audio, "en-US"), AudioItem(audio, "de"), AudioItem(audio, "auto")])
    assert len(out) == 3 and all(isinstance(o.raw_text, str) for o in out)

    # Same work_dir, more steps: resumes from state.pt.
    assert train_demo_model.main(common + ["steps=3", "evaluate=false"]) == 0
    metrics = json.loads((tmp_path / "work" / "metrics.json").read_text())
    assert metrics["training"]["steps"] == 3
    assert "resumed from" in (tmp_path / "work" / "train.log").read_text()


def test_fine_tune_starts_from_a_saved_nemo_and_keeps_its_tokenizer(tone_set, tmp_path) -> None:
    from training import train_demo_model
    from training.recipe import load_demo_model

    model_keys = [f"model.{k}={v}" for k, v in TINY_MODEL.items()] + ["model.vocab_size=96"]
    common = [f"data_dir={tone_set}", "batch_seconds=8", "warmup_steps=1", "device=cpu", "evaluate=false",
              "eval_every=0"]
    assert train_demo_model.main(common + [f"work_dir={tmp_path / 'base'}", "steps=1", *model_keys]) == 0
    base_nemo = tmp_path / "base" / "demo.nemo"
    fine = [*common, f"work_dir={tmp_path / 'ft'}", f"init_nemo={base_nemo}", "normalise_input=false",
            "identity_prompt_init=false", "xscale_init=false", "ctc_weight=0", "ctc_only_steps=0",
            "frozen_encoder_steps=0", "lr=0.01"]
    assert train_demo_model.main(fine + ["steps=2"]) == 0
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert metrics["model"]["init_nemo"] == str(base_nemo) and metrics["training"]["steps"] == 2
    base, tuned = load_demo_model(base_nemo), load_demo_model(tmp_path / "ft" / "demo.nemo")
    assert [tuned.tokenizer.ids_to_text([i]) for i in range(96)] == [base.tokenizer.ids_to_text([i]) for i in range(96)]
    moved = [n for (n, a), (_, b) in zip(base.named_parameters(), tuned.named_parameters()) if not (a == b).all()]
    assert any(n.startswith("encoder.") for n in moved) and any(n.startswith("decoder.") for n in moved)
    assert not (tmp_path / "ft" / "tokenizer").exists()  # the saved model's tokenizer, no new one


def test_fine_tune_refuses_settings_that_would_reinitialise_a_trained_model(tone_set, tmp_path) -> None:
    from jobs.config import ConfigError
    from training import train_demo_model

    nemo = tmp_path / "m.nemo"
    nemo.write_bytes(b"x")
    with pytest.raises(ConfigError, match="xscale_init"):
        train_demo_model.load_config([f"data_dir={tone_set}", f"init_nemo={nemo}", "xscale_init=true"])
    with pytest.raises(ConfigError, match="not found"):
        train_demo_model.load_config([f"data_dir={tone_set}", f"init_nemo={tmp_path / 'missing.nemo'}"])
