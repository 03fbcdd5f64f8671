"""Stage: fetch each recording once, decode it as a stream, cut its utterances out, encode and write them.

Runs as Ray tasks, one work unit per task (a tar shard, or about as many utterances for the other formats). A
recording is decoded exactly as the transcription decoded it (`pipeline.audio.stream_audio`: 16 kHz with soxr, block
by block; a mixed recording is the mean of its channels, a split one each channel alone), so the training audio is
what the model heard, and memory follows the longest utterance, not the recording.

A recording that cannot be read fails only its own utterances, each with a reason and a message:

=====================  ==========================================================================================
audio_missing          the file is gone (404, no such file)
audio_unreadable       it cannot be opened or decoded, or decoding fails part-way (later utterances only)
audio_short            the audio ends before the utterance does (the file changed since it was transcribed)
not_readable_in_place  format `manifest`: libsndfile cannot read the file, so NeMo's readers cannot either
multichannel_mix       format `manifest`: a multi-channel recording transcribed mixed; a manifest can select one
                       channel of a file (`channel`) but not mix them: use format `cut` or `tarred`
=====================  ==========================================================================================
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from connectors.nemo_datasets import CLIPS, TarShard, tar_name, write_bytes
from connectors.storage import describe_fetch_error, open_file
from pipeline.audio import AudioDecodeError, stream_audio
from pipeline.channels import mono
from pipeline.decode import to_pcm16

AUDIO_MISSING = "audio_missing"
AUDIO_UNREADABLE = "audio_unreadable"
AUDIO_SHORT = "audio_short"
NOT_READABLE_IN_PLACE = "not_readable_in_place"
MULTICHANNEL_MIX = "multichannel_mix"

FORMATS = ("manifest", "cut", "tarred")
CODECS = {"flac": "FLAC", "wav": "WAV"}
# A segment may end up to one frame past the decoded audio (its end is rounded); more than this is a real shortfall.
_END_TOLERANCE_SECONDS = 0.02


@dataclass(frozen=True)
class Span:
    key: str
    channel: int | None  # None: the mean of all channels
    start: float  # seconds
    end: float


@dataclass(frozen=True)
class CutSettings:
    format: str = "cut"
    codec: str = "flac"
    sample_rate: int = 16_000


def sample_range(start: float, end: float, rate: int) -> tuple[int, int]:
    """The samples [a, b) of a span in seconds: the manifests' `duration` of a cut clip is (b - a) / rate."""
    return int(round(start * rate)), int(round(end * rate))


def cut_spans(blocks: Iterator[np.ndarray], spans: list[Span], rate: int
              ) -> Iterator[tuple[str, np.ndarray | None, str | None]]:
    """(key, mono float32 samples, None) for each span as soon as the stream has passed its end, or (key, None,
    problem) for a span the audio cannot give: a channel it does not have, or an end past the end of the audio.
    `blocks` are (channels, n) float32 arrays at `rate` in order, as `stream_audio` yields them."""
    order = sorted(spans, key=lambda s: sample_range(s.start, s.end, rate)[0])
    ranges = {s.key: sample_range(s.start, s.end, rate) for s in order}
    pieces: dict[str, list[np.ndarray]] = {}
    active: list[Span] = []
    waiting = 0
    position = 0
    channels = None
    for block in blocks:
        channels = block.shape[0]
        n = block.shape[1]
        while waiting < len(order) and ranges[order[waiting].key][0] < position + n:
            span = order[waiting]
            waiting += 1
            if span.channel is not None and not 0 <= span.channel < channels:
                yield span.key, None, f"channel {span.channel} requested but the audio has {channels} channel(s)"
                continue
            active.append(span)
            pieces[span.key] = []
        still = []
        for span in active:
            a, b = ranges[span.key]
            lo, hi = max(a, position) - position, min(b, position + n) - position
            if hi > lo:
                # as the transcription mixed or picked: pipeline.channels.mono, block by block
                pieces[span.key].append(np.array(mono(block[:, lo:hi], span.channel), dtype=np.float32))
            if b <= position + n:
                yield span.key, np.concatenate(pieces.pop(span.key)) if b > a else np.zeros(0, np.float32), None
            else:
                still.append(span)
        active = still
        position += n
    seconds = position / rate
    for span in active:
        collected = pieces.pop(span.key)
        if collected and ranges[span.key][1] - position <= _END_TOLERANCE_SECONDS * rate:
            # Within rounding of the end: the clip is what there is (the manifest states its real length).
            yield span.key, np.concatenate(collected), None
        else:
            yield span.key, None, f"the audio ends at {seconds:.2f} s, before the utterance's end {span.end:.2f} s"
    for span in order[waiting:]:
        yield span.key, None, f"the audio ends at {seconds:.2f} s, before the utterance's end {span.end:.2f} s"


def encode_clip(samples: np.ndarray, rate: int, codec: str) -> bytes:
    """Mono float samples as 16-bit PCM FLAC or WAV bytes, quantised exactly as the transcription hands audio to the
    model (`pipeline.decode.to_pcm16`), so a clip holds the samples the model heard; samples decoded from 16-bit
    audio (k / 32768) come back exactly."""
    pcm = np.frombuffer(to_pcm16(samples), dtype="<i2")
    buffer = io.BytesIO()
    sf.write(buffer, pcm, rate, format=CODECS[codec], subtype="PCM_16")
    return buffer.getvalue()


