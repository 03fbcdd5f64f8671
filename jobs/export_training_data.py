"""Training data for NeMo from a transcription output: pseudo-labelled utterances, filtered, split, with replay.

    python -m jobs.export_training_data transcripts=s3://calls/transcripts output_path=s3://calls/training \\
        format=tarred languages=[de-DE] min_confidence=0.9 max_chars_per_second=25 replay_share=0.2

Reads `<transcripts>/recordings/` and `segments/` (local or any fsspec URL), keeps the utterances (segments) that
pass the filters (`pipeline.pseudo_labels`), puts every recording in one split, mixes in replay rows, and writes per
split one of three NeMo layouts (`connectors.nemo_datasets`):

* `format=manifest`: `<split>/manifest.jsonl` pointing into the original audio with `offset`/`duration` (no copy;
  stereo calls in split mode carry `channel`: train with `channel_selector: channel`);
* `format=cut`: 16 kHz mono clips `<split>/audio/<utt_id>.flac` (or .wav) and `<split>/manifest.jsonl`;
* `format=tarred`: `<split>/audio_<n>.tar` of `shard_size` clips each, `<split>/tarred_audio_manifest.json` (with
  `shard_id`) and `<split>/sharded_manifests/manifest_<n>.json`, as NeMo's tarred datasets read them.

Every split also gets `recordings.jsonl` (its recordings as a transcription manifest, references as `text`: the
held-out set to transcribe before and after fine-tuning), and the folder gets `export.json` (the configuration and
the summary), written last: a folder without it is an unfinished export. Cutting and encoding run as Ray Data tasks,
one per shard; the selection runs on the driver over Arrow columns.

A bad `transcripts` folder, a non-empty `output_path` or a bad setting ends the job before any work with one
`error: ...` line and exit code 2. An utterance whose audio is gone or unreadable is dropped with its reason and
counted, and the job goes on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc
from omegaconf import MISSING, OmegaConf

from connectors.nemo_datasets import (CLIPS, MANIFEST, RECORDINGS_MANIFEST, TARRED_MANIFEST, jsonl,
                                      shard_manifest_name, sharded_manifest_pattern, tar_pattern, write_bytes)
from connectors.storage import filesystem, is_url, redact
from connectors.output_store import RECORDINGS, SEGMENTS, NotAnOutput, OutputStore
from connectors.transcripts import known_language
from jobs.cluster import connect_ray
from jobs.config import ConfigError, load_structured, run_command
from jobs.console import split_verbose
from pipeline import pseudo_labels as labels
from pipeline.cutting import CODECS, FORMATS, CutSettings, export_batch

log = logging.getLogger("nemotron_batch.export")

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "export_training_data.yaml"
SUMMARY_FILE = "export.json"
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass
class ExportConfig:
    transcripts: str = MISSING  # a transcription output (local or s3://)
    output_path: str = MISSING  # a new, empty folder (local or s3://)
    format: str = "cut"  # manifest | cut | tarred
    audio_codec: str = "flac"  # cut and tarred: flac | wav (16-bit PCM, 16 kHz mono)
    lang_tags: bool = False  # text with a language tag after each sentence, as the tagged training recipe has it
    # Filters (pipeline.pseudo_labels).
    drop_errors: bool = True
    drop_language_mismatch: bool = True
    min_duration: Optional[float] = 0.5
    max_duration: Optional[float] = 40.0
    min_chars_per_second: Optional[float] = None
    max_chars_per_second: Optional[float] = None
    min_confidence: Optional[float] = None
    max_wer: Optional[float] = None
    max_cer: Optional[float] = None
    max_per_text: Optional[int] = None
    languages: list[str] = field(default_factory=list)
    # Splits.
    splits: list[str] = field(default_factory=lambda: ["train=0.9", "validation=0.05", "test=0.05"])
    split_by: str = "recording"
    seed: int = 0
    # Replay.
    replay_share: float = 0.0
    replay_from: Optional[str] = None
    # Work.
    shard_size: int = 1000
    cpus_per_task: float = 1.0
    ray_address: Optional[str] = None


def parse_splits(items: list[str]) -> dict[str, float]:
    """`["train=0.9", "test=0.1"]` -> {"train": 0.9, "test": 0.1}, checked: folder-safe unique names, positive shares
    that sum to 1."""
    shares: dict[str, float] = {}
    for item in items:
        name, sep, value = str(item).replace(":", "=", 1).partition("=")
        name = name.strip()
        try:
            share = float(value)
        except ValueError:
            share = float("nan")
        if not sep or not _SPLIT_NAME.match(name) or not share > 0 or name in shares:
            raise ConfigError(f"splits: expected distinct name=share items with a share > 0 (e.g. "
                              f"[train=0.9,test=0.1]), got {item!r}")
        shares[name] = share
    if not shares or not math.isclose(sum(shares.values()), 1.0, abs_tol=1e-6):
        raise ConfigError(f"splits: the shares must sum to 1, got {sum(shares.values()):g} ({items})")
    return shares


def settings(cfg: ExportConfig) -> tuple[labels.Filters, labels.Splits]:
    """The typed settings of the selection, with every check that needs no data."""
    if cfg.format not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {cfg.format!r}")
    if cfg.audio_codec not in CODECS:
        raise ConfigError(f"audio_codec must be one of {', '.join(CODECS)}, got {cfg.audio_codec!r}")
    for low, high in (("min_duration", "max_duration"), ("min_chars_per_second", "max_chars_per_second")):
        a, b = getattr(cfg, low), getattr(cfg, high)
        if (a is not None and a < 0) or (a is not None and b is not None and a > b):
            raise ConfigError(f"need 0 <= {low} <= {high}, got {a}, {b}")
    if cfg.min_confidence is not None and not 0 <= cfg.min_confidence <= 1:
        raise ConfigError(f"min_confidence is a probability (0..1), got {cfg.min_confidence}")
    if cfg.max_per_text is not None and cfg.max_per_text < 1:
        raise ConfigError(f"max_per_text must be >= 1, got {cfg.max_per_text}")
    if cfg.shard_size < 1 or cfg.cpus_per_task <= 0:
        raise ConfigError("shard_size must be >= 1 and cpus_per_task > 0")
    if not cfg.split_by.strip():
        raise ConfigError("split_by is `recording` or a manifest field (call_id, speaker, ...)")
    shares = parse_splits(cfg.splits)
    if not 0 <= cfg.replay_share < 1:
        raise ConfigError(f"replay_share is the share of the train rows that are replay, 0 <= x < 1; got "
                          f"{cfg.replay_share}")
    if cfg.replay_share > 0:
        if labels.TRAIN not in shares:
            raise ConfigError("replay rows go to the train split: splits needs a `train` entry")
        if not cfg.languages and not cfg.replay_from:
            raise ConfigError("replay_share needs the in-domain languages (languages=[de-DE,...]: the others are "
                              "replayed) or another output to replay from (replay_from=...)")
    filters = labels.Filters(
        drop_errors=cfg.drop_errors, drop_language_mismatch=cfg.drop_language_mismatch,
        min_duration=cfg.min_duration, max_duration=cfg.max_duration,
        min_chars_per_second=cfg.min_chars_per_second, max_chars_per_second=cfg.max_chars_per_second,
        min_confidence=cfg.min_confidence, max_wer=cfg.max_wer, max_cer=cfg.max_cer,
        max_per_text=cfg.max_per_text, languages=tuple(cfg.languages))
    return filters, labels.Splits(shares=shares, split_by=cfg.split_by.strip(), seed=cfg.seed)


def load_config(overrides: list[str], config_file: str | Path = DEFAULT_CONFIG) -> ExportConfig:
    cfg = load_structured(ExportConfig, overrides, config_file, example="/data/training")
    settings(cfg)
    return cfg


def check_inputs(cfg: ExportConfig) -> None:
    """The inputs are transcription outputs; output_path is new or empty (an export never mixes with an older one)."""
    for key in ("transcripts", "replay_from"):
        value = getattr(cfg, key)
        if value:
            try:
                OutputStore.at(value).check()
            except NotAnOutput as error:
                raise ConfigError(f"{key}: {error}") from None
    try:
        fs, path = filesystem(cfg.output_path)
        if fs.exists(path) and fs.ls(path, detail=False):
            raise ConfigError(f"output_path {cfg.output_path} is not empty: export into a new folder (an export "
                              f"never mixes with an older one)")
        fs.makedirs(path, exist_ok=True)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001
        raise ConfigError(f"cannot create output_path {cfg.output_path!r}: {type(error).__name__}: {error}") from None


# ---------------------------------------------------------------------------------------------------------- select


def read_utterances(output_path: str, with_sentences: bool) -> tuple[pa.Table, pa.Table]:
    """(recordings, utterances) of one transcription output."""
    store = OutputStore.at(output_path)
    recordings = store.read_table(RECORDINGS, labels.RECORDING_COLUMNS)
    columns = dict(labels.SEGMENT_COLUMNS)
    if with_sentences:
        columns["sentences"] = labels.SENTENCE_TYPE
    segments = store.read_table(SEGMENTS, columns)
    return recordings, labels.utterances(recordings, segments)


@dataclass
class Selection:
    utterances: pa.Table  # every candidate of this output and the chosen replay rows: reason, split, replay
    candidates: int  # the segments of this output
    recordings: pa.Table
    replay: dict
    groups_without_field: int
    notes: list[str]


def select(cfg: ExportConfig, filters: labels.Filters, splits: labels.Splits) -> Selection:
    notes: list[str] = []
    recordings, table = read_utterances(cfg.transcripts, cfg.lang_tags)
    if filters.min_confidence is not None:
        with_confidence = table.num_rows - table["confidence"].null_count
        if table.num_rows and not with_confidence:
            raise ConfigError(f"min_confidence={filters.min_confidence} but no segment of {cfg.transcripts} has a "
                              f"confidence: it was transcribed without confidence=true. Transcribe with "
                              f"confidence=true, or leave min_confidence unset")
        if with_confidence < table.num_rows:
            notes.append(f"{table.num_rows - with_confidence} segment(s) have no confidence (transcribed without "
                         f"confidence=true): dropped as no_confidence")
    table = labels.judge(table, filters, splits.seed)
    table, missing = labels.assign_splits(table, splits)
    if missing:
        notes.append(f"{missing} recording(s) have no `{splits.split_by}` field: each is its own group")

    replay = {"share": cfg.replay_share, "source": cfg.replay_from or "this output, languages outside "
              f"{list(filters.languages)}", "wanted": 0, "pool": 0, "chosen": 0}
    chosen = None
    if cfg.replay_share > 0:
        in_domain = pc.and_(pc.is_null(table["reason"]), table["in_languages"])
        train = pc.sum(pc.cast(pc.and_(in_domain, pc.equal(table["split"], labels.TRAIN)), pa.int64())).as_py() or 0
        if cfg.replay_from:
            _, other = read_utterances(cfg.replay_from, cfg.lang_tags)
            other_filters = labels.Filters(**{**asdict(filters), "languages": ()})
            other = labels.assign_splits(labels.judge(other, other_filters, splits.seed), splits)[0]
            pool = labels.replay_pool(other, exclude_row_ids=pc.unique(table["row_id"]))
        else:
            pool = labels.replay_pool(table.filter(pc.invert(table["in_languages"])))
        wanted = labels.replay_count(train, cfg.replay_share)
        chosen = labels.choose_replay(pool, wanted, splits.seed)
        replay.update(wanted=wanted, pool=pool.num_rows, chosen=chosen.num_rows)
        if chosen.num_rows < wanted:
            notes.append(f"replay: {wanted} row(s) wanted for replay_share={cfg.replay_share} of the train split, "
                         f"only {pool.num_rows} in the pool: all taken")
    return Selection(labels.finish(table, chosen), table.num_rows, recordings, replay, missing, notes)


# ------------------------------------------------------------------------------------------------------------ write


def work_units(kept: pa.Table, output_path: str, shard_size: int) -> list[dict]:
    """The kept utterances as work units: per split, whole recordings gathered until a unit has `shard_size`
    utterances (a recording is never split across units, so each is decoded once). `shard_id` counts per split."""
    rows = kept.select(["split", "row_id", "audio_url", "utt_id", "channel", "start", "end"]).to_pylist()
    by_split: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        recording = by_split[r["split"]].setdefault(r["row_id"], {"audio_url": r["audio_url"], "utterances": []})
        recording["utterances"].append({k: r[k] for k in ("utt_id", "channel", "start", "end")})
    units = []
    for split in sorted(by_split):
        unit: dict | None = None
        shard = 0
        for recording in by_split[split].values():
            if unit is None:
                unit = {"index": len(units), "split": split, "folder": f"{output_path.rstrip('/')}/{split}",
                        "shard_id": shard, "recordings": [], "size": 0}
            unit["recordings"].append(recording)
            unit["size"] += len(recording["utterances"])
            if unit["size"] >= shard_size:
                units.append(unit)
                unit, shard = None, shard + 1
        if unit is not None:
            units.append(unit)
    return units


def cut_and_write(units: list[dict], cut: CutSettings, cpus: float, address: str | None) -> dict[str, dict]:
    """Run every work unit as a Ray Data task (one block each); the results by utt_id, each with its `order` (unit,
    position in the unit's results: the order its clips were written). Logs progress."""
    import ray

    if not units:
        return {}
    connect_ray(address)
    items = [{"unit": json.dumps(u)} for u in units]
    ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        export_batch, fn_kwargs={"settings": cut}, batch_size=1, num_cpus=cpus, zero_copy_batch=True)
    results: dict[str, dict] = {}
    total = sum(u["size"] for u in units)
    last = time.monotonic()
    for n, row in enumerate(ds.iter_rows(), start=1):
        unit = json.loads(row["results"])
        for position, result in enumerate(unit["results"]):
            results[result["utt_id"]] = {**result, "order": (unit["index"], position)}
        if time.monotonic() - last > 10 or n == len(units):
            last = time.monotonic()
            log.info("audio: %d/%d work unit(s), %d/%d utterance(s)", n, len(units), len(results), total)
    return results


