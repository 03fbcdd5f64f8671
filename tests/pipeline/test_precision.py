"""bf16 must not drop the language: under dtype=bfloat16 the prompt kernel runs in float32 with autocast off.

On the faithful tiny model, on CPU (torch's autocast supports bfloat16 there). Random weights decode chaotically
(one flipped near-tie changes every later token), so the token comparison uses weights set by hand that reproduce the
failure NVIDIA describes for the released checkpoint: the language is a small term next to large activations inside
the prompt kernel, which bf16 rounds away.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.language import tags_in
from pipeline.locales import Locales
from pipeline.models.base import AudioItem, ModelSettings
from pipeline.models.nemo_rnnt import NemotronRNNT

FORCED = ["de-DE", "ja-JP", "en-US", "pt", "nb"]  # locales and aliases, each its own prompt index


def _items() -> list[AudioItem]:
    rng = np.random.default_rng(3)
    return [AudioItem((0.1 * rng.standard_normal(int(16000 * s))).astype(np.float32), lang)
            for s, lang in zip((1.6, 2.2, 1.1, 2.8, 1.9), FORCED)]


@pytest.fixture(scope="module")
def adapters(tiny_model) -> dict[str, NemotronRNNT]:
    def spec(dtype: str) -> ModelSettings:
        return ModelSettings(model_path=str(tiny_model), batch_size=8, device="cpu", dtype=dtype, threads=1)

    return {dtype: NemotronRNNT(spec(dtype)) for dtype in ("float32", "bfloat16")}


def _kernel(adapter: NemotronRNNT) -> torch.nn.Sequential:
    """The checkpoint's prompt kernel (inside the float32 guard when there is one)."""
    kernel = adapter.model.prompt_kernel
    return getattr(kernel, "kernel", kernel)


def _record_dtypes(module: torch.nn.Module, seen: list):
    return module.register_forward_hook(lambda mod, args, out: seen.append((args[0].dtype, out.dtype)))


@torch.no_grad()
def _language_is_a_small_term(adapter: NemotronRNNT) -> None:
    """Weights under which the emitted tag depends only on the prompt, through a difference of two large hidden
    activations: for each forced prompt index k, hidden units 2i and 2i+1 are both 300, plus 0.5 on unit 2i when
    the prompt is k; the output unit i is their difference (0.5 or 0). In float32 that is exact; in bf16 300.5
    rounds to 300 (spacing 2) and the language is gone. The joint ignores the prediction network and emits
    `<tag of k>` where output unit i is 0.5 (logit 4), else blank (logit 2)."""
    model = adapter.model
    linear1, _, linear2 = _kernel(adapter)
    d_model = linear2.out_features
    for layer in (linear1, linear2, model.joint.enc, model.joint.pred):
        layer.weight.zero_()
        layer.bias.zero_()
    out_layer = model.joint.joint_net[-1]
    out_layer.weight.zero_()
    out_layer.bias.zero_()
    prompts = model.cfg.model_defaults.prompt_dictionary
    canonical = Locales.from_dictionary(prompts).canonical_of_index
    tokenizer = model.tokenizer
    blank = model.joint.num_classes_with_blank - 1
    for i, lang in enumerate(FORCED):
        index = prompts[lang]
        linear1.bias[2 * i] = linear1.bias[2 * i + 1] = 300.0
        linear1.weight[2 * i, d_model + index] = 0.5
        linear2.weight[i, 2 * i], linear2.weight[i, 2 * i + 1] = 1.0, -1.0
        model.joint.enc.weight[i, i] = 8.0
        out_layer.weight[tokenizer.token_to_id(f"<{canonical[index]}>"), i] = 1.0
    constant = len(FORCED)  # a joint unit that is always 2: the blank's logit
    model.joint.enc.bias[constant] = 2.0
    out_layer.weight[blank, constant] = 1.0


def test_bf16_runs_the_prompt_kernel_in_float32(adapters) -> None:
    bf16 = adapters["bfloat16"]
    kernel = _kernel(bf16)
    assert kernel is not bf16.model.prompt_kernel  # wrapped
    assert all(p.dtype == torch.float32 for p in kernel.parameters())
    kernel_dtypes: list = []
    encoder_dtypes: list = []
    handles = [_record_dtypes(kernel, kernel_dtypes),
               _record_dtypes(bf16.model.encoder.layers[0].feed_forward1.linear1, encoder_dtypes)]
    try:
        outputs = bf16.transcribe(_items())
    finally:
        for handle in handles:
            handle.remove()
    assert len(outputs) == len(FORCED) and all(o.num_tokens > 0 for o in outputs)
    # The rest of the model really ran in bf16 (autocast on CPU), the prompt kernel in float32 in and out.
    assert encoder_dtypes and all(out == torch.bfloat16 for _, out in encoder_dtypes)
    assert kernel_dtypes and all(pair == (torch.float32, torch.float32) for pair in kernel_dtypes)


def test_forced_language_survives_bf16(adapters) -> None:
    fp32, bf16 = adapters["float32"], adapters["bfloat16"]
    for adapter in (fp32, bf16):  # the same weights in both
        _language_is_a_small_term(adapter)
    expected = [fp32.card.languages.resolve(lang) for lang in FORCED]  # the tag the model writes

    reference = fp32.transcribe(_items())
    assert [set(tags_in(o.raw_text)) for o in reference] == [{tag} for tag in expected]
    outputs = bf16.transcribe(_items())
    assert [o.raw_text for o in outputs] == [o.raw_text for o in reference]
    assert [o.num_tokens for o in outputs] == [o.num_tokens for o in reference]

    # Without the guard (NeMo 3.0.0's own prompt kernel under the same bf16 autocast) the language is lost.
    assert isinstance(fp32.model.prompt_kernel, torch.nn.Sequential)
    seen: list = []
    handle = _record_dtypes(fp32.model.prompt_kernel, seen)
    try:
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            unguarded = fp32.transcribe(_items())
    finally:
        handle.remove()
    assert seen and all(pair == (torch.bfloat16, torch.bfloat16) for pair in seen)
    assert [o.num_tokens for o in unguarded] == [0] * len(FORCED)
