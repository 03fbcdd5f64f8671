"""The job's own machinery, with the model taken out of the picture: whole processes, start-up included.

    python -m benchmarks.machinery zero-cost  --clips 20000        # the job vs decoding the same files in a pool
    python -m benchmarks.machinery simulated  --clips 15000 --rtfx 200   # how busy a simulated accelerator is
    python -m benchmarks.machinery driver-memory --rows 1000000 --files 100   # driver peak RSS vs manifest rows
    python -m benchmarks.machinery many-manifests --clips 20000    # N one-line manifests vs one manifest of N lines

- zero-cost: N clips of 2-6 s, 8 kHz mu-law WAV (call-centre audio). The baseline decodes and resamples every file
  with the project's own `decode_recording` (fetch, decode, 16 kHz, cut, 16-bit) in a process pool as large as the
  machine's cores, built in each of the ways of POOLS; the fastest in this run is the baseline. The job runs
  `python -m jobs.transcribe` with `benchmarks.adapters:ZeroCost` (an adapter that answers at once). All are timed as
  whole processes (interpreter, imports, Ray, everything), wall seconds and CPU seconds of every process they start
  (`benchmarks.common.SessionCpu`), the latter per audio hour, and the job's CPU seconds per process role (the
  driver, each of Ray's own processes, each worker by the tasks and actors it ran).
- simulated: the same clips through `benchmarks.adapters:SimulatedAccelerator`, which sleeps padded seconds / rtfx
  per batch, leaving the CPUs free, and logs each batch. Busy fraction = summed batch time over (a) the whole job's
  wall time, (b) the time from its first call's start to its last call's end.
- many-manifests: the zero-cost job over the clips as one manifest, then as one one-line manifest per clip (as
  archives that arrive one manifest per call keep them), whole processes; the ratio of the two.
- driver-memory: manifests of N rows (in `--files` files) whose audio does not exist (every row is a fast fetch
  error, so the run is the machinery alone), run to the end; the driver's peak RSS (getrusage) is reported.

Ratios are taken within one run of this script; absolute times vary with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks.adapters import busy_log_lines
from benchmarks.common import SessionCpu, machine

ROOT = Path(__file__).resolve().parent.parent


def make_clips(folder: Path, count: int, seed: int = 0) -> tuple[Path, float]:
    """`count` clips of 2-6 s, 8 kHz mu-law WAV (reused when already there), and their manifest with durations."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / f"manifest-{count}.jsonl"
    rng = random.Random(seed)
    lines, total = [], 0.0
    for i in range(count):
        seconds = round(rng.uniform(2.0, 6.0), 3)
        pitch = rng.uniform(120, 300)  # drawn for a reused clip too, so the durations stay those of the files
        path = folder / f"clip-{i:06d}.wav"
        if not path.exists():
            t = np.arange(int(seconds * 8000)) / 8000
            x = 0.3 * np.sin(2 * np.pi * pitch * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2.5 * t))
            x += 0.02 * np.random.default_rng(i).standard_normal(len(t))
            sf.write(path, x.astype(np.float32), 8000, subtype="ULAW")
        total += seconds
        lines.append(json.dumps({"audio_filepath": path.name, "duration": seconds}))
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, total


def _decode_one(path: str) -> float:
    from pipeline.decode import DecodeSettings, decode_recording

    row = decode_recording({"row_id": "x", "audio_url": path, "channel_mode": "mix"}, DecodeSettings())
    return row["duration"] or 0.0


def _decode_chunk(paths: list[str]) -> float:
    return sum(_decode_one(p) for p in paths)


