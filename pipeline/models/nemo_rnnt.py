"""The NeMo adapter for Nemotron 3.5 ASR (`EncDecRNNTBPEModelWithPrompt`): the only module that imports NeMo.

Why not `model.transcribe()`:
- with file paths it ignores `target_lang` (see shared notes) and it cannot give each clip of a batch its own
  language; `forward(..., prompt_indices=...)` can, so mixed-language batches cost nothing extra;
- it builds a DataLoader per call; we already hold decoded arrays, so we pad them into one tensor ourselves.
What we keep from `transcribe()`: eval mode, no dither, no feature padding, clips shorter than 1 s padded to 1 s.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Sequence

import numpy as np

from pipeline.batching import plan_batches
from pipeline.locales import dictionary_key
from pipeline.models.base import DTYPES, AudioItem, ModelCard, ModelOutput, ModelSettings, WordTiming

log = logging.getLogger(__name__)

MIN_CLIP_SECONDS = 1.0  # as NeMo's transcribe(): shorter clips are zero-padded to 1 s


def _is_checkpoint_file(model_path: str) -> bool:
    return model_path.endswith(".nemo")


def _read_config(model_path: str):
    """The checkpoint's config. A .nemo is a tar whose `model_config.yaml` comes before the weights: it is read
    straight from the archive, without importing NeMo (seconds and ~1 GB on the driver) or touching the weights."""
    if _is_checkpoint_file(model_path):
        import tarfile

        from omegaconf import OmegaConf

        with tarfile.open(model_path, "r:*") as archive:
            for member in archive:
                if member.name.rsplit("/", 1)[-1] == "model_config.yaml":
                    return OmegaConf.create(archive.extractfile(member).read().decode("utf-8"))
        raise ValueError(f"{model_path} has no model_config.yaml: not a NeMo checkpoint")
    from nemo.collections.asr.models import ASRModel
    from nemo.utils import logging as nemo_logging

    nemo_logging.setLevel(logging.WARNING)
    return ASRModel.from_pretrained(model_path, return_config=True, map_location="cpu")


def describe(model_path: str) -> ModelCard:
    """Read a checkpoint's config (no weights): class, locales, latency settings. `model_path` is local or a name."""
    cfg = _read_config(model_path)
    defaults = cfg.get("model_defaults", {}) or {}
    prompts = dict(defaults.get("prompt_dictionary", {}) or {})
    contexts = cfg.get("encoder", {}).get("att_context_size", None) or []
    # A cache-aware multi-lookahead encoder lists several [left, right] pairs; a plain one gives a single pair.
    if contexts and not isinstance(contexts[0], (list, tuple)) and not hasattr(contexts[0], "__len__"):
        contexts = [contexts]
    return ModelCard(
        model_path=model_path,
        model_class=str(cfg.get("target", "")),
        sample_rate=int(cfg.get("sample_rate", 16000)),
        prompt_dictionary={dictionary_key(k): int(v) for k, v in prompts.items()},
        att_context_sizes=tuple((int(c[0]), int(c[1])) for c in contexts),
    )


@functools.cache
def float32_prompt_kernel_class():
    """The class below, built on first use: this module imports torch only with NeMo, when a model is loaded."""
    import torch

    class Float32PromptKernel(torch.nn.Module):
        """Runs the prompt kernel (the MLP that mixes the one-hot language prompt into the encoder output) in
        float32 with autocast off, whatever the precision around it; NeMo casts its output back to the encoder's
        dtype.

        Why: in bf16 the one-hot's contribution drowns in the rounding of the encoder's activations and decoding
        silently ignores the requested language. NVIDIA's newer prompt code does exactly this
        (`_Float32PromptProjection` and `apply_lang_id_prompt` in NVIDIA-NeMo/Speech,
        nemo/collections/asr/parts/mixins/lang_id_prompt.py, commit 257748a8: "Measured on a released 0.6B unified
        checkpoint, the language-discriminative part of the output is 0.1-1% of its total magnitude, so in bfloat16
        it falls into the mantissa noise ... decoding silently ignores the requested language"). NeMo 3.0.0's
        PromptStreamingMixin, which EncDecRNNTBPEModelWithPrompt uses, has no such guard: under autocast its prompt
        kernel runs in bf16."""

        def __init__(self, kernel: torch.nn.Module):
            super().__init__()
            self.kernel = kernel.float()  # the checkpoint's Sequential: a hook on it sees float32 in and out

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device_type=x.device.type, enabled=False):
                return self.kernel(x.float())

    return Float32PromptKernel