def _result(key: str, reason: str | None = None, message: str | None = None, duration: float | None = None) -> dict:
    return {"utt_id": key, "reason": reason, "message": message, "duration": duration}


def _check_in_place(url: str, spans: list[Span]) -> list[dict]:
    """Format `manifest`: NeMo will read the original file at the offsets; check that it can."""
    try:
        handle = open_file(url)
    except Exception as error:  # noqa: BLE001 - every failure becomes these utterances' reason
        reason = AUDIO_MISSING if isinstance(error, FileNotFoundError) else AUDIO_UNREADABLE
        return [_result(s.key, reason, describe_fetch_error(error, url)) for s in spans]
    with handle:
        try:
            with sf.SoundFile(handle) as info:
                channels, rate, frames = info.channels, info.samplerate, info.frames
        except Exception as error:  # noqa: BLE001
            message = f"libsndfile cannot read {url} ({type(error).__name__}: {error}); use format=cut or tarred"
            return [_result(s.key, NOT_READABLE_IN_PLACE, message) for s in spans]
    seconds = frames / rate
    results = []
    for s in spans:
        if s.channel is None and channels > 1:
            results.append(_result(s.key, MULTICHANNEL_MIX, f"{url} has {channels} channels and was transcribed "
                                                            f"mixed; use format=cut or tarred"))
        elif s.channel is not None and s.channel >= channels:
            results.append(_result(s.key, AUDIO_UNREADABLE, f"{url} has {channels} channel(s), not channel "
                                                             f"{s.channel}"))
        elif s.end > seconds + _END_TOLERANCE_SECONDS:
            results.append(_result(s.key, AUDIO_SHORT, f"{url} ends at {seconds:.2f} s, before the utterance's end "
                                                       f"{s.end:.2f} s"))
        else:
            results.append(_result(s.key, duration=min(s.end, seconds) - s.start))
    return results


def _cut_recording(url: str, spans: list[Span], settings: CutSettings, emit) -> list[dict]:
    """Decode `url` once and hand each clip to `emit(key, encoded bytes)`; one result per span, in the order the
    clips were emitted (for a tar shard: the order of its members), failures after them."""
    try:
        handle = open_file(url)
    except Exception as error:  # noqa: BLE001
        reason = AUDIO_MISSING if isinstance(error, FileNotFoundError) else AUDIO_UNREADABLE
        return [_result(s.key, reason, describe_fetch_error(error, url)) for s in spans]
    results: dict[str, dict] = {}
    with handle:
        try:
            _, blocks = stream_audio(handle, target_sample_rate=settings.sample_rate)
            for key, samples, problem in cut_spans(blocks, spans, settings.sample_rate):
                if samples is None:
                    results[key] = _result(key, AUDIO_SHORT if problem.startswith("the audio ends") else
                                           AUDIO_UNREADABLE, f"{url}: {problem}")
                    continue
                emit(key, encode_clip(samples, settings.sample_rate, settings.codec))
                results[key] = _result(key, duration=len(samples) / settings.sample_rate)
        except AudioDecodeError as error:
            message = f"{url}: {error}"
            for s in spans:
                results.setdefault(s.key, _result(s.key, AUDIO_UNREADABLE, message))
        except Exception as error:  # noqa: BLE001 - a decoder bug fails this recording, never the export
            message = f"{url}: {type(error).__name__}: {error}"
            for s in spans:
                results.setdefault(s.key, _result(s.key, AUDIO_UNREADABLE, message))
    return list(results.values())


def export_unit(unit: dict, settings: CutSettings) -> list[dict]:
    """One work unit: `{"folder": <split folder URL>, "shard_id": n, "recordings": [{"audio_url": ...,
    "utterances": [{"utt_id", "channel", "start", "end"}, ...]}, ...]}` -> one result per utterance:
    `{"utt_id", "reason" (null: written), "message", "duration" (seconds of audio the entry gets)}`, in the order
    written."""
    folder = unit["folder"].rstrip("/")
    extension = settings.codec
    results: list[dict] = []
    shard = TarShard(f"{folder}/{tar_name(unit['shard_id'])}") if settings.format == "tarred" else None
    try:
        for recording in unit["recordings"]:
            spans = [Span(u["utt_id"], u["channel"], u["start"], u["end"]) for u in recording["utterances"]]
            if settings.format == "manifest":
                results.extend(_check_in_place(recording["audio_url"], spans))
            elif shard is not None:
                results.extend(_cut_recording(recording["audio_url"], spans, settings,
                                              lambda key, data: shard.add(f"{key}.{extension}", data)))
            else:
                results.extend(_cut_recording(
                    recording["audio_url"], spans, settings,
                    lambda key, data: write_bytes(f"{folder}/{CLIPS}/{key}.{extension}", data)))
    finally:
        if shard is not None:
            shard.close()
    return results


def export_batch(batch: dict, settings: CutSettings) -> dict:
    """Ray `map_batches` entry: work units as JSON strings in, their results as JSON strings out (plain strings keep
    the nested, ragged payload out of Arrow type inference)."""
    out = []
    for payload in batch["unit"]:
        unit = json.loads(payload)
        out.append(json.dumps({"index": unit["index"], "results": export_unit(unit, settings)}))
    return {"results": out}
