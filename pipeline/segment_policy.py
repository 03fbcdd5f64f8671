"""What the segmenters take and give (`SegmentPolicy`: the job's `segmenting` section; `Segment`: one cut), apart from
the two rules themselves (`pipeline.segmenter`, the energy rule and the choice between rules; `pipeline.vad_segmenter`,
the VAD's), so that each segmenter imports this and neither imports the other back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pipeline.settings import setting

SEGMENTING_METHODS = ("vad", "energy")


@dataclass(frozen=True)
class SegmentPolicy:
    """Where `segment_stream` may cut; see the module docstring for the exact rule. The job's `segmenting` section."""

    method: str = setting("vad", "vad: segments hold the speech Silero VAD finds, music, tones, noise and silence "
                                 "are not sent to the model; energy: cut at quiet frames, everything is sent")
    max_seconds: float = setting(30.0, "recordings are cut into segments at most this long, at pauses where "
                                       "possible")
    min_seconds: float = setting(10.0, "no cut is looked for before this (shorter segments only at a recording's "
                                       "end)")
    overlap_seconds: float = setting(1.0, "where a cut must fall in speech, the next segment starts this much "
                                          "earlier and the words the two share are kept once")
    frame_seconds: float = setting(0.05, "energy frame for finding pauses")
    pause_seconds: float = setting(0.2, "a pause is at least this long (rounded up to whole frames)")
    silence_db: float = setting(-40.0, "frames quieter than this (dBFS) are pauses ...")
    relative_db: float = setting(25.0, "... and so are frames this far under the window's speech level ...")
    min_contrast_db: float = setting(10.0, "... but never frames within this of the speech level")
    trim_silence: bool = setting(True, "a segment that starts in a pause starts pause_seconds before its first "
                                       "sound (no compute or stray output on silence)")
    vad_threshold: float = setting(0.5, "vad: a 32 ms frame with a speech probability at least this starts speech "
                                        "(speech ends after pause_seconds under threshold - 0.15)")
    vad_min_speech_seconds: float = setting(0.25, "vad: shorter speech is dropped (clicks, DTMF digits)")
    vad_gap_seconds: float = setting(1.0, "vad: non-speech at least this long ends a segment and is not sent; "
                                          "shorter pauses stay inside it")
    vad_start_pad_seconds: float = setting(0.4, "vad: a segment starts this long before its first speech (the VAD "
                                                "finds the onset of speech in noise late)")
    vad_end_pad_seconds: float = setting(0.5, "vad: a segment ends this long after its last speech (the model "
                                              "writes a sentence's language tag after it)")
    vad_skip_short: bool = setting(True, "vad: a recording (channel) no longer than max_seconds skips the VAD and "
                                         "is cut by the energy rule (short clips cost nothing extra)")

    def __post_init__(self) -> None:
        if not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be positive, got {self.max_seconds}")
        if not 0 <= self.min_seconds <= self.max_seconds:
            raise ValueError(f"min_seconds must be in [0, max_seconds], got {self.min_seconds}")
        if not 0 <= self.overlap_seconds < self.max_seconds:
            raise ValueError(f"overlap_seconds must be in [0, max_seconds), got {self.overlap_seconds}")
        if not 0 < self.frame_seconds <= self.max_seconds:
            raise ValueError(f"frame_seconds must be in (0, max_seconds], got {self.frame_seconds}")
        if not self.pause_seconds > 0:
            raise ValueError(f"pause_seconds must be positive, got {self.pause_seconds}")
        if not (self.relative_db >= 0 and self.min_contrast_db >= 0):
            raise ValueError("relative_db and min_contrast_db must be >= 0")
        if self.method not in SEGMENTING_METHODS:
            raise ValueError(f"method must be one of {', '.join(SEGMENTING_METHODS)}, got {self.method!r}")
        if not 0.15 < self.vad_threshold < 1:
            raise ValueError(f"vad_threshold must be in (0.15, 1), got {self.vad_threshold}")
        for name in ("vad_min_speech_seconds", "vad_start_pad_seconds", "vad_end_pad_seconds"):
            if not getattr(self, name) >= 0:  # written so that NaN fails too
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.vad_gap_seconds >= self.vad_end_pad_seconds + self.vad_start_pad_seconds:
            raise ValueError("vad_gap_seconds must be at least vad_end_pad_seconds + vad_start_pad_seconds (a gap "
                             f"that ends a segment holds both pads), got {self.vad_gap_seconds}")


@dataclass(frozen=True)
class Segment:
    """One piece of the recording; times are seconds from the recording's start, exact in samples / sample_rate."""

    start: float
    end: float
    samples: NDArray[np.float32]  # mono float32, end - start seconds long; its own copy
    cut_in_speech: bool  # True when this segment's END is a forced cut (so the next one overlaps it)
    overlap_before: float  # seconds this segment shares with the previous one (0.0 after a pause cut)
