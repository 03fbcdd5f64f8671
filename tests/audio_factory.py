"""Real audio files made in the tests, so nothing binary is committed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def tone(seconds: float, sample_rate: int = 16000, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    """A tone with a slow amplitude wobble (so features vary), shape (n,) or (n, channels)."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = (0.3 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t))).astype(np.float32)
    if channels == 1:
        return x
    return np.stack([np.roll(x, 97 * c) for c in range(channels)], axis=1)


def write_tone(path: Path, seconds: float = 1.0, sample_rate: int = 16000, channels: int = 1,
               fmt: str | None = None, subtype: str | None = None) -> Path:
    path = Path(path)
    sf.write(path, tone(seconds, sample_rate, channels=channels), sample_rate, format=fmt, subtype=subtype)
    return path


def bursts(seconds: float, on: list[tuple[float, float]], sample_rate: int = 16000, freq: float = 220.0,
           seed: int = 0) -> np.ndarray:
    """Silence (faint noise) with loud 'speech-like' bursts (a tone plus noise) over the (start, end) spans in `on`."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    x = (0.001 * rng.standard_normal(n)).astype(np.float32)
    t = np.arange(n) / sample_rate
    for start, end in on:
        a, b = int(start * sample_rate), min(n, int(end * sample_rate))
        x[a:b] += (0.3 * np.sin(2 * np.pi * freq * t[a:b]) + 0.05 * rng.standard_normal(b - a)).astype(np.float32)
    return x


def from_pcm16(data: bytes) -> np.ndarray:
    """16-bit PCM bytes (as segments travel between stages) back to float32 in [-1, 1)."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
