"""Training a small EncDecRNNTBPEModelWithPrompt (the Nemotron 3.5 ASR class) on synthetic speech, with the real recipe.

What "the real recipe" means here, piece by piece:
- Model: the class of the released checkpoint, built from `pipeline.models.tiny.model_config` (cache-aware
  FastConformer, `chunked_limited` attention over the five `att_context_size` values, causal convolutions, 8x
  `dw_striding` subsampling, RNNT decoder and joint, a prompt kernel over 128 prompts with `auto` at 101), sized by
  `DemoModelSpec` so that the .nemo stays under 20 MB (weights stored as float16, see `save_nemo`).
- Text: every sentence followed by its language tag (`Guten Tag.<de-DE> Hello.<en-US>`), the tags being
  SentencePiece user_defined_symbols (`train_tokenizer`), so the RNNT learns to emit them.
- Prompts: each clip is conditioned on its locale, or on `auto` with probability `auto_prompt_prob`; a clip that
  mixes languages always on `auto`. In `auto` the tags are the only language signal, so the model learns language ID.
- Multi-lookahead: every step trains one `att_context_size`, drawn by `LookaheadSampler` (each run of five steps is
  a permutation of the five), so one model serves every latency. NeMo's encoder draws its own at random in training
  mode; `set_step_lookahead` pins its draw to ours (one-hot `att_context_probs`), through the encoder's own code path.
- Loss: RNNT (per-token mean). On a GPU NeMo's `warprnnt_numba` CUDA loss; elsewhere (and as the GPU fallback)
  `rnnt_loss_torch`, a vectorised PyTorch RNNT loss (NeMo's CPU losses take tens of seconds per batch). An optional
  training-only CTC head on the encoder output (`ctc_weight`, NeMo's hybrid-model convention
  `(1 - w) * rnnt + w * ctc`) is meant to speed up alignment learning (not measured here: no GPU run yet); it is
  not part of the saved model.
- Optimiser: AdamW (no decay on biases and norms), linear warm-up then cosine decay, gradient clipping, bf16 autocast
  on CUDA, float32 on CPU. SpecAugment (light) inside the model, gain and noise on the waveform.
- State: `Trainer.save_checkpoint` / `load_checkpoint` hold the weights, optimiser, step, data position and every
  random generator, so a run stopped by a time limit resumes where it stopped.
- Evaluation: during training, greedy decoding of dev clips in memory (`Trainer.dev_eval`); at the end, the saved
  .nemo through the project's own adapter (`training.evaluate`), at [56,13] and [56,0].

No Lightning: a plain loop over tensors already in memory (the whole audio set is a few GB of int16 at most).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)

LOCALES = ("en-US", "es-ES", "de-DE", "fr-FR")
DEPLOYMENT_CONTEXTS: tuple[tuple[int, int], ...] = ((56, 13), (56, 0))
SAMPLE_RATE = 16000


# ---------------------------------------------------------------------------------------------------------- model


# The released checkpoint's latency list as third-party inspections of it give it (shared notes: sources disagree;
# NeMo's default is the first entry). [56,13] is the most accurate, [56,0] the lowest latency.
RELEASED_ATT_CONTEXT_SIZES: list[list[int]] = [[56, 3], [56, 0], [56, 6], [56, 13]]


@dataclass
class DemoModelSpec:
    """Shapes of the demo model (defaults: the broad GPU recipe's 7.75M-parameter model, a .nemo of 16.0 MB with
    float16 weights; conf/train_demo.yaml sizes the call-centre model for two CPU cores).

    The vocabulary is 1024 in the broad recipe because of the frame rate: the encoder emits 12.5 frames per second,
    and that speech carries 7.5 BPE tokens per second at 384 pieces (up to 0.94 token per frame in fast clips) against
    4.9 at 1024 (at most 0.72): fewer tokens per frame leave the RNNT room to wait for the audio, and CTC needs
    T >= U. The prompt dictionary is always the released checkpoint's (`pipeline.models.released`), so `de`, `en` and
    `auto` mean what they mean there; the tokenizer has the tags of `locales` only."""

    n_layers: int = 8
    d_model: int = 176
    n_heads: int = 4
    ff_expansion_factor: int = 4
    conv_kernel_size: int = 9
    subsampling_conv_channels: int = 0  # 0: d_model (NeMo's default)
    subsampling_factor: int = 8  # the released model's: one encoder frame per 80 ms
    n_mels: int = 128  # the released preprocessor: 128 mel features, 25 ms window, 10 ms hop, n_fft 512, no norm
    vocab_size: int = 1024
    pred_hidden: int = 256
    pred_rnn_layers: int = 1
    joint_hidden: int = 256
    dropout: float = 0.1
    spec_augment: bool = True
    att_context_sizes: list[list[int]] = field(default_factory=lambda: [list(c) for c in RELEASED_ATT_CONTEXT_SIZES])
    locales: list[str] = field(default_factory=lambda: list(LOCALES))


def demo_model_config(spec: DemoModelSpec, tokenizer_dir: str | Path, seed: int = 0) -> dict:
    """The model's OmegaConf dict: `pipeline.models.tiny.model_config` with the demo's sizes, dropout, SpecAugment,
    latency list and the released prompt dictionary (aliases included, `auto` = 101, 128 prompt slots)."""
    from pipeline.models.released import NUM_PROMPTS, PROMPT_DICTIONARY
    from pipeline.models.tiny import TinyModelSpec, model_config

    tiny = TinyModelSpec(n_layers=spec.n_layers, d_model=spec.d_model, n_heads=spec.n_heads,
                         subsampling_conv_channels=spec.subsampling_conv_channels or spec.d_model,
                         vocab_size=spec.vocab_size, pred_hidden=spec.pred_hidden,
                         pred_rnn_layers=spec.pred_rnn_layers, joint_hidden=spec.joint_hidden, seed=seed)
    cfg = model_config(tiny, Path(tokenizer_dir))
    cfg["preprocessor"]["features"] = spec.n_mels
    cfg["encoder"]["feat_in"] = spec.n_mels
    cfg["encoder"]["conv_kernel_size"] = spec.conv_kernel_size
    missing = [loc for loc in spec.locales if loc not in PROMPT_DICTIONARY]
    if missing:
        raise ValueError(f"locales without a prompt in the released dictionary: {missing}")
    cfg["model_defaults"]["prompt_dictionary"] = dict(PROMPT_DICTIONARY)
    cfg["model_defaults"]["num_prompts"] = NUM_PROMPTS
    encoder = cfg["encoder"]
    encoder["att_context_size"] = [list(c) for c in spec.att_context_sizes]
    encoder["subsampling_factor"] = spec.subsampling_factor
    if spec.subsampling_conv_channels:
        encoder["subsampling_conv_channels"] = spec.subsampling_conv_channels
    encoder["ff_expansion_factor"] = spec.ff_expansion_factor
    for key in ("dropout", "dropout_pre_encoder", "dropout_emb", "dropout_att"):
        encoder[key] = spec.dropout
    cfg["decoder"]["prednet"]["pred_rnn_layers"] = spec.pred_rnn_layers
    # LSTM dropout acts between layers only (PyTorch warns for a single layer).
    cfg["decoder"]["prednet"]["dropout"] = spec.dropout if spec.pred_rnn_layers > 1 else 0.0
    cfg["joint"]["jointnet"]["dropout"] = spec.dropout
    if spec.spec_augment:
        cfg["spec_augment"] = {"_target_": "nemo.collections.asr.modules.SpectrogramAugmentation",
                               "freq_masks": 2, "freq_width": 15, "time_masks": 2, "time_width": 0.05}
    return cfg


def train_tokenizer(texts: Sequence[str], locales: Sequence[str], vocab_size: int, out_dir: str | Path) -> Path:
    """A SentencePiece BPE tokenizer over `texts` (one line each) with the `<xx-XX>` tags as user_defined_symbols,
    laid out as `pipeline.models.tiny` lays its own (`tokenizer.model` + `vocab.txt`). Deterministic (one thread)."""
    import sentencepiece as spm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(out / "tokenizer"), vocab_size=vocab_size, model_type="bpe",
        character_coverage=1.0, user_defined_symbols=[f"<{loc}>" for loc in locales], bos_id=-1, eos_id=-1,
        hard_vocab_limit=False, minloglevel=2, num_threads=1, shuffle_input_sentence=False,
    )
    processor = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    (out / "vocab.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")
    corpus.unlink()
    return out


def build_demo_model(spec: DemoModelSpec, tokenizer_dir: str | Path, seed: int = 0):
    """An EncDecRNNTBPEModelWithPrompt with seeded random weights (train mode)."""
    import torch
    from nemo.collections.asr.models import EncDecRNNTBPEModelWithPrompt
    from nemo.utils import logging as nemo_logging
    from omegaconf import OmegaConf

    nemo_logging.setLevel(logging.WARNING)
    torch.manual_seed(seed)
    return EncDecRNNTBPEModelWithPrompt(cfg=OmegaConf.create(demo_model_config(spec, tokenizer_dir, seed)))


def load_demo_model(path: str | Path):
    """A trained demo .nemo as a float32 model in train mode, to fine-tune (`init_nemo`). The saved float16 weights
    are cast on load; the tokenizer, prompt dictionary and latencies are the saved model's."""
    import torch
    from nemo.collections.asr.models import EncDecRNNTBPEModelWithPrompt
    from nemo.utils import logging as nemo_logging

    nemo_logging.setLevel(logging.WARNING)
    model = EncDecRNNTBPEModelWithPrompt.restore_from(str(path), map_location=torch.device("cpu"))
    model.float()
    model.train()
    return model