# Plain ways to decode the same files on all cores, each a whole process. The baseline is the fastest of them in the
# same run (a slow baseline flatters the job).
POOLS = {
    "executor-map-chunks-64": "from concurrent.futures import ProcessPoolExecutor as P; pool = P({w}); "
                              "total = sum(pool.map(_decode_one, paths, chunksize=64))",
    "executor-map-chunks-16": "from concurrent.futures import ProcessPoolExecutor as P; pool = P({w}); "
                              "total = sum(pool.map(_decode_one, paths, chunksize=16))",
    "mp-imap-unordered-16": "from multiprocessing import Pool; pool = Pool({w}); "
                            "total = sum(pool.imap_unordered(_decode_one, paths, chunksize=16))",
    "executor-one-slice-per-worker": "from concurrent.futures import ProcessPoolExecutor as P; pool = P({w}); "
                                     "total = sum(pool.map(_decode_chunk, [paths[i::{w}] for i in range({w})]))",
}


def decode_pool(folder: Path, count: int, workers: int, variant: str = "executor-map-chunks-16") -> tuple[float, float]:
    """Wall and CPU seconds of a whole process decoding every clip with the project's decoder (`decode_recording`:
    fetch, decode, 16 kHz, cut, 16-bit) in a pool of `workers` processes, built as POOLS[variant] says."""
    code = ("from benchmarks.machinery import _decode_one, _decode_chunk; "
            f"paths = [r'{folder}/clip-%06d.wav' % i for i in range({count})]; "
            + POOLS[variant].format(w=workers) + "; print(total)")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL, start_new_session=True)
    meter = SessionCpu(proc.pid).start()
    if proc.wait() != 0:
        raise SystemExit(f"decode pool {variant} failed ({proc.returncode})")
    meter.stop()
    return time.monotonic() - started, meter.seconds


