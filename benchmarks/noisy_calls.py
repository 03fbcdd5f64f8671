"""Noisy call recordings with known speech, generated (no download): the VAD's test set and benchmark input.

A call is a timeline of sections: ring tones at the start, then speech (held-out call-centre sentences read by
espeak-ng's held-out voices, as the demo model's quality tests use), speech under pink or babble-like noise at
0-15 dB SNR, hold music (a synthesised melody over chords), DTMF digits, noise without speech and long silences,
all over a line hum. Every utterance's span is known, and so are its sounding stretches ("words": runs of 10 ms
frames within 45 dB of the utterance's loudest, joined over gaps shorter than 60 ms; espeak leaves short gaps between
most words), so a benchmark can say how much speech a segmenter kept, how much non-speech it sent and whether a cut
fell inside a word. `write_call` stores a call as 16 kHz FLAC and as 8 kHz mu-law WAV (the telephone format).

Used by `benchmarks/vad.py` and the tests (`tests/pipeline/test_vad_segmenter.py`, `tests/jobs/test_segmenting_e2e.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

RATE = 16_000
SPEECH_RMS_DB = -20.0  # each utterance is scaled to this RMS (over its sounding frames)
HUM_DB = -45.0
FLOOR_DB = -65.0  # the line's own noise where nothing else sounds
LOCALE = "en-US"
VARIANTS = ("m7", "f4", "klatt4")  # espeak-ng's voice variants held out from the demo model's training
DTMF = {"1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "4": (770, 1209), "5": (770, 1336), "6": (770, 1477),
        "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "*": (941, 1209), "0": (941, 1336), "#": (941, 1477)}


@dataclass(frozen=True)
class Utterance:
    start: float  # seconds: first sounding sample
    end: float  # last sounding sample
    text: str
    channel: int
    words: list[tuple[float, float]]  # sounding stretches, absolute seconds


@dataclass
class NoisyCall:
    name: str
    audio: NDArray[np.float32]  # (n,) mono or (n, 2) for a two-sided call, 16 kHz
    utterances: list[Utterance] = field(default_factory=list)
    events: list[tuple[str, float, float, int]] = field(default_factory=list)  # (kind, start, end, channel)

    @property
    def seconds(self) -> float:
        return self.audio.shape[0] / RATE

    @property
    def channels(self) -> int:
        return 1 if self.audio.ndim == 1 else self.audio.shape[1]

    def speech(self, channel: int = 0) -> list[tuple[float, float]]:
        return [(u.start, u.end) for u in self.utterances if u.channel == channel]

    def text(self, channel: int | None = None) -> str:
        return " ".join(u.text for u in self.utterances if channel is None or u.channel == channel)


def _db(level_db: float) -> float:
    return float(10 ** (level_db / 20))


def pink_noise(n: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """Unit-RMS 1/f noise (white noise shaped in the frequency domain)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size)
    spectrum[1:] /= np.sqrt(f[1:])
    spectrum[0] = 0
    x = np.fft.irfft(spectrum, n)
    return (x / (np.sqrt(np.mean(x ** 2)) + 1e-12)).astype(np.float32)


