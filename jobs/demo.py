"""The offline demo: the real job, on the bundled samples, with the demo model, on an embedded local Ray. No cluster,
no S3, no internet.

    python -m jobs.demo [--verbose] [key=value ...]   # any transcribe key, e.g. target_lang=auto output_path=/tmp/d

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
    from jobs.console import split_verbose
    from jobs.spec import load_spec

    given = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in given):
        print(__doc__)
        return 0
    # A turn of a split call is a segment, and a side is cut at its pauses only between segmenting.min_seconds and
    # max_seconds: short cuts make the 14 s stereo sample's four turns come out as turns (README, stereo calls).
    overrides = [f"model_path={DEMO_MODEL}", f"dataset_manifest={SAMPLES}", f"output_path={OUTPUT}",
                 "segmenting.max_seconds=8", "segmenting.min_seconds=2", "audio.channel_names=[agent,customer]"]
    code = transcribe.main(overrides + given)
    if code == 0:
        # The output the job wrote: the demo's defaults under the keys given, read by the job's own loader.
        output = load_spec(overrides + split_verbose(given)[0]).output_path
        print(f"\n{LABEL}\nOutput: {output}/recordings/ and segments/ (run it again: every row is already done and "
              f"is skipped; delete {output} to transcribe again)\n")
        for line in rows_lines(output):
            print(line)
    return code


def rows_lines(output_path: str) -> list[str]:
    """Each recording of the output: what was asked and heard, its WER, its turns (or text), its reference."""
    from connectors.output_store import RECORDINGS, OutputStore

    recordings = OutputStore.at(output_path).read_whole(RECORDINGS)
    if not recordings.num_rows:
        return [f"no committed rows under {output_path}/recordings/"]
    columns = ["audio_filepath", "target_lang", "language", "wer", "text", "reference_text", "conversation", "error"]
    rows = [[r[c] for c in columns] for r in recordings.sort_by("line").select(columns).to_pylist()]
    lines: list[str] = []
    for path, target, language, wer, text, reference, conversation, error in rows:
        lines.append(f"{path}  (asked: {target}, heard: {language}, WER {None if wer is None else round(wer, 3)})")
        if error:
            lines.append(f"  error: {error}")
        for turn in conversation or []:
            lines.append(f"  [{turn['start']:5.1f}-{turn['end']:5.1f} {turn['speaker']}] {turn['text']}")
        if not conversation:
            lines.append(f"  heard:     {text}")
        lines.append(f"  reference: {reference}\n")
    return lines


if __name__ == "__main__":
    sys.exit(main())
