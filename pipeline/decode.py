"""Stage: fetch each recording of a work block, decode it as a stream, pick its channels, cut it into segments.

Runs as plain Ray tasks on CPUs, apart from the inference actors: if it ran inside the actor (Ray fuses a task stage
into the actor stage that follows it) the accelerator would wait while files download and decode one at a time.

A work block (recordings totalling about `compute.block_seconds` of audio) goes in, the same recordings come out,
each with its segments nested and their audio as 16-bit PCM at 16 kHz (with `segmenting.method=vad`, only the
stretches that hold speech). A file is read through a stream, decoded and resampled block by block and cut as it
goes, so a task never holds a file or a float copy of it; and a recording longer than a work block is handed on in
pieces as it is cut (`decode_block`), so a task holds at most about one work block of 16-bit segments (32 KB a
second), however long the recording.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pyarrow as pa

from connectors.audio_source import AudioSource, open_source
from connectors.redaction import install_redaction
from connectors.storage import describe_fetch_error
from pipeline.audio import AudioDecodeError, stream_audio
from pipeline.channels import channel_streams
from pipeline.models.base import PCM_SCALE
from pipeline.records import DECODED_SCHEMA, DECODED_SEGMENT, to_table, with_error
from pipeline.segmenter import SegmentPolicy, segment_stream
from pipeline.settings import setting



@dataclass(frozen=True)
class AudioSpec:
    """Fetching and decoding (the job's `audio` section)."""

    channel_mode: str = setting("mix", "mix: downmix the channels to one stream; split: each channel its own stream "
                                       "(a manifest row's channel_mode overrides; its channel: N picks one channel)")
    channel_names: list[str] = setting(doc="names of the channels in split mode, e.g. [agent,customer] "
                                           "(else channel_N)", factory=list)
    max_duration: float = setting(14400.0, "seconds of audio per recording; a longer one is an error row, refused "
                                           "from its header when the header tells")
    max_file_mb: float = setting(4096.0, "MiB per file; a bigger object is an error row, refused before download")
    fetch_timeout: float = setting(60.0, "seconds to connect to storage, and to wait for each read, before a "
                                         "fetch is retried and then fails as timed out")


@dataclass(frozen=True)
class DecodeSettings:
    """What the decode stage takes: its two sections of the job's spec, and the model's sample rate."""

    audio: AudioSpec = field(default_factory=AudioSpec)
    segmenting: SegmentPolicy = field(default_factory=SegmentPolicy)
    sample_rate: int = 16_000
    # Audio seconds a task holds at most before it hands on what it has (the work block's: pipeline.graph
    # work_block_seconds); the recording it is decoding then travels on in pieces.
    block_seconds: float = 3840.0

    @property
    def block_bytes(self) -> int:
        """`block_seconds` of 16-bit audio."""
        return int(self.block_seconds * self.sample_rate * 2)


def to_pcm16(samples: np.ndarray) -> bytes:
    """Mono float audio as little-endian 16-bit PCM bytes (clipped to full scale)."""
    return np.clip(np.rint(np.asarray(samples, dtype=np.float32) * PCM_SCALE), -32768, 32767).astype("<i2").tobytes()


class RecordingDecoding:
    """One source row being decoded: `segments()` yields its segments (each with its 16-bit audio) as they are cut,
    and sets the row's own fields once it ends: `duration`, the source's rate and channels, `warnings`, or its error
    (a failure midway keeps the segments cut before it, so a recording is marked failed, never silently short).
    Streaming, so that the decode task can hand on a long recording's segments before its end."""

    def __init__(self, row: dict, settings: DecodeSettings) -> None:
        self.row = {**row, "segments": [], "warnings": None, "duration": None, "speech_seconds": None}
        self.settings = settings

    def segments(self) -> Iterator[dict]:
        row, settings = self.row, self.settings
        if row.get("error"):
            return
        source = AudioSource.from_row(row)
        row.pop("audio_bytes", None)  # carried from the read task for this decode only
        url = source.url
        audio, policy = settings.audio, settings.segmenting
        try:
            handle = open_source(source, max_mb=audio.max_file_mb, timeout=audio.fetch_timeout)
        except Exception as error:  # noqa: BLE001 - every failure becomes this row's error
            with_error(row, "fetch", describe_fetch_error(error, url))
            return
        report = None
        decoded: dict[int | None, int] = {}
        speech = 0.0
        with handle:
            try:
                # A slice (NeMo's offset/duration) is decoded alone; its segments' times are from its start.
                info, blocks = stream_audio(handle, target_sample_rate=settings.sample_rate,
                                            max_duration=audio.max_duration, offset=source.offset,
                                            duration=source.duration)
                report = info.report
                row["source_sample_rate"] = info.source_sample_rate
                row["source_channels"] = info.source_channels
                streams = channel_streams(blocks, info.source_channels, row["channel_mode"], row.get("channel"))
                decoded = {ch: 0 for ch, _ in streams}  # samples per stream: the duration, also with no segment
                cutters = [(ch, segment_stream(_counted(b, decoded, ch), settings.sample_rate, policy))
                           for ch, b in streams]
                counts = {ch: 0 for ch, _ in cutters}
                while cutters:  # round-robin over channels keeps the shared stream's queues short
                    for item in list(cutters):
                        ch, cutter = item
                        segment = next(cutter, None)
                        if segment is None:
                            cutters.remove(item)
                            continue
                        # segment_index counts per channel over the whole recording, whatever piece it travels in
                        speech += segment.end - segment.start
                        yield {"segment_index": counts[ch], "channel": ch, "start": segment.start,
                               "end": segment.end, "overlap_before": segment.overlap_before,
                               "samples": to_pcm16(segment.samples)}
                        counts[ch] += 1
            except AudioDecodeError as error:
                with_error(row, "decode", str(error))
            except OSError as error:  # the source failed to read midway, after the retries
                with_error(row, "fetch", describe_fetch_error(error, url))
            except Exception as error:  # noqa: BLE001 - a decoder bug must not take the job down
                with_error(row, "decode", f"{type(error).__name__}: {error}")
        if report is not None and any(decoded.values()):
            row["duration"] = max(decoded.values()) / settings.sample_rate
            # What the model is given (overlaps counted twice): less than the duration where the VAD left
            # non-speech out.
            row["speech_seconds"] = speech
        if not row.get("error") and report is not None:
            row["warnings"] = report.warnings(manifest_duration=row.get("manifest_duration")) or None

    def piece(self, segments: list[dict], index: int) -> dict:
        """A piece handed on before the recording's end: its source columns and `segments`; no duration, warnings
        or error yet (the final piece carries them)."""
        return {**self.row, "segments": segments, "piece": index, "final_piece": False}

    def last(self, segments: list[dict], pieces_before: int) -> dict:
        """The recording once its segments are all cut: whole (`piece` null) if nothing was handed on before, else
        its final piece."""
        if not pieces_before:
            return {**self.row, "segments": segments}
        return {**self.row, "segments": segments, "piece": pieces_before, "final_piece": True}


def decode_recording(row: dict, settings: DecodeSettings) -> dict:
    """One source row in, the same row out, whole: with `segments` (each with its 16-bit audio), `duration`, the
    source's rate and channels, `warnings`; or with its error (keeping the segments cut before a failure midway)."""
    decoding = RecordingDecoding(row, settings)
    return decoding.last(list(decoding.segments()), 0)


def _counted(blocks: Iterator[np.ndarray], counts: dict, key: int | None) -> Iterator[np.ndarray]:
    """The blocks unchanged, their samples added to counts[key] as they pass."""
    for block in blocks:
        counts[key] += len(block)
        yield block


class HeldAudio:
    """The 16-bit audio a decode task holds, in one buffer: each segment's samples are appended as it is cut, and the
    buffer becomes the `samples` column of the table handed on without a copy. (Python bytes per segment and an
    Arrow copy of them all, growing by doubling, held about three times the audio at the peak.)"""

    def __init__(self) -> None:
        self.pcm = bytearray()
        self.lengths: list[int] = []  # bytes of each segment, in the order appended

    def __len__(self) -> int:
        return len(self.pcm)

    def add(self, segment: dict) -> dict:
        """Keep the segment's samples here; the segment without them."""
        samples = segment["samples"]
        self.pcm += samples
        self.lengths.append(len(samples))
        return {k: v for k, v in segment.items() if k != "samples"}

    def table(self, rows: list[dict]) -> pa.Table:
        """`rows` (whose segments, in order, are those appended here) as a DECODED_SCHEMA table."""
        cuts = [s for r in rows for s in r["segments"]]
        assert len(cuts) == len(self.lengths), (len(cuts), len(self.lengths))
        offsets = np.zeros(len(cuts) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=offsets[1:])
        samples = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(cuts),
                                                   [None, pa.py_buffer(offsets), pa.py_buffer(self.pcm)])
        fields = list(DECODED_SEGMENT)
        columns = [pa.array([s[f.name] for s in cuts], f.type) for f in fields if f.name != "samples"]
        segments = pa.StructArray.from_arrays([*columns, samples], fields=fields)
        counts = np.zeros(len(rows) + 1, dtype=np.int32)
        np.cumsum([len(r["segments"]) for r in rows], out=counts[1:])
        nested = pa.ListArray.from_arrays(pa.array(counts), segments)
        index = DECODED_SCHEMA.get_field_index("segments")
        head = to_table(rows, DECODED_SCHEMA.remove(index))
        return head.add_column(index, DECODED_SCHEMA.field(index), nested)


