"""jobs.export_training_data end to end on a real transcription output (the real job, tiny model, generated audio):
each format loaded by NeMo's own readers into the tiny model's training data loader with one optimiser step, the
audio read back checked against the source samples at the offsets; S3 in and out; splits and replay on real rows;
bad input."""

from __future__ import annotations

import io
import json
import math
import re
import tarfile
from pathlib import Path

import duckdb
import numpy as np
import pytest
import soundfile as sf

from jobs.export_training_data import main
from pipeline.audio import stream_audio
from tests.jobs.conftest import copy_output, transcribe, write_corpus

RATE = 16000
PROOF = ["drop_language_mismatch=false", "min_duration=0", "splits=[train=1.0]", "shard_size=4"]


def export(transcribed, out: Path | str, *settings: str) -> dict:
    assert main([f"transcripts={transcribed.output}", f"output_path={out}", *settings]) == 0
    return json.loads(Path(out, "export.json").read_text())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def source_samples(audio: Path, entry: dict) -> np.ndarray:
    """What the utterance should sound like: the source file (in folder `audio`) at the entry's offsets, decoded as
    the job decodes it (16 kHz; a 16-bit 16 kHz source comes back sample for sample)."""
    with open(audio / Path(entry["source_audio"]).name, "rb") as handle:
        _, blocks = stream_audio(handle.read(), target_sample_rate=RATE)
        audio = np.concatenate(list(blocks), axis=1)
    a = round(entry["source_start"] * RATE)
    channel = entry.get("source_channel", 0)
    return audio[channel, a:a + round(entry["duration"] * RATE)]


@pytest.fixture(scope="module")
def nemo_model(tiny_model):
    from nemo.collections.asr.models import ASRModel

    return ASRModel.restore_from(str(tiny_model), map_location="cpu")


def loader_config(model, **data):
    from omegaconf import OmegaConf

    return OmegaConf.create({
        "use_lhotse": True, "batch_size": 4, "shuffle": False, "num_workers": 0, "sample_rate": RATE,
        "force_finite": True, "shard_seed": 0, "num_prompts": 128, "default_prompt_mode": "langID",
        "prompt_dictionary": dict(model.cfg.model_defaults.prompt_dictionary), **data})


def read_back_and_step(model, config, entries: list[dict], transcribed, exact: set[str], quantised: set[str]
                       ) -> float:
    """Set the config up as the model's training data (NeMo's lhotse readers), check every item against its manifest
    entry (in order: no shuffling): its length, its prompt (`lang`), its tokens, and its samples against the source
    at the offsets, sample for sample (`exact` sources) or within half a 16-bit step (`quantised`: resampled audio
    written as 16-bit clips); then run one optimiser step with a Lightning Trainer; returns the loss."""
    import lightning.pytorch as pl
    import torch

    model.setup_training_data(config)
    items = []
    for audio, lengths, tokens, token_lengths, prompts in model._train_dl:
        for i in range(len(lengths)):
            items.append((audio[i, :lengths[i]].numpy(), int(token_lengths[i]), int(prompts[i])))
    assert len(items) == len(entries)
    prompts = model.cfg.model_defaults.prompt_dictionary
    for (samples, n_tokens, prompt), entry in zip(items, entries):
        assert len(samples) == round(entry["duration"] * RATE), entry["utt_id"]
        assert prompt == prompts[entry["lang"]] and entry["lang"] == entry["target_lang"]
        assert n_tokens == len(model.tokenizer.text_to_ids(entry["text"]))
        if entry["source_audio"] in exact:
            assert np.array_equal(samples, source_samples(transcribed.audio, entry)), entry["utt_id"]
        if entry["source_audio"] in quantised:
            error = np.abs(samples - source_samples(transcribed.audio, entry)).max()
            assert error <= 0.5 / 32768 + 1e-9, entry["utt_id"]

    before = [p.detach().clone() for p in model.parameters()]
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    model.set_trainer(trainer)
    model.setup_optimization({"name": "adamw", "lr": 1e-3})
    trainer.fit(model)
    assert trainer.global_step == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    return float(trainer.callback_metrics["train_loss"])


def expected_kept(transcribed) -> int:
    """The segments of the output less the one forced cut (the drone's second segment overlaps its first)."""
    return duckdb.sql(f"select count(*) from '{transcribed.output}/segments/*.parquet'").fetchall()[0][0] - 1