def manifest_entry(row: dict, result: dict, fmt: str, codec: str, shard_id: int | None, tags: bool) -> dict:
    """One NeMo manifest line: the fields NeMo's readers take (audio_filepath, duration, text, lang / target_lang
    as the prompt datasets read them, offset, channel, shard_id), then where the utterance came from."""
    lang = row["language"]
    entry: dict = {}
    if fmt == "manifest":
        url = row["audio_url"]
        # Where the export read it; NeMo resolves a relative path against the manifest's folder instead.
        entry["audio_filepath"] = url if is_url(url) or os.path.isabs(url) else os.path.abspath(url)
        entry["offset"] = row["start"]
    elif fmt == "cut":
        entry["audio_filepath"] = f"{CLIPS}/{row['utt_id']}.{codec}"
    else:
        entry["audio_filepath"] = f"{row['utt_id']}.{codec}"
    entry["duration"] = round(result["duration"], 6)
    entry["text"] = labels.label_text(row["text"], row.get("sentences"), lang, tags)
    entry["lang"] = entry["target_lang"] = lang
    if fmt == "manifest":
        entry["channel"] = row["channel"] or 0  # for NeMo's lhotse `channel_selector: channel`
    if shard_id is not None:
        entry["shard_id"] = shard_id
    entry.update({"utt_id": row["utt_id"], "row_id": row["row_id"], "segment_index": row["segment_index"],
                  "source_audio": row["audio_filepath"], "source_start": row["start"], "source_end": row["end"],
                  "source_channel": row["channel"], "speaker": row["speaker"], "confidence": row["confidence"],
                  "language_source": row["language_source"]})
    if row["replay"]:
        entry["replay"] = True
    return {k: v for k, v in entry.items() if v is not None}


