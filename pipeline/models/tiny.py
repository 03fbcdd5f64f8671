"""Build faithful miniatures of the released checkpoint, with no download.

The production model is `nvidia/nemotron-3.5-asr-streaming-0.6b`, an `EncDecRNNTBPEModelWithPrompt`: a cache-aware
FastConformer encoder, a prompt kernel that conditions the RNNT joint on a locale, and a SentencePiece vocabulary in
which `<xx-YY>` language tags are ordinary tokens. Tests, the offline demo and the CPU benchmarks need a checkpoint
of exactly that class (so every code path that touches NeMo is the real one), small enough to build in seconds and
run on two CPU cores, and faithful enough not to hide bugs the real one would show.

So the small model differs from the release only in its sizes (layers, widths, vocabulary) and its random weights.
Everything else comes from `pipeline.models.released`: the full prompt dictionary with its aliases and 128 prompt
slots, the latency list in its order, 128 mel features and the preprocessor settings, the encoder's options, the
decoding settings, and a tokenizer that has a tag for every locale the model can be prompted with (the form the
model writes, `released.tag_locales`).

`TinyModelSpec.real_size()` is the same configuration at the released sizes (637,997,088 parameters), with random
weights, for the CPU and GPU benchmarks.
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.models import released

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
    """Sizes of a model of the released configuration. The defaults give a 0.38M-parameter model for CPU tests;
    `att_context_sizes` and `prompt_dictionary` default to the release's and are there to test other checkpoints."""

    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    subsampling_conv_channels: int = 32
    vocab_size: int = 256  # room for the 83 tags and the characters of the training text
    pred_hidden: int = 64
    pred_rnn_layers: int = released.PRED_RNN_LAYERS
    joint_hidden: int = 64
    att_context_sizes: tuple[tuple[int, int], ...] = released.ATT_CONTEXT_SIZES
    prompt_dictionary: dict[str, int] = field(default_factory=lambda: dict(released.PROMPT_DICTIONARY))
    seed: int = 0
    # Added to the joint's blank logit. Random weights emit up to max_symbols tokens per frame, so greedy decoding
    # dominates the run time; a trained model emits a few tokens per second of speech. A raised blank bias makes a
    # random model emit about as sparsely, for throughput measurements.
    blank_bias: float = 0.0
    # Added to the joint's logits of the language tags. A third of the small vocabulary is tags, so a random model
    # writes them all the time, mostly of other languages than the one asked for; a trained model writes one per
    # sentence. A negative tag bias makes a random model write them about as rarely.
    tag_bias: float = 0.0
    extra_text: tuple[str, ...] = ()

    @classmethod
    def real_size(cls, **overrides) -> "TinyModelSpec":
        """The released checkpoint's sizes (24 layers, d_model 1024, 13,087 pieces): 637,997,088 parameters."""
        sizes = dict(n_layers=released.ENCODER["n_layers"], d_model=released.ENCODER["d_model"],
                     n_heads=released.ENCODER["n_heads"],
                     subsampling_conv_channels=released.ENCODER["subsampling_conv_channels"],
                     vocab_size=released.VOCAB_SIZE, pred_hidden=released.PRED_HIDDEN,
                     joint_hidden=released.JOINT_HIDDEN)
        return cls(**{**sizes, **overrides})

    @property
    def tag_locales(self) -> tuple[str, ...]:
        """The locales whose tags the tokenizer holds: one per prompt index, in the form the model writes."""
        return released.tag_locales(self.prompt_dictionary)


def _train_tokenizer(spec: TinyModelSpec, out_dir: Path) -> Path:
    """A SentencePiece Unigram model (as released) with every tag as a user-defined symbol, exactly
    `spec.vocab_size` pieces (a small corpus yields fewer: the rest are filled with pieces no text produces)."""
    import sentencepiece as spm

    rng = random.Random(spec.seed)
    lines = []
    for _ in range(400):
        words = _WORDS[rng.choice(sorted(_WORDS))].split()
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 10))))
    lines.extend(spec.extra_text)
    corpus = out_dir / "corpus.txt"
    corpus.write_text("\n".join(lines), encoding="utf-8")
    tags = [f"<{loc}>" for loc in spec.tag_locales]
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(out_dir / "tokenizer"),
        vocab_size=spec.vocab_size,
        model_type=released.TOKENIZER_MODEL_TYPE,
        character_coverage=1.0,
        user_defined_symbols=tags,
        bos_id=-1,
        eos_id=-1,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    _fill_vocabulary(out_dir / "tokenizer.model", spec.vocab_size)
    # NeMo reads `tokenizer.model` and registers `vocab.txt` (one piece per line) as a checkpoint artifact.
    processor = spm.SentencePieceProcessor(model_file=str(out_dir / "tokenizer.model"))
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    (out_dir / "vocab.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")
    return out_dir


