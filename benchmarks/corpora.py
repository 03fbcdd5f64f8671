"""Corpora as ML teams keep them, with the model taken out of the picture (`benchmarks.adapters:ZeroCost`).

    python -m benchmarks.corpora packed --clips 20000 --shards 20     # tar shards and Parquet vs loose files
    python -m benchmarks.corpora slices --files 10 --minutes 10 --utterances 1000   # bytes read for offset slices
    python -m benchmarks.corpora shard-driver --shards 1000 --members 1000          # driver peak RSS

- packed: the clips of `benchmarks.machinery` (2-6 s, 8 kHz mu-law WAV), packed into `--shards` WebDataset shards
  (`webdataset.TarWriter`, `key.wav` + `key.json` with the duration) and into as many Parquet files in the Hugging
  Face layout (`audio: struct<bytes, path>`, `text`, `duration`; pyarrow, row groups of 1,000). Baseline: the
  decode-only pool of `benchmarks.machinery` over the same clips as loose files, and the same job over the loose files
  (their manifest), in the same run. Each job is a whole process.
- slices: `--files` recordings of `--minutes` minutes (16 kHz 16-bit WAV, and the same as FLAC), `--utterances`
  random 2-6 s slices of them (NeMo `offset`/`duration` lines). Each slice is decoded as the decode stage decodes it
  (`stream_audio` with the slice's offset and duration) through a counting file: bytes read by the decoder against
  the slices' own bytes (duration x the file's bytes per second). Then the job over the WAV slices, against the
  decode-only pool over the same slices cut out as loose files.
- shard-driver: `--shards` sharded manifests of `--members` lines each, naming members of shards that do not exist
  (every line is a fast error row: the machinery alone), through the job to the end: driver peak RSS.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks.common import machine
from benchmarks.machinery import ROOT, decode_pool, make_clips, peak_mib, run_job


def pack(folder: Path, clips: Path, count: int, shards: int) -> tuple[str, str]:
    """The clips as `shards` WebDataset shards and as many Parquet files (reused when already there)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    entries = [json.loads(line) for line in (clips / f"manifest-{count}.jsonl").read_text().splitlines()]
    per = -(-count // shards)
    for s in range(shards):
        part = entries[s * per:(s + 1) * per]
        tar, table = folder / f"shard-{s:03d}.tar", folder / f"train-{s:05d}-of-{shards:05d}.parquet"
        if not tar.exists():
            with wds.TarWriter(str(tar)) as writer:
                for e in part:
                    writer.write({"__key__": Path(e["audio_filepath"]).stem,
                                  "wav": (clips / e["audio_filepath"]).read_bytes(),
                                  "json": {"duration": e["duration"]}})
        if not table.exists():
            audio = [{"bytes": (clips / e["audio_filepath"]).read_bytes(), "path": e["audio_filepath"]} for e in part]
            pq.write_table(pa.table({"audio": audio, "text": [""] * len(part),
                                     "duration": [e["duration"] for e in part]}), table, row_group_size=1000)
    return (f"{folder}/shard-{{000..{shards - 1:03d}}}.tar", f"{folder}/train-*-of-{shards:05d}.parquet")


def packed(args) -> dict:
    clips = Path(args.data) / "clips"
    manifest, audio = make_clips(clips, args.clips)
    tars, tables = pack(Path(args.data) / f"packed-{args.clips}-{args.shards}", clips, args.clips, args.shards)
    workers = os.cpu_count() or 2
    pool = decode_pool(clips, args.clips, workers)
    result = {"benchmark": "packed", "clips": args.clips, "shards": args.shards, "audio_seconds": round(audio, 1),
              "decode_pool_workers": workers, "decode_pool_seconds": round(pool, 1)}
    # The same job over the same clips as loose files (a manifest), in the same run: what the layout itself costs.
    for name, inputs in (("loose", manifest), ("webdataset", tars), ("parquet", tables)):
        with tempfile.TemporaryDirectory() as tmp:
            seconds, output = run_job(inputs, Path(tmp) / "out", "ZeroCost", args.extra)
        result.update({f"{name}_job_seconds": round(seconds, 1), f"{name}_vs_pool": round(pool / seconds, 3),
                       f"{name}_driver_peak_rss_mib": peak_mib(output)})
    result["machine"] = machine()
    return result


class Counting(io.RawIOBase):
    """A binary file (an open file, a BytesIO) whose reads are counted: the bytes handed to the decoder."""

    def __init__(self, handle) -> None:
        self._file = handle
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readinto(self, buffer) -> int:
        n = self._file.readinto(buffer)
        self.read_bytes += n
        return n

    def close(self) -> None:
        self._file.close()
        super().close()


def make_long(folder: Path, files: int, minutes: float) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in range(files):
        wav = folder / f"long-{f:02d}.wav"
        if not wav.exists():
            rng = np.random.default_rng(f)
            t = np.arange(int(minutes * 60 * 16000)) / 16000
            x = (0.3 * np.sin(2 * np.pi * (150 + 10 * f) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.7 * t))
                 + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
            sf.write(wav, x, 16000, subtype="PCM_16")
            sf.write(wav.with_suffix(".flac"), x, 16000, subtype="PCM_16")
        paths.append(wav)
    return paths


def slices(args) -> dict:
    from pipeline.audio import stream_audio

    folder = Path(args.data) / f"long-{args.files}x{args.minutes:g}"
    paths = make_long(folder, args.files, args.minutes)
    rng = random.Random(0)
    lines = []
    for _ in range(args.utterances):
        path = rng.choice(paths)
        duration = round(rng.uniform(2.0, 6.0), 3)
        offset = round(rng.uniform(0.0, args.minutes * 60 - duration), 3)
        lines.append({"audio_filepath": path.name, "offset": offset, "duration": duration})
    manifest = folder / f"slices-{args.utterances}.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    result = {"benchmark": "slices", "files": args.files, "minutes": args.minutes, "utterances": args.utterances,
              "slice_seconds": round(sum(x["duration"] for x in lines), 1)}
    for ext in ("wav", "flac"):
        read = wanted = 0
        for line in lines:
            path = folder / Path(line["audio_filepath"]).with_suffix(f".{ext}").name
            counting = Counting(open(path, "rb"))  # noqa: SIM115 - closed by Counting.close()
            _, blocks = stream_audio(counting, offset=line["offset"], duration=line["duration"])
            decoded = sum(b.shape[1] for b in blocks)
            assert abs(decoded - round(line["duration"] * 16000)) <= 1
            read += counting.read_bytes
            wanted += path.stat().st_size * line["duration"] / (args.minutes * 60)
            counting.close()
        result[f"{ext}_bytes_read_vs_slices"] = round(read / wanted, 3)
        result[f"{ext}_bytes_read_mib"] = round(read / 2**20, 1)
    # The job over the slices, against the decode-only pool over the same slices as loose files.
    loose = folder / f"loose-{args.utterances}"
    loose.mkdir(exist_ok=True)
    for i, line in enumerate(lines):
        target = loose / f"clip-{i:06d}.wav"
        if not target.exists():
            with sf.SoundFile(folder / line["audio_filepath"]) as f:
                f.seek(int(round(line["offset"] * 16000)))
                sf.write(target, f.read(int(round(line["duration"] * 16000)), dtype="int16"), 16000,
                         subtype="PCM_16")
    workers = os.cpu_count() or 2
    pool = decode_pool(loose, args.utterances, workers)
    with tempfile.TemporaryDirectory() as tmp:
        seconds, output = run_job(manifest, Path(tmp) / "out", "ZeroCost", args.extra)
    result.update({"decode_pool_loose_seconds": round(pool, 1), "job_seconds": round(seconds, 1),
                   "job_vs_pool": round(pool / seconds, 3), "machine": machine()})
    return result


