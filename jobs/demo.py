"""The offline demo: the real job, on the bundled samples, with the demo model, on an embedded local Ray. No cluster,
no S3, no internet.

    python -m jobs.demo [key=value ...]      # any transcribe key, e.g. target_lang=auto att_context_size=[56,0]

The demo model (`models/demo-callcentre.nemo`, 7.7 MB, 3.6M parameters) is a small model of the real class
(EncDecRNNTBPEModelWithPrompt: cache-aware FastConformer, RNNT, language prompts and tags) trained on two CPU cores
on synthetic espeak-ng speech of one narrow domain: call-centre phrases, digits and numbers, dates, times, yes/no
and a few dozen names in en-US, es-ES, de-DE and fr-FR (training/domain/). It recognises that domain and nothing
else: real voices, other words and other languages come out as the nearest call-centre phrase. The samples are
sentences and voices it never heard in training.
The real model is one `model_path` away:
    python -m jobs.transcribe model_path=nvidia/nemotron-3.5-asr-streaming-0.6b dataset_manifest=... output_path=...
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_MODEL = ROOT / "models" / "demo-callcentre.nemo"
SAMPLES = ROOT / "samples" / "manifest.jsonl"
OUTPUT = ROOT / "outputs" / "demo"
LABEL = ("demo model: call-centre domain only (digits, numbers, dates, times, yes/no, service phrases, a few dozen "
         "names) in en-US, es-ES, de-DE, fr-FR; synthetic voices; see README")


def main(argv: list[str] | None = None) -> int:
    from jobs import transcribe

    # A turn of a split call is a segment, and a side is cut at its pauses only between segmenting.min_seconds and
    # max_seconds: short cuts make the 14 s stereo sample's four turns come out as turns (README, stereo calls).
    overrides = [f"model_path={DEMO_MODEL}", f"dataset_manifest={SAMPLES}", f"output_path={OUTPUT}",
                 "segmenting.max_seconds=8", "segmenting.min_seconds=2", "audio.channel_names=[agent,customer]"]
    code = transcribe.main(overrides + list(sys.argv[1:] if argv is None else argv))
    if code == 0:
        import duckdb

        print(f"\n{LABEL}\nOutput: {OUTPUT}/recordings/ and segments/ (run it again: every row is already done and "
              "is skipped; delete outputs/demo to transcribe again)\n")
        rows = duckdb.sql(
            f"select audio_filepath, target_lang, language, round(wer, 3) as wer, text, reference_text, "
            f"conversation, error from '{OUTPUT}/recordings/*.parquet' order by line").fetchall()
        for path, target, language, wer, text, reference, conversation, error in rows:
            print(f"{path}  (asked: {target}, heard: {language}, WER {wer})")
            if error:
                print(f"  error: {error}")
            for turn in conversation or []:
                print(f"  [{turn['start']:5.1f}-{turn['end']:5.1f} {turn['speaker']}] {turn['text']}")
            if not conversation:
                print(f"  heard:     {text}")
            print(f"  reference: {reference}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