def _release_freed_memory() -> None:
    """Give back to the system what restoring a checkpoint freed: glibc keeps it otherwise (measured on the released
    size: 5.8 GiB resident after restore_from, 3.3 GiB after malloc_trim; benchmarks/real_size.py)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


class NemotronRNNT:
    """Loads the checkpoint once; `transcribe(items)` returns one output per item, in order."""

    describe = staticmethod(describe)

    def __init__(self, settings: ModelSettings):
        import torch
        from nemo.collections.asr.models import ASRModel
        from nemo.utils import logging as nemo_logging
        from omegaconf import open_dict

        nemo_logging.setLevel(logging.WARNING)  # NeMo's INFO lines per restore drown the job's progress

        if settings.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {settings.dtype!r}")
        self.settings = settings
        self.card = describe(settings.model_path)
        # NeMo runs the list's FIRST entry unless told otherwise ([56,3] for the released checkpoint) and only warns
        # for one it does not offer: the card resolves (None: the most accurate) and refuses before any loading.
        att_context_size = self.card.resolve_att_context_size(settings.att_context_size)
        self.dtype = settings.dtype
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if settings.device == "auto" else settings.device
        )
        if self.device.type == "cpu" and settings.threads:
            torch.set_num_threads(settings.threads)
        if _is_checkpoint_file(settings.model_path):
            model = ASRModel.restore_from(settings.model_path, map_location=self.device)
        else:
            model = ASRModel.from_pretrained(settings.model_path, map_location=self.device)
        if not getattr(model, "concat", False):
            raise ValueError(
                f"{settings.model_path} is a {type(model).__name__} without language prompts; "
                "this adapter needs an EncDecRNNTBPEModelWithPrompt (Nemotron 3.5 ASR)"
            )
        _release_freed_memory()
        if att_context_size is not None:
            model.encoder.set_default_att_context_size(list(att_context_size))

        # Keep the tags in the text: the language stage reads them before it strips them. Set on cfg.decoding,
        # because NeMo rebuilds decoding from the config (an attribute set only on the object would be lost).
        with open_dict(model.cfg.decoding):
            model.cfg.decoding.strip_lang_tags = False
            model.cfg.decoding.compute_timestamps = settings.timestamps
            model.cfg.decoding.preserve_alignments = settings.timestamps
            if settings.confidence:
                model.cfg.decoding.confidence_cfg = {
                    "preserve_word_confidence": True, "preserve_token_confidence": True, "aggregation": "mean",
                    "exclude_blank": True, "method_cfg": {"name": "max_prob"},
                }
        model.change_decoding_strategy(model.cfg.decoding, verbose=False)
        # One encoder frame in seconds: the feature hop times the encoder's subsampling (80 ms for Nemotron 3.5).
        self.frame_seconds = float(model.cfg.preprocessor.window_stride) * int(model.encoder.subsampling_factor)

        model.preprocessor.featurizer.dither = 0.0
        model.preprocessor.featurizer.pad_to = 0
        if self.dtype != "float32":
            model.prompt_kernel = float32_prompt_kernel_class()(model.prompt_kernel)
        model.eval()
        self.model = model
        self.sample_rate = int(model.cfg.get("sample_rate", 16000))
        self._torch = torch
        self._cuda_graphs = self.device.type == "cuda" and bool(
            model.cfg.decoding.get("greedy", {}).get("use_cuda_graph_decoder", True))

    def _autocast(self):
        """Mixed precision for `dtype` bfloat16|float16: on a GPU either; on CPU bfloat16 only (torch's CPU autocast
        is meant for bfloat16), so the bf16 path can be tested without a GPU. The weights stay float32."""
        dtype = self.dtype
        if dtype != "float32" and (self.device.type == "cuda" or dtype == "bfloat16"):
            return self._torch.autocast(device_type=self.device.type, dtype=getattr(self._torch, dtype))
        return contextlib.nullcontext()

    def prompt_index(self, locale: str) -> int:
        """The prompt index of a locale (canonical or an alias); ValueError for one the checkpoint does not know."""
        return self.card.languages.index(locale)

    def transcribe(self, items: Sequence[AudioItem]) -> list[ModelOutput]:
        durations = [it.num_samples / self.sample_rate for it in items]
        outputs: list[ModelOutput | None] = [None] * len(items)
        for batch in plan_batches(durations, self.settings.batch_size, self.settings.max_batch_seconds):
            for i, out in zip(batch, self._run([items[i] for i in batch])):
                outputs[i] = out
        return outputs  # type: ignore[return-value]

    def _run(self, items: Sequence[AudioItem]) -> list[ModelOutput]:
        torch = self._torch
        min_len = int(MIN_CLIP_SECONDS * self.sample_rate)
        lengths = [max(it.num_samples, min_len) for it in items]
        signal = np.zeros((len(items), max(lengths)), dtype=np.float32)
        for row, it in enumerate(items):  # 16-bit audio becomes float here, one batch at a time
            signal[row, : it.num_samples] = it.as_float32()
        prompts = [self.prompt_index(it.prompt_locale) for it in items]
        with torch.inference_mode(), self._autocast():
            encoded, encoded_len = self.model.forward(
                input_signal=torch.from_numpy(signal).to(self.device),
                input_signal_length=torch.tensor(lengths, device=self.device),
                prompt_indices=torch.tensor(prompts, dtype=torch.long, device=self.device),
            )
            hyps = self._decode(encoded, encoded_len)
        return [self._output(h) for h in hyps]

    def _decode(self, encoded, encoded_len):
        """Greedy RNNT decoding. On a GPU NeMo uses a CUDA-graph decoder, which fails on some drivers: then fall
        back to the plain loop once, say so in the log, and keep going."""
        try:
            return self.model.decoding.rnnt_decoder_predictions_tensor(
                encoder_output=encoded, encoded_lengths=encoded_len, return_hypotheses=True)
        except Exception as error:  # noqa: BLE001 - re-raised unless it is the CUDA-graph decoder's
            if self.device.type != "cuda" or not self._cuda_graphs:
                raise
            log.warning("CUDA-graph greedy decoder failed (%s: %s); falling back to the plain decoding loop",
                        type(error).__name__, error)
            self.disable_cuda_graph_decoder()
            return self.model.decoding.rnnt_decoder_predictions_tensor(
                encoder_output=encoded, encoded_lengths=encoded_len, return_hypotheses=True)

    def disable_cuda_graph_decoder(self) -> None:
        from omegaconf import open_dict

        with open_dict(self.model.cfg.decoding):
            self.model.cfg.decoding.greedy.use_cuda_graph_decoder = False
        self.model.change_decoding_strategy(self.model.cfg.decoding, verbose=False)
        self._cuda_graphs = False

    def _output(self, hyp) -> ModelOutput:
        confidences = list(hyp.word_confidence or []) if self.settings.confidence else []
        words: list[WordTiming] = []
        if self.settings.timestamps and isinstance(hyp.timestamp, dict):
            timed = hyp.timestamp.get("word", [])
            # NeMo counts confidence words by splitting the text; they match the timed words for a trained model.
            # Where the counts differ, per-word confidence is left out rather than attached to the wrong word.
            aligned = len(confidences) == len(timed)
            for i, w in enumerate(timed):
                words.append(WordTiming(
                    word=str(w["word"]).strip(), start=w["start_offset"] * self.frame_seconds,
                    end=w["end_offset"] * self.frame_seconds,
                    confidence=float(confidences[i]) if aligned else None,
                ))
        confidence = float(np.mean(confidences)) if confidences else None
        return ModelOutput(raw_text=hyp.text or "", num_tokens=len(hyp.y_sequence), words=words,
                           confidence=confidence)