def run_job(manifest: Path, out: Path, adapter: str, extra: list[str], env: dict | None = None, cpu: bool = False):
    """Wall seconds of `python -m jobs.transcribe` as a whole process, and its output; with `cpu`, also the meter of
    the CPU seconds of every process the job started (its embedded Ray's, sampled from /proc) and the driver's own."""
    args = [sys.executable, "-m", "benchmarks.peak_rss", "jobs.transcribe", f"model_path=/benchmark/{adapter}",
            f"model_adapter=benchmarks.adapters:{adapter}", f"dataset_manifest={manifest}", f"output_path={out}",
            "output.progress_seconds=20", *extra]
    started = time.monotonic()
    proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "RAY_AUTH_MODE": "disabled", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    meter = SessionCpu(proc.pid).start() if cpu else None
    stdout, stderr = proc.communicate()
    seconds = time.monotonic() - started
    if meter:
        meter.stop()
    if proc.returncode != 0:
        raise SystemExit(f"job failed ({proc.returncode}):\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return (seconds, stdout + stderr, meter) if cpu else (seconds, stdout + stderr)


def peak_mib(output: str) -> float:
    return float(next(line.split()[-2] for line in output.splitlines() if line.startswith("driver peak RSS")))


def zero_cost(args) -> dict:
    folder = Path(args.data) / "clips"
    manifest, audio = make_clips(folder, args.clips)
    workers = os.cpu_count() or 2
    measured = {name: decode_pool(folder, args.clips, workers, name) for name in POOLS}
    pools = {name: round(wall, 1) for name, (wall, _) in measured.items()}
    fastest = min(pools, key=pools.get)
    with tempfile.TemporaryDirectory() as tmp:
        job, output, meter = run_job(manifest, Path(tmp) / "out", "ZeroCost", args.extra, cpu=True)
    hours, cpu = audio / 3600, meter.seconds
    return {"benchmark": "zero-cost", "clips": args.clips, "audio_seconds": round(audio, 1),
            "decode_pool_workers": workers, "decode_pool_seconds": pools, "baseline": fastest,
            "job_seconds": round(job, 1), "job_vs_fastest_pool": round(pools[fastest] / job, 3),
            "job_cpu_seconds_per_audio_hour": round(cpu / hours, 1),
            "fastest_pool_cpu_seconds_per_audio_hour": round(measured[fastest][1] / hours, 1),
            "job_audio_seconds_per_second": round(audio / job, 1),
            "driver_peak_rss_mib": peak_mib(output), "extra": args.extra,
            # Where the job's CPU went: per process role (a Ray worker by the tasks and actors it ran).
            "job_cpu_seconds_by_role": meter.by_role(), "machine": machine()}


def simulated(args) -> dict:
    folder = Path(args.data) / "clips"
    manifest, audio = make_clips(folder, args.clips)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "busy.log"
        log.touch()
        started = time.time()
        job, output = run_job(manifest, Path(tmp) / "out", "SimulatedAccelerator", args.extra,
                              env={"SIM_RTFX": str(args.rtfx), "SIM_BUSY_LOG": str(log)})
        calls = busy_log_lines(log.read_text())
    busy = sum(c.end - c.start for c in calls)
    first, last = min(c.start for c in calls), max(c.end for c in calls)
    return {"benchmark": "simulated", "clips": args.clips, "audio_seconds": round(audio, 1), "rtfx": args.rtfx,
            "accelerator_seconds": round(busy, 1), "batches": len(calls), "job_seconds": round(job, 1),
            "busy_whole_job": round(busy / job, 3), "busy_first_to_last_call": round(busy / (last - first), 3),
            "first_call_after_seconds": round(first - started, 1), "after_last_call_seconds": round(
                started + job - last, 1), "extra": args.extra, "machine": machine()}


def driver_memory(args) -> dict:
    root = Path(args.data) / f"rows-{args.rows}"
    root.mkdir(parents=True, exist_ok=True)
    per_file = args.rows // args.files
    for f in range(args.files):
        path = root / f"m-{f:04d}.jsonl"
        if not path.exists():
            with path.open("w") as handle:
                for i in range(per_file):
                    handle.write(json.dumps({"audio_filepath": f"audio/{f}-{i}.wav", "duration": 3.0,
                                             "text": "no audio", "call_id": f"c-{f}-{i}"}) + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        job, output = run_job(root / "*.jsonl", Path(tmp) / "out", "ZeroCost", args.extra)
    return {"benchmark": "driver-memory", "rows": per_file * args.files, "files": args.files,
            "job_seconds": round(job, 1), "driver_peak_rss_mib": peak_mib(output), "machine": machine()}


def many_manifests(args) -> dict:
    folder = Path(args.data) / "clips"
    manifest, audio = make_clips(folder, args.clips)
    single = folder / f"one-per-clip-{args.clips}"
    single.mkdir(exist_ok=True)
    for i, line in enumerate(manifest.read_text().splitlines()):
        entry = json.loads(line)
        entry["audio_filepath"] = f"../{entry['audio_filepath']}"
        (single / f"call-{i:06d}.jsonl").write_text(json.dumps(entry) + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        one, _ = run_job(manifest, Path(tmp) / "one", "ZeroCost", args.extra)
        many, output = run_job(single / "*.jsonl", Path(tmp) / "many", "ZeroCost", args.extra)
    return {"benchmark": "many-manifests", "clips": args.clips, "audio_seconds": round(audio, 1),
            "one_manifest_seconds": round(one, 1), "one_manifest_per_clip_seconds": round(many, 1),
            "many_over_one": round(many / one, 3), "driver_peak_rss_mib_many": peak_mib(output),
            "machine": machine()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=["zero-cost", "simulated", "driver-memory", "many-manifests"])
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--rtfx", type=float, default=200.0)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--data", default=str(ROOT / "build" / "bench"))
    parser.add_argument("extra", nargs="*", help="key=value settings for the job")
    # Intermixed: job settings may come after the options (`zero-cost --clips 20000 segmenting.method=energy`).
    args = parser.parse_intermixed_args(argv)
    result = {"zero-cost": zero_cost, "simulated": simulated, "driver-memory": driver_memory,
              "many-manifests": many_manifests}[args.benchmark](args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