def _fill_vocabulary(model_file: Path, vocab_size: int) -> None:
    """Append pieces until the model has `vocab_size`: the joint's width is the release's whatever the corpus."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    model = pb.ModelProto()
    model.ParseFromString(model_file.read_bytes())
    have = {p.piece for p in model.pieces}
    if len(model.pieces) > vocab_size:
        raise ValueError(f"vocab_size {vocab_size} is smaller than the {len(model.pieces)} pieces the tags and "
                         "characters need")
    lowest = min(p.score for p in model.pieces)
    n = 0
    while len(model.pieces) < vocab_size:
        n += 1
        piece = "▁zq" + "".join("abcdefghijklmnopqrstuvwxyz"[int(d)] for d in str(n))
        if piece in have:
            continue
        model.pieces.add(piece=piece, score=lowest - 1.0 - n * 1e-4, type=pb.ModelProto.SentencePiece.NORMAL)
    model.trainer_spec.vocab_size = vocab_size
    model_file.write_bytes(model.SerializeToString())


def model_config(spec: TinyModelSpec, tokenizer_dir: Path) -> dict:
    """The OmegaConf dict of an EncDecRNNTBPEModelWithPrompt: the released configuration at `spec`'s sizes."""
    encoder = {**released.ENCODER, "n_layers": spec.n_layers, "d_model": spec.d_model, "n_heads": spec.n_heads,
               "subsampling_conv_channels": spec.subsampling_conv_channels,
               "att_context_size": [list(c) for c in spec.att_context_sizes],
               # Inference-only models: no dropout (the demo model's trainer, training/recipe.py, sets its own).
               "dropout": 0.0, "dropout_pre_encoder": 0.0, "dropout_emb": 0.0, "dropout_att": 0.0}
    return {
        "sample_rate": released.SAMPLE_RATE,
        "log_prediction": False,
        "compute_eval_loss": False,
        "model_defaults": {
            "enc_hidden": spec.d_model,
            "pred_hidden": spec.pred_hidden,
            "joint_hidden": spec.joint_hidden,
            "initialize_prompt_feature": True,
            "num_prompts": released.NUM_PROMPTS,
            "prompt_dictionary": dict(spec.prompt_dictionary),
        },
        "tokenizer": {"dir": str(tokenizer_dir), "type": "bpe"},  # NeMo's name for any SentencePiece model
        "preprocessor": dict(released.PREPROCESSOR),
        "spec_augment": None,
        "encoder": encoder,
        "decoder": {
            "_target_": "nemo.collections.asr.modules.RNNTDecoder",
            "normalization_mode": None,
            "random_state_sampling": False,
            "blank_as_pad": released.BLANK_AS_PAD,
            "prednet": {"pred_hidden": spec.pred_hidden, "pred_rnn_layers": spec.pred_rnn_layers, "t_max": None,
                        "dropout": 0.0},
        },
        "joint": {
            "_target_": "nemo.collections.asr.modules.RNNTJoint",
            "log_softmax": None,
            "preserve_memory": False,
            "fuse_loss_wer": False,
            "fused_batch_size": 4,
            "jointnet": {"joint_hidden": spec.joint_hidden, "activation": released.JOINT_ACTIVATION, "dropout": 0.0},
        },
        "decoding": {"strategy": "greedy_batch", "greedy": {"max_symbols": released.MAX_SYMBOLS_PER_STEP},
                     "strip_lang_tags": False},
        "loss": {"loss_name": "default"},
        "optim": {"name": "adamw", "lr": 1e-3},
    }


def build_model(spec: TinyModelSpec = TinyModelSpec()):
    """An in-memory EncDecRNNTBPEModelWithPrompt with seeded random weights (eval mode)."""
    import logging

    import torch
    from nemo.collections.asr.models import EncDecRNNTBPEModelWithPrompt
    from nemo.utils import logging as nemo_logging
    from omegaconf import OmegaConf

    nemo_logging.setLevel(logging.WARNING)
    torch.manual_seed(spec.seed)
    work = Path(tempfile.mkdtemp(prefix="tiny-tokenizer-"))
    cfg = OmegaConf.create(model_config(spec, _train_tokenizer(spec, work)))
    model = EncDecRNNTBPEModelWithPrompt(cfg=cfg)
    final = [m for m in model.joint.joint_net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        final.bias[model.joint.num_classes_with_blank - 1] += spec.blank_bias  # blank is the last class
        for locale in spec.tag_locales:
            final.bias[model.tokenizer.token_to_id(f"<{locale}>")] += spec.tag_bias
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
    parser.add_argument("--real-size", action="store_true", help="the released model's sizes (random weights)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blank-bias", type=float, default=0.0, help="raise the blank logit (sparser output)")
    args = parser.parse_args(argv)
    spec = TinyModelSpec.real_size() if args.real_size else TinyModelSpec()
    print(build_checkpoint(args.output, replace(spec, seed=args.seed, blank_bias=args.blank_bias)))


if __name__ == "__main__":
    main()