@pytest.mark.parametrize("fmt", ["manifest", "cut", "tarred"])
def test_nemo_loads_each_format_into_the_training_loader_and_steps(transcribed, nemo_model, tmp_path, fmt):
    out = tmp_path / "export"
    tags = fmt == "cut"  # the tagged recipe's text once: the tags are tokens of the model's vocabulary
    record = export(transcribed, out, f"format={fmt}", f"lang_tags={str(tags).lower()}", *PROOF)
    summary = record["summary"]
    assert summary["kept"] == expected_kept(transcribed) and summary["dropped"] == {"forced_cut": 1}
    train = out / "train"
    # Audio from 16 kHz 16-bit sources comes back sample for sample. The 8 kHz phone clip is resampled: by soxr in
    # the export (as the transcription did), then written as 16-bit clips (within half a step of the decode); by
    # lhotse where NeMo reads the original file (format manifest: checked by length).
    exact = {"audio/long.wav", "audio/call.wav", "audio/drone.wav"}
    quantised = set()
    if fmt == "manifest":
        entries = read_jsonl(train / "manifest.jsonl")
        assert all(Path(e["audio_filepath"]).is_absolute() and "offset" in e for e in entries)
        assert {e["channel"] for e in entries if e["source_audio"] == "audio/call.wav"} == {0, 1}
        config = loader_config(nemo_model, **summary["splits"]["train"]["nemo"])
        assert summary["splits"]["train"]["nemo"]["channel_selector"] == "channel"
    elif fmt == "cut":
        entries = read_jsonl(train / "manifest.jsonl")
        assert all((train / e["audio_filepath"]).is_file() and "offset" not in e for e in entries)
        config = loader_config(nemo_model, **summary["splits"]["train"]["nemo"])
        assert config.manifest_filepath == str(train / "manifest.jsonl")
        quantised.add("audio/phone.wav")
        assert all(re.fullmatch(r"(\S.*?<[a-z]{2}-[A-Z]{2}> ?)+", e["text"]) for e in entries)
    else:
        shards = summary["splits"]["train"]["shards"]
        assert shards >= 2 and sorted(p.name for p in train.glob("audio_*.tar")) == [
            f"audio_{n}.tar" for n in range(shards)]
        entries = read_jsonl(train / "tarred_audio_manifest.json")
        for n in range(shards):
            in_tar = tarfile.open(train / f"audio_{n}.tar").getnames()
            sharded = read_jsonl(train / "sharded_manifests" / f"manifest_{n}.json")
            assert in_tar == [e["audio_filepath"] for e in sharded] and {e["shard_id"] for e in sharded} == {n}
        # The settings export.json gives: no `is_tarred` (lhotse finds the shards from tarred_audio_filepaths; with
        # a trainer set, NeMo 3.0.0's prompt model takes is_tarred=true as a call for len() of the lhotse dataset,
        # which fails).
        assert summary["splits"]["train"]["nemo"] == {
            "use_lhotse": True,
            "manifest_filepath": str(train / f"sharded_manifests/manifest__OP_0..{shards - 1}_CL_.json"),
            "tarred_audio_filepaths": str(train / f"audio__OP_0..{shards - 1}_CL_.tar")}
        config = loader_config(nemo_model, **summary["splits"]["train"]["nemo"])
        quantised.add("audio/phone.wav")
        check_classic_tarred_dataset(nemo_model, train, shards, entries, transcribed)
    assert len(entries) == summary["kept"]
    loss = read_back_and_step(nemo_model, config, entries, transcribed, exact, quantised)
    assert math.isfinite(loss) and loss > 0


def check_classic_tarred_dataset(model, folder: Path, shards: int, entries: list[dict], transcribed) -> None:
    """NeMo's TarredAudioToBPEDataset (webdataset) reads the same shards: every entry once, the audio exact."""
    from nemo.collections.asr.data.audio_to_text import TarredAudioToBPEDataset

    dataset = TarredAudioToBPEDataset(audio_tar_filepaths=str(folder / f"audio__OP_0..{shards - 1}_CL_.tar"),
                                      manifest_filepath=str(folder / "tarred_audio_manifest.json"),
                                      tokenizer=model.tokenizer, sample_rate=RATE, return_sample_id=True)
    by_name = {e["audio_filepath"]: e for e in entries}
    seen = []
    for samples, length, tokens, _, index in dataset:
        entry = by_name[dataset.get_manifest_sample(index).audio_file]
        seen.append(entry["audio_filepath"])
        assert int(length) == round(entry["duration"] * RATE)
        source = source_samples(transcribed.audio, entry)
        assert np.abs(samples.numpy() - source).max() <= (0 if entry["source_audio"] != "audio/phone.wav" else
                                                          0.5 / 32768 + 1e-9)
        assert tokens.tolist() == model.tokenizer.text_to_ids(entry["text"])
    assert sorted(seen) == sorted(by_name)


