"""The offline demo: the real job, on the bundled sample audio, with a small model of the real class, on an embedded
local Ray. No cluster, no S3, no internet.

    python -m jobs.demo [key=value ...]      # any transcribe key, e.g. target_lang=en-US

The small model (`pipeline.models.tiny`, random weights) is built once into build/ on first use: it shows the pipeline
working end to end, not speech recognition — its text is noise. The real model is one `model_path` away:
    python -m jobs.transcribe model_path=nvidia/nemotron-3.5-asr-streaming-0.6b dataset_manifest=... output_path=...
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_MODEL = ROOT / "build" / "demo-model.nemo"
SAMPLES = ROOT / "samples" / "manifest.jsonl"
OUTPUT = ROOT / "outputs" / "demo"


def main(argv: list[str] | None = None) -> int:
    from jobs import transcribe

    if not DEMO_MODEL.exists():
        from pipeline.models.tiny import build_checkpoint

        print(f"building the demo model (once): {DEMO_MODEL}")
        build_checkpoint(DEMO_MODEL)
    overrides = [f"model_path={DEMO_MODEL}", f"dataset_manifest={SAMPLES}", f"output_path={OUTPUT}"]
    code = transcribe.main(overrides + list(sys.argv[1:] if argv is None else argv))
    if code == 0:
        import duckdb

        print(f"\nOutput: {OUTPUT}/recordings/ and segments/ (the demo model's text is noise; run it again: "
              "every row is already done and is skipped)")
        print(duckdb.sql(
            f"select audio_filepath, round(duration, 2) as duration, target_lang, language, num_segments, "
            f"left(text, 32) as text, round(wer, 2) as wer, error "
            f"from '{OUTPUT}/recordings/*.parquet' order by line"
        ))
    return code


if __name__ == "__main__":
    sys.exit(main())
