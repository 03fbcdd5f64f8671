"""What is public about the released checkpoint `nvidia/nemotron-3.5-asr-streaming-0.6b`, in one place.

Every fact here names its source. The sources, by weight:
- [port] the `transformers` port of this exact model, installed with NeMo (transformers 5.23):
  `transformers/models/nemotron3_5_asr/` (config, processor with `DEFAULT_PROMPT_DICTIONARY`, "taken verbatim from the
  NeMo checkpoint's model_defaults.prompt_dictionary") and `nemotron_asr_streaming/` (encoder, feature extractor).
  Caution: the port's encoder and processor defaults are those of the English parent model
  `nvidia/nemotron-speech-streaming-en-0.6b` (`sliding_window=71`, i.e. left context 70; 80 mel bins; lookaheads
  [13, 6, 1, 0]); the 3.5 values live in the hub's config.json, which is not installed. Only what the port states
  about 3.5 itself (prompt dictionary, 128 prompt slots, 13,088 outputs with blank 13,087, prompt MLP sizes, the
  feature computation) is taken from it.
- [nemo-cfg] NVIDIA's training config for this model class, `examples/asr/conf/fastconformer/cache_aware_streaming/
  fastconformer_transducer_bpe_streaming_prompt.yaml` in NVIDIA-NeMo/Speech (commit e467906f): the same dictionary
  (without `nn`), preprocessor, `use_bias: false`, `xscaling: false`, 256 subsampling channels, decoder and joint.
- [inspection] a published read-only inspection of a `.nemo` fine-tuned from the release (same class, saved with
  NeMo 2.8.0rc0): 637,997,088 weights, `att_context_size [[56, 3], [56, 0], [56, 6], [56, 13]]`, 128 features,
  25/10 ms windows, n_fft 512, 2-layer LSTM 640, joint 640 with 13,088 outputs, SentencePiece Unigram of 13,087
  pieces (NeMo type `bpe`), `greedy_batch` with max 10 symbols per step.
- [trt] NVIDIA/TensorRT-Model-Connect PR #238 (adds this model): "att_context_size = [56, {0,3,6,13}] (vs en-0.6b's
  [70, {0,1,6,13}])"; prompt MLP Linear(1152->2048)+ReLU+Linear(2048->1024), both with bias.
- [card] the model card: 40 language-locales; chunk sizes 80, 160, 320, 560 and 1120 ms.
- [measured] checked here by building the configuration with NeMo 3.0.0's own constructors.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from pipeline.locales import AUTO, Locales

MODEL_NAME = "nvidia/nemotron-3.5-asr-streaming-0.6b"

# --- language prompts ------------------------------------------------------------------------------------------------

# [port] processing_nemotron3_5_asr.py: DEFAULT_PROMPT_DICTIONARY, copied here (not imported) so that nothing on the
# data path depends on the port; [nemo-cfg] has the same entries except `nn-NO`/`nn` (104). Copied in the
# checkpoint's order: aliases share an index with their locale (`en` and `en-US` are 0, `es` is `es-US` (3) while
# `es-ES` is 2, `pt` is `pt-PT`, `no`/`no-NO` 27, `nb` 103, `nn` 104, `auto` 101). 121 keys over 84 indices.
NUM_PROMPTS = 128  # [port] Nemotron3_5AsrConfig.num_prompts; [inspection] 128 language prompt inputs
AUTO_PROMPT_INDEX = 101  # [port] Nemotron3_5AsrConfig.default_prompt_id: the `auto` (language detection) slot

PROMPT_DICTIONARY: dict[str, int] = {
    "en-US": 0, "en": 0, "en-GB": 1, "enGB": 1, "es-ES": 2, "esES": 2, "es-US": 3, "es": 3, "zh-CN": 4, "zh-ZH": 4,
    "zh-TW": 5, "hi-IN": 6, "hi": 6, "hi-HI": 6, "ar-AR": 7, "ar": 7, "fr-FR": 8, "fr": 8, "de-DE": 9, "de": 9,
    "ja-JP": 10, "ja-JA": 10, "ru-RU": 11, "ru": 11, "pt-BR": 12, "pt-PT": 13, "pt": 13, "ko-KR": 14, "ko": 14,
    "ko-KO": 14, "it-IT": 15, "it": 15, "nl-NL": 16, "nl": 16, "pl-PL": 17, "pl": 17, "tr-TR": 18, "tr": 18,
    "uk-UA": 19, "uk": 19, "ro-RO": 20, "ro": 20, "el-GR": 21, "el": 21, "cs-CZ": 22, "cs": 22, "hu-HU": 23,
    "hu": 23, "sv-SE": 24, "sv": 24, "da-DK": 25, "da": 25, "fi-FI": 26, "fi": 26, "no-NO": 27, "no": 27,
    "nb-NO": 103, "nb": 103, "nn-NO": 104, "nn": 104, "sk-SK": 28, "sk": 28, "hr-HR": 29, "hr": 29, "bg-BG": 30,
    "bg": 30, "lt-LT": 31, "lt": 31, "et-EE": 60, "et": 60, "lv-LV": 61, "lv": 61, "sl-SI": 62, "sl": 62,
    "th-TH": 32, "vi-VN": 33, "id-ID": 34, "ms-MY": 35, "bn-IN": 36, "ur-PK": 37, "fa-IR": 38, "ta-IN": 39,
    "te-IN": 40, "mr-IN": 41, "gu-IN": 42, "kn-IN": 43, "ml-IN": 44, "si-LK": 45, "ne-NP": 46, "km-KH": 47,
    "sw-KE": 48, "am-ET": 49, "ha-NG": 50, "zu-ZA": 51, "yo-NG": 52, "ig-NG": 53, "af-ZA": 54, "rw-RW": 55,
    "so-SO": 56, "ny-MW": 57, "ln-CD": 58, "or-KE": 59, "he-IL": 64, "ku-TR": 65, "az-AZ": 66, "ka-GE": 67,
    "hy-AM": 68, "uz-UZ": 69, "tg-TJ": 70, "ky-KG": 71, "qu-PE": 80, "ay-BO": 81, "gn-PY": 82, "nah-MX": 83,
    "mi-NZ": 96, "haw-US": 97, "sm-WS": 98, "to-TO": 99, "fr-CA": 100, "mt-MT": 102, "auto": 101,
}

# The tag text the model writes for a prompt index: `<xx-YY>`, the index's first dictionary key in `xx-YY` form
# (two or three lower-case letters, a dash, two upper-case letters: the canonical locale of pipeline.locales). So
# index 4 writes `<zh-CN>` (not `zh-ZH`), 6 `<hi-IN>` (not `hi-HI`), 10 `<ja-JP>`, 14 `<ko-KR>`; the aliases (`en`,
# `enGB`, `esES`, `de`, ...) are never written. Evidence, not proof: third-party code built on the released tokenizer
# names the pieces `<en-US>`, `<hi-IN>`, `<zh-CN>`, `<ja-JP>`, `<ar-AR>`, `<ru-RU>`, `<bg-BG>`, and never an alias or
# a `zh-ZH`/`ja-JA` form; the released vocabulary itself was not read here.
def tag_locales(prompt_dictionary: Mapping[str, int]) -> tuple[str, ...]:
    """The locales whose tags the model writes, one per prompt index, in dictionary order (`auto` has none): the
    canonical locales of `pipeline.locales`."""
    canonical = Locales.from_dictionary(prompt_dictionary).canonical_of_index
    return tuple(name for name in canonical.values() if name != AUTO)


# The 83 locales of the release in tag form, in dictionary order (the card's "40 language-locales" are the ones
# it was trained and evaluated on; the other indices are prompted the same way).
CANONICAL_LOCALES: tuple[str, ...] = tag_locales(PROMPT_DICTIONARY)


def prompt_subset(locales: Iterable[str]) -> dict[str, int]:
    """The released dictionary restricted to these locales' indices (their aliases included) and `auto`: a small
    model that knows fewer languages keeps the released indices (`de-DE` stays 9)."""
    indices = {PROMPT_DICTIONARY[loc] for loc in locales} | {AUTO_PROMPT_INDEX}
    return {key: index for key, index in PROMPT_DICTIONARY.items() if index in indices}


# --- latency settings ------------------------------------------------------------------------------------------------

# The encoder's `att_context_size` list, [left, right] in 80 ms encoder frames, IN THE CHECKPOINT'S ORDER. NeMo's
# encoder runs at the FIRST entry unless told otherwise (ConformerEncoder._calc_context_sizes returns
# att_context_size_all[0] as the default), so the released checkpoint runs at [56, 3] (320 ms chunks) by default,
# not at its most accurate [56, 13]. Nothing in this project may depend on the list or its order (the job picks
# the widest right context, ModelCard.most_accurate_att_context_size).
#
# Why this list, where sources disagree:
# - [inspection] read the saved config of a model fine-tuned from the release: [[56,3],[56,0],[56,6],[56,13]];
#   a second, independent fine-tuning project pins the same list in its tests, "the released checkpoint trains on
#   all four contexts at once".
# - [trt] NVIDIA's own TensorRT port names the same set, left context 56, right {0, 3, 6, 13}, and contrasts it with
#   the English parent's [70, {0, 1, 6, 13}].
# - [port] the processor's default lookaheads [13, 6, 1, 0] are the English parent's set (the file is shared with
#   nemotron_asr_streaming, whose encoder config says left context 70): they do not describe 3.5, and contain a
#   right context of 1 and no 3.
# - [card] five chunk sizes, 80/160/320/560/1120 ms = right context 0/1/3/6/13: the 160 ms ([56, 1]) entry is in no
#   config anyone has read; NeMo accepts [56, 1] with a warning only (set_default_att_context_size), so a card
#   value may be a runnable but untrained setting.
# So: the four-entry list, in the order the config inspections give.
ATT_CONTEXT_SIZES: tuple[tuple[int, int], ...] = ((56, 3), (56, 0), (56, 6), (56, 13))
ATT_CONTEXT_STYLE = "chunked_limited"

# --- sizes and modules -----------------------------------------------------------------------------------------------

SAMPLE_RATE = 16000
# [inspection] SentencePiece pieces; [port] vocab_size 13088 = pieces + blank (blank_token_id 13087)
VOCAB_SIZE = 13_087
TOKENIZER_MODEL_TYPE = "unigram"  # [inspection] the SentencePiece model is Unigram although NeMo's config says `bpe`
PARAMETERS = 637_997_088  # [inspection]; [measured] the configuration below gives exactly this count

# [nemo-cfg] preprocessor block; [inspection] 128 features, 25 ms window, 10 ms hop, n_fft 512; [port] the feature
# extractor: preemphasis 0.97, power spectrum, Slaney mel filters, log(x + 2**-24), Hann window (periodic=False),
# constant padding, and "NemotronAsrStreaming never normalizes the mel features". Those are NeMo's defaults too;
# they are spelled out so that a change of NeMo's defaults cannot change this model. `dither` is the training
# value of [nemo-cfg]; the adapter sets dither 0 and pad_to 0 at inference, as NeMo's transcribe() does.
PREPROCESSOR: dict = {
    "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
    "sample_rate": SAMPLE_RATE,
    "normalize": "NA",
    "window_size": 0.025,
    "window_stride": 0.01,
    "window": "hann",
    "features": 128,
    "n_fft": 512,
    "preemph": 0.97,
    "log": True,
    "log_zero_guard_type": "add",
    "log_zero_guard_value": 2**-24,
    "mag_power": 2.0,
    "mel_norm": "slaney",
    "frame_splicing": 1,
    "dither": 1e-5,
    "pad_to": 0,
    "pad_value": 0.0,
}

# [inspection] 24 layers, d_model 1024, 8 heads, dw_striding x8 causal; [nemo-cfg] the rest. `use_bias: false` and
# 256 subsampling channels are confirmed by the parameter count ([measured]: with biases 638,439,456; with 1024
# channels 653,357,088; as here 637,997,088 = [inspection]). `xscaling: false` is [nemo-cfg]'s value and does not
# change the count: not verified on the weights.
ENCODER: dict = {
    "_target_": "nemo.collections.asr.modules.ConformerEncoder",
    "feat_in": PREPROCESSOR["features"],
    "feat_out": -1,
    "n_layers": 24,
    "d_model": 1024,
    "use_bias": False,
    "subsampling": "dw_striding",
    "subsampling_factor": 8,
    "subsampling_conv_channels": 256,
    "causal_downsampling": True,
    "ff_expansion_factor": 4,
    "self_attention_model": "rel_pos",
    "n_heads": 8,
    "att_context_size": [list(c) for c in ATT_CONTEXT_SIZES],
    "att_context_probs": None,
    "att_context_style": ATT_CONTEXT_STYLE,
    "xscaling": False,
    "untie_biases": True,
    "pos_emb_max_len": 5000,
    "conv_kernel_size": 9,
    "conv_norm_type": "layer_norm",
    "conv_context_size": "causal",
}
PRED_HIDDEN = 640  # [port] decoder_hidden_size; [inspection]; [nemo-cfg]
PRED_RNN_LAYERS = 2  # [port] num_decoder_layers; [inspection]
JOINT_HIDDEN = 640  # [inspection]; [nemo-cfg]
JOINT_ACTIVATION = "relu"  # [port] hidden_act; [nemo-cfg]
BLANK_AS_PAD = True  # [nemo-cfg]; [inspection] the decoder embedding has 13,088 rows (pieces + blank)
MAX_SYMBOLS_PER_STEP = 10  # [port] max_symbols_per_step; [inspection] greedy_batch, max_symbols 10
# [port] prompt_intermediate_size 2048; [trt] Linear(1152->2048); NeMo's PromptStreamingMixin builds 2 x enc_hidden
PROMPT_HIDDEN = 2 * ENCODER["d_model"]

# --- how long a segment may be ---------------------------------------------------------------------------------------

# Memory one segment needs at full size, CPU, float32, batch of one: peak RSS during `model.forward` (features,
# encoder at [56, 13], prompt kernel) over the RSS of the loaded model (3.3 GiB), measured by
# `python -m benchmarks.segment_memory` (one process per length, 2-core AMD EPYC, 24 GiB; 2026-12-03), beside the
# attention scores on paper (NeMo's RelPositionMultiHeadAttention keeps 7 T x T x 8-head float32 buffers alive at
# its peak, T = 12.5 frames per second, even under chunked_limited masking; under bf16 autocast some of them are
# bf16: not measured). Two phases, the larger one sets the peak: the subsampling convolutions (linear, ~10.5 MiB per
# second of audio: 256 channels over 50 mel frames x 64 bins per second, padded copies included) and the
# attention (quadratic: 0.033 MiB x seconds^2). They cross near 300 s; from there memory grows with the square.
# seconds: (encoder frames, measured peak over the loaded model in MiB, attention scores on paper in MiB)
SEGMENT_MEMORY_MIB: dict[int, tuple[int, int, int]] = {
    30: (376, 319, 30),
    60: (751, 648, 120),
    120: (1501, 1386, 481),
    240: (3001, 2858, 1924),
}
# The longest `segmenting.max_seconds` a job may ask for. At 120 s a segment needs ~1.4 GiB on top of the model and
# grows linearly up to there; a batch multiplies that by its size (segments are padded to the longest), so the
# default batch of 16 such segments is ~22 GiB, which a 40 GiB+ GPU holds next to the model. Beyond ~300 s the
# attention's square takes over (480 s: ~7.5 GiB per segment, 960 s: ~30 GiB). 120 s is also three times the
# longest utterance the model was trained on (NVIDIA's training config for this class: max_duration 39.99 s).
MAX_SEGMENT_SECONDS = 120.0
