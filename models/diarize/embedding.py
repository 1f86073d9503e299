"""Offline diarization of a mono recording: VAD -> speaker embeddings -> clusters -> turns.

1. Speech is found with the project's VAD, tuned to split at short pauses (turn changes in
   calls usually fall in one).
2. Each speech segment is embedded: 1.6 s windows every 0.4 s for long segments, one
   variable-length embedding for short ones.
3. Embeddings are clustered with an automatic speaker count (``clustering``).
4. Resegmentation: every 10 ms frame gets the speaker whose centroid best matches the windows
   covering it, so turn changes inside a segment land between windows rather than at their
   edges; turns shorter than ``min_turn_s`` are absorbed.

Overlapped speech is not detected in a mono mix: each frame gets one speaker. (Scoring a frame
against two centroids does not work: after centring, two speakers' centroids point in nearly
opposite directions, so a window never matches both.) The channel and pyannote backends do
report overlaps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from audio.vad import Segment
from models.diarize.base import Diarization, SpeakerTurn, merge_turns
from models.diarize.clustering import ClusterConfig, centred, cluster_embeddings, unit
from models.diarize.encoder import (
    HOP,
    SAMPLE_RATE,
    WINDOW_FRAMES,
    SpeakerEncoder,
    loudness_gain,
    mel_spectrogram,
    shared_encoder,
)
from models.diarize.speech import SpeechConfig, speech_regions

FRAME_S = HOP / SAMPLE_RATE  # 10 ms


@dataclass(frozen=True)
class EmbeddingConfig:
    speech: SpeechConfig = field(default_factory=SpeechConfig)
    hop_frames: int = 40  # window hop, x 10 ms
    min_embed_s: float = 0.4  # shorter segments are labelled from their neighbours
    min_turn_s: float = 0.3
    clustering: ClusterConfig = field(default_factory=ClusterConfig)


@dataclass
class _Window:
    centre: float  # seconds
    start: float
    end: float
    segment: int
    embedding: np.ndarray


class EmbeddingDiarizer:
    """The default backend for mono audio (resemblyzer encoder, no GPU, ~25x real time)."""

    name = "embedding"

    def __init__(
        self, config: EmbeddingConfig | None = None, encoder: SpeakerEncoder | None = None
    ) -> None:
        self.config = config or EmbeddingConfig()
        self._encoder = encoder

    @property
    def encoder(self) -> SpeakerEncoder:
        if self._encoder is None:
            self._encoder = shared_encoder()
        return self._encoder

    def diarize(self, samples: np.ndarray) -> Diarization:
        segments = speech_regions(samples, self.config.speech)
        windows = self._embed(samples, segments)
        if not windows:
            return Diarization(self.name, [], 0.0, {"n_speakers": 0, "speech_s": 0.0})
        emb = np.stack([w.embedding for w in windows])
        weights = np.array([w.end - w.start for w in windows])
        result = cluster_embeddings(emb, weights, self.config.clustering)
        turns = self._resegment(segments, windows, result.labels, result.n_speakers)
        confidence = _confidence(result.margin, result.n_speakers)
        details = {
            "n_speakers": result.n_speakers,
            "separation_margin": round(result.margin, 3),
            "eigengap": round(result.eigengap, 3),
            "windows": len(windows),
        }
        return Diarization(self.name, turns, confidence, details)

    def _embed(self, samples: np.ndarray, segments: list[Segment]) -> list[_Window]:
        speech = [samples[int(s.t * SAMPLE_RATE) : int(s.t_end * SAMPLE_RATE)] for s in segments]
        gain = loudness_gain(np.concatenate(speech)) if speech else 1.0
        windows: list[_Window] = []
        short: list[tuple[int, np.ndarray]] = []
        for i, (seg, audio) in enumerate(zip(segments, speech, strict=True)):
            audio = audio * gain
            if seg.duration >= WINDOW_FRAMES * FRAME_S:
                centres, embs = self.encoder.embed_windows(audio, self.config.hop_frames)
                half = self.config.hop_frames * FRAME_S / 2
                for c, e in zip(centres, embs, strict=True):
                    windows.append(_Window(seg.t + c, seg.t + c - half, seg.t + c + half, i, e))
            elif seg.duration >= self.config.min_embed_s:
                short.append((i, audio))
        for i, audio in short:  # variable-length windows, one at a time (different lengths)
            seg = segments[i]
            emb = self.encoder.embed_mels(mel_spectrogram(audio)[None])[0]
            windows.append(_Window((seg.t + seg.t_end) / 2, seg.t, seg.t_end, i, emb))
        windows.sort(key=lambda w: w.centre)
        return windows

    def _resegment(
        self,
        segments: list[Segment],
        windows: list[_Window],
        labels: np.ndarray,
        n_speakers: int,
    ) -> list[SpeakerTurn]:
        emb = centred(np.stack([w.embedding for w in windows]))
        centroids = unit(np.stack([emb[labels == c].mean(axis=0) for c in range(n_speakers)]))
        win_scores = emb @ centroids.T  # (windows, speakers)
        centres = np.array([w.centre for w in windows])
        by_segment: dict[int, list[int]] = {}
        for j, w in enumerate(windows):
            by_segment.setdefault(w.segment, []).append(j)
        turns: list[SpeakerTurn] = []
        for i, seg in enumerate(segments):
            n_frames = max(1, round(seg.duration / FRAME_S))
            times = seg.t + (np.arange(n_frames) + 0.5) * FRAME_S
            own = by_segment.get(i, [])
            if own:
                scores = self._frame_scores(times, centres[own], win_scores[own])
            else:  # too short to embed: borrow the nearest windows
                nearest = np.argsort(np.abs(centres - (seg.t + seg.t_end) / 2))[:2]
                scores = np.repeat(win_scores[nearest].mean(axis=0)[None], n_frames, axis=0)
            frame_labels = _smooth(np.argmax(scores, axis=1), int(self.config.min_turn_s / FRAME_S))
            turns.extend(_runs(times, frame_labels, FRAME_S))
        named = [SpeakerTurn(t.start, t.end, f"S{int(t.speaker) + 1}") for t in turns]
        return merge_turns(named, max_gap=0.0)

    @staticmethod
    def _frame_scores(times: np.ndarray, centres: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Each frame: scores of the windows covering it, weighted towards the nearest."""
        reach = WINDOW_FRAMES * FRAME_S / 2
        dist = np.abs(times[:, None] - centres[None, :])
        weight = np.clip(1.0 - dist / reach, 0.0, None) ** 2
        empty = weight.sum(axis=1) == 0
        weight[empty, np.argmin(dist[empty], axis=1)] = 1.0
        return (weight @ scores) / weight.sum(axis=1, keepdims=True)


