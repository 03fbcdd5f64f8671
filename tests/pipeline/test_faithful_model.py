"""The test model is a faithful miniature of the released checkpoint (pipeline.models.released), and nothing in the
project depends on one particular latency list or its order."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import numpy as np
import pytest

from pipeline.models import released
from pipeline.locales import Locales
from pipeline.models.base import AudioItem, ModelSettings
from pipeline.models.nemo_rnnt import NemotronRNNT, describe
from pipeline.models.tiny import TinyModelSpec, build_checkpoint, build_model, model_config
from tests.audio_factory import write_tone

AUTO = "auto"
# Two latency lists other than the release's: another order with the most accurate in the middle, and another left
# context (NeMo requires left % (right + 1) == 0 for chunked_limited).
OTHER_LISTS = (((56, 6), (56, 13), (56, 0)), ((28, 0), (28, 13), (28, 3), (28, 1)))


def _config(path: Path):
    from nemo.collections.asr.models import ASRModel

    return ASRModel.restore_from(str(path), return_config=True, map_location="cpu")


# --- the released facts --------------------------------------------------------------------------------------------


def test_tag_locales_are_the_canonical_locales() -> None:
    """The tags the model writes: for each index its first xx-YY name (pipeline.locales' canonical locale)."""
    canonical = Locales.from_dictionary(released.PROMPT_DICTIONARY).canonical_of_index
    assert len(released.CANONICAL_LOCALES) == 83 and len(released.PROMPT_DICTIONARY) == 121
    assert AUTO not in released.CANONICAL_LOCALES
    assert released.CANONICAL_LOCALES == tuple(c for c in canonical.values() if c != AUTO)  # dictionary order
    assert canonical[0] == "en-US" and canonical[2] == "es-ES" and canonical[3] == "es-US"
    assert canonical[4] == "zh-CN" and canonical[6] == "hi-IN" and canonical[10] == "ja-JP" and canonical[14] == "ko-KR"
    assert canonical[9] == "de-DE" and canonical[13] == "pt-PT" and canonical[27] == "no-NO"
    assert canonical[103] == "nb-NO" and canonical[104] == "nn-NO" and canonical[83] == "nah-MX"


def test_prompt_subset_keeps_released_indices_and_aliases() -> None:
    assert released.prompt_subset(["de-DE", "es-ES"]) == {"es-ES": 2, "esES": 2, "de-DE": 9, "de": 9, "auto": 101}


def test_released_latency_list() -> None:
    assert released.ATT_CONTEXT_SIZES == ((56, 3), (56, 0), (56, 6), (56, 13))
    assert released.ENCODER["att_context_size"] == [[56, 3], [56, 0], [56, 6], [56, 13]]


# --- the tiny model is the released configuration at small sizes -----------------------------------------------------


def test_tiny_model_has_the_released_configuration(tiny_model) -> None:
    cfg = _config(tiny_model)
    spec = TinyModelSpec()
    assert cfg.target.endswith("EncDecRNNTBPEModelWithPrompt")
    assert dict(cfg.model_defaults.prompt_dictionary) == released.PROMPT_DICTIONARY
    assert list(cfg.model_defaults.prompt_dictionary) == list(released.PROMPT_DICTIONARY)  # the checkpoint's order
    assert cfg.model_defaults.num_prompts == released.NUM_PROMPTS == 128
    for key, value in released.PREPROCESSOR.items():
        assert cfg.preprocessor[key] == value, key
    sizes = {"n_layers", "d_model", "n_heads", "subsampling_conv_channels"}
    for key, value in released.ENCODER.items():
        if key not in sizes:
            assert cfg.encoder[key] == value, key
    assert [tuple(c) for c in cfg.encoder.att_context_size] == list(released.ATT_CONTEXT_SIZES)
    assert cfg.encoder.feat_in == 128
    assert cfg.decoder.prednet.pred_rnn_layers == released.PRED_RNN_LAYERS
    assert cfg.decoder.blank_as_pad is True and cfg.joint.jointnet.activation == "relu"
    assert cfg.decoding.greedy.max_symbols == released.MAX_SYMBOLS_PER_STEP
    assert (cfg.encoder.n_layers, cfg.encoder.d_model) == (spec.n_layers, spec.d_model)


def test_tiny_tokenizer_has_a_tag_token_for_every_prompt(tiny_model) -> None:
    """One token per canonical locale (`<de-DE>`, never `<de>`), decoded back to the same text; exactly vocab_size
    pieces."""
    from nemo.collections.asr.models import ASRModel

    model = ASRModel.restore_from(str(tiny_model), map_location="cpu")
    tokenizer = model.tokenizer
    assert tokenizer.vocab_size == TinyModelSpec().vocab_size
    assert model.joint.num_classes_with_blank == tokenizer.vocab_size + 1
    for locale in released.CANONICAL_LOCALES:
        ids = tokenizer.text_to_ids(f"guten tag<{locale}>")
        assert tokenizer.ids_to_tokens(ids[-1:]) == [f"<{locale}>"], locale
        assert tokenizer.ids_to_text(ids) == f"guten tag<{locale}>"
    assert len(tokenizer.text_to_ids("<de>")) > 1 and len(tokenizer.text_to_ids("<enGB>")) > 1  # aliases: no tags


@pytest.mark.slow  # NeMo spends ~30 s in OmegaConf copying a 13,087-entry vocabulary around
def test_real_size_config_has_the_released_parameter_count() -> None:
    """Built with NeMo's own constructors at full width with one encoder layer; the other 23 layers have the same
    shapes as that one."""
    model = build_model(TinyModelSpec.real_size(n_layers=1))
    assert model.tokenizer.vocab_size == released.VOCAB_SIZE
    assert model.joint.num_classes_with_blank == released.VOCAB_SIZE + 1 == 13_088
    assert model.encoder.att_context_size_all == [list(c) for c in released.ATT_CONTEXT_SIZES]
    first, _, last = model.prompt_kernel  # Linear(1024 + 128 -> 2048), ReLU, Linear(2048 -> 1024)
    assert (first.in_features, first.out_features) == (1024 + released.NUM_PROMPTS, released.PROMPT_HIDDEN)
    assert (last.in_features, last.out_features) == (released.PROMPT_HIDDEN, 1024)
    one_layer = sum(p.numel() for p in model.parameters())
    per_layer = sum(p.numel() for p in model.encoder.layers[0].parameters())
    assert one_layer + (released.ENCODER["n_layers"] - 1) * per_layer == released.PARAMETERS == 637_997_088


def test_model_config_follows_the_spec_lists() -> None:
    spec = TinyModelSpec(att_context_sizes=OTHER_LISTS[1], prompt_dictionary=released.prompt_subset(["fr-FR"]))
    cfg = model_config(spec, Path("/nowhere"))
    assert cfg["encoder"]["att_context_size"] == [[28, 0], [28, 13], [28, 3], [28, 1]]
    assert cfg["model_defaults"]["prompt_dictionary"] == {"fr-FR": 8, "fr": 8, "auto": 101}
    assert spec.tag_locales == ("fr-FR",)


# --- no code assumes a latency list or its order --------------------------------------------------------------------


def _spec(path: Path, att_context_size) -> ModelSettings:
    return ModelSettings(model_path=str(path), att_context_size=tuple(att_context_size), device="cpu", threads=1)


@pytest.fixture(scope="module")
def other_models(tmp_path_factory) -> dict[tuple, Path]:
    folder = tmp_path_factory.mktemp("latency-lists")
    return {sizes: build_checkpoint(folder / f"model-{i}.nemo", TinyModelSpec(att_context_sizes=sizes, seed=i))
            for i, sizes in enumerate(OTHER_LISTS)}


@pytest.mark.parametrize("sizes", [released.ATT_CONTEXT_SIZES, *OTHER_LISTS])
def test_card_and_adapter_follow_the_checkpoint_list(sizes, tiny_model, other_models) -> None:
    path = tiny_model if sizes == released.ATT_CONTEXT_SIZES else other_models[sizes]
    card = describe(str(path))
    assert card.att_context_sizes == sizes  # in the checkpoint's order
    widest = max(sizes, key=lambda c: c[1])
    assert card.most_accurate_att_context_size == widest  # by right context, wherever it sits in the list
    assert widest != sizes[0]  # so the adapter must set it: NeMo's default is the first entry
    adapter = NemotronRNNT(_spec(path, widest))
    assert tuple(adapter.model.encoder.att_context_size) == widest
    clip = np.random.default_rng(0).standard_normal(24000).astype(np.float32) * 0.1
    assert len(adapter.transcribe([AudioItem(clip, "de")])) == 1


def test_adapter_refusal_lists_the_checkpoint_order(other_models) -> None:
    sizes = OTHER_LISTS[1]
    offered = " ".join(f"[{a},{b}]" for a, b in sizes)
    with pytest.raises(ValueError, match=re.escape(f"is not offered by the checkpoint: {offered}")):
        NemotronRNNT(_spec(other_models[sizes], (56, 13)))


def test_job_defaults_to_the_widest_right_context_whatever_the_order(ray_session, other_models, tmp_path) -> None:
    from jobs.transcribe import main

    sizes = OTHER_LISTS[0]  # [56,13] is neither first (NeMo's default) nor last
    write_tone(tmp_path / "a.wav", 1.5)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio_filepath": "a.wav"}\n')
    out = tmp_path / "out"
    assert main([f"model_path={other_models[sizes]}", f"dataset_manifest={manifest}", f"output_path={out}"]) == 0
    contexts = duckdb.sql(f"select att_context_size from '{out}/recordings/*.parquet'").fetchall()
    assert contexts == [([56, 13],)]


def test_segment_memory_table_matches_its_benchmark() -> None:
    """The documented table (released.SEGMENT_MEMORY_MIB) is what benchmarks.segment_memory computes on paper; the
    ceiling is one of the measured lengths."""
    from benchmarks.segment_memory import attention_paper_mib

    for seconds, (frames, measured, paper) in released.SEGMENT_MEMORY_MIB.items():
        assert frames == int(seconds * 12.5) + 1
        assert paper == round(attention_paper_mib(seconds))
        assert measured > paper  # the whole forward (the subsampling convolutions above all) needs more
    assert int(released.MAX_SEGMENT_SECONDS) in released.SEGMENT_MEMORY_MIB