def normalise_first_conv(model, signal, lengths) -> tuple[float, float]:
    """Fold a global normalisation of the log-mel features into the encoder's first convolution, once, before
    training: weights / std, bias - mean / std * sum(weights). The model keeps the released preprocessor (no feature
    normalisation: log-mel around -11 +- 4.6 here) and computes exactly what it computed with normalised inputs
    (up to the zero padding at the borders); without this the first layer's output is dominated by the features'
    offset and the encoder is slow to start learning. Returns the (mean, std) used."""
    import torch

    with torch.no_grad():
        features, feature_len = model.preprocessor(input_signal=signal, length=lengths)
        valid = torch.arange(features.shape[-1], device=features.device)[None, :] < feature_len[:, None]
        values = features.transpose(1, 2)[valid]
        mean, std = float(values.mean()), float(values.std())
        conv = model.encoder.pre_encode.conv[0]
        conv.bias -= mean / std * conv.weight.sum(dim=(1, 2, 3))
        conv.weight /= std
    return mean, std


def identity_prompt_kernel(model) -> None:
    """Start the prompt kernel (Linear(d + prompts -> 2d), ReLU, Linear(2d -> d)) as the identity on the encoder
    output, with no say for the prompt yet: the first layer computes (x, -x), the second ReLU(x) - ReLU(-x) = x.
    The prompt's columns start at zero and learn like any weight. From a random start the kernel is two more
    untrained layers between the encoder and the joint: the joint then hears the audio through noise, and the RNNT
    leans on its prediction network's text prior (EXPERIMENTS.md, S1-S3)."""
    import torch

    first, second = model.prompt_kernel[0], model.prompt_kernel[2]
    d = second.out_features
    with torch.no_grad():
        eye = torch.eye(d, dtype=first.weight.dtype)
        first.weight.zero_()
        first.weight[:d, :d] = eye
        first.weight[d:, :d] = -eye
        first.bias.zero_()
        second.weight.copy_(torch.cat([eye, -eye], dim=1))
        second.bias.zero_()


