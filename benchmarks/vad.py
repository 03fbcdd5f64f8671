"""Energy rule against the VAD on generated noisy calls (`benchmarks/noisy_calls.py`), side by side.

    python -m benchmarks.vad --calls 4 --seconds 180

For each method, over the calls as 16 kHz FLAC and as 8 kHz mu-law WAV (decoded and resampled by the job's own
decoder):
- speech recall: share of the true speech seconds inside the segments sent to the model;
- non-speech sent: share of all non-speech seconds inside the segments;
- words cut: sounding stretches (words, or words run together) that reach into a segment but are whole in none;
- segmenter speed: audio seconds per CPU second of `segment_stream` alone (one thread, the model loaded and warm),
  and the CPU cores per GPU that makes at the README's assumed model speed (3,400x real time per GPU);
- through the whole job with the demo model (`models/demo-callcentre.nemo`, en-US, word timestamps): words written
  more than 0.5 s away from any utterance (on music, tones, noise or silence), and the WER against the utterances.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.noisy_calls import RATE, SegmentScore, make_call, score_segments, words_off_speech, write_call

ROOT = Path(__file__).resolve().parents[1]
GPU_RTFX = 3400.0  # README "Decoding and resampling": parakeet-class model speed on one A100, model time only
METHODS = ("energy", "vad")


def decoded(path: Path) -> np.ndarray:
    """The file as the job's decoder gives it: 16 kHz float32 mono."""
    from pipeline.audio import stream_audio

    with open(path, "rb") as handle:
        _, blocks = stream_audio(handle, target_sample_rate=RATE)
        return np.concatenate([b.mean(axis=0) for b in blocks]).astype(np.float32)


def segment_speed(audio: list[np.ndarray], method: str) -> float:
    """Audio seconds per CPU second of segment_stream over the recordings (10 s blocks, as the decoder yields)."""
    import torch

    from pipeline.segmenter import SegmentPolicy, segment_stream

    policy = SegmentPolicy(method=method)
    torch.set_num_threads(1)
    list(segment_stream(iter([audio[0][: 60 * RATE]]), RATE, policy))  # load and warm the model once
    started = time.process_time()
    for x in audio:
        for _ in segment_stream((x[i:i + 10 * RATE] for i in range(0, x.size, 10 * RATE)), RATE, policy):
            pass
    return sum(x.size for x in audio) / RATE / (time.process_time() - started)


def segments_of(x: np.ndarray, method: str) -> list[tuple[float, float]]:
    from pipeline.segmenter import SegmentPolicy, segment_stream

    blocks = (x[i:i + 10 * RATE] for i in range(0, x.size, 10 * RATE))
    return [(s.start, s.end) for s in segment_stream(blocks, RATE, SegmentPolicy(method=method))]


def run_job(manifest: Path, out: Path, method: str) -> None:
    from jobs.transcribe import main

    code = main([f"model_path={ROOT / 'models' / 'demo-callcentre.nemo'}", f"dataset_manifest={manifest}",
                 f"output_path={out}", "target_lang=en-US", "timestamps=true", f"segmenting.method={method}"])
    if code != 0:
        raise SystemExit(f"job failed ({code})")


def job_figures(calls, files: dict, out: Path) -> dict:
    import duckdb

    rec = duckdb.sql(f"select audio_filepath, speech_seconds, duration, word_errors, ref_words, error "
                     f"from read_parquet('{out}/recordings/*.parquet')").fetchall()
    segs = duckdb.sql(f"select r.audio_filepath, s.start, s.\"end\", s.words from read_parquet('{out}/segments/*.parquet') s "
                      f"join read_parquet('{out}/recordings/*.parquet') r using (row_id)").fetchall()
    by_path = {str(p): c for c in calls for p in (files[c.name]["flac"], files[c.name]["ulaw"])}
    assert all(r[5] is None for r in rec), [r[5] for r in rec if r[5]]
    errors = sum(r[3] for r in rec)
    ref = sum(r[4] for r in rec)
    off, sent = 0, {}
    words_total = 0
    for path, start, end, words in segs:
        words = [(w["start"], w["end"]) for w in (words or [])]
        words_total += len(words)
        off += words_off_speech(by_path[path], 0, words)
        sent.setdefault(path, []).append((start, end))
    return {"wer": errors / ref, "words_written": words_total, "words_off_speech": off,
            "speech_seconds_sent": sum(r[1] for r in rec), "audio_seconds": sum(r[2] for r in rec), "sent": sent}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--no-job", action="store_true", help="segmenter figures only (no Ray, no model)")
    args = parser.parse_args(argv)

    from benchmarks.machinery import machine

    calls = [make_call(args.seed + i, args.seconds) for i in range(args.calls)]
    result: dict = {"calls": args.calls, "audio_seconds_per_version": round(sum(c.seconds for c in calls), 1),
                    "speech_seconds": round(sum(u.end - u.start for c in calls for u in c.utterances), 1),
                    "gpu_rtfx_assumed": GPU_RTFX, "machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = {c.name: write_call(c, folder / "audio") for c in calls}
        manifest = folder / "manifest.jsonl"
        manifest.write_text("".join(json.dumps({"audio_filepath": str(files[c.name][v]), "text": c.text()}) + "\n"
                                    for c in calls for v in ("flac", "ulaw")))
        audio = {v: [decoded(files[c.name][v]) for c in calls] for v in ("flac", "ulaw")}
        for method in METHODS:
            row: dict = {}
            speed = segment_speed(audio["flac"], method)
            row["segmenter_audio_seconds_per_cpu_second"] = round(speed, 1)
            row["segmenter_cores_per_gpu"] = round(GPU_RTFX / speed, 2)
            if args.no_job:
                figures = {"sent": {str(files[c.name][v]): segments_of(x, method)
                                    for v in ("flac", "ulaw") for c, x in zip(calls, audio[v])}}
            else:
                out = folder / f"out-{method}"
                started = time.monotonic()
                run_job(manifest, out, method)
                row["job_seconds"] = round(time.monotonic() - started, 1)
                figures = job_figures(calls, files, out)
            for version in ("flac", "ulaw"):
                total = None
                for c in calls:
                    s = score_segments(c, 0, figures["sent"].get(str(files[c.name][version]), []))
                    total = s if total is None else total + s
                assert isinstance(total, SegmentScore)
                row[f"{version}_speech_recall"] = round(total.speech_kept / total.speech_seconds, 4)
                row[f"{version}_nonspeech_sent"] = round(total.nonspeech_sent / total.nonspeech_seconds, 4)
                row[f"{version}_words_cut"] = total.words_cut
                row[f"{version}_words_missed"] = total.words_missed
                row["words"] = total.words
            if not args.no_job:
                row.update(wer=round(figures["wer"], 4), words_written=figures["words_written"],
                           words_off_speech=figures["words_off_speech"],
                           sent_share_of_audio=round(figures["speech_seconds_sent"] / figures["audio_seconds"], 4))
            result[method] = row
            print(json.dumps({method: row}), file=sys.stderr)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