def recordings_manifest(recordings: pa.Table, split_of: dict[str, str], split: str) -> list[dict]:
    """The split's error-free recordings as a transcription manifest: the original audio, the reference as `text`,
    the forced locale as `lang`, the channel mode, and the manifest's other fields (call_id, ...)."""
    known = known_language(recordings).to_pylist()
    entries = []
    for i, r in enumerate(recordings.to_pylist()):
        if split_of.get(r["row_id"]) != split or r["error"] or not r["audio_url"]:
            continue
        entry = {"audio_filepath": r["audio_url"], "offset": r.get("audio_offset"), "duration": r["duration"],
                 "text": r["reference_text"],
                 "lang": known[i], "channel_mode": r["channel_mode"] if r["channel_mode"] == "split" else None}
        entry.update(json.loads(r["metadata"]) if r["metadata"] else {})
        entries.append({k: v for k, v in entry.items() if v is not None})
    return entries


# ---------------------------------------------------------------------------------------------------------- summary


@dataclass
class ExportSummary:
    transcripts: str
    output_path: str
    format: str
    recordings: int = 0
    utterances: int = 0  # candidates: the segments of the output
    kept: int = 0
    replayed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)  # messages of audio failures, a few per reason
    splits: dict[str, dict] = field(default_factory=dict)
    replay: dict = field(default_factory=dict)
    split_by: str = labels.RECORDING
    groups_without_field: int = 0
    notes: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    def lines(self) -> list[str]:
        dropped = ", ".join(f"{k} {v}" for k, v in self.dropped.items()) or "none"
        out = [f"export      {redact(self.output_path)} ({self.format})",
               f"from        {redact(self.transcripts)}: {self.recordings} recording(s), {self.utterances} "
               f"segment(s)",
               f"kept        {self.kept} utterance(s) ({self.replayed} of them replay)",
               f"dropped     {dropped}"]
        for name, split in self.splits.items():
            languages = ", ".join(f"{k} {v['hours']:.3f} h" for k, v in split["languages"].items()) or "-"
            out.append(f"{name:<11} {split['utterances']} utterance(s), {split['hours']:.3f} h, "
                       f"{split['recordings']} recording(s): {languages}")
        out += [f"note        {n}" for n in self.notes]
        out.append(f"wall time   {self.wall_seconds:.1f} s")
        return out