def test_splits_by_call_and_replay_of_other_languages(transcribed, tmp_path):
    out = tmp_path / "export"
    record = export(transcribed, out, "format=manifest", "drop_language_mismatch=false", "min_duration=0",
                    "split_by=call_id", "splits=[train=0.5,test=0.5]", "seed=3", "languages=[es-ES]",
                    "replay_share=0.5")
    summary = record["summary"]
    rows = {split: read_jsonl(out / split / "manifest.jsonl") for split in ("train", "test")}
    recordings = {split: read_jsonl(out / split / "recordings.jsonl") for split in ("train", "test")}
    # No recording (call) in two splits, in the utterances or in the held-out manifests.
    assert not {e["row_id"] for e in rows["train"]} & {e["row_id"] for e in rows["test"]}
    assert not {r["call_id"] for r in recordings["train"]} & {r["call_id"] for r in recordings["test"]}
    # In-domain rows are es-ES; every other row in train is replay, in test there is none.
    assert all(e["lang"] == "es-ES" or e.get("replay") for e in rows["train"] + rows["test"])
    assert not any(e.get("replay") for e in rows["test"])
    in_domain_train = sum(1 for e in rows["train"] if not e.get("replay"))
    replay = summary["replay"]
    assert replay["wanted"] == in_domain_train and summary["replayed"] == replay["chosen"] == min(replay["wanted"],
                                                                                                   replay["pool"])
    # Counts add up: every segment is kept or dropped for one reason.
    assert summary["kept"] + sum(summary["dropped"].values()) == summary["utterances"]
    # The held-out manifest transcribes like the original: references as `text`, the forced locale, split mode.
    every = recordings["train"] + recordings["test"]
    phone = next(r for r in every if r["call_id"] == "c-3")
    assert phone["text"] == "hola buenos dias" and phone["lang"] == "es-ES"
    assert next(r for r in every if r["call_id"] == "c-2")["channel_mode"] == "split"
    assert not any(r["call_id"] == "c-5" for r in every)  # the missing file failed: nothing to measure


def test_missing_audio_is_counted_and_the_rest_is_written(transcribed, tmp_path):
    copy = copy_output(transcribed, tmp_path / "copy")
    (copy.audio / "long.wav").unlink()
    (copy.audio / "phone.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt not audio any more")
    out = tmp_path / "export"
    record = export(copy, out, "format=tarred", *PROOF)
    summary = record["summary"]
    long = duckdb.sql(f"select count(*) from '{copy.output}/segments/*.parquet' where audio_filepath = "
                      f"'audio/long.wav'").fetchall()[0][0]
    assert summary["dropped"] == {"audio_missing": long, "forced_cut": 1, "audio_unreadable": 1}
    assert summary["kept"] == expected_kept(transcribed) - long - 1
    assert "file not found" in summary["examples"]["audio_missing"][0]
    assert "phone.wav" in summary["examples"]["audio_unreadable"][0]
    names = [n for shard in (out / "train").glob("audio_*.tar") for n in tarfile.open(shard).getnames()]
    assert sorted(names) == sorted(e["audio_filepath"] for e in read_jsonl(out / "train" /
                                                                         "tarred_audio_manifest.json"))
    assert len(names) == summary["kept"]


