"""Both segmenting methods through the whole job on a small generated noisy call (mono, 8 kHz mu-law, a two-sided
call in split mode) and a recording without speech; the Parquet read back with DuckDB."""

from __future__ import annotations

import json
import shutil

import duckdb
import numpy as np
import pytest
import soundfile as sf

from benchmarks.noisy_calls import RATE, hold_music, make_call, score_segments, write_call
from jobs.transcribe import plan, run

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not on PATH")


@pytest.fixture(scope="module")
def noisy_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("noisy")
    mono = make_call(seed=11, seconds=70.0, name="mono")
    stereo = make_call(seed=12, seconds=70.0, channels=2, name="stereo")
    files = write_call(mono, folder)
    sf.write(folder / "stereo.flac", stereo.audio, RATE, format="FLAC")
    rng = np.random.default_rng(5)
    no_speech = np.concatenate([0.2 * hold_music(35.0, rng), 1e-3 * rng.standard_normal(25 * RATE)])
    sf.write(folder / "no-speech.flac", no_speech.astype(np.float32), RATE, format="FLAC")
    lines = [{"audio_filepath": str(files["flac"]), "name": "mono"},
             {"audio_filepath": str(files["ulaw"]), "name": "ulaw"},
             {"audio_filepath": str(folder / "stereo.flac"), "channel_mode": "split", "name": "stereo"},
             {"audio_filepath": str(folder / "no-speech.flac"), "name": "no-speech"}]
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest, {"mono": mono, "ulaw": mono, "stereo": stereo}, len(no_speech) / RATE


@pytest.mark.parametrize("method", ["vad", "energy"])
def test_noisy_calls_through_the_job(ray_session, tiny_model, noisy_set, tmp_path, method):
    manifest, calls, no_speech_seconds = noisy_set
    out = tmp_path / "out"
    run(plan([f"model_path={tiny_model}", f"dataset_manifest={manifest}", f"output_path={out}",
              f"segmenting.method={method}", "audio.channel_names=[agent,customer]"]))
    recs = {json.loads(r["metadata"])["name"]: r for r in duckdb.sql(
        f"select * from read_parquet('{out}/recordings/*.parquet')").pl().iter_rows(named=True)}
    segs = duckdb.sql(f"select r.metadata, s.channel, s.start, s.\"end\" from read_parquet('{out}/segments/*.parquet') s "
                      f"join read_parquet('{out}/recordings/*.parquet') r using (row_id)").fetchall()
    assert set(recs) == {"mono", "ulaw", "stereo", "no-speech"}
    assert all(r["error"] is None for r in recs.values()), {k: r["error"] for k, r in recs.items()}

    for name, call in calls.items():
        rec = recs[name]
        assert rec["duration"] == pytest.approx(call.seconds, abs=0.01)
        mine = [(c, a, b) for m, c, a, b in segs if json.loads(m)["name"] == name]
        assert rec["num_segments"] == len(mine)
        assert rec["speech_seconds"] == pytest.approx(sum(b - a for _, a, b in mine), abs=1e-6)
        for channel in range(call.channels):
            spans = [(a, b) for c, a, b in mine if (c or 0) == channel]
            score = score_segments(call, channel, spans)
            assert score.speech_kept / score.speech_seconds >= (0.97 if method == "vad" else 0.99), (name, channel)
            share = score.nonspeech_sent / score.nonspeech_seconds
            if method == "vad":
                assert share <= 0.25, (name, channel, share)  # music, tones, noise and silences left out
            else:
                assert share >= 0.5, (name, channel, share)  # the energy rule sends them
        if name == "stereo":
            assert {c for c, _, _ in mine} == {0, 1} and rec["conversation"]

    empty = recs["no-speech"]
    assert empty["duration"] == pytest.approx(no_speech_seconds, abs=0.01)
    if method == "vad":  # nothing is speech: no segment, an empty transcript, no error
        assert (empty["num_segments"], empty["speech_seconds"], empty["text"]) == (0, 0.0, "")
    else:  # the energy rule sends the music (and the model may write words into it)
        assert empty["num_segments"] >= 1 and empty["speech_seconds"] >= 30.0
