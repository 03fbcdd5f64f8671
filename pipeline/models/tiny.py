"""Build small checkpoints of the real model class, with no download.

The production model is `nvidia/nemotron-3.5-asr-streaming-0.6b`, an `EncDecRNNTBPEModelWithPrompt`: a cache-aware
FastConformer encoder, a prompt kernel that conditions the RNNT joint on a locale, and a SentencePiece vocabulary in
which `<xx-XX>` language tags are ordinary tokens. Tests, the offline demo and the CPU benchmarks need a checkpoint
of exactly that class (so every code path that touches NeMo is the real one) but small enough to build in seconds
and run on two CPU cores. This module builds one from an OmegaConf config and saves it as a `.nemo`.

`TinyModelSpec` also describes a model of the real size (`TinyModelSpec.real_size()`) for GPU throughput runs:
same shapes as the released checkpoint, random weights.
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# The locales of the small model: tags the tokenizer knows and prompts the prompt kernel accepts.
# `auto` sits at index 101 as in the released checkpoint.
DEFAULT_LOCALES: tuple[str, ...] = ("en-US", "es-ES", "de-DE", "fr-FR", "ja-JP")
AUTO_PROMPT_INDEX = 101
ATT_CONTEXT_SIZES: list[list[int]] = [[56, 0], [56, 1], [56, 3], [56, 6], [56, 13]]

# A few words per language, only so SentencePiece has text to build a vocabulary from.
_WORDS = {
    "en-US": "the call was transferred to billing please hold while I check your account thank you for waiting",
    "es-ES": "hola buenos dias gracias por llamar su cuenta esta activa un momento por favor",
    "de-DE": "guten tag vielen dank fuer ihren anruf ihr konto ist aktiv einen moment bitte",
    "fr-FR": "bonjour merci de votre appel votre compte est actif un instant s'il vous plait",
    "ja-JP": "こんにちは お電話ありがとうございます 少々お待ちください",
}


@dataclass(frozen=True)
class TinyModelSpec:
    """Shapes of a model of the real class. The defaults give a ~0.2M-parameter model for CPU tests."""

    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    n_mels: int = 80
    vocab_size: int = 64
    pred_hidden: int = 64
    joint_hidden: int = 64
    conv_kernel_size: int = 9
    locales: tuple[str, ...] = DEFAULT_LOCALES
    seed: int = 0
    # Added to the joint's blank logit. Random weights emit up to max_symbols tokens per frame, so greedy decoding
    # dominates the run time; a trained model emits a few tokens per second of speech. A raised blank bias makes a
    # random model emit about as sparsely, for throughput measurements.
    blank_bias: float = 0.0
    extra_text: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def real_size(cls) -> "TinyModelSpec":
        """The released checkpoint's shapes (24 layers, d_model 1024, 128 mels, ~13k vocabulary)."""
        return cls(n_layers=24, d_model=1024, n_heads=8, n_mels=128, vocab_size=13_088, pred_hidden=640,
                   joint_hidden=640, conv_kernel_size=9)


def _train_tokenizer(spec: TinyModelSpec, out_dir: Path) -> Path:
    import sentencepiece as spm

    rng = random.Random(spec.seed)
    lines = []
    for _ in range(400):
        locale = rng.choice(spec.locales)
        words = _WORDS.get(locale, _WORDS["en-US"]).split()
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 10))))
    lines.extend(spec.extra_text)
    corpus = out_dir / "corpus.txt"
    corpus.write_text("\n".join(lines), encoding="utf-8")
    tags = [f"<{loc}>" for loc in spec.locales]
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(out_dir / "tokenizer"),
        vocab_size=spec.vocab_size,
        model_type="bpe" if spec.vocab_size < 1000 else "unigram",
        character_coverage=1.0,
        user_defined_symbols=tags,
        bos_id=-1,
        eos_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    # NeMo reads `tokenizer.model` and registers `vocab.txt` (one piece per line) as a checkpoint artifact.
    processor = spm.SentencePieceProcessor(model_file=str(out_dir / "tokenizer.model"))
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    (out_dir / "vocab.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")
    return out_dir


