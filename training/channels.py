"""What happens to speech between a caller and the job: silence around it, background noise, the telephone channel.

Used by the training data (`training.synth_speech`, per clip, drawn from the seed) and by the hand-written
independent evaluation set (`training.heldout`, per condition), so both pass through the same code:

- `pad`: silence before and after the speech (a recording, and every segment the job cuts, starts before the first
  word: the segmenter keeps 0.2 s; a call may hold a second or more);
- `add_noise`: white, pink or brown noise at a given SNR over the speech (pink and brown: the 1/f and 1/f^2 spectra
  of room and line noise, made by shaping white noise in the frequency domain);
- `apply_channel`: `clean` (16 kHz as synthesised), `mulaw8k` (resampled to 8 kHz, G.711 mu-law 8-bit, back to
  16 kHz: a plain phone call), `mp3_8k` (8 kHz, MP3 through libsndfile at a low bit rate, back to 16 kHz: a
  compressed call recording).
All functions take and return float32 mono arrays at 16 kHz.
"""

from __future__ import annotations

import io

import numpy as np

SAMPLE_RATE = 16000
CHANNELS = ("clean", "mulaw8k", "mp3_8k")
NOISE_COLOURS = ("white", "pink", "brown")
_MU = 255


class ChannelError(ValueError):
    """An unknown channel or noise colour."""


def pad(audio: np.ndarray, lead_seconds: float, trail_seconds: float) -> np.ndarray:
    lead = np.zeros(int(round(lead_seconds * SAMPLE_RATE)), dtype=np.float32)
    trail = np.zeros(int(round(trail_seconds * SAMPLE_RATE)), dtype=np.float32)
    return np.concatenate([lead, audio.astype(np.float32), trail])


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise of `n` samples whose power falls as 1/f^0 (white), 1/f (pink) or 1/f^2 (brown)."""
    if colour not in NOISE_COLOURS:
        raise ChannelError(f"noise colour must be one of {', '.join(NOISE_COLOURS)}, got {colour!r}")
    white = rng.standard_normal(n)
    if colour == "white" or n < 2:
        noise = white
    else:
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(n)
        freqs[0] = freqs[1]  # no infinite gain at DC
        exponent = 0.5 if colour == "pink" else 1.0  # amplitude ~ f^-exponent: power ~ f^-(2 * exponent)
        noise = np.fft.irfft(spectrum / freqs ** exponent, n=n)
    noise = noise - noise.mean()
    return (noise / max(float(np.sqrt(np.mean(noise ** 2))), 1e-12)).astype(np.float32)


def add_noise(audio: np.ndarray, snr_db: float, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Noise at `snr_db` against the power of the speech (the non-silent samples: silence padding must not lower
    the reference, or padded clips would get less noise)."""
    voiced = audio[np.abs(audio) > 1e-4]
    power = float(np.mean(voiced ** 2)) if len(voiced) else 0.0
    noise = coloured_noise(len(audio), colour, rng) * np.sqrt(power / 10 ** (snr_db / 10))
    return np.clip(audio + noise, -1.0, 1.0).astype(np.float32)


def mulaw(audio: np.ndarray) -> np.ndarray:
    """G.711-style mu-law: compand, quantise to 8 bits, expand."""
    x = np.clip(audio, -1.0, 1.0)
    companded = np.sign(x) * np.log1p(_MU * np.abs(x)) / np.log1p(_MU)
    q = np.round((companded + 1) / 2 * _MU) / _MU * 2 - 1
    return (np.sign(q) * ((1 + _MU) ** np.abs(q) - 1) / _MU).astype(np.float32)


def _mp3_roundtrip(audio: np.ndarray, rate: int, compression_level: float) -> np.ndarray:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="MP3", compression_level=compression_level)
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float32")
    decoded = decoded if decoded.ndim == 1 else decoded.mean(axis=1)
    # The decoder may return a few samples more or fewer than went in.
    out = np.zeros(len(audio), dtype=np.float32)
    out[: min(len(audio), len(decoded))] = decoded[: len(audio)]
    return out


def apply_channel(audio: np.ndarray, channel: str, mp3_compression: float = 0.7) -> np.ndarray:
    """`audio` as it comes out of `channel`, back at 16 kHz and the same length."""
    import soxr

    if channel not in CHANNELS:
        raise ChannelError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
    if channel == "clean":
        return audio.astype(np.float32)
    narrow = soxr.resample(audio.astype(np.float32), SAMPLE_RATE, 8000)
    narrow = mulaw(narrow) if channel == "mulaw8k" else _mp3_roundtrip(narrow, 8000, mp3_compression)
    wide = soxr.resample(narrow, 8000, SAMPLE_RATE).astype(np.float32)
    out = np.zeros(len(audio), dtype=np.float32)
    out[: min(len(audio), len(wide))] = wide[: len(audio)]
    return np.clip(out, -1.0, 1.0)