def nemo_data_settings(folder: str, fmt: str, shards: int) -> dict:
    """The keys of a NeMo `train_ds` / `validation_ds` (lhotse) that read one split of this export."""
    if fmt == "tarred":
        if not shards:
            return {}
        return {"use_lhotse": True, "manifest_filepath": f"{folder}/{sharded_manifest_pattern(shards)}",
                "tarred_audio_filepaths": f"{folder}/{tar_pattern(shards)}"}
    settings = {"use_lhotse": True, "manifest_filepath": f"{folder}/{MANIFEST}"}
    if fmt == "manifest":
        settings["channel_selector"] = "channel"
    return settings


def _split_figures(kept: pa.Table, durations: dict[str, float], split: str) -> dict:
    rows = kept.filter(pc.equal(kept["split"], split)).select(["utt_id", "row_id", "language", "replay"]).to_pylist()
    languages: dict[str, dict] = defaultdict(lambda: {"utterances": 0, "hours": 0.0})
    for r in rows:
        languages[r["language"]]["utterances"] += 1
        languages[r["language"]]["hours"] += durations[r["utt_id"]] / 3600
    return {"utterances": len(rows), "replay_utterances": sum(r["replay"] for r in rows),
            "recordings": len({r["row_id"] for r in rows}),
            "hours": sum(durations[r["utt_id"]] for r in rows) / 3600,
            "languages": dict(sorted(languages.items()))}


