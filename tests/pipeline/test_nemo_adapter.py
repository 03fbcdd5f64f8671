"""Tests for pipeline.models.nemo_rnnt on a tiny checkpoint of the real class (EncDecRNNTBPEModelWithPrompt)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pipeline.batching import plan_batches
from pipeline.models.base import AudioItem, ModelOutput, ModelSettings
from pipeline.models.nemo_rnnt import NemotronRNNT, describe
from pipeline.models.released import ATT_CONTEXT_SIZES, AUTO_PROMPT_INDEX, CANONICAL_LOCALES, PROMPT_DICTIONARY
from tests.audio_factory import tone

LOCALES = ", ".join(sorted(CANONICAL_LOCALES))  # the tiny model has the released dictionary


def model_spec(model_path, *, device: str = "cpu", dtype: str = "float32", att_context_size=None,
               **top) -> ModelSettings:
    """The settings an adapter is loaded from."""
    return ModelSettings(model_path=str(model_path), device=device, dtype=dtype, threads=1,
                         att_context_size=tuple(att_context_size) if att_context_size else None, **top)


@pytest.fixture(scope="module")
def adapter(tiny_model) -> NemotronRNNT:
    return NemotronRNNT(model_spec(tiny_model, att_context_size=[56, 6], batch_size=2))


def _clip(seconds: float, freq: float, seed: int) -> np.ndarray:
    """A tone plus a little noise: each clip gives the random model a different input."""
    noise = np.random.default_rng(seed).standard_normal(int(seconds * 16000)).astype(np.float32)
    return tone(seconds, freq=freq) + 0.05 * noise


@pytest.fixture(scope="module")
def items() -> list[AudioItem]:
    specs = [(2.0, 300, "en-US"), (0.6, 500, "auto"), (3.1, 700, "de-DE"), (1.3, 200, "auto"), (2.5, 900, "es-ES")]
    return [AudioItem(_clip(s, f, seed), lang) for seed, (s, f, lang) in enumerate(specs)]


@pytest.fixture()
def forward_calls(adapter, monkeypatch) -> list[dict]:
    """Every call of the model's forward, with its prompt indices and signal lengths, passed through unchanged."""
    calls: list[dict] = []
    original = adapter.model.forward

    def recording_forward(*args, **kwargs):
        calls.append({"prompt_indices": kwargs["prompt_indices"].tolist(),
                      "lengths": kwargs["input_signal_length"].tolist(),
                      "shape": tuple(kwargs["input_signal"].shape)})
        return original(*args, **kwargs)

    monkeypatch.setattr(adapter.model, "forward", recording_forward)
    return calls


# --- describe and loading -----------------------------------------------------------------------------------------


def test_describe(tiny_model) -> None:
    card = describe(str(tiny_model))
    assert card.model_path == str(tiny_model)
    assert card.model_class.endswith("EncDecRNNTBPEModelWithPrompt")
    assert card.sample_rate == 16000
    assert card.prompt_dictionary == PROMPT_DICTIONARY
    assert card.prompt_dictionary["auto"] == AUTO_PROMPT_INDEX == 101
    assert card.att_context_sizes == ((56, 3), (56, 0), (56, 6), (56, 13))
    assert card.att_context_sizes == ATT_CONTEXT_SIZES
    assert card.locales == tuple(sorted(CANONICAL_LOCALES))  # canonical: the aliases resolve to these
    assert card.most_accurate_att_context_size == (56, 13)


def test_describe_single_context_and_no_prompts(monkeypatch) -> None:
    """A plain (not multi-lookahead) encoder gives one [left, right] pair; a model without prompts no locales."""
    from omegaconf import OmegaConf

    from pipeline.models import nemo_rnnt

    cfg = OmegaConf.create({"target": "nemo.collections.asr.models.EncDecRNNTBPEModel", "sample_rate": 8000,
                            "encoder": {"att_context_size": [70, 13]}})
    monkeypatch.setattr(nemo_rnnt, "_read_config", lambda path: cfg)
    card = describe("/models/plain.nemo")
    assert card.att_context_sizes == ((70, 13),)
    assert card.prompt_dictionary == {}
    assert card.locales == ()
    assert card.sample_rate == 8000
    assert card.model_class == "nemo.collections.asr.models.EncDecRNNTBPEModel"

    cfg = OmegaConf.create({"encoder": {}, "model_defaults": {"prompt_dictionary": {"en-US": 0, "auto": 101}}})
    card = describe("/models/other.nemo")
    assert card.att_context_sizes == ()
    assert card.most_accurate_att_context_size is None
    assert card.locales == ("en-US",)
    assert card.sample_rate == 16000


