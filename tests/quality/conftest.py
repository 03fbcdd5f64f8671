"""Quality tests: the whole job with the shipped demo model (`models/demo-callcentre.nemo`) on speech made here.

Once per session, espeak-ng reads held-out call-centre sentences (the domain's fixed held-out class: never in the
model's training set) with held-out voices (variants the model never heard); from those clips the fixtures build
the other inputs (8 kHz mu-law and 44.1 kHz stereo copies, a 10-minute recording, a stereo call), run the job a few
times through `jobs.transcribe.main([...])`, and hand the tests the Parquet read back with DuckDB. A wrong sample
rate, swapped channels, segments stitched out of order or the wrong prompt on a row all show up as a worse WER or a
wrong language here.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pytest
import soundfile as sf

from pipeline.scoring import normalize_text

ROOT = Path(__file__).resolve().parents[2]
DEMO_MODEL = ROOT / "models" / "demo-callcentre.nemo"
SEED = 20261  # any seed: the held-out class is the same for every seed
LOCALES = ("en-US", "es-ES", "de-DE", "fr-FR")
CLIPS_PER_LOCALE = 6
RATE = 16000


@dataclass(frozen=True)
class Clip:
    path: Path
    text: str  # tagged reference, e.g. "Yes.<en-US>"
    locale: str  # or "auto" for a clip mixing languages
    audio: np.ndarray  # 16 kHz mono float32


def write_manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def run_job(manifest: Path, out: Path, *overrides: str) -> Path:
    from jobs.transcribe import main

    code = main([f"model_path={DEMO_MODEL}", f"dataset_manifest={manifest}", f"output_path={out}", *overrides])
    assert code == 0, f"job failed with exit code {code}"
    return out


def recordings(out: Path) -> list[dict]:
    rel = duckdb.sql(f"select * from read_parquet('{out}/recordings/*.parquet') order by line")
    return [dict(zip(rel.columns, row)) for row in rel.fetchall()]


def segments(out: Path) -> list[dict]:
    rel = duckdb.sql(f"select r.line, s.* from read_parquet('{out}/segments/*.parquet') s "
                     f"join read_parquet('{out}/recordings/*.parquet') r using (row_id) "
                     f"order by r.line, s.channel, s.start")
    return [dict(zip(rel.columns, row)) for row in rel.fetchall()]


def corpus_wer(rows: list[dict], weights: list[int] | None = None) -> float:
    weights = weights or [1] * len(rows)
    assert all(r["error"] is None for r in rows), [r["error"] for r in rows if r["error"]]
    return sum(w * r["word_errors"] for r, w in zip(rows, weights)) / sum(w * r["ref_words"]
                                                                          for r, w in zip(rows, weights))


def words_of(text: str) -> list[str]:
    return normalize_text(text).split()


@pytest.fixture(scope="session")
def demo_model() -> Path:
    assert DEMO_MODEL.exists(), f"{DEMO_MODEL} is missing: it ships with the repository"
    return DEMO_MODEL


@pytest.fixture(scope="session")
def heldout_clips(tmp_path_factory) -> list[Clip]:
    """CLIPS_PER_LOCALE single-language clips per locale and 4 mixed-language clips, all held-out voices."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not on PATH (apt-get install espeak-ng)")
    from training import synth_speech

    folder = tmp_path_factory.mktemp("heldout")
    cfg = synth_speech.load_config([
        f"output_dir={folder}", f"seed={SEED}", "hours=0", f"test_clips_per_locale={CLIPS_PER_LOCALE}",
        "test_mixed_clips=4", "dev_clips_per_locale=0", "dev_mixed_clips=0", "test_sentences_per_locale=12",
        "dev_sentences_per_locale=0", "heldout_voice_fraction=1.0", "workers=2"])
    synth_speech.generate(cfg, log=lambda *_: None)
    clips = []
    for entry in synth_speech.read_manifest(folder / "test_manifest.json"):
        assert entry["heldout_voice"]
        path = folder / entry["audio_filepath"]
        audio, rate = sf.read(path, dtype="float32")
        assert rate == RATE
        clips.append(Clip(path, entry["text"], entry["lang"], audio))
    return clips


@pytest.fixture(scope="session")
def single_language_clips(heldout_clips) -> list[Clip]:
    return [c for c in heldout_clips if c.locale != "auto"]


@pytest.fixture(scope="session")
def clips_job(ray_session, demo_model, heldout_clips, tmp_path_factory) -> dict[str, list[dict]]:
    """One job at [56,13] over the clips as 16 kHz FLAC with the language given, the same as 8 kHz mu-law WAV and as
    44.1 kHz stereo WAV (language given), and as 16 kHz FLAC in `auto` (single- and mixed-language clips):
    {variant: recordings rows in clip order}."""
    import soxr

    folder = tmp_path_factory.mktemp("formats")
    rows, variants = [], []
    for i, clip in enumerate(heldout_clips):
        # The job transcribes one file once (a second line with the same audio is a duplicate-row error): the `auto`
        # rows read a copy.
        auto_copy = folder / f"{i:03d}-auto.flac"
        shutil.copyfile(clip.path, auto_copy)
        if clip.locale != "auto":
            ulaw = folder / f"{i:03d}-ulaw.wav"
            sf.write(ulaw, soxr.resample(clip.audio, RATE, 8000), 8000, subtype="ULAW")
            stereo = folder / f"{i:03d}-stereo.wav"
            wide = soxr.resample(clip.audio, RATE, 44100)
            sf.write(stereo, np.stack([wide, 0.8 * wide], axis=1), 44100, subtype="PCM_16")
            for variant, path in (("given", clip.path), ("ulaw", ulaw), ("stereo", stereo)):
                rows.append({"audio_filepath": str(path), "text": clip.text, "target_lang": clip.locale})
                variants.append(variant)
        rows.append({"audio_filepath": str(auto_copy), "text": clip.text, "target_lang": "auto",
                     "locale": clip.locale})
        variants.append("auto" if clip.locale != "auto" else "mixed")
    out = run_job(write_manifest(folder / "manifest.jsonl", rows), folder / "out", "att_context_size=[56,13]")
    by_variant: dict[str, list[dict]] = {}
    for variant, row in zip(variants, recordings(out)):
        by_variant.setdefault(variant, []).append(row)
    return by_variant


