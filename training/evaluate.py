"""Score a demo .nemo on a held-out manifest of `training.synth_speech`, through the project's own adapter.

    python -m training.evaluate models/demo-callcentre.nemo build/fresh/test_manifest.json [--limit N] [--json out.json]

Prints WER with the language given at [56,13] and [56,0], WER and language-ID accuracy in `auto`, per locale and for
held-out against training voices, and whether each target is met (exit 0 when all are). A stranger checks the
shipped figures with a test set made from a seed of their own:

    python -m training.synth_speech output_dir=build/fresh seed=12345 hours=0 heldout_voice_fraction=1.0
    python -m training.evaluate models/demo-callcentre.nemo build/fresh/test_manifest.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from training.recipe import DEPLOYMENT_CONTEXTS, read_manifest

# The targets on held-out call-centre speech (new sentences, held-out voices).
TARGETS = {"wer_given_56_13": ("<=", 0.15), "wer_given_56_0": ("<=", 0.25), "lid_accuracy_auto_56_13": (">=", 0.95)}


def evaluate(model_path: str | Path, manifest: str | Path, device: str = "auto", batch_size: int = 32,
             contexts: Sequence[Sequence[int]] = DEPLOYMENT_CONTEXTS, limit: Optional[int] = None,
             examples: int = 3) -> dict:
    """Score a .nemo on a manifest through the project's adapter (`NemotronRNNT`), at each latency in `contexts`:

    - `wer_given`: corpus WER (`pipeline.scoring`) over single-language clips, prompt = the clip's locale;
    - `wer_auto`: corpus WER over every clip (mixed ones too), prompt `auto`;
    - `lid_accuracy_auto`: share of single-language clips whose dominant tag in `auto` (`pipeline.language`) is the
      clip's locale; `mixed_tag_accuracy_auto`: share of mixed clips whose tags, in order, are the sentences' locales;
    - breakdowns per locale and for held-out vs training voices; a few example hypotheses.
    Flat keys such as `wer_given_56_13` are what `TARGETS` checks.
    """
    import soundfile as sf

    from pipeline.language import dominant_language, split_by_language, tags_in
    from pipeline.models.base import AudioItem, ModelSettings
    from pipeline.models.nemo_rnnt import NemotronRNNT
    from pipeline.scoring import corpus_score, score

    manifest = Path(manifest)
    entries = read_manifest(manifest)[:limit]
    audio = [sf.read(manifest.parent / e["audio_filepath"], dtype="float32")[0] for e in entries]
    first = tuple(contexts[0])
    adapter = NemotronRNNT(ModelSettings(model_path=str(model_path), att_context_size=first, batch_size=batch_size,
                                         device=device, threads=1 if device == "cpu" else None))
    single = [i for i, e in enumerate(entries) if e.get("lang", "auto") != "auto"]
    mixed = [i for i, e in enumerate(entries) if e.get("lang", "auto") == "auto"]
    results: dict = {"clips": len(entries), "single_language_clips": len(single), "mixed_clips": len(mixed),
                     "contexts": {}}
    for ctx in contexts:
        ctx = [int(ctx[0]), int(ctx[1])]
        adapter.model.encoder.set_default_att_context_size(ctx)
        name = f"{ctx[0]}_{ctx[1]}"
        started = time.monotonic()
        given = adapter.transcribe([AudioItem(audio[i], entries[i]["lang"]) for i in single])
        auto = adapter.transcribe([AudioItem(a, "auto") for a in audio])
        seconds = time.monotonic() - started
        given_scores = {i: score(entries[i]["text"], out.raw_text, entries[i]["lang"]) for i, out in zip(single, given)}
        auto_scores = [score(e["text"], out.raw_text, e.get("lang")) for e, out in zip(entries, auto)]
        lid_hits = [dominant_language(split_by_language(auto[i].raw_text)) == entries[i]["lang"] for i in single]
        mixed_hits = [tags_in(auto[i].raw_text) == tags_in(entries[i]["text"]) for i in mixed]

        def wer_of(indices):
            return corpus_score(given_scores[i] for i in indices).wer

        by_locale = {}
        for loc in sorted({entries[i]["lang"] for i in single}):
            idx = [i for i in single if entries[i]["lang"] == loc]
            by_locale[loc] = {"wer_given": wer_of(idx),
                              "lid_accuracy_auto": float(np.mean([lid_hits[single.index(i)] for i in idx]))}
        heldout = [i for i in single if entries[i].get("heldout_voice")]
        seen = [i for i in single if not entries[i].get("heldout_voice")]
        total_given = corpus_score(given_scores.values())
        total_auto = corpus_score(auto_scores)
        results["contexts"][name] = {
            "att_context_size": ctx,
            "wer_given": total_given.wer, "cer_given": total_given.cer,
            "wer_auto": total_auto.wer, "cer_auto": total_auto.cer,
            "lid_accuracy_auto": float(np.mean(lid_hits)) if lid_hits else None,
            "mixed_tag_accuracy_auto": float(np.mean(mixed_hits)) if mixed_hits else None,
            "wer_given_heldout_voices": wer_of(heldout) if heldout else None,
            "wer_given_training_voices": wer_of(seen) if seen else None,
            "by_locale": by_locale,
            "seconds": round(seconds, 2),
            "examples": [{"reference": entries[i]["text"],
                          "given": given[single.index(i)].raw_text if i in single else None,
                          "auto": auto[i].raw_text} for i in (single[:examples] + mixed[:1])],
        }
        results[f"wer_given_{name}"] = total_given.wer
        results[f"wer_auto_{name}"] = total_auto.wer
        results[f"lid_accuracy_auto_{name}"] = results["contexts"][name]["lid_accuracy_auto"]
    results["targets"] = check_targets(results)
    return results


def check_targets(metrics: dict) -> dict:
    out = {}
    for key, (op, bound) in TARGETS.items():
        value = metrics.get(key)
        met = value is not None and (value <= bound if op == "<=" else value >= bound)
        out[key] = {"value": value, "target": f"{op} {bound}", "met": met}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score a demo .nemo on a held-out manifest")
    parser.add_argument("model")
    parser.add_argument("manifest")
    parser.add_argument("--limit", type=int, default=None, help="only the first N clips")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="also write the full metrics here")
    args = parser.parse_args(argv)
    metrics = evaluate(args.model, args.manifest, device=args.device, limit=args.limit)
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{metrics['clips']} clips ({metrics['single_language_clips']} single-language, "
          f"{metrics['mixed_clips']} mixed)")
    for name, ctx in metrics["contexts"].items():
        print(f"[{name.replace('_', ',')}]  WER given {ctx['wer_given']:.4f} (held-out voices "
              f"{_fmt(ctx['wer_given_heldout_voices'])}, training voices {_fmt(ctx['wer_given_training_voices'])})"
              f"  WER auto {ctx['wer_auto']:.4f}  language ID in auto {_fmt(ctx['lid_accuracy_auto'])}"
              f"  mixed clips' tags {_fmt(ctx['mixed_tag_accuracy_auto'])}")
        for locale, figures in ctx["by_locale"].items():
            print(f"    {locale}: WER given {figures['wer_given']:.4f}, language ID {figures['lid_accuracy_auto']:.3f}")
    for key, target in metrics["targets"].items():
        print(f"{key}: {_fmt(target['value'])} (target {target['target']}) {'met' if target['met'] else 'NOT met'}")
    return 0 if all(t["met"] for t in metrics["targets"].values()) else 1


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    sys.exit(main())