def test_adapter_sets_att_context_size(adapter) -> None:
    assert list(adapter.model.encoder.att_context_size) == [56, 6]  # not the checkpoint's default (the first)
    assert adapter.card.att_context_sizes == ((56, 3), (56, 0), (56, 6), (56, 13))
    assert adapter.sample_rate == 16000
    assert adapter.device.type == "cpu"
    assert adapter.model.training is False
    assert adapter.model.cfg.decoding.strip_lang_tags is False  # tags reach the language stage


def test_att_context_size_not_offered(tiny_model) -> None:
    settings = model_spec(tiny_model, att_context_size=[70, 13])
    with pytest.raises(ValueError, match=r"att_context_size \[70,13\] is not offered by the checkpoint: "
                                         r"\[56,3\] \[56,0\] \[56,6\] \[56,13\]$"):
        NemotronRNNT(settings)


def test_bad_dtype_refused_before_loading(tiny_model) -> None:
    with pytest.raises(ValueError, match="dtype must be one of"):
        NemotronRNNT(model_spec(tiny_model, dtype="fp8"))


# --- transcribe ---------------------------------------------------------------------------------------------------


def test_transcribe_one_output_per_item_in_order(adapter, items, forward_calls) -> None:
    outputs = adapter.transcribe(items)
    assert len(outputs) == 5
    assert all(isinstance(o, ModelOutput) for o in outputs)
    # batch_size=2 over durations 2.0, 0.6, 3.1, 1.3, 2.5: three forward passes, two of them padded.
    assert [c["lengths"] for c in forward_calls] == [[49600, 40000], [32000, 20800], [16000]]
    singles = [adapter.transcribe([item])[0] for item in items]
    # Greedy decoding is deterministic and padding is masked: batched equals one-by-one, item by item.
    assert [o.raw_text for o in outputs] == [s.raw_text for s in singles]
    assert [o.num_tokens for o in outputs] == [s.num_tokens for s in singles]
    # The outputs are distinct, so a reordering could not go unnoticed.
    assert len({o.raw_text for o in outputs}) == 5
    assert all(o.num_tokens > 0 for o in outputs)


def test_transcribe_all_in_one_batch_matches(adapter, items, monkeypatch) -> None:
    separate = adapter.transcribe(items)
    monkeypatch.setattr(adapter, "settings", replace(adapter.settings, batch_size=8))
    together = adapter.transcribe(items)
    assert [o.raw_text for o in together] == [o.raw_text for o in separate]


def test_transcribe_empty(adapter) -> None:
    assert adapter.transcribe([]) == []


def test_short_clip_padded_to_one_second(adapter, forward_calls) -> None:
    short = tone(0.3, freq=350)
    (out,) = adapter.transcribe([AudioItem(short, "en-US")])
    assert forward_calls[0]["lengths"] == [16000]
    assert forward_calls[0]["shape"] == (1, 16000)
    assert out.num_tokens > 0
    padded = np.concatenate([short, np.zeros(16000 - len(short), dtype=np.float32)])
    assert adapter.transcribe([AudioItem(padded, "en-US")])[0].raw_text == out.raw_text