# -------------------------------------------------------------------------------------------------------------- run


def run(cfg: ExportConfig) -> ExportSummary:
    started = time.monotonic()
    filters, splits = settings(cfg)
    check_inputs(cfg)
    selection = select(cfg, filters, splits)
    table = selection.utterances
    summary = ExportSummary(transcripts=cfg.transcripts, output_path=cfg.output_path, format=cfg.format,
                            recordings=selection.recordings.num_rows, utterances=selection.candidates,
                            replay=selection.replay, split_by=splits.split_by,
                            groups_without_field=selection.groups_without_field, notes=selection.notes)
    kept = table.filter(pc.is_null(table["reason"]))
    log.info("selected %d of %d utterance(s); cutting and writing (%s)", kept.num_rows, table.num_rows, cfg.format)

    units = work_units(kept, cfg.output_path, cfg.shard_size)
    cut = CutSettings(format=cfg.format, codec=cfg.audio_codec)
    results = cut_and_write(units, cut, cfg.cpus_per_task, cfg.ray_address)

    # Audio failures join the selection's reasons; the manifests list only what was written.
    rows = {r["utt_id"]: r for r in kept.to_pylist()}
    shard_of = {u["utt_id"]: unit["shard_id"] for unit in units for rec in unit["recordings"]
                for u in rec["utterances"]}
    audio_dropped: Counter[str] = Counter()
    entries: dict[str, list[tuple[tuple, int, dict]]] = defaultdict(list)
    durations: dict[str, float] = {}
    for utt_id, row in rows.items():
        result = results[utt_id]
        if result["reason"]:
            audio_dropped[result["reason"]] += 1
            examples = summary.examples.setdefault(result["reason"], [])
            if len(examples) < 3 and result["message"] not in examples:
                examples.append(redact(result["message"]))
            continue
        durations[utt_id] = result["duration"]
        shard = shard_of[utt_id] if cfg.format == "tarred" else None
        entries[row["split"]].append((result["order"], shard_of[utt_id],
                                      manifest_entry(row, result, cfg.format, cfg.audio_codec, shard, cfg.lang_tags)))
    ok = pa.array([u in durations for u in kept["utt_id"].to_pylist()], pa.bool_())
    written = kept.filter(ok)

    split_of = dict(zip(table["row_id"].to_pylist(), table["split"].to_pylist()))
    for split in splits.shares:
        folder = f"{cfg.output_path.rstrip('/')}/{split}"
        ordered = sorted(entries.get(split, []), key=lambda item: item[0])  # as written: tar member order
        lines = [e for _, _, e in ordered]
        if cfg.format == "tarred":
            shards = sorted({u["shard_id"] for u in units if u["split"] == split})
            for shard in shards:
                write_bytes(f"{folder}/{shard_manifest_name(shard)}", jsonl(e for _, s, e in ordered if s == shard))
            write_bytes(f"{folder}/{TARRED_MANIFEST}", jsonl(lines))
        else:
            write_bytes(f"{folder}/{MANIFEST}", jsonl(lines))
        write_bytes(f"{folder}/{RECORDINGS_MANIFEST}",
                    jsonl(recordings_manifest(selection.recordings, split_of, split)))
        summary.splits[split] = _split_figures(written, durations, split)
        summary.splits[split]["shards"] = len([u for u in units if u["split"] == split])
        summary.splits[split]["nemo"] = nemo_data_settings(folder, cfg.format, summary.splits[split]["shards"])

    summary.kept = written.num_rows
    summary.replayed = pc.sum(pc.cast(written["replay"], pa.int64())).as_py() or 0
    dropped = Counter(labels.counts_by_reason(table)) + audio_dropped
    summary.dropped = dict(sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0])))
    if not summary.kept:
        summary.notes.append("no utterance was kept: see `dropped` and loosen the filters")
    summary.wall_seconds = time.monotonic() - started
    config = {k: redact(v) if isinstance(v, str) else v
              for k, v in OmegaConf.to_container(OmegaConf.structured(cfg)).items()}
    record = {"config": config, "summary": asdict(summary)}
    write_bytes(f"{cfg.output_path.rstrip('/')}/{SUMMARY_FILE}",
                (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))  # last: the commit
    return summary


def main(argv: list[str] | None = None) -> int:
    args, verbose = split_verbose(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        print("Keys (conf/export_training_data.yaml):", ", ".join(ExportConfig.__dataclass_fields__))
        return 0
    return run_command(lambda: run(load_config(args)), job="export", verbose=verbose)


if __name__ == "__main__":
    sys.exit(main())