def shard_driver(args) -> dict:
    root = Path(args.data) / f"shard-driver-{args.shards}x{args.members}"
    manifests = root / "sharded_manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    for s in range(args.shards):
        path = manifests / f"manifest_{s}.json"
        if not path.exists():
            with path.open("w") as handle:
                for i in range(args.members):
                    handle.write(json.dumps({"audio_filepath": f"utt-{s}-{i}.wav", "duration": 3.0, "shard_id": s,
                                             "text": "no audio"}) + "\n")
    last = args.shards - 1
    with tempfile.TemporaryDirectory() as tmp:
        seconds, output = run_job(f"{manifests}/manifest__OP_0..{last}_CL_.json", Path(tmp) / "out", "ZeroCost",
                                  [f"tarred_audio_filepaths={root}/audio__OP_0..{last}_CL_.tar", *args.extra])
    return {"benchmark": "shard-driver", "shards": args.shards, "members": args.members,
            "rows": args.shards * args.members, "job_seconds": round(seconds, 1),
            "driver_peak_rss_mib": peak_mib(output), "machine": machine()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=["packed", "slices", "shard-driver"])
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--utterances", type=int, default=1000)
    parser.add_argument("--data", default=str(ROOT / "build" / "bench"))
    parser.add_argument("extra", nargs="*", help="key=value settings for the job")
    args = parser.parse_args(argv)
    result = {"packed": packed, "slices": slices, "shard-driver": shard_driver}[args.benchmark](args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