def _smooth(labels: np.ndarray, min_frames: int) -> np.ndarray:
    """Absorb runs shorter than ``min_frames`` into the longer neighbouring run."""
    labels = labels.copy()
    changed = True
    while changed and min_frames > 1:
        changed = False
        bounds = np.flatnonzero(np.diff(labels)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(labels)]])
        if len(starts) < 2:
            break
        lengths = ends - starts
        i = int(np.argmin(lengths))
        if lengths[i] >= min_frames:
            break
        left = lengths[i - 1] if i > 0 else -1
        right = lengths[i + 1] if i + 1 < len(starts) else -1
        source = i - 1 if left >= right else i + 1
        labels[starts[i] : ends[i]] = labels[starts[source]]
        changed = True
    return labels


def _runs(times: np.ndarray, labels: np.ndarray, frame_s: float) -> list[SpeakerTurn]:
    out: list[SpeakerTurn] = []
    start = 0
    for k in range(1, len(labels) + 1):
        if k == len(labels) or labels[k] != labels[start]:
            out.append(
                SpeakerTurn(
                    round(float(times[start] - frame_s / 2), 3),
                    round(float(times[k - 1] + frame_s / 2), 3),
                    str(int(labels[start])),
                )
            )
            start = k
    return out


def _confidence(margin: float, n_speakers: int) -> float:
    """Map the centred-space separation margin to 0-1 (0.3 margin ~ clean two-party call)."""
    if n_speakers <= 1:
        return 0.5
    return float(np.clip(margin / 0.3, 0.0, 1.0))