def test_per_row_prompts_reach_the_model(adapter, forward_calls, monkeypatch) -> None:
    monkeypatch.setattr(adapter, "settings", replace(adapter.settings, batch_size=3))
    durations = [1.2, 2.4, 1.8]
    langs = ["en-US", "de-DE", "auto"]
    batch = [AudioItem(_clip(d, 440, 10 + i), lang) for i, (d, lang) in enumerate(zip(durations, langs))]
    adapter.transcribe(batch)
    assert len(forward_calls) == 1
    (order,) = plan_batches(durations, 3)
    assert order == [1, 2, 0]  # longest first
    sent = forward_calls[0]["prompt_indices"]
    assert sent == [9, 101, 0]  # de-DE is index 9 in the released dictionary
    by_row = [None] * 3
    for position, row in enumerate(order):
        by_row[row] = sent[position]
    assert by_row == [0, 9, 101]
    assert forward_calls[0]["lengths"] == [38400, 28800, 19200]


def test_prompt_changes_the_hypothesis(adapter) -> None:
    clip = tone(1.5, freq=400)
    texts = [adapter.transcribe([AudioItem(clip, lang)])[0].raw_text for lang in ("en-US", "de-DE")]
    assert texts[0] != texts[1]


def test_unknown_target_lang(adapter) -> None:
    with pytest.raises(ValueError) as error:
        adapter.transcribe([AudioItem(tone(1.0), "en-US"), AudioItem(tone(1.0), "xx-XX")])
    assert str(error.value) == f"unknown target_lang 'xx-XX'; this checkpoint knows: {LOCALES}, auto (and their aliases)"
    assert adapter.prompt_index("auto") == 101
    assert adapter.prompt_index("ja-JP") == 10


def test_cuda_graph_decoder_failure_falls_back_once(adapter, monkeypatch, caplog) -> None:
    """On a GPU a failing CUDA-graph decoder is switched off once and the batch is decoded again (simulated: the
    first decoding call raises as the CUDA-graph path does on a bad driver). On CPU an error is not swallowed."""
    import types

    import torch

    with torch.inference_mode():
        encoded, encoded_len = adapter.model.forward(
            input_signal=torch.full((1, 16000), 0.01), input_signal_length=torch.tensor([16000]),
            prompt_indices=torch.tensor([0]))
    real = adapter.model.decoding.rnnt_decoder_predictions_tensor
    calls = []

    def flaky(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")
        return real(**kwargs)

    monkeypatch.setattr(adapter.model.decoding, "rnnt_decoder_predictions_tensor", flaky)
    with pytest.raises(RuntimeError, match="stream is capturing"):  # on CPU: no fallback, the error stands
        adapter._decode(encoded, encoded_len)
    calls.clear()
    disabled = []
    monkeypatch.setattr(adapter, "device", types.SimpleNamespace(type="cuda"))
    monkeypatch.setattr(adapter, "_cuda_graphs", True)
    monkeypatch.setattr(adapter, "disable_cuda_graph_decoder", lambda: disabled.append(1))
    with caplog.at_level("WARNING"):
        hyps = adapter._decode(encoded, encoded_len)
    assert len(hyps) == 1 and len(calls) == 2 and disabled == [1]
    assert "falling back to the plain decoding loop" in caplog.text


def test_language_tags_in_real_decoder_output_parse_and_strip(adapter) -> None:
    """Tag parsing on what the tiny model of the real class really writes in auto mode (tags glued to words, runs of
    tags, a tag at the very end): spans name only the checkpoint's locales, no tag survives stripping, and the spans
    put together are the stripped text."""
    import numpy as np

    from pipeline.language import dominant_language, split_by_language, strip_language_tags, tags_in
    from pipeline.models.base import AudioItem

    rng = np.random.default_rng(7)
    items = [AudioItem(samples=(0.1 * rng.standard_normal(16000 * s)).astype(np.float32), prompt_locale="auto")
             for s in (1, 2, 3)]
    raws = [out.raw_text for out in adapter.transcribe(items)]
    assert any(tags_in(raw) for raw in raws), raws  # the random model does write tags
    locales = set(adapter.card.locales)
    for raw in raws:
        spans = split_by_language(raw)
        stripped = strip_language_tags(raw)
        assert "<" not in stripped and ">" not in stripped
        assert " ".join(s.text for s in spans) == stripped
        assert {s.language for s in spans} <= locales | {None}
        assert set(tags_in(raw)) <= locales
        if tags_in(raw) and stripped:
            assert dominant_language(spans) in locales
