"""Decode + resample to 16 kHz mono, per input format, on one CPU core, in multiples of real time.

    python -m benchmarks.decode_formats [--seconds 120]

Each format holds the same speech-like signal; the time covers reading from memory, decoding, resampling (soxr) and
downmixing (what a decode task does per file, without the network).
"""

from __future__ import annotations

import argparse
import io
import json
import time

import av
import numpy as np
import soundfile as sf

from benchmarks.common import machine
from benchmarks.long_audio import speech_like
from pipeline.audio import stream_audio


def encode_pyav(x: np.ndarray, rate: int, container: str, codec: str) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame_size = 1024
        pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16)
        for i in range(0, len(pcm), frame_size):
            frame = av.AudioFrame.from_ndarray(pcm[None, i:i + frame_size], format="s16", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def encode_sf(x: np.ndarray, rate: int, fmt: str, subtype: str | None, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    data = np.stack([x, np.roll(x, 300)], axis=1) if channels == 2 else x
    # In chunks: libsndfile's Vorbis and MP3 encoders crash on one long write (seen with 120 s at 44.1 kHz).
    with sf.SoundFile(buf, "w", rate, channels, format=fmt, subtype=subtype) as out:
        for i in range(0, len(data), 16384):
            out.write(data[i:i + 16384])
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    import soxr

    base = speech_like(args.seconds, seed=3)

    def at(rate: int) -> np.ndarray:
        return soxr.resample(base, 16000, rate).astype(np.float32) if rate != 16000 else base

    cases = {
        "wav_pcm16_16k_mono": encode_sf(at(16000), 16000, "WAV", "PCM_16"),
        "wav_ulaw_8k_mono": encode_sf(at(8000), 8000, "WAV", "ULAW"),
        "wav_pcm16_44k1_stereo": encode_sf(at(44100), 44100, "WAV", "PCM_16", channels=2),
        "flac_48k_mono": encode_sf(at(48000), 48000, "FLAC", "PCM_16"),
        "ogg_vorbis_44k1_mono": encode_sf(at(44100), 44100, "OGG", "VORBIS"),
        "mp3_44k1_mono": encode_sf(at(44100), 44100, "MP3", "MPEG_LAYER_III"),
        "opus_48k_mono": encode_sf(at(48000), 48000, "OGG", "OPUS"),
        "m4a_aac_44k1_mono (PyAV)": encode_pyav(at(44100), 44100, "mp4", "aac"),
    }
    results = {}
    for name, data in cases.items():
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            info, blocks = stream_audio(data)
            total = sum(b.mean(axis=0).shape[0] for b in blocks)
            best = min(best, time.perf_counter() - started)
        results[name] = {"x_real_time": round(total / 16000 / best), "decoder": info.decoder,
                         "mib": round(len(data) / 2**20, 2)}
    print(json.dumps({"machine": machine(), "seconds_per_file": args.seconds, "one_core": results}, indent=2))


if __name__ == "__main__":
    main()