def model_config(spec: TinyModelSpec, tokenizer_dir: Path) -> dict:
    """The OmegaConf dict of an EncDecRNNTBPEModelWithPrompt with a cache-aware encoder."""
    prompt_dictionary = {loc: i for i, loc in enumerate(spec.locales)}
    prompt_dictionary["auto"] = AUTO_PROMPT_INDEX
    return {
        "sample_rate": 16000,
        "log_prediction": False,
        "compute_eval_loss": False,
        "model_defaults": {
            "enc_hidden": spec.d_model,
            "pred_hidden": spec.pred_hidden,
            "joint_hidden": spec.joint_hidden,
            "initialize_prompt_feature": True,
            "num_prompts": 128,
            "prompt_dictionary": prompt_dictionary,
        },
        "tokenizer": {"dir": str(tokenizer_dir), "type": "bpe"},
        "preprocessor": {
            "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            "sample_rate": 16000,
            "normalize": "NA",
            "window_size": 0.025,
            "window_stride": 0.01,
            "window": "hann",
            "features": spec.n_mels,
            "n_fft": 512,
            "log": True,
            "frame_splicing": 1,
            "dither": 0.0,
            "pad_to": 0,
            "pad_value": 0.0,
        },
        "spec_augment": None,
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConformerEncoder",
            "feat_in": spec.n_mels,
            "feat_out": -1,
            "n_layers": spec.n_layers,
            "d_model": spec.d_model,
            "subsampling": "dw_striding",
            "subsampling_factor": 8,
            "subsampling_conv_channels": spec.d_model,
            "causal_downsampling": True,
            "ff_expansion_factor": 4,
            "self_attention_model": "rel_pos",
            "n_heads": spec.n_heads,
            "att_context_size": ATT_CONTEXT_SIZES,
            "att_context_probs": None,
            "att_context_style": "chunked_limited",
            "xscaling": True,
            "untie_biases": True,
            "pos_emb_max_len": 5000,
            "conv_kernel_size": spec.conv_kernel_size,
            "conv_norm_type": "layer_norm",
            "conv_context_size": "causal",
            "dropout": 0.0,
            "dropout_pre_encoder": 0.0,
            "dropout_emb": 0.0,
            "dropout_att": 0.0,
        },
        "decoder": {
            "_target_": "nemo.collections.asr.modules.RNNTDecoder",
            "normalization_mode": None,
            "random_state_sampling": False,
            "blank_as_pad": True,
            "prednet": {"pred_hidden": spec.pred_hidden, "pred_rnn_layers": 2 if spec.n_layers > 4 else 1,
                        "t_max": None, "dropout": 0.0},
        },
        "joint": {
            "_target_": "nemo.collections.asr.modules.RNNTJoint",
            "log_softmax": None,
            "preserve_memory": False,
            "fuse_loss_wer": False,
            "fused_batch_size": 4,
            "jointnet": {"joint_hidden": spec.joint_hidden, "activation": "relu", "dropout": 0.0},
        },
        "decoding": {"strategy": "greedy_batch", "greedy": {"max_symbols": 10}, "strip_lang_tags": False},
        "loss": {"loss_name": "default"},
        "optim": {"name": "adamw", "lr": 1e-3},
    }


def build_model(spec: TinyModelSpec = TinyModelSpec()):
    """An in-memory EncDecRNNTBPEModelWithPrompt with seeded random weights."""
    import torch
    from omegaconf import OmegaConf
    from nemo.collections.asr.models import EncDecRNNTBPEModelWithPrompt

    torch.manual_seed(spec.seed)
    work = Path(tempfile.mkdtemp(prefix="tiny-tokenizer-"))
    cfg = OmegaConf.create(model_config(spec, _train_tokenizer(spec, work)))
    model = EncDecRNNTBPEModelWithPrompt(cfg=cfg)
    if spec.blank_bias:
        with torch.no_grad():
            final = [m for m in model.joint.joint_net.modules() if isinstance(m, torch.nn.Linear)][-1]
            final.bias[model.joint.num_classes_with_blank - 1] += spec.blank_bias  # blank is the last class
    return model.eval()


def build_checkpoint(path: str | Path, spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Build a model and save it as a `.nemo` at `path` (written to a temporary name first, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{random.randrange(1 << 30)}.tmp")
    build_model(spec).save_to(str(tmp))
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Build a small EncDecRNNTBPEModelWithPrompt checkpoint (.nemo)")
    parser.add_argument("output", help="where to write the .nemo")
    parser.add_argument("--real-size", action="store_true", help="the released model's shapes (random weights)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blank-bias", type=float, default=0.0, help="raise the blank logit (sparser output)")
    args = parser.parse_args(argv)
    spec = TinyModelSpec.real_size() if args.real_size else TinyModelSpec()
    spec = TinyModelSpec(**{**spec.__dict__, "seed": args.seed, "blank_bias": args.blank_bias})
    print(build_checkpoint(args.output, spec))


if __name__ == "__main__":
    main()