@dataclass(frozen=True)
class LongRecording:
    out: Path
    spans: list[tuple[float, float, int]]  # (start, end, index into the single-language clips), in time order
    stretch: tuple[float, float]  # the stretch without pauses


@pytest.fixture(scope="session")
def long_recording(ray_session, demo_model, single_language_clips, tmp_path_factory) -> LongRecording:
    """A 10-minute recording made of the clips in shuffled rounds with pauses of 0.8-1.6 s, and one stretch of
    about 70 s where the clips follow each other without a pause over a steady noise floor (18 dB under the speech),
    so the segmenter finds no pause there and must force cuts. Transcribed in `auto` with timestamps."""
    rng = np.random.default_rng(SEED)
    folder = tmp_path_factory.mktemp("long")
    parts, spans, t = [], [], 0.0
    stretch_at, stretch = 240.0, None
    while t < 600.0:
        for index in rng.permutation(len(single_language_clips)):
            audio = single_language_clips[index].audio
            if stretch is None and t >= stretch_at:  # the stretch: trimmed clips back to back, no pause
                start = t
                noise_parts = []
                while t - start < 70.0:
                    k = int(rng.integers(len(single_language_clips)))
                    voiced = np.flatnonzero(np.abs(single_language_clips[k].audio) > 1e-3)
                    piece = single_language_clips[k].audio[voiced[0]:voiced[-1] + 1]
                    # espeak's own sentence pauses inside a clip are filled by the noise floor below
                    spans.append((t, t + len(piece) / RATE, k))
                    noise_parts.append(piece)
                    t += len(piece) / RATE
                speech = np.concatenate(noise_parts)
                level = np.sqrt(np.mean(speech[np.abs(speech) > 1e-3] ** 2))
                floor = level * 10 ** (-18 / 20) * rng.standard_normal(len(speech)).astype(np.float32)
                parts.append(speech + floor)
                stretch = (start, t)
            parts.append(audio)
            spans.append((t, t + len(audio) / RATE, int(index)))
            t += len(audio) / RATE
            pause = np.zeros(int(rng.uniform(0.8, 1.6) * RATE), dtype=np.float32)
            parts.append(pause)
            t += len(pause) / RATE
            if t >= 600.0:
                break
    audio = np.concatenate(parts)
    path = folder / "ten-minutes.flac"
    sf.write(path, audio, RATE, format="FLAC")
    reference = " ".join(single_language_clips[k].text for _, _, k in spans)
    manifest = write_manifest(folder / "manifest.jsonl", [{"audio_filepath": str(path), "text": reference}])
    # The energy rule: this recording's stretch without pauses is there to force cuts with overlap, which is that
    # rule's mechanism (the VAD finds the small gaps between the synthetic sentences and cuts there instead; the
    # VAD's own long recordings are tests/jobs/test_segmenting_e2e.py).
    out = run_job(manifest, folder / "out", "att_context_size=[56,13]", "target_lang=auto", "timestamps=true",
                  "segmenting.method=energy")
    return LongRecording(out, spans, stretch)


@dataclass(frozen=True)
class StereoCall:
    out: Path
    turns: list[tuple[int, float, float, Clip]]  # (channel, start, end, clip) in time order


@pytest.fixture(scope="session")
def stereo_call(ray_session, demo_model, single_language_clips, tmp_path_factory) -> StereoCall:
    """An agent (en-US clips, left channel) and a customer (es-ES clips, right channel) taking four turns each;
    split mode, `auto`."""
    folder = tmp_path_factory.mktemp("call")
    agent = [c for c in single_language_clips if c.locale == "en-US"][:4]
    customer = [c for c in single_language_clips if c.locale == "es-ES"][:4]
    sides = [[], []]
    turns, t = [], 0.5
    for channel, clip in [(ch, c) for pair in zip(agent, customer) for ch, c in enumerate(pair)]:
        gap = np.zeros(int(0.7 * RATE), dtype=np.float32)
        sides[channel] += [clip.audio, gap]
        sides[1 - channel] += [np.zeros_like(clip.audio), gap]
        turns.append((channel, t, t + len(clip.audio) / RATE, clip))
        t += len(clip.audio) / RATE + len(gap) / RATE
    lead = np.zeros(int(0.5 * RATE), dtype=np.float32)
    stereo = np.stack([np.concatenate([lead] + side) for side in sides], axis=1)
    sf.write(folder / "call.flac", stereo, RATE, format="FLAC")
    reference = " ".join(clip.text for _, _, _, clip in turns)
    manifest = write_manifest(folder / "manifest.jsonl", [{"audio_filepath": "call.flac", "text": reference}])
    out = run_job(manifest, folder / "out", "att_context_size=[56,13]", "target_lang=auto", "audio.channel_mode=split",
                  "audio.channel_names=[agent,customer]", "segmenting.max_seconds=8", "segmenting.min_seconds=2",
                  "timestamps=true")
    return StereoCall(out, turns)