def decode_block(batch: pa.Table, settings: DecodeSettings) -> Iterator[pa.Table]:
    """Ray `map_batches` UDF: one work block (a row holding its source rows) in, its decoded recordings out.

    What the task holds is bounded by one work block's audio (`settings.block_seconds`, 16-bit): once it holds that
    much (the manifest's durations may be wrong or missing, or one recording is longer than a block) it hands on
    what it has, and the recording it is decoding, if it runs on, travels on in pieces (`piece` 0, 1, ...,
    `final_piece` on the last; put back together after the actors, pipeline.pieces). So neither this task nor an
    actor call holds more than about one work block of audio, however long the recording. Each table handed on
    before the last holds a work block's audio at least, so that Ray Data makes it a block of its own
    (pipeline.graph sets its block size to the work block's), never joined with the next one."""
    install_redaction()  # idempotent: this worker's log records carry no credential
    budget = settings.block_bytes
    rows: list[dict] = []  # finished recordings (whole, or final pieces) not yet handed on
    held = HeldAudio()  # the audio of `rows` and of the recording being decoded
    handed_on = False
    for block in batch["rows"].to_pylist():
        for row in block:
            decoding = RecordingDecoding(row, settings)
            segments: list[dict] = []
            pieces = 0
            for segment in decoding.segments():
                if len(held) >= budget:  # a block's worth held, and this recording runs on: it goes on in pieces
                    yield held.table([*rows, decoding.piece(segments, pieces)])
                    rows, segments, held, pieces, handed_on = [], [], HeldAudio(), pieces + 1, True
                segments.append(held.add(segment))
            rows.append(decoding.last(segments, pieces))
            if len(held) >= budget:  # a block's worth at a recording's end: handed on whole
                yield held.table(rows)
                rows, held, handed_on = [], HeldAudio(), True
    if rows or not handed_on:
        yield held.table(rows)
