"""Corpora in the shapes ML teams keep them, read by the whole job (local Ray, tiny model, generated audio): NeMo
offset slices in a gzip manifest, WebDataset shards written by `webdataset.TarWriter`, Parquet and Arrow written by
Hugging Face `datasets`, NeMo tarred datasets written by this project's export (the layout NeMo's readers load: see
test_export_training_data.py) and damaged here; locally and on the S3 test server. Every input row is an output
row: a transcript, or its own error. Whole-job runs are grouped (each costs 10-30 s here)."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
import soundfile as sf

from jobs.export_training_data import main as export_main
from jobs.transcribe import plan, run
from tests.audio_factory import bursts, tone

RATE = 16000


def flac_bytes(seconds: float, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, bursts(seconds, [(0.2, seconds - 0.2)], seed=seed), RATE, format="FLAC")
    return buffer.getvalue()


def write_webdataset(path: Path, samples: list[dict]) -> Path:
    import webdataset as wds

    with wds.TarWriter(str(path)) as writer:
        for sample in samples:
            writer.write(sample)
    return path


def write_hf(folder: Path, rows: list[dict]) -> tuple[Path, Path]:
    """The rows as Hugging Face `datasets` writes them: `to_parquet` and `save_to_disk`, audio cast to `Audio()`."""
    import datasets

    table = datasets.Dataset.from_dict({"audio": [r["audio"] for r in rows], "sentence": [r["sentence"] for r in rows],
                                        "speaker_id": [r["speaker_id"] for r in rows]})
    table = table.cast_column("audio", datasets.Audio())
    parquet = folder / "data" / "train-00000-of-00001.parquet"
    parquet.parent.mkdir(parents=True)
    table.to_parquet(str(parquet))
    table.save_to_disk(str(folder / "saved"))
    return parquet, folder / "saved"


def recordings(output: Path | str, **storage) -> pl.DataFrame:
    if storage:
        return pl.read_parquet(f"{output}/recordings/*.parquet", storage_options=storage)
    return pl.from_arrow(duckdb.sql(f"select * from '{output}/recordings/*.parquet'").arrow())


def build_corpora(folder: Path) -> dict:
    """Every kind at once: a gzip manifest of offset slices (WAV, FLAC, MP3; one past the end), two WebDataset shards
    (one with a sample without audio and a member that is not audio), a shard truncated mid-member, a missing shard,
    a Parquet file and a save_to_disk folder of the same rows (one row's bytes not audio, one row without bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    long = bursts(30.0, [(1.0, 4.0), (11.0, 14.5), (21.0, 25.0)], seed=7)
    sf.write(folder / "long.wav", long, RATE, subtype="PCM_16")
    sf.write(folder / "long.flac", long, RATE, subtype="PCM_16")
    sf.write(folder / "long.mp3", long, RATE, format="MP3")
    slices = [{"audio_filepath": "long.wav", "offset": 10.0, "duration": 5.0, "text": "one"},
              {"audio_filepath": "long.wav", "offset": 20.0, "duration": 6.0, "text": "two"},
              {"audio_filepath": "long.flac", "offset": 10.0, "duration": 5.0},
              {"audio_filepath": "long.mp3", "offset": 20.0, "duration": 6.0},
              {"audio_filepath": "long.wav", "offset": 40.0, "duration": 2.0},  # past the end
              {"audio_filepath": "long.wav", "duration": 30.0}]  # the whole file, as before
    with gzip.open(folder / "slices.jsonl.gz", "wt") as handle:
        handle.writelines(json.dumps(s) + "\n" for s in slices)
    write_webdataset(folder / "wds-000.tar", [
        {"__key__": "a/utt-0", "flac": flac_bytes(1.5, 1), "json": {"text": "zero", "duration": 1.5, "spk": "x"}},
        {"__key__": "a/utt-1", "flac": flac_bytes(2.0, 2), "txt": "one"},
        {"__key__": "a/utt-2", "json": {"text": "no audio here"}},
        {"__key__": "a/utt-3", "wav": b"RIFF not really a wav file at all", "txt": "bad"}])
    write_webdataset(folder / "wds-001.tar", [
        {"__key__": f"b/utt-{i}", "flac": flac_bytes(1.0 + 0.5 * i, 10 + i), "txt": f"b {i}"} for i in range(3)])
    whole = (folder / "wds-001.tar").read_bytes()
    (folder / "wds-002.tar").write_bytes(whole[:len(whole) // 2 + 700])  # cut inside a member
    rows = [{"audio": {"bytes": flac_bytes(1.0 + 0.25 * i, 20 + i), "path": f"clip{i}.flac"},
             "sentence": f"table {i}", "speaker_id": i} for i in range(3)]
    rows.append({"audio": {"bytes": b"these bytes are not audio", "path": "bad.flac"}, "sentence": "x",
                 "speaker_id": 9})
    rows.append({"audio": None, "sentence": "no audio", "speaker_id": 10})
    parquet, saved = write_hf(folder / "hf", rows)
    inputs = ",".join([str(folder / "slices.jsonl.gz"), str(folder / "wds-{000..003}.tar"), str(parquet),
                       str(saved)])
    return {"inputs": inputs, "parquet": parquet, "saved": saved}


def test_every_kind_in_one_job_with_errors_per_member_then_resume(ray_session, tiny_model, tmp_path):
    built = build_corpora(tmp_path / "corpora")
    out = tmp_path / "out"
    summary = run(plan([f"model_path={tiny_model}", f"dataset_manifest={built['inputs']}", f"output_path={out}"]))
    df = recordings(out)
    # 6 slices + 4 + 3 WebDataset samples + the truncated shard's rows + 1 missing shard + 5 + 5 table rows.
    assert df["row_id"].n_unique() == df.height == summary.rows
    ok = df.filter(pl.col("error").is_null())

    # Slices: each its own row; only the slice decoded; the origin columns say where.
    sl = df.filter(pl.col("manifest").str.ends_with("slices.jsonl.gz")).sort("line")
    assert sl.height == 6
    assert sl["audio_offset"].to_list() == [10.0, 20.0, 10.0, 20.0, 40.0, None]
    assert sl["duration"].to_list()[:4] == pytest.approx([5.0, 6.0, 5.0, 6.0], abs=0.01)
    assert sl["duration"][5] == pytest.approx(30.0, abs=0.01)
    past = sl.row(4, named=True)
    assert (past["error_stage"], past["error"]) == (
        "decode", "the slice at 40.00 s starts past the end of the recording (30.0 s)")
    assert sl["error"].null_count() == 5 and sl["reference_text"].to_list()[:2] == ["one", "two"]

    # WebDataset: one row per sample, joined by key; errors per member; the rest goes on.
    wds = {(Path(r["audio_url"]).name, r["audio_member"]): r for r in
           df.filter(pl.col("audio_url").str.contains("wds-")).iter_rows(named=True)}
    good = [("wds-000.tar", "a/utt-0.flac"), ("wds-000.tar", "a/utt-1.flac"),
            ("wds-001.tar", "b/utt-0.flac"), ("wds-001.tar", "b/utt-1.flac"), ("wds-001.tar", "b/utt-2.flac")]
    for key in good:
        assert wds[key]["error"] is None, wds[key]
    assert wds[("wds-000.tar", "a/utt-0.flac")]["reference_text"] == "zero"
    assert json.loads(wds[("wds-000.tar", "a/utt-0.flac")]["metadata"]) == {"spk": "x"}
    assert wds[("wds-000.tar", "a/utt-1.flac")]["reference_text"] == "one"
    assert wds[("wds-000.tar", "a/utt-1.flac")]["duration"] == pytest.approx(2.0, abs=0.01)
    assert wds[("wds-000.tar", "a/utt-2")]["error"] == "sample a/utt-2 has no audio member (found: json)"
    assert wds[("wds-000.tar", "a/utt-3.wav")]["error_stage"] == "decode"
    assert wds[("wds-000.tar", "a/utt-3.wav")]["error"].startswith("not an audio file")
    truncated = [r for (shard, _), r in wds.items() if shard == "wds-002.tar"]
    assert truncated and any("truncated or corrupt" in (r["error"] or "") for r in truncated)
    missing = df.filter(pl.col("manifest").str.ends_with("wds-003.tar"))
    assert missing.height == 1 and missing["error"][0].startswith("shard wds-003.tar: cannot open shard")

    # Tables: file and row; a row whose bytes are not audio and one without bytes fail alone.
    for table in (built["parquet"], built["saved"]):
        rows = df.filter(pl.col("manifest").str.starts_with(str(table))).sort("audio_row")
        assert rows["audio_row"].to_list() == [0, 1, 2, 3, 4]
        assert rows["error"].null_count() == 3
        assert rows["reference_text"].to_list()[:3] == ["table 0", "table 1", "table 2"]
        assert rows["duration"].to_list()[:3] == pytest.approx([1.0, 1.25, 1.5], abs=0.01)
        assert rows["error"][3].startswith("not an audio file")
        assert rows["error"][4] == "row 4 has no audio bytes and no path"
        assert json.loads(rows["metadata"][0]) == {"speaker_id": 0}
    assert ok.height == 5 + 5 + 3 + 3 + len([r for r in truncated if r["error"] is None])

    # A rerun skips exactly what is done; an edited member is replaced (its bytes are part of its content).
    write_webdataset(tmp_path / "corpora" / "wds-001.tar", [
        {"__key__": f"b/utt-{i}", "flac": flac_bytes(1.0 + 0.5 * i, 10 + i + (i == 1)), "txt": f"b {i}"}
        for i in range(3)])
    again = run(plan([f"model_path={tiny_model}", f"dataset_manifest={built['inputs']}", f"output_path={out}",
                      "resume.retry_failed=false"]))
    assert (again.rows, again.replaced_rows) == (1, 1)
    assert again.skipped_rows == summary.rows - 1
    assert recordings(out)["row_id"].n_unique() == summary.rows


def export(transcribed, out: Path, *settings: str) -> None:
    assert export_main([f"transcripts={transcribed.output}", f"output_path={out}", "drop_language_mismatch=false",
                        "min_duration=0", "splits=[test=1.0]", *settings]) == 0


def test_export_round_trips_and_a_damaged_nemo_tarred_set_fails_per_member(transcribed, tiny_model, tmp_path):
    """transcribe -> export (tarred and cut) -> transcribe the export: one row per exported utterance, of the same
    audio duration; then the tarred export damaged: a member gone, a shard truncated, a shard missing, a member no
    manifest lists."""
    # shard_size=1: a shard per recording (whole recordings per shard), so there are as many shards as recordings with
    # a kept utterance (4 here), whatever the random model writes; the damage below picks shards by what they hold.
    export(transcribed, tmp_path / "tarred", "format=tarred", "shard_size=1")
    export(transcribed, tmp_path / "cut", "format=cut")
    for fmt in ("tarred", "cut"):
        folder = tmp_path / fmt / "test"
        manifest = folder / ("tarred_audio_manifest.json" if fmt == "tarred" else "manifest.jsonl")
        entries = [json.loads(line) for line in manifest.read_text().splitlines()]
        out = tmp_path / f"again-{fmt}"
        summary = run(plan([f"model_path={tiny_model}", f"dataset_manifest={manifest}", f"output_path={out}"]))
        df = recordings(out)
        assert summary.rows == df.height == len(entries) > 2
        assert df["error"].null_count() == df.height
        by_name = {Path(r["audio_filepath"]).name: r for r in df.iter_rows(named=True)}
        for entry in entries:
            row = by_name[Path(entry["audio_filepath"]).name]
            assert row["duration"] == pytest.approx(entry["duration"], abs=1 / RATE), entry
            assert row["reference_text"] == entry["text"]
            if fmt == "tarred":
                assert row["audio_member"] == entry["audio_filepath"]
                assert Path(row["audio_url"]).name == f"audio_{entry['shard_id']}.tar"

    # Damage a copy of the tarred export: a shard of two or more members is cut inside its second member, another
    # loses a member and gains one no manifest lists, a third is gone.
    damaged = tmp_path / "damaged"
    shutil.copytree(tmp_path / "tarred" / "test", damaged)
    shards = sorted(damaged.glob("audio_*.tar"), key=lambda p: int(p.stem.split("_")[1]))
    assert len(shards) >= 3
    members_of = {}
    for shard in shards:
        with tarfile.open(shard) as archive:
            members_of[shard] = [(m, archive.extractfile(m).read()) for m in archive.getmembers()]
    cut = next(s for s in shards if len(members_of[s]) >= 2)
    thinned, lost = [s for s in shards if s != cut][:2]
    gone = members_of[thinned][0][0].name
    with tarfile.open(thinned, "w") as archive:
        for info, data in members_of[thinned][1:]:
            archive.addfile(info, io.BytesIO(data))
        stray = io.BytesIO()
        sf.write(stray, tone(1.0), RATE, format="FLAC")
        info = tarfile.TarInfo("stray.flac")
        info.size = len(stray.getvalue())
        archive.addfile(info, io.BytesIO(stray.getvalue()))
    second = members_of[cut][1][0]
    cut.write_bytes(cut.read_bytes()[:second.offset_data + second.size // 2])
    lost.unlink()
    last = len(shards) - 1
    out = tmp_path / "again-damaged"
    summary = run(plan([f"model_path={tiny_model}",
                        f"dataset_manifest={damaged}/sharded_manifests/manifest__OP_0..{last}_CL_.json",
                        f"tarred_audio_filepaths={damaged}/audio__OP_0..{last}_CL_.tar", f"output_path={out}"]))
    df = recordings(out)
    entries = [json.loads(line) for line in (damaged / "tarred_audio_manifest.json").read_text().splitlines()]
    assert df.height == summary.rows == len(entries) + 1  # every line, and the stray member
    rows = {(Path(r["audio_url"]).name, r["audio_member"]): r for r in df.iter_rows(named=True)}
    assert rows[(thinned.name, gone)]["error"] == f"manifest line 1 names member {gone}, which is not in the shard"
    assert rows[(thinned.name, "stray.flac")]["error"] == (
        "member stray.flac is in the shard but in no manifest line (not transcribed)")
    shard_id = {s: int(s.stem.split("_")[1]) for s in shards}
    in_cut = [e["audio_filepath"] for e in entries if e["shard_id"] == shard_id[cut]]
    assert rows[(cut.name, in_cut[0])]["error"] is None
    assert rows[(cut.name, in_cut[1])]["error"].startswith(f"shard is truncated or corrupt at member {in_cut[1]}")
    for name in [e["audio_filepath"] for e in entries if e["shard_id"] == shard_id[lost]]:
        assert rows[(lost.name, name)]["error"].startswith("cannot open shard: FileNotFoundError")
    healthy = [e for e in entries if e["shard_id"] not in {shard_id[s] for s in (cut, thinned, lost)}]
    assert all(rows[(f"audio_{e['shard_id']}.tar", e["audio_filepath"])]["error"] is None for e in healthy)


def test_shards_tables_and_slices_on_s3(ray_session, tiny_model, s3fs_client, bucket, s3_endpoint, tmp_path):
    built = build_corpora(tmp_path / "corpora")
    s3fs_client.put(str(tmp_path / "corpora"), f"{bucket}/corpora", recursive=True)
    inputs = built["inputs"].replace(str(tmp_path / "corpora"), f"s3://{bucket}/corpora")
    out = f"s3://{bucket}/out"
    summary = run(plan([f"model_path={tiny_model}", f"dataset_manifest={inputs}", f"output_path={out}"]))
    opts = {"aws_endpoint_url": s3_endpoint, "aws_allow_http": "true", "aws_region": "us-east-1",
            "aws_access_key_id": s3fs_client.key, "aws_secret_access_key": s3fs_client.secret}
    df = recordings(out, **opts)
    assert df.height == summary.rows and df["row_id"].n_unique() == df.height
    ok = df.filter(pl.col("error").is_null())
    assert ok.filter(pl.col("audio_offset").is_not_null()).height == 4
    assert ok.filter(pl.col("audio_member").is_not_null())["audio_url"].str.starts_with(f"s3://{bucket}/").all()
    assert ok.filter(pl.col("audio_row").is_not_null()).height == 6
    assert set(ok["audio_url"].map_elements(lambda u: u.rsplit("/", 1)[-1], return_dtype=pl.String)) >= {
        "long.wav", "long.flac", "long.mp3", "wds-000.tar", "wds-001.tar", "train-00000-of-00001.parquet",
        "data-00000-of-00001.arrow"}
    assert np.isclose(ok.filter(pl.col("audio_offset") == 10.0)["duration"].to_numpy(), 5.0, atol=0.01).all()
