"""A recording longer than a work block travels in pieces (decoded, transcribed, put back together): the output is
the one the same job writes with every recording whole, for a mono recording, a stereo call in split mode, and a
file corrupt midway (its error row keeps the segments decoded before the damage, also those of earlier pieces).

The work block is made small (`compute.block_seconds`) so that a minute of audio is several blocks; the same job with
a block larger than every recording is the reference. `batch_size=1`, so that a segment's hypothesis cannot depend
on which segments share its batch (they differ between the two runs)."""

from __future__ import annotations

import io
import json

import duckdb
import numpy as np
import pyarrow as pa
import soundfile as sf

from jobs.transcribe import plan, run
from pipeline.decode import DecodeSettings, decode_block
from pipeline.records import SOURCE_SCHEMA, WORK_BLOCK_SCHEMA
from pipeline.segmenter import SegmentPolicy
from tests.audio_factory import bursts
from tests.jobs.jobs_helpers import write_manifest

SMALL_BLOCK = 15.0  # seconds of audio per work block: each recording here is several
SEGMENTING = ["segmenting.method=energy", "segmenting.max_seconds=8", "segmenting.min_seconds=3"]


def _corpus(folder) -> tuple:
    audio = folder / "audio"
    audio.mkdir()
    sf.write(audio / "mono.wav", bursts(100.0, [(s, s + 5.5) for s in np.arange(0.4, 99, 7.0)], seed=3),
             16000, subtype="PCM_16")
    call = np.stack([bursts(60.0, [(s, s + 3.0) for s in np.arange(0.5, 58, 8.0)], seed=1, freq=180.0),
                     bursts(60.0, [(s, s + 3.0) for s in np.arange(4.3, 58, 8.0)], seed=2, freq=260.0)], axis=1)
    sf.write(audio / "call.wav", call, 16000, subtype="PCM_16")
    # 60 s of FLAC with 8 KiB of garbage in its middle: an error at about 30 s, after more than a block was cut.
    buffer = io.BytesIO()
    sf.write(buffer, bursts(60.0, [(s, s + 4.0) for s in np.arange(0.3, 59, 5.0)], seed=5), 16000, format="FLAC",
             subtype="PCM_16")
    damaged = bytearray(buffer.getvalue())
    damaged[len(damaged) // 2: len(damaged) // 2 + 8192] = np.random.default_rng(5).bytes(8192)
    (audio / "damaged.flac").write_bytes(bytes(damaged))
    sf.write(audio / "clip.wav", bursts(4.0, [(0.3, 3.5)], seed=6), 16000, subtype="PCM_16")
    entries = [{"audio_filepath": "audio/mono.wav"}, {"audio_filepath": "audio/call.wav", "channel_mode": "split"},
               {"audio_filepath": "audio/damaged.flac"}, {"audio_filepath": "audio/clip.wav"}]
    return write_manifest(folder / "m.jsonl", entries), entries


def _job(model, manifest, out, block_seconds: float):
    return run(plan([f"model_path={model}", f"dataset_manifest={manifest}", f"output_path={out}",
                     "target_lang=en-US", "timestamps=true", "batch_size=1", *SEGMENTING,
                     f"compute.block_seconds={block_seconds}", "audio.channel_names=[agent,customer]"]))


def _pieces_of(folder, entry: dict) -> int:
    """How many pieces decoding cuts this recording into at the small block (the decode stage itself, directly)."""
    row = {name: None for name in SOURCE_SCHEMA.names}
    row.update(row_id="x", audio_url=str(folder / entry["audio_filepath"]), channel_mode=entry.get("channel_mode", "mix"),
               prompt_locale="en-US", target_lang="en-US")
    policy = SegmentPolicy(method="energy", max_seconds=8, min_seconds=3)
    block = pa.Table.from_pylist([{"block": 0, "rows": [row]}], schema=WORK_BLOCK_SCHEMA)
    tables = decode_block(block, DecodeSettings(segmenting=policy, block_seconds=SMALL_BLOCK))
    return sum(t.num_rows for t in tables)


RECORDING_COLUMNS = ("audio_filepath, text, duration, speech_seconds, num_segments, error_stage, error, warnings, "
                     "language, conversation, confidence")
SEGMENT_COLUMNS = "audio_filepath, channel, speaker, segment_index, start, \"end\", text, words, error"


def _tables(out) -> tuple[list, list]:
    recordings = duckdb.sql(f"select {RECORDING_COLUMNS} from read_parquet('{out}/recordings/*.parquet') "
                            f"order by audio_filepath").fetchall()
    segments = duckdb.sql(f"select {SEGMENT_COLUMNS} from read_parquet('{out}/segments/*.parquet') "
                          f"order by audio_filepath, channel, segment_index").fetchall()
    return recordings, segments


def test_recordings_in_pieces_come_out_as_when_whole(ray_session, sparse_model, tmp_path) -> None:
    manifest, entries = _corpus(tmp_path)
    pieces = {e["audio_filepath"]: _pieces_of(tmp_path, e) for e in entries}
    assert pieces["audio/mono.wav"] >= 3 and pieces["audio/call.wav"] >= 3 and pieces["audio/damaged.flac"] >= 2
    assert pieces["audio/clip.wav"] == 1  # shorter than a block: whole

    whole = _job(sparse_model, manifest, tmp_path / "whole", 7200.0)
    cut = _job(sparse_model, manifest, tmp_path / "cut", SMALL_BLOCK)
    assert whole.pieced_rows == 0 and cut.pieced_rows == 3  # the job did put three recordings back together
    assert (cut.rows, cut.failed_rows, cut.segments) == (whole.rows, whole.failed_rows, whole.segments) == \
        (4, 1, whole.segments)

    whole_recordings, whole_segments = _tables(tmp_path / "whole")
    cut_recordings, cut_segments = _tables(tmp_path / "cut")
    assert cut_recordings == whole_recordings
    assert cut_segments == whole_segments
    assert any(r[1] for r in cut_recordings)  # the sparse model wrote text: the comparison compares something
    assert any(s[7] for s in cut_segments)  # and word times (timestamps=true)

    by_file = {r[0]: r for r in cut_recordings}
    assert by_file["audio/mono.wav"][2] == 100.0 and by_file["audio/call.wav"][2] == 60.0
    assert by_file["audio/call.wav"][9]  # the conversation of both sides, over every piece
    # The file corrupt midway: one error row that keeps what was decoded before the damage, in more than one piece.
    damaged = by_file["audio/damaged.flac"]
    assert damaged[5] == "decode" and "corrupt" in damaged[6]
    kept = [s for s in cut_segments if s[0] == "audio/damaged.flac"]
    assert sum(s[5] - s[4] for s in kept) > SMALL_BLOCK and max(s[5] for s in kept) <= damaged[2] + 0.05
    record = json.loads(next((tmp_path / "cut" / "runs").glob("*.json")).read_text())
    assert record["summary"]["pieced_rows"] == 3