def scale_subsampling_output(model) -> float:
    """Multiply the subsampling's output layer by sqrt(d_model), once, at the start: what NeMo's `xscaling` does to
    the conformer layers' input on every step, as an initialisation. The released configuration has `xscaling: false`
    (and keeps it here); without the scale the random layers' outputs swamp the input features in the residual
    stream at the start, and the CTC phase stayed on its plateau (EXPERIMENTS.md, s4 and A2a). Returns the scale."""
    import torch

    out = model.encoder.pre_encode.out
    scale = math.sqrt(int(model.cfg.encoder.d_model))
    with torch.no_grad():
        out.weight *= scale
        if out.bias is not None:
            out.bias *= scale
    return scale


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def save_nemo(model, path: str | Path, dtype: str = "float16") -> Path:
    """Save as .nemo with floating-point parameters stored as `dtype` (float16 halves the file; buffers such as the
    mel filterbank stay float32). `restore_from` builds a float32 model and casts on load. The model is unchanged."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    target = getattr(torch, dtype)
    params = [p for p in model.parameters() if p.is_floating_point()]
    originals = [p.data for p in params]
    was_training = model.training
    model.eval()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        for p in params:
            p.data = p.data.to(target)
        model.save_to(str(tmp))
    finally:
        for p, data in zip(params, originals):
            p.data = data
        model.train(was_training)
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------------------------------------- loss


def rnnt_loss_torch(logits, targets, logit_lengths, target_lengths, blank: int):
    """Per-utterance RNNT negative log-likelihood, shape (B,).

    `logits`: joint output (B, T, U+1, V+1), raw logits or log-probabilities (log_softmax is applied; it is the
    identity on log-probabilities). `targets` (B, >=U), `blank` the blank index (V for NeMo).
    Forward variable alpha over t; within a frame the u-recursion alpha[t,u] = logaddexp(a[u], alpha[t,u-1] +
    emit[t,u-1]) is solved in closed form, alpha[t,u] = E[u] + logcumsumexp_k(a[k] - E[k]) with E the prefix sum of
    emissions, so the loop is over T only and autograd gives the gradient.
    """
    import torch

    B, T, U1, _ = logits.shape
    logits = logits.float()
    norm = torch.logsumexp(logits, dim=-1)  # (B, T, U+1)
    blank_lp = logits[..., blank] - norm
    U = U1 - 1
    if U > 0:
        index = targets[:, :U].long().clamp(0, logits.shape[-1] - 1)
        emit = torch.gather(logits[:, :, :U, :], 3, index[:, None, :, None].expand(B, T, U, 1)).squeeze(3)
        emit = emit - norm[:, :, :U]
        prefix = torch.cat([emit.new_zeros(B, T, 1), emit.cumsum(dim=2)], dim=2)  # (B, T, U+1)
    else:
        prefix = blank_lp.new_zeros(B, T, 1)
    # unbind once: indexing a frame per step would make autograd build a full-size gradient per step.
    blank_t, prefix_t = blank_lp.unbind(1), prefix.unbind(1)
    alpha = prefix_t[0]
    alphas = [alpha]
    for t in range(1, T):
        alpha = prefix_t[t] + torch.logcumsumexp(alpha + blank_t[t - 1] - prefix_t[t], dim=1)
        alphas.append(alpha)
    stacked = torch.stack(alphas, dim=1)
    rows = torch.arange(B, device=logits.device)
    t_last = (logit_lengths.long() - 1).clamp(min=0)
    u_last = target_lengths.long()
    return -(stacked[rows, t_last, u_last] + blank_lp[rows, t_last, u_last])


class RNNTLossFn:
    """Per-utterance RNNT loss through NeMo's `RNNTLoss` (`impl="nemo"`: warprnnt_numba, CUDA kernels on a GPU) or
    `rnnt_loss_torch` (`impl="torch"`)."""

    def __init__(self, blank: int, impl: str):
        if impl not in ("nemo", "torch"):
            raise ValueError(f"loss impl must be nemo or torch, got {impl!r}")
        self.blank, self.impl = blank, impl
        if impl == "nemo":
            from nemo.collections.asr.losses.rnnt import RNNTLoss

            self._nemo = RNNTLoss(num_classes=blank, reduction=None, loss_name="default")

    def __call__(self, joint, targets, logit_lengths, target_lengths):
        if self.impl == "nemo":
            # float32 always: under bf16 autocast the joint is bf16, and NeMo passes a half-precision tensor to its
            # numba kernels when it thinks they take fp16 (they do not take bf16).
            return self._nemo(log_probs=joint.float(), targets=targets, input_lengths=logit_lengths,
                              target_lengths=target_lengths).float()
        return rnnt_loss_torch(joint, targets, logit_lengths, target_lengths, self.blank)


def choose_loss(blank: int, device, impl: str = "auto", log_fn: Callable[[str], None] = log.info) -> RNNTLossFn:
    """`auto`: NeMo's CUDA loss on a GPU if it runs and agrees with the PyTorch loss on a small random case, else
    the PyTorch loss (CPU: always PyTorch)."""
    import torch

    device = torch.device(device)
    if impl != "auto":
        return RNNTLossFn(blank, impl)
    if device.type != "cuda":
        return RNNTLossFn(blank, "torch")
    try:
        gen = torch.Generator(device="cpu").manual_seed(0)
        logits = torch.randn(3, 12, 6, blank + 1, generator=gen).to(device)
        targets = torch.randint(0, blank, (3, 5), generator=gen).to(device)
        t_len = torch.tensor([12, 10, 7], device=device)
        u_len = torch.tensor([5, 3, 2], device=device)
        nemo_fn = RNNTLossFn(blank, "nemo")
        got = nemo_fn(logits, targets, t_len, u_len)
        want = rnnt_loss_torch(logits, targets, t_len, u_len, blank)
        if not torch.allclose(got, want, rtol=1e-3, atol=1e-3):
            raise RuntimeError(f"NeMo loss {got.tolist()} != PyTorch loss {want.tolist()}")
        log_fn("RNNT loss: NeMo warprnnt_numba on CUDA (agrees with the PyTorch loss)")
        return nemo_fn
    except Exception as error:  # noqa: BLE001 - any failure of the numba path means: use the PyTorch loss
        log_fn(f"RNNT loss: NeMo's CUDA loss unusable ({type(error).__name__}: {error}); using the PyTorch loss")
        return RNNTLossFn(blank, "torch")


# ----------------------------------------------------------------------------------------------------------- data


def read_manifest(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


class ClipSet:
    """A manifest's clips in memory: int16 audio in one flat array, token ids, durations, locales."""

    def __init__(self, manifest: str | Path, tokenizer, threads: int = 8, limit: Optional[int] = None):
        import soundfile as sf

        manifest = Path(manifest)
        self.entries = read_manifest(manifest)[:limit]
        base = manifest.parent

        def load(entry):
            audio, rate = sf.read(base / entry["audio_filepath"], dtype="int16", always_2d=True)
            if rate != SAMPLE_RATE:
                raise ValueError(f"{entry['audio_filepath']}: {rate} Hz, expected {SAMPLE_RATE}")
            return audio[:, 0]

        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            audios = list(pool.map(load, self.entries))
        self.lengths = np.array([len(a) for a in audios], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.audio = np.concatenate(audios) if audios else np.zeros(0, dtype=np.int16)
        self.durations = self.lengths / SAMPLE_RATE
        self.tokens = [tokenizer.text_to_ids(e["text"]) for e in self.entries]
        self.langs = [e.get("lang", "auto") for e in self.entries]
        self._device_audio = None

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def hours(self) -> float:
        return float(self.durations.sum() / 3600)

    def to(self, device):
        """Keep the audio on `device` (a GPU holds hours of int16 audio easily): batches are cut there."""
        import torch

        self._device_audio = torch.from_numpy(self.audio).to(device)
        return self

    def batch(self, indices: Sequence[int], device, blank: int):
        """(signal float32 (B, L), lengths (B,), targets (B, U) padded with `blank`, target lengths (B,))."""
        import torch

        device = torch.device(device)
        lengths = self.lengths[list(indices)]
        audio = self._device_audio if self._device_audio is not None else torch.from_numpy(self.audio)
        signal = torch.zeros(len(indices), int(lengths.max()), dtype=torch.float32, device=device)
        for row, i in enumerate(indices):
            piece = audio[self.offsets[i]:self.offsets[i] + self.lengths[i]]
            signal[row, : self.lengths[i]] = piece.to(device=device, dtype=torch.float32) / 32768.0
        tokens = [self.tokens[i] for i in indices]
        target_len = torch.tensor([len(t) for t in tokens], dtype=torch.long)
        targets = torch.full((len(indices), max(1, int(target_len.max()))), blank, dtype=torch.long)
        for row, t in enumerate(tokens):
            targets[row, : len(t)] = torch.tensor(t, dtype=torch.long)
        return (signal, torch.from_numpy(lengths).to(device), targets.to(device), target_len.to(device))


def epoch_batches(durations: np.ndarray, batch_seconds: float, max_clips: int, seed: int, epoch: int) -> list[list[int]]:
    """One epoch's batches: clips of similar length together (padded seconds <= batch_seconds, at most max_clips),
    neighbours varied per epoch by jittering the sort, batch order shuffled. Depends only on (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    order = np.argsort(durations * rng.uniform(0.9, 1.1, len(durations)), kind="stable")
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0.0
    for i in order:
        d = float(durations[i])
        if current and (max(longest, d) * (len(current) + 1) > batch_seconds or len(current) >= max_clips):
            batches.append(current)
            current, longest = [], 0.0
        current.append(int(i))
        longest = max(longest, d)
    if current:
        batches.append(current)
    return [batches[j] for j in rng.permutation(len(batches))]


def telephone(signal, cutoff_hz, sample_rate: int = SAMPLE_RATE, mu: int = 255):
    """What an 8 kHz mu-law call does to 16 kHz speech: nothing above `cutoff_hz` (B, 1) and 8-bit mu-law steps.
    Without it a model trained on wide-band audio meets empty upper mel bands in every phone call."""
    import torch

    length = signal.shape[-1]
    spectrum = torch.fft.rfft(signal, dim=-1)
    freqs = torch.fft.rfftfreq(length, 1.0 / sample_rate).to(signal.device)
    spectrum = spectrum * (freqs[None, :] <= cutoff_hz).to(spectrum.dtype)
    narrow = torch.fft.irfft(spectrum, n=length, dim=-1).clamp(-1.0, 1.0)
    companded = torch.sign(narrow) * torch.log1p(mu * narrow.abs()) / math.log1p(mu)
    quantised = torch.round((companded + 1) / 2 * mu) / mu * 2 - 1
    return torch.sign(quantised) * ((1 + mu) ** quantised.abs() - 1) / mu


class LookaheadSampler:
    """The att_context_size of each step: every run of len(sizes) steps is a random permutation of all of them."""

    def __init__(self, sizes: Sequence[Sequence[int]], seed: int):
        self.sizes = [list(s) for s in sizes]
        self.rng = random.Random(f"{seed}:lookahead")
        self.queue: list[int] = []

    def next_index(self) -> int:
        if not self.queue:
            self.queue = list(range(len(self.sizes)))
            self.rng.shuffle(self.queue)
        return self.queue.pop()

    def state_dict(self) -> dict:
        return {"rng": self.rng.getstate(), "queue": list(self.queue)}

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.queue = list(state["queue"])


def set_step_lookahead(encoder, index: int) -> None:
    """Make the encoder's own training-mode draw (`random.choices(att_context_size_all, weights=probs)`) pick
    `att_context_size_all[index]`."""
    encoder.att_context_probs = [1.0 if i == index else 0.0 for i in range(len(encoder.att_context_size_all))]


# -------------------------------------------------------------------------------------------------------- trainer


@dataclass
class TrainSettings:
    seed: int = 0
    steps: int = 4000
    batch_seconds: float = 600.0  # padded audio seconds per batch
    max_batch_clips: int = 256
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 500
    weight_decay: float = 1e-3
    grad_clip: float = 1.0
    auto_prompt_prob: float = 0.5  # single-language clips conditioned on `auto` (mixed clips: always)
    ctc_weight: float = 0.3  # training-only CTC head; 0 = pure RNNT
    ctc_only_steps: int = 0  # the first steps train the encoder with the CTC head alone (no decoder, joint, RNNT)
    frozen_encoder_steps: int = 0  # then the RNNT (prompt kernel, decoder, joint) learns on the encoder held fixed
    encoder_lr_scale: float = 1.0  # after that, the encoder (and CTC head) learn at lr * this
    rnnt_warmup_steps: int = 0  # > 0: the RNNT phase gets its own schedule (this warm-up, then cosine to `steps`)
    normalise_input: bool = False  # fold the features' mean and std into the first convolution at the start
    identity_prompt_init: bool = False  # start the prompt kernel as the identity on the encoder output
    xscale_init: bool = False  # start the subsampling's output layer scaled by sqrt(d_model) (NeMo's xscaling, at init)
    ctc_expand: int = 1  # the CTC head emits this many symbols per encoder frame (room for small units at 80 ms)
    decoder_mask_prob: float = 0.0  # share of the prediction network's input tokens replaced by blank in training
    ctc_input: str = "encoder"  # what the CTC head reads: encoder (its own output) | prompted (after the prompt kernel)
    noise_snr_db: list[float] = field(default_factory=lambda: [15.0, 45.0])
    gain_db: list[float] = field(default_factory=lambda: [-8.0, 2.0])
    telephone_prob: float = 0.0  # share of clips made telephone-like: band-limited to 3.4-4 kHz, 8-bit mu-law
    augment_from_step: int = 0  # no augmentation (noise, gain, telephone, SpecAugment) before this step
    eval_every: int = 0  # greedy WER/LID on the dev clips every N steps (0: never)
    dtype: str = "bfloat16"  # autocast dtype on CUDA (CPU: float32)
    loss: str = "auto"  # auto | nemo | torch
    log_every: int = 50
    checkpoint_every: int = 500


class Trainer:
    """The training loop over a ClipSet. `run()` trains until `settings.steps` or a time limit."""

    def __init__(self, model, data: ClipSet, settings: TrainSettings, device="cpu",
                 log_fn: Callable[[str], None] = print, dev: Optional[ClipSet] = None):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.settings = settings
        self.log = log_fn
        self.model = model.to(self.device)
        self.model.train()
        # `ctc_input=encoder`: the CTC head reads the encoder's own output, captured here.
        self._encoder_out = None
        self.model.encoder.register_forward_hook(lambda module, args, out: setattr(self, "_encoder_out", out[0]))
        self.data = data
        self.dev = dev
        self.evals: list[dict] = []
        self.blank = int(model.joint.num_classes_with_blank - 1)
        self.prompts = dict(model.cfg.model_defaults.prompt_dictionary)
        self.sizes = [list(s) for s in model.encoder.att_context_size_all]
        self.lookahead = LookaheadSampler(self.sizes, settings.seed)
        self.prompt_rng = random.Random(f"{settings.seed}:prompts")
        self.noise_gen = torch.Generator(device=self.device).manual_seed(settings.seed)
        if settings.identity_prompt_init:
            identity_prompt_kernel(self.model)
        if settings.xscale_init:
            scale_subsampling_output(self.model)
        self.input_norm = None
        if settings.normalise_input:
            first = list(range(min(64, len(data))))
            signal, lengths, _, _ = data.batch(first, self.device, blank=0)
            self.input_norm = normalise_first_conv(self.model, signal, lengths)
            log_fn(f"input normalisation folded into the first convolution: mean {self.input_norm[0]:.2f}, "
                   f"std {self.input_norm[1]:.2f} (over {len(first)} training clips)")
        enc_dim = int(model.cfg.encoder.d_model)
        self.ctc_head = None
        if settings.ctc_weight > 0 or settings.ctc_only_steps > 0:
            torch.manual_seed(settings.seed + 1)
            self.ctc_head = torch.nn.Linear(enc_dim, settings.ctc_expand * (self.blank + 1)).to(self.device)
        # Four groups: (encoder side, rest) x (decay, no decay). The encoder side (preprocessor, encoder, CTC head)
        # is what the CTC phase trains; the rest (prompt kernel, decoder, joint) what the RNNT adds on top.
        groups: dict[tuple[bool, bool], list] = {(e, d): [] for e in (True, False) for d in (True, False)}
        for module in [self.model] + ([self.ctc_head] if self.ctc_head is not None else []):
            for name, p in module.named_parameters():
                if p.requires_grad:
                    encoder_side = module is self.ctc_head or name.split(".")[0] in ("encoder", "preprocessor")
                    groups[(encoder_side, not (p.ndim < 2 or "norm" in name.lower()))].append(p)
        self._encoder_params = groups[(True, True)] + groups[(True, False)]
        self.optimizer = torch.optim.AdamW(
            [{"params": groups[(e, d)], "weight_decay": settings.weight_decay if d else 0.0, "encoder_side": e}
             for e in (True, False) for d in (True, False)],
            lr=settings.lr, betas=(0.9, 0.98), eps=1e-8)
        self.loss_fn = choose_loss(self.blank, self.device, settings.loss, log_fn)
        self.step = 0
        self.epoch = 0
        self.position = 0  # index into the current epoch's batches
        self._batches: list[list[int]] | None = None
        self.history: list[dict] = []
        self.lookahead_counts = [0] * len(self.sizes)
        self.train_seconds = 0.0
        self.audio_seconds = 0.0

    # -- schedule and data

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then cosine down to lr * min_lr_ratio at `steps`. With `rnnt_warmup_steps` and a CTC
        phase, two such schedules: the CTC phase's ends at `ctc_only_steps` (the encoder anneals), and the RNNT phase,
        whose prompt kernel, decoder and joint start from scratch there, gets a warm-up and a cosine of its own
        instead of the tail of one long cosine."""
        s = self.settings
        start, end, warmup = 0, s.steps, s.warmup_steps
        if s.rnnt_warmup_steps > 0 and 0 < s.ctc_only_steps < s.steps:
            if step < s.ctc_only_steps:
                end = s.ctc_only_steps
            else:
                start, warmup = s.ctc_only_steps, s.rnnt_warmup_steps
        step -= start
        if step < warmup:
            return s.lr * (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, end - start - warmup))
        return s.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    def next_batch(self) -> list[int]:
        if self._batches is None:
            self._batches = epoch_batches(self.data.durations, self.settings.batch_seconds,
                                          self.settings.max_batch_clips, self.settings.seed, self.epoch)
        if self.position >= len(self._batches):
            self.epoch, self.position = self.epoch + 1, 0
            self._batches = epoch_batches(self.data.durations, self.settings.batch_seconds,
                                          self.settings.max_batch_clips, self.settings.seed, self.epoch)
        batch = self._batches[self.position]
        self.position += 1
        return batch

    def prompt_indices(self, indices: Sequence[int]):
        auto = self.prompts["auto"]
        out = []
        for i in indices:
            lang = self.data.langs[i]
            if lang == "auto" or lang not in self.prompts or self.prompt_rng.random() < self.settings.auto_prompt_prob:
                out.append(auto)
            else:
                out.append(self.prompts[lang])
        return self.torch.tensor(out, dtype=self.torch.long, device=self.device)

    def augment(self, signal, lengths):
        """Random gain and white noise at a random SNR, on the valid samples only; then `telephone_prob` of the clips
        made telephone-like (`telephone`)."""
        torch = self.torch
        B, L = signal.shape
        s = self.settings
        mask = (torch.arange(L, device=self.device)[None, :] < lengths[:, None]).float()

        def uniform(lo, hi):
            return lo + (hi - lo) * torch.rand(B, 1, generator=self.noise_gen, device=self.device)

        signal = signal * 10 ** (uniform(*s.gain_db) / 20)
        power = (signal.pow(2) * mask).sum(1, keepdim=True) / lengths[:, None].clamp(min=1)
        noise_std = (power / 10 ** (uniform(*s.noise_snr_db) / 10)).sqrt()
        noise = torch.randn(B, L, generator=self.noise_gen, device=self.device)
        signal = (signal + noise * noise_std) * mask
        if s.telephone_prob > 0:
            chosen = torch.rand(B, generator=self.noise_gen, device=self.device) < s.telephone_prob
            cutoff = uniform(3400.0, 4000.0)
            if bool(chosen.any()):
                signal = torch.where(chosen[:, None], telephone(signal, cutoff) * mask, signal)
        return signal

    # -- one step

    def _autocast(self):
        import contextlib

        if self.device.type == "cuda" and self.settings.dtype != "float32":
            return self.torch.autocast(device_type="cuda", dtype=getattr(self.torch, self.settings.dtype))
        return contextlib.nullcontext()

    def train_step(self, indices: Sequence[int]) -> dict:
        torch = self.torch
        self.model.train()
        k = self.lookahead.next_index()
        set_step_lookahead(self.model.encoder, k)
        self.lookahead_counts[k] += 1
        signal, lengths, targets, target_len = self.data.batch(indices, self.device, self.blank)
        augmenting = self.step >= self.settings.augment_from_step
        if augmenting:
            signal = self.augment(signal, lengths)
        spec_augmentation = self.model.spec_augmentation
        if not augmenting:
            self.model.spec_augmentation = None  # model.forward skips it when None
        prompts = self.prompt_indices(indices)
        # CTC alone first (if asked): it aligns the encoder with the text faster than the RNNT, whose decoder would
        # otherwise learn the text prior long before the encoder learns the sounds (shared notes).
        s = self.settings
        ctc_only = self.step < s.ctc_only_steps
        # Then (if asked) the RNNT learns on the CTC-trained encoder held fixed: trained together from the start of
        # the RNNT phase, the prediction network learns the templates' text prior faster than the joint learns to
        # read the encoder, and greedy decoding follows the prior (EXPERIMENTS.md, S1). No gradient reaches the
        # encoder, so its backward pass is skipped as well.
        frozen = not ctc_only and self.step < s.ctc_only_steps + s.frozen_encoder_steps
        encoder_scale = 1.0 if ctc_only else s.encoder_lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step) * (encoder_scale if group.get("encoder_side") else 1.0)
        for p in self._encoder_params:
            p.requires_grad_(not frozen)
        with self._autocast():
            encoded, encoded_len = self.model.forward(input_signal=signal, input_signal_length=lengths,
                                                      prompt_indices=prompts)
            if not ctc_only:
                decoder, _, _ = self.model.decoder(targets=self._mask_history(targets), target_length=target_len)
                joint = self._raw_joint(encoded, decoder)
        tokens = target_len.sum().clamp(min=1)
        rnnt = None if ctc_only else self.loss_fn(joint, targets, encoded_len, target_len).sum() / tokens
        loss = rnnt
        ctc = None
        if self.ctc_head is not None and not frozen:
            with self._autocast():
                ctc_logits, ctc_len = self._ctc_logits(encoded, encoded_len)
            log_probs = ctc_logits.float().log_softmax(-1).transpose(0, 1)
            ctc = torch.nn.functional.ctc_loss(log_probs, targets, ctc_len, target_len, blank=self.blank,
                                               reduction="sum", zero_infinity=True) / tokens
            loss = ctc if ctc_only else (1 - s.ctc_weight) * rnnt + s.ctc_weight * ctc
        self.model.spec_augmentation = spec_augmentation
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.settings.grad_clip)
        finite = bool(torch.isfinite(grad_norm)) and bool(torch.isfinite(loss))
        if finite:
            self.optimizer.step()
        self.step += 1
        audio_seconds = float(self.data.durations[list(indices)].sum())
        self.audio_seconds += audio_seconds
        return {"loss": loss.detach(), "rnnt": None if rnnt is None else rnnt.detach(),
                "ctc": None if ctc is None else ctc.detach(),
                "finite": finite, "att_context_size": self.sizes[k], "clips": len(indices),
                "audio_seconds": audio_seconds}

    def _mask_history(self, targets):
        """The prediction network's input with `decoder_mask_prob` of its tokens replaced by blank (NeMo's pad: a
        zero embedding). The loss still scores every target. Call-centre sentences come from a few dozen templates, so
        an LSTM over the full history predicts most of a sentence from its first word: it learns that text prior long
        before the joint learns to listen, and greedy decoding then follows the prior. With part of the history
        hidden, the joint has to take the tokens from the audio."""
        p = self.settings.decoder_mask_prob
        if p <= 0:
            return targets
        torch = self.torch
        drop = torch.rand(targets.shape, generator=self.noise_gen, device=self.device) < p
        return torch.where(drop, torch.full_like(targets, self.blank), targets)

    def _ctc_logits(self, encoded, encoded_len):
        """The CTC head over `ctc_input` (`prompted`: the model's output after the prompt kernel, what the RNNT joint
        reads; `encoder`: the encoder's own output, as NeMo's hybrid models): (B, T * ctc_expand, V + 1) logits and
        their lengths."""
        source = encoded if self.settings.ctc_input == "prompted" else self._encoder_out
        logits = self.ctc_head(source.transpose(1, 2))
        k = self.settings.ctc_expand
        B, T, _ = logits.shape
        return logits.reshape(B, T * k, -1), encoded_len * k

    def _raw_joint(self, encoded, decoder):
        """The joint's logits without its own log_softmax (NeMo applies one on CPU): both losses normalise the
        logits themselves, and a second pass over the (B, T, U, V) tensor costs a large share of a CPU step."""
        joint = self.model.joint
        saved = joint.log_softmax
        joint.log_softmax = False
        try:
            return joint(encoder_outputs=encoded, decoder_outputs=decoder)
        finally:
            joint.log_softmax = saved

    # -- the loop

    def run(self, max_steps: Optional[int] = None, max_seconds: Optional[float] = None,
            checkpoint_path: Optional[str | Path] = None, on_step: Optional[Callable[[int, dict], None]] = None) -> bool:
        """Train until `max_steps` (default settings.steps) or `max_seconds`; True when max_steps was reached."""
        max_steps = self.settings.steps if max_steps is None else max_steps
        started = time.monotonic()
        window: list[dict] = []
        window_start, window_cpu = time.monotonic(), time.process_time()
        while self.step < max_steps:
            if max_seconds is not None and time.monotonic() - started >= max_seconds:
                break
            out = self.train_step(self.next_batch())
            window.append(out)
            if on_step is not None:
                on_step(self.step, out)
            if self.step % self.settings.log_every == 0 or self.step == max_steps:
                self._log_window(window, time.monotonic() - window_start, time.process_time() - window_cpu)
                window, window_start, window_cpu = [], time.monotonic(), time.process_time()
            if self.dev is not None and self.settings.eval_every and self.step % self.settings.eval_every == 0:
                self.log_eval(self.dev_eval())
                window_start, window_cpu = time.monotonic(), time.process_time()  # steps/s counts training only
            if checkpoint_path and self.step % self.settings.checkpoint_every == 0:
                self.save_checkpoint(checkpoint_path)
        if window:
            self._log_window(window, time.monotonic() - window_start, time.process_time() - window_cpu)
        self.train_seconds += time.monotonic() - started
        if checkpoint_path:
            self.save_checkpoint(checkpoint_path)
        return self.step >= max_steps

    def _log_window(self, window: list[dict], seconds: float, cpu_seconds: float = 0.0) -> None:
        """One line and one `history` entry per window. `cpu_seconds_per_step` (this process's CPU time, all its
        threads) does not grow when other work shares the machine, as wall time does: it is how a run on a busy
        machine tells its speed on a quiet one."""
        losses = [float(o["loss"]) for o in window if o["finite"]]
        rnnt = [float(o["rnnt"]) for o in window if o["finite"] and o["rnnt"] is not None]
        ctc = [float(o["ctc"]) for o in window if o["finite"] and o["ctc"] is not None]
        entry = {"step": self.step, "loss": float(np.mean(losses)) if losses else None,
                 "rnnt": float(np.mean(rnnt)) if rnnt else None, "ctc": float(np.mean(ctc)) if ctc else None,
                 "skipped": sum(not o["finite"] for o in window), "lr": self.lr_at(self.step - 1),
                 "steps_per_second": len(window) / max(seconds, 1e-9),
                 "cpu_seconds_per_step": cpu_seconds / max(len(window), 1), "epoch": self.epoch,
                 "audio_seconds_per_step": float(np.mean([o["audio_seconds"] for o in window]))}
        self.history.append(entry)
        self.log(f"step {entry['step']:>6}  loss {entry['loss'] if entry['loss'] is None else round(entry['loss'], 4)}"
                 f"  rnnt {entry['rnnt'] if entry['rnnt'] is None else round(entry['rnnt'], 4)}"
                 f"  ctc {entry['ctc'] if entry['ctc'] is None else round(entry['ctc'], 4)}"
                 f"  lr {entry['lr']:.2e}  {entry['steps_per_second']:.3f} steps/s"
                 f"  cpu {entry['cpu_seconds_per_step']:.2f} s/step  epoch {self.epoch}"
                 + (f"  skipped {entry['skipped']}" if entry["skipped"] else ""))

    # -- evaluation on the dev clips during training

    def dev_eval(self, contexts: Sequence[Sequence[int]] = DEPLOYMENT_CONTEXTS, batch_clips: int = 16) -> dict:
        """Greedy decoding of the dev clips, in memory: corpus WER with the language given at each of `contexts`,
        WER and language-ID accuracy with `auto` at the first. The encoder's default latency and train mode are
        restored afterwards; no random generator is touched."""
        from pipeline.language import dominant_language, split_by_language
        from pipeline.scoring import corpus_score, score

        torch, model, data = self.torch, self.model, self.dev
        started = time.monotonic()
        order = sorted(range(len(data)), key=lambda i: int(data.lengths[i]))
        batches = [order[i:i + batch_clips] for i in range(0, len(order), batch_clips)]
        single = [i for i in order if data.langs[i] in self.prompts and data.langs[i] != "auto"]
        refs = [e["text"] for e in data.entries]
        saved = list(model.encoder.att_context_size)
        out: dict = {"step": self.step}

        def decode(mode: str, ctc: bool = False) -> dict[int, str]:
            texts: dict[int, str] = {}
            for batch in batches:
                signal, lengths, _, _ = data.batch(batch, self.device, self.blank)
                prompts = [self.prompts[data.langs[i]] if mode == "given" and i in single_set else self.prompts["auto"]
                           for i in batch]
                encoded, encoded_len = model.forward(input_signal=signal, input_signal_length=lengths,
                                                     prompt_indices=torch.tensor(prompts, device=self.device))
                if ctc:  # greedy CTC: best token per frame, repeats merged, blanks dropped
                    logits, ctc_len = self._ctc_logits(encoded, encoded_len)
                    best = logits.argmax(-1)
                    for row, i in enumerate(batch):
                        ids = best[row, : int(ctc_len[row])].tolist()
                        ids = [t for k, t in enumerate(ids) if t != self.blank and (k == 0 or t != ids[k - 1])]
                        texts[i] = model.tokenizer.ids_to_text(ids)
                    continue
                hyps = model.decoding.rnnt_decoder_predictions_tensor(encoder_output=encoded,
                                                                      encoded_lengths=encoded_len,
                                                                      return_hypotheses=True)
                texts.update({i: h.text for i, h in zip(batch, hyps)})
            return texts

        single_set = set(single)
        # While only the CTC head trains, the RNNT decoder is untrained: decoding it costs much and says nothing.
        rnnt_trained = self.step > self.settings.ctc_only_steps
        model.eval()
        try:
            with torch.no_grad():
                for n, ctx in enumerate(contexts):
                    name = f"{ctx[0]}_{ctx[1]}"
                    model.encoder.set_default_att_context_size([int(ctx[0]), int(ctx[1])])
                    if n == 0 and self.ctc_head is not None:
                        ctc = decode("given", ctc=True)
                        scored = corpus_score(score(refs[i], ctc[i], data.langs[i]) for i in single)
                        out[f"wer_ctc_given_{name}"], out[f"cer_ctc_given_{name}"] = scored.wer, scored.cer
                        i = single[0] if single else order[0]
                        out["example"] = {"reference": refs[i], "given": ctc[i], "auto": None}
                    if not rnnt_trained:
                        continue
                    given = decode("given")
                    out[f"wer_given_{name}"] = corpus_score(score(refs[i], given[i], data.langs[i])
                                                            for i in single).wer
                    if n == 0:
                        auto = decode("auto")
                        out[f"wer_auto_{name}"] = corpus_score(score(refs[i], auto[i], data.langs[i])
                                                               for i in order).wer
                        hits = [dominant_language(split_by_language(auto[i])) == data.langs[i] for i in single]
                        out[f"lid_accuracy_auto_{name}"] = float(np.mean(hits)) if hits else None
                        i = single[0] if single else order[0]
                        out["example"] = {"reference": refs[i], "given": given.get(i), "auto": auto[i]}
        finally:
            model.encoder.set_default_att_context_size(saved)
            model.train()
        out["seconds"] = round(time.monotonic() - started, 1)
        return out

    def log_eval(self, result: dict) -> None:
        self.evals.append(result)
        figures = "  ".join(f"{k} {v:.3f}" for k, v in result.items()
                            if isinstance(v, float) and k != "seconds")
        self.log(f"dev at step {result['step']}: {figures}  ({result['seconds']} s)")
        self.log(f"  e.g. ref  {result['example']['reference']}")
        self.log(f"       hyp  {result['example']['given']}")

    # -- state

    def state_dict(self) -> dict:
        torch = self.torch
        return {
            "step": self.step, "epoch": self.epoch, "position": self.position,
            "model": self.model.state_dict(),
            "ctc_head": self.ctc_head.state_dict() if self.ctc_head is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "lookahead": self.lookahead.state_dict(), "lookahead_counts": list(self.lookahead_counts),
            "prompt_rng": self.prompt_rng.getstate(), "noise_gen": self.noise_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            "python_rng": random.getstate(),
            "history": self.history, "evals": self.evals,
            "train_seconds": self.train_seconds, "audio_seconds": self.audio_seconds,
            "settings": asdict(self.settings),
        }

    def load_state_dict(self, state: dict) -> None:
        torch = self.torch
        self.model.load_state_dict(state["model"])
        if self.ctc_head is not None and state.get("ctc_head") is not None:
            self.ctc_head.load_state_dict(state["ctc_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        self._batches = None if self.position == 0 and self.epoch == 0 else epoch_batches(
            self.data.durations, self.settings.batch_seconds, self.settings.max_batch_clips, self.settings.seed,
            self.epoch)
        self.lookahead.load_state_dict(state["lookahead"])
        self.lookahead_counts = list(state["lookahead_counts"])
        version, internal, gauss = state["prompt_rng"]
        self.prompt_rng.setstate((version, tuple(internal), gauss))
        self.noise_gen.set_state(state["noise_gen"].cpu() if hasattr(state["noise_gen"], "cpu") else state["noise_gen"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        version, internal, gauss = state["python_rng"]
        random.setstate((version, tuple(internal), gauss))
        self.history = list(state["history"])
        self.evals = list(state.get("evals", []))
        self.train_seconds = float(state["train_seconds"])
        self.audio_seconds = float(state["audio_seconds"])

    def save_checkpoint(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        self.torch.save(self.state_dict(), tmp)
        tmp.replace(path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        self.load_state_dict(self.torch.load(path, map_location=self.device, weights_only=False))
