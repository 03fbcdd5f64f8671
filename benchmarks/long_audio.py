"""Peak worker memory and throughput: one 1-hour recording against the same audio as 60 one-minute files; or, with
`--hours`, one recording of each length (8 kHz mu-law, as call archives keep them), each role's peak RSS side by side.

    python -m benchmarks.long_audio [--minutes 60]
    setsid python -m benchmarks.long_audio --hours 1 3   # the inference actor's, decode tasks', piece store's peak RSS

The recording is speech-like bursts with pauses (16 kHz FLAC). Both runs use the same job, model and settings, in
one process on an embedded local Ray. Memory is the peak RSS of any single Ray worker process (decode tasks and the
inference actor), sampled every 100 ms. The model is the tiny one with a raised blank bias (it emits few tokens, so
the figure is about the pipeline's audio handling, not about greedy decoding of a random model).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks.common import WorkerMemory, machine


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    x = 0.001 * rng.standard_normal(n).astype(np.float32)
    t = 0.3
    while t < seconds:
        dur = rng.uniform(2.0, 9.0)
        a, b = int(t * 16000), min(n, int((t + dur) * 16000))
        k = np.arange(b - a) / 16000
        x[a:b] += (0.25 * np.sin(2 * np.pi * rng.uniform(120, 300) * k) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * k))
                   + 0.03 * rng.standard_normal(b - a)).astype(np.float32)
        t += dur + rng.uniform(0.3, 1.5)
    return x


def run_job(model: str, manifest: Path, out: Path) -> tuple[float, float, int]:
    from jobs.cluster import connect_ray
    from jobs.transcribe import plan, run

    p = plan([f"model_path={model}", f"dataset_manifest={manifest}", f"output_path={out}", "target_lang=en-US"])
    connect_ray(p.spec.compute.ray_address)
    with WorkerMemory() as memory:
        summary = run(p)
    assert summary.failed_rows == 0, summary
    return summary.wall_seconds, memory.peak_worker_mib, summary.segments


def by_role(peaks: dict[str, float]) -> dict[str, float]:
    """Peak memory (MiB) of the inference actor, of the decode tasks and of the piece store, from the workers'
    commands."""
    roles = {"inference_actor": 0.0, "decode_task": 0.0, "piece_store": 0.0}
    for command, mib in peaks.items():
        role = "inference_actor" if "TranscriptionActor" in command else "decode_task" if "decode_block" in command \
            else "piece_store" if "PieceStore" in command else None
        if role:
            roles[role] = max(roles[role], round(mib))
    return roles


def compare_lengths(model: str, work: Path, hours: list[float]) -> dict:
    """One recording per length through the same job; each role's peak RSS, and each length's over the first."""
    from jobs.cluster import connect_ray
    from jobs.transcribe import plan, run

    results = {}
    for h in hours:
        path = work / f"call-{h:g}h.wav"
        with sf.SoundFile(path, "w", samplerate=8000, channels=1, subtype="ULAW") as out:
            for minute in range(int(h * 60)):  # written a minute at a time: the benchmark holds no hour either
                out.write(soxr_down(speech_like(60.0, seed=minute)))
        manifest = work / f"call-{h:g}h.jsonl"
        manifest.write_text(json.dumps({"audio_filepath": str(path)}) + "\n")
        p = plan([f"model_path={model}", f"dataset_manifest={manifest}", f"output_path={work / f'out-{h:g}h'}",
                  "target_lang=en-US", "segmenting.method=energy"])
        connect_ray(p.spec.compute.ray_address)
        # Only this benchmark's workers (its embedded Ray stays in its session: run it under `setsid`).
        with WorkerMemory(session=os.getsid(0)) as memory:
            summary = run(p)
        assert summary.failed_rows == 0, summary
        results[f"{h:g}h"] = {"wall_s": round(summary.wall_seconds, 1), "segments": summary.segments,
                              "pieced_rows": summary.pieced_rows,
                              "peak_rss_mib": by_role(memory.peak_by_command_mib),
                              # its own heap: without the object store's pages it touched (benchmarks.common)
                              "peak_private_mib": by_role(memory.peak_private_by_command_mib),
                              "peak_parts_mib": {part: by_role({c: p[part] for c, p in
                                                                memory.peak_parts_by_command_mib.items()})
                                                 for part in ("RssAnon", "RssFile", "RssShmem")}}
    for measure in ("peak_rss_mib", "peak_private_mib"):
        first = results[f"{hours[0]:g}h"][measure]
        for result in results.values():
            result[measure.replace("_mib", "_over_first")] = {
                role: round(mib / first[role], 3) if first[role] else None for role, mib in result[measure].items()}
    return results


def soxr_down(x: np.ndarray) -> np.ndarray:
    import soxr

    return soxr.resample(x, 16000, 8000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--hours", type=float, nargs="+", help="compare one recording of each length instead")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from pipeline.models.tiny import TinyModelSpec, build_checkpoint

    work = Path(tempfile.mkdtemp(prefix="bench-long-"))
    model = str(build_checkpoint(work / "tiny.nemo", TinyModelSpec(blank_bias=0.18, tag_bias=-1.0, seed=4)))
    if args.hours:
        print(json.dumps({"machine": machine(), "lengths": compare_lengths(model, work, args.hours)}, indent=2))
        return
    audio = speech_like(args.minutes * 60.0)
    sf.write(work / "long.flac", audio, 16000, format="FLAC")
    (work / "long.jsonl").write_text(json.dumps({"audio_filepath": str(work / "long.flac")}) + "\n")
    lines = []
    for i in range(args.minutes):
        path = work / f"minute-{i:03d}.flac"
        sf.write(path, audio[i * 960_000:(i + 1) * 960_000], 16000, format="FLAC")
        lines.append(json.dumps({"audio_filepath": str(path)}))
    (work / "minutes.jsonl").write_text("\n".join(lines) + "\n")
    del audio

    # Warm-up run so both measured runs find the actor pool's code and NeMo cached on disk.
    run_job(model, work / "minutes.jsonl", work / "warmup")
    minutes_s, minutes_mib, minutes_segments = run_job(model, work / "minutes.jsonl", work / "out-minutes")
    long_s, long_mib, long_segments = run_job(model, work / "long.jsonl", work / "out-long")
    audio_s = args.minutes * 60.0
    print(json.dumps({
        "machine": machine(),
        "audio_seconds": audio_s,
        "one_recording": {"wall_s": round(long_s, 1), "audio_s_per_s": round(audio_s / long_s, 1),
                          "peak_worker_rss_mib": round(long_mib), "segments": long_segments},
        "one_minute_files": {"wall_s": round(minutes_s, 1), "audio_s_per_s": round(audio_s / minutes_s, 1),
                             "peak_worker_rss_mib": round(minutes_mib), "segments": minutes_segments},
        "decoded_recording_mib_if_held_whole": round(audio_s * 16000 * 4 / 2**20),
        "throughput_ratio_long_over_minutes": round(minutes_s / long_s, 3),
        "peak_rss_ratio_long_over_minutes": round(long_mib / minutes_mib, 3),
    }, indent=2))


if __name__ == "__main__":
    main()