def test_filter_counts_agree_with_duckdb_and_bad_settings_stop_the_job(transcribed, tmp_path, capsys):
    segments = f"'{transcribed.output}/segments/*.parquet'"
    forced_cut = "audio_filepath = 'audio/drone.wav' and segment_index = 1"
    rates = [r[0] for r in duckdb.sql(f"select length(text) / (\"end\" - start) from {segments} "
                                      f"where not ({forced_cut})").fetchall()]
    threshold = float(np.median(rates))
    record = export(transcribed, tmp_path / "a", "format=manifest", "drop_language_mismatch=false", "min_duration=0",
                    f"max_chars_per_second={threshold}")
    assert record["summary"]["dropped"] == {"chars_per_second": sum(r > threshold for r in rates), "forced_cut": 1}
    assert record["config"]["max_chars_per_second"] == threshold

    record = export(transcribed, tmp_path / "b", "format=manifest", "min_confidence=1.0")
    summary = record["summary"]
    assert summary["kept"] == 0 and "no utterance was kept" in " ".join(summary["notes"])
    assert sum(summary["dropped"].values()) == summary["utterances"] and summary["dropped"]["confidence"] > 0
    assert read_jsonl(tmp_path / "b" / "train" / "manifest.jsonl") == []

    not_output = tmp_path / "nothing"
    not_output.mkdir()
    assert main([f"transcripts={not_output}", f"output_path={tmp_path / 'c'}"]) == 2
    assert main([f"transcripts={transcribed.output}", f"output_path={tmp_path / 'a'}"]) == 2  # not empty
    assert main([f"transcripts={transcribed.output}", f"output_path={tmp_path / 'c'}", "splits=[train=0.5]"]) == 2
    assert main([f"transcripts={transcribed.output}", f"output_path={tmp_path / 'c'}", "replay_share=0.2"]) == 2
    assert main([f"transcripts={transcribed.output}", f"output_path={tmp_path / 'c'}", "format=zip"]) == 2
    assert main([f"transcripts={transcribed.output}", f"output_path={tmp_path / 'c'}", "colour=blue"]) == 2
    err = capsys.readouterr().err
    assert "is not a transcription output: no committed Parquet files" in err
    assert "is not empty" in err and "must sum to 1" in err and "replay_share needs" in err
    assert "format must be one of manifest, cut, tarred" in err and "unknown configuration key 'colour'" in err
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_min_confidence_on_an_output_without_confidence_says_so(tmp_path, capsys):
    """An output written by a run without confidence=true (here written by hand: the table as the sink writes it)."""
    import pyarrow.parquet as pq

    from pipeline.records import RECORDINGS_SCHEMA, SEGMENTS_SCHEMA, to_table

    out = tmp_path / "out"
    for table, schema, rows in (
            ("recordings", RECORDINGS_SCHEMA, [{"row_id": "r1", "audio_url": "/a.wav", "target_lang": "en-US"}]),
            ("segments", SEGMENTS_SCHEMA, [{"row_id": "r1", "segment_index": 0, "start": 0.0, "end": 2.0,
                                            "text": "good morning", "language": "en-US"}])):
        (out / table).mkdir(parents=True)
        pq.write_table(to_table(rows, schema), out / table / "part-0.parquet")
    assert main([f"transcripts={out}", f"output_path={tmp_path / 'x'}", "min_confidence=0.9"]) == 2
    assert "transcribed without confidence=true" in capsys.readouterr().err


@pytest.mark.slow
def test_export_from_s3_to_s3(ray_session, sparse_model, s3fs_client, bucket, tmp_path):
    """Manifest, audio, transcription output and every export format on S3 (the moto server)."""
    manifest = write_corpus(tmp_path / "corpus")
    s3fs_client.put(str(tmp_path / "corpus"), f"{bucket}/corpus", recursive=True)
    transcripts = f"s3://{bucket}/transcripts"
    transcribe(f"s3://{bucket}/corpus/{manifest.name}", transcripts, sparse_model)
    for fmt in ("manifest", "cut", "tarred"):
        out = f"s3://{bucket}/training-{fmt}"
        assert main([f"transcripts={transcripts}", f"output_path={out}", f"format={fmt}", *PROOF]) == 0
        summary = json.loads(s3fs_client.cat(f"{bucket}/training-{fmt}/export.json"))["summary"]
        listing = {p.split(f"training-{fmt}/", 1)[1] for p in s3fs_client.find(f"{bucket}/training-{fmt}")}
        name = "tarred_audio_manifest.json" if fmt == "tarred" else "manifest.jsonl"
        entries = [json.loads(x) for x in s3fs_client.cat(f"{bucket}/training-{fmt}/train/{name}").splitlines()]
        assert len(entries) == summary["kept"] > 0 and summary["dropped"] == {"forced_cut": 1}
        if fmt == "manifest":
            assert all(e["audio_filepath"].startswith(f"s3://{bucket}/corpus/audio/") for e in entries)
            continue
        clips = {}
        if fmt == "cut":
            assert {f"train/{e['audio_filepath']}" for e in entries} <= listing
            for e in entries:
                clips[e["utt_id"]] = s3fs_client.cat(f"{bucket}/training-{fmt}/train/{e['audio_filepath']}")
        else:
            for n in range(summary["splits"]["train"]["shards"]):
                with s3fs_client.open(f"{bucket}/training-{fmt}/train/audio_{n}.tar", "rb") as handle:
                    with tarfile.open(fileobj=handle) as tar:
                        for member in tar.getmembers():
                            clips[member.name.split(".")[0]] = tar.extractfile(member).read()
        for e in entries:
            samples, rate = sf.read(io.BytesIO(clips[e["utt_id"]]), dtype="float32")
            assert rate == RATE and len(samples) == round(e["duration"] * RATE)
            if e["source_audio"] != "audio/phone.wav":
                assert np.array_equal(samples, source_samples(tmp_path / "corpus" / "audio", e))
