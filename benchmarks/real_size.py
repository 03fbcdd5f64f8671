"""The real job with a model of the released size, on CPU, through an S3 server: memory, load time, throughput.

    python -m benchmarks.real_size [--clips 6] [--seconds 20] [--blank-bias 0.22] [--work DIR] [--keep]

Needs about 10 GB of free memory and 12 GB of disk. What it does:
1. builds the released configuration at full size with random weights (`TinyModelSpec.real_size()`, 637,997,088
   parameters) and writes the .nemo (float32, ~2.5 GB), in a process of its own. A raised blank logit
   (`--blank-bias`) keeps greedy decoding about as sparse as a trained model's (a random joint otherwise emits up to
   10 tokens per frame);
2. starts a moto S3 server (in this process) and uploads the model, `--clips` speech-like FLAC clips and a manifest
   (moto itself needs about twice the object in memory to complete a multipart upload, and holds a whole object in
   memory to serve a GET: the `s3_server_and_benchmark` figures are moto's, not the job's);
3. times what an inference actor does to load the model, in a separate process: the copy from S3 into an empty node
   cache (`connectors.model_store.localize`), then `NemotronRNNT(...)` (NeMo's restore_from);
4. starts a one-node Ray cluster (`ray start --head` in its own process session, 4 logical CPUs, 2 GB object store);
5. runs the job as users do, `python -m jobs.transcribe model_path=s3://... compute.ray_address=...
   compute.model_threads=2` in a subprocess, with another empty node cache (so the job copies the 2.5 GB file again:
   on one node the driver copies it to read its config and the actor finds the copy), while sampling every 0.2 s
   the RSS of each Ray worker of that cluster (the actor: `ray::MapWorker(MapBatches(TranscriptionActor))`), of the
   driver, of this process (the S3 server), and every second the object store's bytes in use and spilled (the
   raylet's GetNodeStats, as `ray memory` shows them).
The output is one JSON document. Not a test: nothing is asserted beyond the job's success.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import soundfile as sf

from benchmarks.common import WorkerMemory, _rss_kib, machine
from benchmarks.long_audio import speech_like

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
KEY, SECRET = "bench-access-key", "bench-secret-key"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def mib(n_bytes: float) -> int:
    return round(n_bytes / 2**20)


class Peaks:
    """Samples, every `interval` s, the RSS of given pids; and, given a cluster's address, every second its object
    store (bytes used, spilled)."""

    def __init__(self, pids: dict[str, int], gcs_address: str | None, interval: float = 0.2):
        self.pids = pids
        self.gcs_address = gcs_address
        self.interval = interval
        self.rss_mib: dict[str, float] = {name: 0.0 for name in pids}
        self.store_used_mib = 0.0
        self.store_spilled_mib = 0.0
        self.store_samples = 0
        self.store_errors: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _store(self):
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        state = get_state_from_address(self.gcs_address)
        while not self._stop.is_set():
            try:
                stats = get_memory_info_reply(state).store_stats
                self.store_used_mib = max(self.store_used_mib, stats.object_store_bytes_used / 2**20)
                self.store_spilled_mib = max(self.store_spilled_mib, stats.spilled_bytes_total / 2**20)
                self.store_samples += 1
            except Exception as error:  # noqa: BLE001 - a sample lost is counted and reported, not fatal
                key = f"{type(error).__name__}: {error}"
                self.store_errors[key] = self.store_errors.get(key, 0) + 1
            self._stop.wait(1.0)

    def _run(self) -> None:
        store = threading.Thread(target=self._store, daemon=True)
        if self.gcs_address:
            store.start()
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                self.rss_mib[name] = max(self.rss_mib[name], _rss_kib(pid) / 1024)
            time.sleep(self.interval)
        if self.gcs_address:
            store.join(timeout=5)

    def __enter__(self) -> "Peaks":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


LOAD_SCRIPT = """
import json, sys, time
started = time.monotonic()
import nemo.collections.asr
from connectors.model_store import localize
from pipeline.models.base import ModelSettings
from pipeline.models.nemo_rnnt import NemotronRNNT
imported = time.monotonic()
local = localize(sys.argv[1])
copied = time.monotonic()
adapter = NemotronRNNT(ModelSettings(model_path=local, device="cpu", threads=1))
loaded = time.monotonic()
# VmHWM: this process's own peak (ru_maxrss would also count the parent's RSS at fork time)
peak = int(next(x for x in open("/proc/self/status") if x.startswith("VmHWM:")).split()[1]) / 1024
rss = int(next(x for x in open("/proc/self/status") if x.startswith("VmRSS:")).split()[1]) / 1024
print("RESULT " + json.dumps({"import_nemo_s": round(imported - started, 1), "copy_s": round(copied - imported, 1),
      "restore_s": round(loaded - copied, 1), "peak_rss_mib": round(peak), "rss_after_load_mib": round(rss),
      "parameters": sum(p.numel() for p in adapter.model.parameters())}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each clip")
    # Measured on the full-size random model (one 20 s clip, auto prompt, [56,13]): blank bias 0.19 gives 9.4
    # tokens per second, 0.20 47, 0.21 3.3, 0.22 4.8, 0.24 none (not monotonic: the decoder's state feeds back).
    # 0.22 is about a trained model's rate (a few tokens per second of speech).
    parser.add_argument("--blank-bias", type=float, default=0.22)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--work", help="working folder (default: a new one under /tmp, removed at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    parser.add_argument("--tiny", action="store_true", help="the tiny model instead: a quick check of the plumbing")
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer
    import s3fs

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-real-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"machine": machine(), "clips": args.clips, "clip_seconds": args.seconds,
                    "blank_bias": args.blank_bias, "batch_size": args.batch_size}
    head = None
    server = None
    temp_dir = None
    try:
        # Built in its own process: a NeMo model is freed only by the garbage collector (reference cycles), and this
        # process should hold nothing but the S3 server.
        started = time.monotonic()
        model_file = work / "real-size.nemo"
        subprocess.run([sys.executable, "-m", "pipeline.models.tiny", str(model_file), "--blank-bias",
                        str(args.blank_bias), *([] if args.tiny else ["--real-size"])],
                       cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, capture_output=True)
        result["build_and_save_s"] = round(time.monotonic() - started, 1)
        result["nemo_mib"] = mib(model_file.stat().st_size)

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request otherwise
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        endpoint = f"http://127.0.0.1:{port}"
        env_s3 = dict(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET,
                      AWS_DEFAULT_REGION="us-east-1")
        # moto assembles a multipart upload in memory when it completes (about twice the object for a while); with
        # botocore's default 60 s read timeout the client gives up on that call, retries it, and moto answers that
        # the upload no longer exists. So: few large parts and a long read timeout.
        fs = s3fs.S3FileSystem(key=KEY, secret=SECRET, endpoint_url=endpoint,
                               config_kwargs={"read_timeout": 1800, "connect_timeout": 60})
        fs.mkdir("bench")
        started = time.monotonic()
        with Peaks({"s3_server_and_benchmark": os.getpid()}, None) as upload:
            fs.put_file(str(model_file), "bench/models/real-size.nemo", chunksize=512 * 2**20, max_concurrency=1)
        result["upload_s"] = round(time.monotonic() - started, 1)
        result["upload_peak_rss_mib"] = {"s3_server_and_benchmark": round(upload.rss_mib["s3_server_and_benchmark"])}
        model_file.unlink()  # from here on the model exists only in the S3 server (on its disk spool)
        lines = []
        for i in range(args.clips):
            path = work / f"clip-{i:02d}.flac"
            sf.write(path, speech_like(args.seconds, seed=i), 16000, format="FLAC")
            fs.put(str(path), f"bench/data/audio/{path.name}")
            lines.append(json.dumps({"audio_filepath": f"audio/{path.name}"}))
        fs.pipe("bench/data/manifest.jsonl", ("\n".join(lines) + "\n").encode())
        model_url = "s3://bench/models/real-size.nemo"

        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
        env.update(env_s3, PYTHONPATH=str(REPO), RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
                   PYTHONUNBUFFERED="1")

        # What an actor does to load the model, alone and timed (its own empty cache).
        load = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, model_url], cwd=REPO, capture_output=True,
                              text=True, env={**env, "NEMOTRON_BATCH_CACHE": str(work / "cache-load")})
        if load.returncode:
            raise RuntimeError(load.stderr[-3000:])
        result["load"] = json.loads(next(x for x in load.stdout.splitlines() if x.startswith("RESULT "))[7:])
        shutil.rmtree(work / "cache-load", ignore_errors=True)

        gcs_port = free_port()
        temp_dir = tempfile.mkdtemp(prefix="rb", dir="/tmp")
        env_ray = {**env, "NEMOTRON_BATCH_CACHE": str(work / "cache-job")}
        env_ray.pop("RAY_TMPDIR", None)
        head = subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats", f"--port={gcs_port}",
             "--num-cpus=4", f"--object-store-memory={2 * 2**30}", "--include-dashboard=false",
             f"--temp-dir={temp_dir}", f"--ray-client-server-port={free_port()}",
             f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
             f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"],
            env=env_ray, stdout=(work / "ray.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        address = f"127.0.0.1:{gcs_port}"
        deadline = time.monotonic() + 120
        while subprocess.run([str(BIN / "ray"), "status", f"--address={address}"], env=env_ray,
                             capture_output=True).returncode:
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((work / "ray.log").read_text()[-3000:])
            time.sleep(2)

        out = work / "out"
        command = [sys.executable, "-m", "jobs.transcribe", f"model_path={model_url}",
                   "dataset_manifest=s3://bench/data/manifest.jsonl", f"output_path={out}",
                   f"compute.ray_address={address}", f"batch_size={args.batch_size}", "strip_lang_tags=false",
                   "compute.model_threads=2"]
        started = time.monotonic()
        driver = subprocess.Popen(command, cwd=REPO, env=env_ray, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        with WorkerMemory(interval=0.2, session=head.pid) as workers, \
                Peaks({"driver": driver.pid, "s3_server_and_benchmark": os.getpid()}, address) as peaks:
            log, _ = driver.communicate()
        wall = time.monotonic() - started
        (work / "job.log").write_text(log)
        if driver.returncode:
            raise RuntimeError(f"job failed ({driver.returncode}):\n{log[-4000:]}")
        record = json.loads(next((out / "runs").glob("*.json")).read_text())
        summary = record["summary"]
        import duckdb

        texts = duckdb.sql(f"select coalesce(sum(length(raw_text)), 0) from '{out}/segments/*.parquet'")
        texts = texts.fetchall()[0][0]

        result["job"] = {
            "wall_s_process": round(wall, 1), "wall_s_job": round(summary["wall_seconds"], 1),
            "audio_s": round(summary["audio_seconds"], 1), "rows": summary["rows"],
            "failed_rows": summary["failed_rows"], "segments": summary["segments"],
            "audio_s_per_s": round(summary["audio_seconds"] / summary["wall_seconds"], 2),
            "audio_s_per_s_after_load": round(summary["audio_seconds"] / max(
                1e-9, summary["wall_seconds"] - result["load"]["copy_s"] - result["load"]["restore_s"]), 2),
            "raw_text_chars_per_audio_s": round(texts / summary["audio_seconds"], 2),
            "peak_rss_mib": {"actor": round(max([v for k, v in workers.peak_by_command_mib.items()
                                                 if "TranscriptionActor" in k], default=0)),
                             "actor_last_sample": round(max([v for k, v in workers.last_by_command_mib.items()
                                                             if "TranscriptionActor" in k], default=0)),
                             "any_worker": round(workers.peak_worker_mib),
                             "all_workers": round(workers.peak_total_mib),
                             "by_command": {k: round(v) for k, v in sorted(workers.peak_by_command_mib.items())},
                             "driver": round(peaks.rss_mib["driver"]),
                             "s3_server_and_benchmark": round(peaks.rss_mib["s3_server_and_benchmark"])},
            "object_store_peak_used_mib": round(peaks.store_used_mib),
            "object_store_peak_spilled_mib": round(peaks.store_spilled_mib),
            "object_store_samples": peaks.store_samples,
            "object_store_failed_samples": peaks.store_errors,
        }
        result["benchmark_process_peak_rss_mib"] = round(_hwm_kib(os.getpid()) / 1024)
    finally:
        if head is not None:  # the whole session: `ray start`, GCS, raylet, workers
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(head.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    head.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
                time.sleep(2)
        if server is not None:
            server.stop()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
