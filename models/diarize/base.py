"""What every diarization backend returns: speaker turns, how sure it is, and how it decided."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class SpeakerTurn:
    """One speaker talking from ``start`` to ``end`` (seconds). Turns of two speakers may overlap."""

    start: float
    end: float
    speaker: str

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Diarization:
    """Who spoke when in one recording.

    ``speakers`` are backend labels (``S1``, ``S2``... or channel roles). ``confidence`` is the
    backend's own 0-1 estimate of how cleanly the speakers separate (None if it has none); ``details`` carries the
    figures behind it (chosen speaker count, separation margin...) for reports.
    """

    backend: str
    turns: list[SpeakerTurn]
    confidence: float | None  # None: the backend does not estimate one
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def speakers(self) -> list[str]:
        seen: dict[str, None] = {}
        for turn in sorted(self.turns, key=lambda t: t.start):
            seen.setdefault(turn.speaker, None)
        return list(seen)

    def speech_seconds(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for turn in self.turns:
            out[turn.speaker] = out.get(turn.speaker, 0.0) + turn.duration
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "confidence": None if self.confidence is None else round(self.confidence, 3),
            "speakers": self.speakers,
            "speech_s": {k: round(v, 2) for k, v in self.speech_seconds().items()},
            "details": self.details,
        }


class Diarizer(Protocol):
    """A backend: 16 kHz mono samples in, speaker turns out."""

    name: str

    def diarize(self, samples: np.ndarray) -> Diarization: ...


def merge_turns(turns: list[SpeakerTurn], max_gap: float = 0.0) -> list[SpeakerTurn]:
    """Join consecutive turns of the same speaker separated by at most ``max_gap`` seconds."""
    out: list[SpeakerTurn] = []
    for turn in sorted(turns, key=lambda t: (t.start, t.end)):
        prev = next((o for o in reversed(out) if o.speaker == turn.speaker), None)
        if prev is not None and turn.start - prev.end <= max_gap and out[-1] is prev:
            out[-1] = SpeakerTurn(prev.start, max(prev.end, turn.end), turn.speaker)
        else:
            out.append(turn)
    return out
