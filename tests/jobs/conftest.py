"""A small real transcription output, made once per session by the real job (tiny model, generated audio), for the
training-data export, its NeMo-reader proofs and the notebooks."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.audio_factory import bursts


@dataclass(frozen=True)
class Transcribed:
    output: Path  # the transcription output
    audio: Path  # the folder of its source audio (16-bit PCM WAV: decoded samples are exact)
    manifest: Path


def write_corpus(folder: Path) -> Path:
    """Generated audio and its manifest: a 26 s mono recording with pauses (several segments), a stereo call in split
    mode (one utterance per channel and turn), an 8 kHz phone clip forced to es-ES, an 11 s drone with no pause (a
    forced cut, so two overlapping segments), and a missing file."""
    audio = folder / "audio"
    audio.mkdir(parents=True)
    sf.write(audio / "long.wav", bursts(26.0, [(0.3, 4.0), (4.6, 9.5), (10.2, 15.0), (15.8, 21.0), (21.7, 25.5)]),
             16000, subtype="PCM_16")
    call = np.stack([bursts(12.0, [(0.4, 3.0), (6.0, 8.2)], seed=1, freq=180.0),
                     bursts(12.0, [(3.5, 5.6), (8.6, 11.4)], seed=2, freq=260.0)], axis=1)
    sf.write(audio / "call.wav", call, 16000, subtype="PCM_16")
    sf.write(audio / "phone.wav", bursts(6.0, [(0.5, 5.5)], sample_rate=8000, seed=3), 8000, subtype="PCM_16")
    sf.write(audio / "drone.wav", bursts(11.0, [(0.0, 11.0)], seed=4), 16000, subtype="PCM_16")
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in [
        {"audio_filepath": "audio/long.wav", "text": "the call was transferred to billing please hold",
         "call_id": "c-1"},
        {"audio_filepath": "audio/call.wav", "channel_mode": "split", "call_id": "c-2"},
        {"audio_filepath": "audio/phone.wav", "lang": "es-ES", "text": "hola buenos dias", "call_id": "c-3"},
        {"audio_filepath": "audio/drone.wav", "call_id": "c-4"},
        {"audio_filepath": "audio/missing.wav", "call_id": "c-5"},
    ]))
    return manifest


def transcribe(manifest: Path, output: str, model: Path) -> None:
    from jobs.transcribe import main

    assert main([f"model_path={model}", f"dataset_manifest={manifest}", f"output_path={output}", "target_lang=en-US",
                 "confidence=true", "segmenting.max_seconds=8", "segmenting.min_seconds=3", "segmenting.method=energy",
                 "audio.channel_names=[agent,customer]"]) == 0


@pytest.fixture(scope="session")
def sparse_model(tmp_path_factory) -> Path:
    """The tiny model with a raised blank bias: its random weights then write a few characters per second (4 to 50
    per segment here), as a trained model does, instead of hundreds (which make an RNNT loss on CPU take a minute);
    and a lowered tag bias: no language tags (a third of the tiny vocabulary is tags, so a random model would tag
    nearly every segment with another language than the one asked for). Calibrated by hand (seed and biases): a
    random model's output jumps from nothing to hundreds of characters within a few hundredths of blank bias."""
    from pipeline.models.tiny import TinyModelSpec, build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("models") / "sparse.nemo",
                            TinyModelSpec(blank_bias=0.18, tag_bias=-1.0, seed=4))


@pytest.fixture(scope="session")
def transcribed(ray_session, sparse_model, tmp_path_factory) -> Transcribed:
    folder = tmp_path_factory.mktemp("transcribed")
    manifest = write_corpus(folder)
    transcribe(manifest, str(folder / "out"), sparse_model)
    return Transcribed(folder / "out", folder / "audio", manifest)


def copy_output(source: Transcribed, folder: Path) -> Transcribed:
    """A private copy (audio, manifest and output) that a test may damage: the copy's recordings point at the copy's
    audio (`audio_url` is resolved when the job reads the manifest)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    shutil.copytree(source.output.parent, folder)
    for path in (folder / "out" / "recordings").glob("*.parquet"):
        table = pq.read_table(path)
        moved = pc.replace_substring(table["audio_url"], str(source.audio), str(folder / "audio"))
        pq.write_table(table.set_column(table.schema.get_field_index("audio_url"), "audio_url", moved), path)
    return Transcribed(folder / "out", folder / "audio", folder / "manifest.jsonl")
