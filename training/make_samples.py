"""Re-make the demo's bundled samples (`samples/`): call-centre sentences of the held-out class (never in the demo
model's training set) read by held-out espeak-ng voices, in the formats a call archive holds.

    python -m training.make_samples [--out samples]

    audio/call-en.flac       en-US, FLAC 48 kHz mono
    audio/phone-es.wav       es-ES, WAV 8 kHz mu-law (a phone line: band-limited to 3.4 kHz first)
    audio/voicemail-de.mp3   de-DE, MP3 22.05 kHz
    audio/stereo-call.flac   fr-FR, FLAC 16 kHz stereo: the agent on the left channel, the customer on the right
    manifest.jsonl           one row per file with the reference `text` (the call's turns in time order)

Deterministic: espeak-ng's output is, and the sentences, voices and pauses are fixed here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from training import callcentre
from training.synth_speech import SAMPLE_RATE, speak

ROOT = Path(__file__).resolve().parent.parent

# (locale, variant, sentences); every sentence is in the domain's held-out class (checked in `make`).
CALL_EN = ("en-US", "m7", ["My name is Robert Allen.", "My order number is seven three two seven."])
PHONE_ES = ("es-ES", "f4", ["Llevo diecinueve minutos esperando.",
                            "¿Puede venir el jueves a las nueve menos cuarto?"])
VOICEMAIL_DE = ("de-DE", "m7", ["Kann ich bitte mit Laura Wagner sprechen?",
                                "Meine Telefonnummer ist vier sieben acht sechs drei neun."])
# (channel, sentence): 0 = agent (variant m7), 1 = customer (variant f4), in the order they speak.
STEREO_FR = [(0, "Bonjour, je m'appelle Antoine, comment puis-je vous aider?"),
             (1, "Je veux vérifier mon compte, s'il vous plaît."),
             (0, "Votre solde est de quatre-vingt-dix-huit euros dix-sept."),
             (1, "La livraison est prévue le dimanche huit avril.")]
STEREO_VARIANTS = ("m7", "f4")
PAUSE = 0.6  # seconds between sentences and turns


def _silence(seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.float32)


def _read(locale: str, variant: str, sentences: list[str]) -> np.ndarray:
    parts = [_silence(0.3)]
    for sentence in sentences:
        parts += [speak(sentence, locale, variant), _silence(PAUSE)]
    return np.concatenate(parts)


def _resample(audio: np.ndarray, rate: int) -> np.ndarray:
    import soxr

    return soxr.resample(audio, SAMPLE_RATE, rate, quality="HQ").astype(np.float32)


def _phone_line(audio: np.ndarray) -> np.ndarray:
    """8 kHz, band-limited to 3.4 kHz as a telephone line is."""
    narrow = _resample(audio, 8000)
    spectrum = np.fft.rfft(narrow)
    spectrum[np.fft.rfftfreq(len(narrow), 1 / 8000) > 3400] = 0
    return np.fft.irfft(spectrum, n=len(narrow)).astype(np.float32)


def _stereo_call() -> tuple[np.ndarray, str]:
    channels = [[], []]
    for channel, sentence in STEREO_FR:
        speech = speak(sentence, "fr-FR", STEREO_VARIANTS[channel])
        channels[channel].append(speech)
        channels[1 - channel].append(np.zeros_like(speech))
        for side in channels:
            side.append(_silence(PAUSE))
    stereo = np.stack([np.concatenate([_silence(0.3)] + side) for side in channels], axis=1)
    return stereo, " ".join(sentence for _, sentence in STEREO_FR)


def make(out: Path) -> list[dict]:
    import soundfile as sf

    for locale, _, sentences in (CALL_EN, PHONE_ES, VOICEMAIL_DE):
        for sentence in sentences:
            assert callcentre.is_heldout(locale, sentence), (locale, sentence)
    for _, sentence in STEREO_FR:
        assert callcentre.is_heldout("fr-FR", sentence), sentence
    audio = out / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    sf.write(audio / "call-en.flac", _resample(_read(*CALL_EN), 48000), 48000, format="FLAC", subtype="PCM_16")
    sf.write(audio / "phone-es.wav", _phone_line(_read(*PHONE_ES)), 8000, format="WAV", subtype="ULAW")
    sf.write(audio / "voicemail-de.mp3", _resample(_read(*VOICEMAIL_DE), 22050), 22050, format="MP3")
    stereo, stereo_text = _stereo_call()
    sf.write(audio / "stereo-call.flac", stereo, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    rows = [
        {"audio_filepath": "audio/call-en.flac", "text": " ".join(CALL_EN[2]), "call_id": "c-0001",
         "queue": "orders"},
        {"audio_filepath": "audio/phone-es.wav", "text": " ".join(PHONE_ES[2]), "lang": "es-ES",
         "call_id": "c-0002"},
        {"audio_filepath": "audio/voicemail-de.mp3", "text": " ".join(VOICEMAIL_DE[2]), "lang": "de",
         "call_id": "c-0003"},
        {"audio_filepath": "audio/stereo-call.flac", "text": stereo_text, "channel_mode": "split",
         "call_id": "c-0004", "queue": "billing"},
    ]
    (out / "manifest.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                        encoding="utf-8")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "samples"))
    args = parser.parse_args(argv)
    for row in make(Path(args.out)):
        print(row["audio_filepath"], "|", row["text"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