def babble_noise(n: int, rng: np.random.Generator, talkers: int = 6) -> NDArray[np.float32]:
    """Unit-RMS babble-like noise: `talkers` streams of speech-band noise (300-3,400 Hz), each switched on and off at
    a syllable rate (3-6 Hz, random), so the sum flickers like a room of voices without a single word in it."""
    spectrum_f = np.fft.rfftfreq(n, 1 / RATE)
    band = ((spectrum_f > 300) & (spectrum_f < 3400)).astype(float)
    x = np.zeros(n)
    t = np.arange(n) / RATE
    for _ in range(talkers):
        voice = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * band, n)
        rate = rng.uniform(3, 6)
        envelope = np.clip(np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)), 0, None) ** 2
        gate = np.repeat(rng.random(n // RATE + 2) < 0.7, RATE)[:n]  # each talker pauses now and then
        x += voice * envelope * gate
    return (x / (np.sqrt(np.mean(x ** 2)) + 1e-12)).astype(np.float32)


def hold_music(seconds: float, rng: np.random.Generator) -> NDArray[np.float32]:
    """A melody over a chord progression (I-vi-IV-V, 2 s a chord), notes with harmonics and a decay; unit peak."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    root = 261.63 * 2 ** (rng.integers(-3, 4) / 12)
    chords = [(0, 4, 7), (9, 12, 16), (5, 9, 12), (7, 11, 14)]
    x = np.zeros(n)

    def note(freq: float, a: int, b: int, gain: float) -> None:
        tt = t[a:b] - t[a]
        env = np.minimum(1, tt / 0.02) * np.exp(-2.5 * tt)
        x[a:b] += gain * env * sum(h_gain * np.sin(2 * np.pi * freq * h * tt) for h, h_gain in ((1, 1), (2, .5),
                                                                                                  (3, .25)))

    for k, a in enumerate(range(0, n, 2 * RATE)):
        chord = chords[k % len(chords)]
        b = min(n, a + 2 * RATE)
        for step in chord:
            note(root * 2 ** (step / 12) / 2, a, b, 0.25)
        at = a
        while at < b:
            length = int(rng.choice([0.25, 0.5, 0.5, 1.0]) * RATE)
            step = chord[int(rng.integers(3))] + 12 * int(rng.integers(0, 2))
            note(root * 2 ** (step / 12), at, min(b, at + length), 0.4)
            at += length
    return (x / np.abs(x).max()).astype(np.float32)


def ring_tones(rings: int) -> NDArray[np.float32]:
    """North American ringback: 440 + 480 Hz, 2 s on, 4 s off; unit peak."""
    t = np.arange(2 * RATE) / RATE
    on = 0.5 * (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 480 * t))
    return np.concatenate([np.concatenate([on, np.zeros(4 * RATE)]) for _ in range(rings)]).astype(np.float32)


def dtmf(digits: str, rng: np.random.Generator) -> NDArray[np.float32]:
    parts = []
    for d in digits:
        lo, hi = DTMF[d]
        t = np.arange(int(rng.uniform(0.08, 0.15) * RATE)) / RATE
        parts += [0.5 * (np.sin(2 * np.pi * lo * t) + np.sin(2 * np.pi * hi * t)),
                  np.zeros(int(rng.uniform(0.08, 0.2) * RATE))]
    return np.concatenate(parts).astype(np.float32)


def line_hum(n: int) -> NDArray[np.float32]:
    t = np.arange(n) / RATE
    return sum(g * np.sin(2 * np.pi * 60 * h * t) for h, g in ((1, 1), (3, .5), (5, .25))).astype(np.float32) / 1.75


def sounding_stretches(audio: NDArray[np.float32]) -> list[tuple[int, int]]:
    """(start, end) samples of the runs of 10 ms frames within 45 dB of the loudest, joined over gaps < 60 ms."""
    hop = RATE // 100
    frames = audio[: audio.size // hop * hop].reshape(-1, hop)
    level = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    active = level > level.max() - 45
    runs, start = [], None
    for i, on in enumerate([*active, False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            if runs and start - runs[-1][1] < 6:
                runs[-1] = (runs[-1][0], i)
            else:
                runs.append((start, i))
            start = None
    return [(a * hop, b * hop) for a, b in runs]


def _sentences(count: int, seed: int) -> list[str]:
    from training import callcentre

    return callcentre.heldout_pool(LOCALE, count, seed)


def _speak(text: str, variant: str, rng: np.random.Generator) -> NDArray[np.float32]:
    from training.synth_speech import speak

    audio = speak(text, LOCALE, variant, speed=int(rng.integers(140, 190)), pitch=int(rng.integers(35, 65)))
    stretches = sounding_stretches(audio)
    audio = audio[stretches[0][0]: stretches[-1][1]]  # espeak's own leading and trailing silence off
    sounding = np.concatenate([audio[a - stretches[0][0]: b - stretches[0][0]] for a, b in stretches])
    return (audio * _db(SPEECH_RMS_DB) / np.sqrt(np.mean(sounding ** 2))).astype(np.float32)


SECTIONS = ("speech", "noisy", "music", "dtmf", "silence", "noise")


def make_call(seed: int, seconds: float = 180.0, channels: int = 1, name: str | None = None) -> NoisyCall:
    """A call of about `seconds` (the last section may run over) with ring tones first, then sections drawn at
    random until the time is up, every kind at least once when there is time. `channels=2`: a two-sided call,
    utterances alternating between the agent (0) and the customer (1); hold music, noise and silence on the
    customer's side, ring and DTMF tones on the agent's, hum on both."""
    rng = np.random.default_rng(seed)
    sentences = iter(_sentences(400, seed))
    pieces: list[tuple[int, int, NDArray[np.float32]]] = []  # (start sample, channel, samples)
    utterances: list[Utterance] = []
    events: list[tuple[str, float, float, int]] = []
    t = 0
    side = 0

    def place(kind: str, samples: NDArray[np.float32], channel: int, gain_db: float) -> None:
        pieces.append((t, channel, samples * _db(gain_db)))
        events.append((kind, t / RATE, (t + samples.size) / RATE, channel))

    def speak_run(count: int, under: str | None) -> None:
        nonlocal t, side
        section_start, parts = t, []
        if under:  # background noise is there before anyone speaks (a VAD needs a moment to adapt to its onset)
            t += int(rng.uniform(1.5, 3.0) * RATE)
        for _ in range(count):
            text = next(sentences)
            audio = _speak(text, VARIANTS[int(rng.integers(len(VARIANTS)))], rng)
            words = [(a / RATE + t / RATE, b / RATE + t / RATE) for a, b in sounding_stretches(audio)]
            utterances.append(Utterance(t / RATE, (t + audio.size) / RATE, text, side, words))
            pieces.append((t, side, audio))
            parts.append((t, audio.size))
            t += audio.size + int(rng.uniform(0.3, 1.5) * RATE)
            if channels == 2:
                side = 1 - side
        if under:
            snr = float(rng.choice([0.0, 5.0, 10.0, 15.0]))
            n = t - section_start
            noise = pink_noise(n, rng) if under == "pink" else babble_noise(n, rng)
            for ch in range(channels):
                pieces.append((section_start, ch, noise * _db(SPEECH_RMS_DB - snr)))
            events.append((f"{under} {snr:.0f} dB", section_start / RATE, t / RATE, -1))

    place("ring", ring_tones(int(rng.integers(2, 4))), 0, -12.0)
    t += pieces[-1][2].size
    kinds = list(rng.permutation(SECTIONS))
    while t < seconds * RATE:
        kind = kinds.pop(0) if kinds else SECTIONS[int(rng.integers(len(SECTIONS)))]
        customer = channels - 1
        if kind in ("speech", "noisy"):
            under = None if kind == "speech" else ("pink", "babble")[int(rng.integers(2))]
            speak_run(int(rng.integers(3, 7)), under)
        elif kind == "music":
            place("music", hold_music(rng.uniform(15, 40), rng), customer, -14.0)
            t += pieces[-1][2].size
        elif kind == "dtmf":
            digits = "".join(rng.choice(list(DTMF), size=int(rng.integers(4, 11))))
            place("dtmf", dtmf(digits, rng), 0, -10.0)
            t += pieces[-1][2].size + RATE
        elif kind == "silence":
            length = int(rng.uniform(10, 30) * RATE)
            events.append(("silence", t / RATE, (t + length) / RATE, customer))
            t += length
        else:
            noise = pink_noise(int(rng.uniform(5, 15) * RATE), rng) if rng.random() < 0.5 else \
                babble_noise(int(rng.uniform(5, 15) * RATE), rng)
            place("noise", noise, customer, SPEECH_RMS_DB - float(rng.choice([5.0, 10.0, 15.0])))
            t += pieces[-1][2].size
        t += int(rng.uniform(0.5, 2.0) * RATE)

    n = t
    audio = np.zeros((n, channels), np.float32)
    for start, ch, samples in pieces:
        audio[start:start + samples.size, ch] += samples[: n - start]
    floor = _db(FLOOR_DB) * rng.standard_normal((n, channels)).astype(np.float32)
    audio += floor + _db(HUM_DB) * line_hum(n)[:, None]
    audio = np.clip(audio, -1, 1)
    return NoisyCall(name or f"call-{seed}", audio[:, 0] if channels == 1 else audio, utterances, events)


def write_call(call: NoisyCall, folder: Path) -> dict[str, Path]:
    """The call as 16 kHz FLAC and as 8 kHz mu-law WAV, with its truth as JSON beside: {"flac", "ulaw", "truth"}."""
    import soundfile as sf
    import soxr

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    flac = folder / f"{call.name}.flac"
    ulaw = folder / f"{call.name}-ulaw.wav"
    sf.write(flac, call.audio, RATE, format="FLAC", subtype="PCM_16")
    sf.write(ulaw, soxr.resample(call.audio, RATE, 8000), 8000, subtype="ULAW")
    truth = folder / f"{call.name}.json"
    truth.write_text(json.dumps({"utterances": [u.__dict__ for u in call.utterances], "events": call.events}))
    return {"flac": flac, "ulaw": ulaw, "truth": truth}


# --- scoring segments against the truth --------------------------------------------------------------------------


def _union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    total = 0.0
    for x0, x1 in a:
        for y0, y1 in b:
            total += max(0.0, min(x1, y1) - max(x0, y0))
    return total


@dataclass(frozen=True)
class SegmentScore:
    speech_seconds: float  # true speech
    speech_kept: float  # true speech inside segments
    nonspeech_seconds: float
    nonspeech_sent: float  # non-speech inside segments
    words: int
    words_cut: int  # sounding stretches that reach into a segment but are whole in none
    words_missed: int  # sounding stretches no segment touches

    def __add__(self, other: SegmentScore) -> SegmentScore:
        return SegmentScore(*(a + b for a, b in zip(self.__dict__.values(), other.__dict__.values())))


def score_segments(call: NoisyCall, channel: int, segments: list[tuple[float, float]]) -> SegmentScore:
    """How `segments` ((start, end) seconds, one channel) cover that channel's speech."""
    speech = _union(call.speech(channel))
    sent = _union(segments)
    total_speech = sum(b - a for a, b in speech)
    kept = _overlap(speech, sent)
    sent_total = sum(b - a for a, b in sent)
    words = [w for u in call.utterances if u.channel == channel for w in u.words]
    cut = missed = 0
    for a, b in words:
        touched = any(s < b and a < e for s, e in segments)
        whole = any(s <= a and b <= e for s, e in segments)
        missed += not touched
        cut += touched and not whole
    return SegmentScore(total_speech, kept, call.seconds - total_speech, sent_total - kept, len(words), cut, missed)


def words_off_speech(call: NoisyCall, channel: int, words: list[tuple[float, float]], margin: float = 0.5) -> int:
    """Words (model timestamps, seconds) that lie wholly more than `margin` from any of the channel's utterances."""
    speech = call.speech(channel)
    return sum(not any(a - margin < e and s < b + margin for s, e in speech) for a, b in words)
