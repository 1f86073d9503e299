"""Voice activity detection: webrtcvad on 20 ms frames, smoothed into speech segments.

The same ``VadSegmenter`` runs offline (fed a whole channel) and live (fed frames as they
arrive), so a recording and a live call with the same audio get the same segments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import webrtcvad

from audio import SAMPLE_RATE
from audio.codecs import Float32Array, float_to_int16

FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000


@dataclass(frozen=True)
class Segment:
    """A stretch of speech on one channel, in seconds of call audio."""

    t: float
    t_end: float

    @property
    def duration(self) -> float:
        return self.t_end - self.t


@dataclass(frozen=True)
class VadConfig:
    # webrtcvad mode 0 (least) .. 3 (most aggressive). 3 ends utterances closest to the last
    # word on real phone lines (line noise keeps mode 2 "voiced" for seconds) and scores the
    # best frame F1 on labelled speech (docs/benchmarks.md).
    aggressiveness: int = 3
    start_ms: int = 100  # voiced audio needed to open a segment
    end_silence_ms: int = 400  # unvoiced audio that closes it (an utterance boundary)
    pad_ms: int = 100  # kept around each segment so word edges are not clipped
    max_segment_s: float = 20.0  # longer speech is cut so ASR windows stay under 30 s
    min_segment_ms: int = 250  # shorter blips (clicks, breaths) are dropped

    def __post_init__(self) -> None:
        if self.aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"VAD aggressiveness must be 0-3, got {self.aggressiveness}")


class VadSegmenter:
    """Incremental segmenter: ``push`` audio, get finished segments; ``flush`` at the end.

    ``open_since`` tells whether speech is in progress (the live path uses it for partials).
    """

    def __init__(self, config: VadConfig | None = None) -> None:
        self.config = config or VadConfig()
        self._vad = webrtcvad.Vad(self.config.aggressiveness)
        self._pending = np.zeros(0, dtype=np.float32)
        self._frame_index = 0  # frames consumed so far
        self._voiced_run = 0
        self._unvoiced_run = 0
        self._start_frame: int | None = None
        self._last_voiced_frame = -1
        self._start_frames = max(1, self.config.start_ms // FRAME_MS)
        self._end_frames = max(1, self.config.end_silence_ms // FRAME_MS)
        self._pad_s = self.config.pad_ms / 1000
        self._max_frames = int(self.config.max_segment_s * 1000 / FRAME_MS)

    @property
    def processed_s(self) -> float:
        """Audio time up to which every frame has been classified."""
        return self._frame_index * FRAME_MS / 1000

    @property
    def open_since(self) -> float | None:
        if self._start_frame is None:
            return None
        return max(0.0, self._start_frame * FRAME_MS / 1000 - self._pad_s)

    def is_speech(self, frame: Float32Array) -> bool:
        return bool(self._vad.is_speech(float_to_int16(frame).tobytes(), SAMPLE_RATE))

    def push(self, samples: Float32Array) -> list[Segment]:
        if self._pending.size:
            samples = np.concatenate([self._pending, samples])
        n_frames = samples.size // FRAME_SAMPLES
        self._pending = samples[n_frames * FRAME_SAMPLES :].copy()
        done: list[Segment] = []
        for i in range(n_frames):
            frame = samples[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
            seg = self._step(self.is_speech(frame))
            if seg is not None:
                done.append(seg)
        return [s for s in done if s.duration * 1000 >= self.config.min_segment_ms]

    def flush(self) -> list[Segment]:
        """Close any open segment at the end of the audio."""
        if self._start_frame is None:
            return []
        seg = self._close(self._last_voiced_frame + 1)
        return [seg] if seg.duration * 1000 >= self.config.min_segment_ms else []

    def _step(self, voiced: bool) -> Segment | None:
        idx = self._frame_index
        self._frame_index += 1
        if voiced:
            self._voiced_run += 1
            self._unvoiced_run = 0
            self._last_voiced_frame = idx
        else:
            self._voiced_run = 0
            self._unvoiced_run += 1
        if self._start_frame is None:
            if self._voiced_run >= self._start_frames:
                self._start_frame = idx - self._voiced_run + 1
            return None
        if self._unvoiced_run >= self._end_frames:
            return self._close(self._last_voiced_frame + 1)
        if idx + 1 - self._start_frame >= self._max_frames:
            seg = self._close(idx + 1, pad_end=False)
            if voiced:  # speech goes on: the next segment starts right here
                self._start_frame = idx + 1
                self._voiced_run = self._start_frames
            return seg
        return None

    def _close(self, end_frame: int, pad_end: bool = True) -> Segment:
        assert self._start_frame is not None
        t = max(0.0, self._start_frame * FRAME_MS / 1000 - self._pad_s)
        t_end = end_frame * FRAME_MS / 1000 + (self._pad_s if pad_end else 0.0)
        t_end = min(t_end, self.processed_s + len(self._pending) / SAMPLE_RATE)
        self._start_frame = None
        self._voiced_run = 0
        return Segment(round(t, 3), round(t_end, 3))


def detect_segments(samples: Float32Array, config: VadConfig | None = None) -> list[Segment]:
    """Speech segments of one whole channel."""
    seg = VadSegmenter(config)
    return seg.push(samples) + seg.flush()


def frame_flags(samples: Float32Array, aggressiveness: int = 2) -> np.ndarray:
    """Raw per-frame webrtcvad decisions (for measuring the VAD itself)."""
    vad = webrtcvad.Vad(aggressiveness)
    pcm = float_to_int16(samples)
    n = pcm.size // FRAME_SAMPLES
    return np.array(
        [
            vad.is_speech(pcm[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES].tobytes(), SAMPLE_RATE)
            for i in range(n)
        ],
        dtype=bool,
    )
