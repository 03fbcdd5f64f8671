"""Train the demo model: a small EncDecRNNTBPEModelWithPrompt (the Nemotron 3.5 ASR class) on synthetic espeak-ng
speech in four languages, with the real recipe (language tags after each sentence, locale or `auto` prompts,
multi-lookahead over the att_context_size values); save a .nemo under 20 MB and a metrics file.

The demo model (conf/train_demo.yaml; call-centre domain, one CPU thread, under an hour; training/EXPERIMENTS.md):

    nice -n 10 python -m training.synth_speech output_dir=build/synth seed=0 hours=8
    nice -n 10 nohup python -m training.train_demo_model data_dir=build/synth work_dir=build/train_demo &
    python -m training.evaluate build/train_demo/demo.nemo build/synth/test_manifest.json

The broad, open-vocabulary recipe for a GPU (conf/train_demo_gpu.yaml, see below):

    python -m training.synth_speech --config conf/synth_speech_broad.yaml output_dir=build/synth hours=12
    python -m training.train_demo_model --config conf/train_demo_gpu.yaml data_dir=build/synth device=cuda

Writes (under `work_dir`, default build/train_demo):
    tokenizer/         SentencePiece BPE over the training text, tags as user_defined_symbols (made once, reused)
    state.pt           the loop's state (weights, optimiser, step, data position, random generators): a rerun with
                       the same work_dir resumes from it (`resume=false` starts over)
    demo.nemo          (`output_nemo`) float16 weights; refused (exit 1) over `max_nemo_mb`
    metrics.json       (`metrics_path`) the evaluation on the held-out test manifest at [56,13] and [56,0] (WER with
                       the language given, WER and language-ID accuracy in auto, per locale, held-out vs training
                       voices), the targets and whether each is met, and the training record (steps, loss curve
                       with steps/s and CPU seconds per step, dev curve, hours of audio, parameters, .nemo size,
                       whether training finished)
    train.log          the log, appended

`max_minutes` stops training after that many minutes (the state is saved; demo.nemo and metrics.json are written
for the step reached, marked `"finished": false`); running the same command again continues to `steps`.
Reproducible from `seed` (and the thread count): data order, prompts, look-aheads, augmentation and initial
weights; on CPU a resumed run matches an uninterrupted one bit for bit, on a GPU up to the nondeterminism of CUDA
kernels.

Running it on the GPU device machine (no apt, no internet; 64 MiB carried; 10 min per command, 30 min per session)
------------------------------------------------------------------------------------------------------------------
The device image has Python 3.12 with torch, numba and numba-cuda, lightning, transformers, sentencepiece, pandas
and scipy, but no NeMo and no espeak-ng. Carry both (about 21 MB together); generate the audio there (16 cores,
about a minute for 12 h). Carrying audio instead does not scale: FLAC of this speech is about 58 MB per hour, so
64 MiB holds under an hour (xz does not shrink FLAC).

1. Here, once (this machine has apt, gcc and pip; both folders are git-ignored):

    .venv/bin/python -m training.synth_speech --bundle-espeak build/espeak
        # apt-get download espeak-ng libespeak-ng1 espeak-ng-data libsonic0 (4.8 MB of .deb), dpkg-deb -x into
        # build/espeak, a stub libpcaudio.so.0 compiled with gcc in place of libpcaudio0 (whose libpulse0 and
        # libasound2 dependencies are not needed to write files), only the en/es/de/fr dictionaries kept: 2.4 MB.
        # `apt-cache depends espeak-ng`: libespeak-ng1, libpcaudio0, libsonic0 (+ libc6); libespeak-ng1 also needs
        # espeak-ng-data; libpcaudio0 needs libasound2 and libpulse0 (which pull in libsndfile1, libdbus, X11 ...).
    mkdir -p .whl && .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
        nemo-toolkit==3.0.0 lightning==2.4.0 hydra-core==1.3.2 omegaconf==2.3.0 lhotse==1.33.0 librosa==0.11.0 \
        audioread==3.1.0 decorator==5.3.1 pooch==1.9.0 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 soxr==1.1.0 \
        jiwer==4.0.0 rapidfuzz==3.14.6 kaldialign==0.12.0 braceexpand==0.1.7 webdataset==1.0.2 \
        intervaltree==3.2.1 cytoolz==1.2.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
        pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 \
        overrides==7.7.0 strenum==0.4.15 toml==0.10.2 truststore==0.10.5 platformdirs==4.14.7 sniffio==1.3.1 \
        nv-one-logger-core==2.3.1 nv-one-logger-training-telemetry==2.3.1 \
        nv-one-logger-pytorch-lightning-integration==2.3.1
    .venv/bin/python -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3    # sdist only: build it
        # 37 wheels, 17.6 MB (nemo_toolkit 2.8 MB, rapidfuzz 3.2, cytoolz 3.2, pydantic-core 2.3). The list is what
        # this job imports (traced on CPU) minus what the device image has; NeMo pins lightning<=2.4.0, hence it.
        # If an import still fails there (e.g. NeMo against the image's transformers 5.17 / numpy 2.5), add that
        # package's wheel at the version of .venv here (transformers 5.23.0, numpy 2.4.6 were tested here).

2. On the device, one call (`run` with carry ["build/espeak", ".whl"], timeout_s 600):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 || exit 1
    python3 -m training.synth_speech --config conf/synth_speech_broad.yaml output_dir=build/synth seed=0 \
        hours=12 espeak_root=build/espeak workers=16 \
      && python3 -m training.train_demo_model --config conf/train_demo_gpu.yaml data_dir=build/synth \
        device=cuda max_minutes=6
    mkdir -p $OUT/r && cp build/train_demo/metrics.json build/train_demo/train.log build/train_demo/demo.nemo $OUT/r/

   Budget (estimates, nothing here was run on a GPU yet): pip ~20 s, synthesis ~1 min (measured here: 0.63 h in
   18 s on two busy cores), loading 12 h of FLAC ~20 s, NeMo import and model ~15 s, training `max_minutes`,
   saving and evaluation (460 clips x 2 latencies x given/auto) < 1 min. If `finished` is false and the machine is
   still warm (it stays 30 s after a call; build/ and /tmp/site stay with it), a second call resumes from
   build/train_demo/state.pt: `export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1; python3 -m training.train_demo_model
   --config conf/train_demo_gpu.yaml data_dir=build/synth device=cuda max_minutes=8` and the `cp` line. state.pt (~95 MB) cannot come back through
   $OUT (16 MiB a file): a fresh machine starts over, so size `steps` to what one call trains.
   demo.nemo is about 16 MB, under the 16 MiB a file that comes back from $OUT may have.
   First thing to check in the log: "RNNT loss: NeMo warprnnt_numba on CUDA" (else the PyTorch loss is used, which
   also runs on CUDA) and the steps/s; then tune `steps` so that training fits the time left. `steps` may change on
   a resume: the cosine schedule then follows the new total from the step reached (an unfinished run evaluates with
   the learning rate still high, so prefer a `steps` that finishes within `max_minutes`).
   What to expect (shared/notes/nemo.md): the loss first falls to a text prior (empty or generic transcripts, CTC
   loss flat near 5.5) and only later does the encoder learn the sounds; WER stays 100% until then.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from jobs.config import ConfigError, load_structured
from training.cli import config_file_arg
from training.recipe import DemoModelSpec, TrainSettings

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "conf" / "train_demo.yaml"




@dataclass
class TrainDemoConfig(TrainSettings):
    data_dir: str = "build/synth"  # output_dir of training.synth_speech
    init_nemo: Optional[str] = None  # fine-tune this .nemo (its weights and tokenizer) instead of a new model
    work_dir: str = "build/train_demo"
    output_nemo: Optional[str] = None  # default <work_dir>/demo.nemo
    metrics_path: Optional[str] = None  # default <work_dir>/metrics.json
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    resume: bool = True
    max_minutes: Optional[float] = None  # stop training after this long (state saved; rerun to continue)
    evaluate: bool = True
    eval_manifest: str = "test_manifest.json"  # inside data_dir
    eval_batch_size: int = 64
    eval_limit: Optional[int] = None  # only the first N clips (quick checks)
    dev_manifest: str = "dev_manifest.json"  # inside data_dir: evaluated every eval_every steps during training
    dev_limit: Optional[int] = None  # only the first N dev clips
    threads: int = 0  # torch threads on CPU (0: torch's default, one per core)
    train_limit: Optional[int] = None  # only the first N training clips (quick checks)
    save_dtype: str = "float16"
    max_nemo_mb: float = 20.0
    loader_threads: int = 8
    model: DemoModelSpec = field(default_factory=DemoModelSpec)


def load_config(overrides: list[str], config_file: str | Path = DEFAULT_CONFIG) -> TrainDemoConfig:
    cfg: TrainDemoConfig = load_structured(TrainDemoConfig, overrides, config_file, hint=" (model.<field> for the model)")
    if cfg.device not in ("auto", "cpu", "cuda") and not cfg.device.startswith("cuda:"):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {cfg.device!r}")
    if cfg.ctc_input not in ("encoder", "prompted"):
        raise ConfigError(f"ctc_input must be encoder or prompted, got {cfg.ctc_input!r}")
    if cfg.loss not in ("auto", "nemo", "torch"):
        raise ConfigError(f"loss must be auto, nemo or torch, got {cfg.loss!r}")
    if cfg.save_dtype not in ("float16", "bfloat16", "float32"):
        raise ConfigError(f"save_dtype must be float16, bfloat16 or float32, got {cfg.save_dtype!r}")
    if cfg.steps < 0 or cfg.batch_seconds <= 0 or cfg.lr <= 0 or not 0 <= cfg.ctc_weight < 1:
        raise ConfigError("need steps >= 0, batch_seconds > 0, lr > 0, 0 <= ctc_weight < 1")
    if cfg.init_nemo:
        if not Path(cfg.init_nemo).exists():
            raise ConfigError(f"init_nemo {cfg.init_nemo} not found")
        started_fresh = [k for k in ("normalise_input", "identity_prompt_init", "xscale_init") if getattr(cfg, k)]
        if started_fresh or cfg.ctc_only_steps or cfg.frozen_encoder_steps or cfg.ctc_weight:
            # These shape a model's first steps from random weights, or train a CTC head the .nemo does not hold:
            # on a trained model they would undo what it learnt.
            raise ConfigError("a fine-tune (init_nemo) needs normalise_input, identity_prompt_init and xscale_init "
                              "false and ctc_only_steps, frozen_encoder_steps and ctc_weight 0; set: "
                              f"{started_fresh + [k for k in ('ctc_only_steps', 'frozen_encoder_steps', 'ctc_weight') if getattr(cfg, k)]}")
    data = Path(cfg.data_dir)
    for name in ("train_manifest.json", cfg.eval_manifest):
        if not (data / name).exists():
            raise ConfigError(f"{data / name} not found: generate the data first "
                              f"(python -m training.synth_speech output_dir={cfg.data_dir})")
    return cfg


def _settings(cfg: TrainDemoConfig) -> TrainSettings:
    return TrainSettings(**{k: getattr(cfg, k) for k in TrainSettings.__dataclass_fields__})


def run(cfg: TrainDemoConfig) -> dict:
    """Train (or resume), save the .nemo, evaluate; returns the metrics (also written to metrics_path)."""
    import torch

    from training import recipe
    from training.evaluate import evaluate

    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    nemo_path = Path(cfg.output_nemo or work / "demo.nemo")
    metrics_path = Path(cfg.metrics_path or work / "metrics.json")
    log_file = open(work / "train.log", "a", encoding="utf-8")

    def say(message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    started = time.monotonic()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    say(f"device {device} ({torch.cuda.get_device_name(device) if device.startswith('cuda') else platform.machine()})"
        f", torch {torch.__version__}, seed {cfg.seed}")
    torch.manual_seed(cfg.seed)
    data_dir = Path(cfg.data_dir)
    train_manifest = data_dir / "train_manifest.json"

    if cfg.init_nemo:
        # A fine-tune keeps the model's shapes and tokenizer (`model.*` settings do not apply).
        model = recipe.load_demo_model(cfg.init_nemo)
        say(f"fine-tuning {cfg.init_nemo}")
    else:
        tokenizer_dir = work / "tokenizer"
        if not (tokenizer_dir / "tokenizer.model").exists():
            texts = [e["text"] for e in recipe.read_manifest(train_manifest)]
            recipe.train_tokenizer(texts, cfg.model.locales, cfg.model.vocab_size, tokenizer_dir)
            say(f"tokenizer: {cfg.model.vocab_size} BPE pieces over {len(texts)} training texts -> {tokenizer_dir}")
        model = recipe.build_demo_model(cfg.model, tokenizer_dir, cfg.seed)
    params = recipe.count_parameters(model)
    say(f"model: {params / 1e6:.2f}M parameters, vocabulary {model.tokenizer.vocab_size}, "
        f"att_context_size {model.encoder.att_context_size_all}")

    t = time.monotonic()
    data = recipe.ClipSet(train_manifest, model.tokenizer, threads=cfg.loader_threads, limit=cfg.train_limit)
    if device.startswith("cuda"):
        data.to(device)
    say(f"train set: {len(data)} clips, {data.hours:.2f} h, loaded in {time.monotonic() - t:.1f} s")
    dev = None
    if cfg.eval_every and (data_dir / cfg.dev_manifest).exists():
        dev = recipe.ClipSet(data_dir / cfg.dev_manifest, model.tokenizer, threads=cfg.loader_threads,
                             limit=cfg.dev_limit)
        if device.startswith("cuda"):
            dev.to(device)
        say(f"dev set: {len(dev)} clips, {dev.hours:.2f} h, evaluated every {cfg.eval_every} steps")

    trainer = recipe.Trainer(model, data, _settings(cfg), device, log_fn=say, dev=dev)
    state = work / "state.pt"
    if cfg.resume and state.exists():
        trainer.load_checkpoint(state)
        say(f"resumed from {state} at step {trainer.step} (epoch {trainer.epoch})")
    max_seconds = None if cfg.max_minutes is None else cfg.max_minutes * 60
    finished = trainer.run(max_seconds=max_seconds, checkpoint_path=state)
    done_steps = trainer.step
    say(f"training {'finished' if finished else 'stopped'} at step {done_steps}/{cfg.steps}"
        + ("" if finished else " (run again to resume)"))

    recipe.save_nemo(model, nemo_path, cfg.save_dtype)
    nemo_mb = nemo_path.stat().st_size / 1e6
    say(f"saved {nemo_path} ({nemo_mb:.2f} MB)")

    steps_per_second = [h["steps_per_second"] for h in trainer.history]
    metrics: dict = {
        "finished": finished,
        "training": {
            "steps": done_steps, "target_steps": cfg.steps, "epoch": trainer.epoch,
            "train_seconds": round(trainer.train_seconds, 1),
            "audio_hours_seen": round(trainer.audio_seconds / 3600, 2),
            "train_hours": round(data.hours, 3), "train_clips": len(data),
            "mean_steps_per_second": (round(float(sum(steps_per_second) / len(steps_per_second)), 3)
                                      if steps_per_second else None),
            "loss_impl": trainer.loss_fn.impl,
            "max_gpu_memory_gb": (round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                                  if device.startswith("cuda") else None),
            "lookahead_counts": {f"{a}_{b}": n for (a, b), n in zip(trainer.sizes, trainer.lookahead_counts)},
            "loss_curve": trainer.history,
            "dev_curve": trainer.evals,
        },
        "model": {"parameters": params, "nemo_path": str(nemo_path), "nemo_mb": round(nemo_mb, 3),
                  "save_dtype": cfg.save_dtype, "init_nemo": cfg.init_nemo,
                  "spec": None if cfg.init_nemo else asdict(cfg.model)},
        "device": device, "torch": torch.__version__, "config": asdict(cfg),
    }
    del trainer, data, dev
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    if cfg.evaluate:
        t = time.monotonic()
        evaluation = evaluate(nemo_path, data_dir / cfg.eval_manifest, device=device,
                                       batch_size=cfg.eval_batch_size, limit=cfg.eval_limit)
        metrics["evaluation"] = evaluation
        metrics["targets"] = evaluation["targets"]
        say(f"evaluated {evaluation['clips']} clips in {time.monotonic() - t:.1f} s")
        for key, target in evaluation["targets"].items():
            value = target["value"]
            say(f"  {key}: {'n/a' if value is None else f'{value:.4f}'} (target {target['target']}) "
                f"{'met' if target['met'] else 'NOT met'}")
    metrics["wall_seconds"] = round(time.monotonic() - started, 1)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = metrics_path.with_name(f".{metrics_path.name}.tmp")
    tmp.write_text(json.dumps(metrics, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(metrics_path)
    say(f"wrote {metrics_path}")
    if nemo_mb > cfg.max_nemo_mb:
        raise SizeError(f"{nemo_path} is {nemo_mb:.2f} MB, over max_nemo_mb={cfg.max_nemo_mb}: use a smaller model")
    log_file.close()
    return metrics


class SizeError(RuntimeError):
    pass


def main(argv: list[str] | None = None) -> int:
    config_file, overrides = config_file_arg(list(sys.argv[1:] if argv is None else argv), DEFAULT_CONFIG)
    try:
        cfg = load_config(overrides, config_file)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        run(cfg)
    except SizeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
