"""DER with pyannote.metrics (a dev dependency): RTTM/UEM readers and one scoring call.

Shared by ``bench.diarization`` and the diarization tests so both score the same way:
0.25 s forgiveness collar around reference boundaries, overlapped speech scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate

from models.diarize.base import Diarization

COLLAR = 0.25


def read_rttm(path: Path) -> dict[str, Annotation]:
    out: dict[str, Annotation] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) < 8 or parts[0] != "SPEAKER":
            continue
        uri, start, dur, speaker = parts[1], float(parts[3]), float(parts[4]), parts[7]
        ann = out.setdefault(uri, Annotation(uri=uri))
        ann[Segment(start, start + dur), len(ann)] = speaker
    return out


def read_uem(path: Path) -> dict[str, Timeline]:
    out: dict[str, Timeline] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4:
            out.setdefault(parts[0], Timeline(uri=parts[0])).add(
                Segment(float(parts[2]), float(parts[3]))
            )
    return out


def whole(samples: object, rate: int = 16_000) -> Timeline:
    """The UEM of a recording scored from start to end."""
    return Timeline([Segment(0.0, len(samples) / rate)])  # type: ignore[arg-type]


def to_annotation(diarization: Diarization, uri: str) -> Annotation:
    ann = Annotation(uri=uri)
    for i, turn in enumerate(diarization.turns):
        if turn.end > turn.start:
            ann[Segment(turn.start, turn.end), i] = turn.speaker
    return ann


@dataclass
class DerParts:
    """Seconds of each error kind and of reference speech; rates derive from them."""

    total: float = 0.0
    missed: float = 0.0
    false_alarm: float = 0.0
    confusion: float = 0.0

    def add(self, other: DerParts) -> None:
        self.total += other.total
        self.missed += other.missed
        self.false_alarm += other.false_alarm
        self.confusion += other.confusion

    @property
    def der(self) -> float:
        return (self.missed + self.false_alarm + self.confusion) / max(self.total, 1e-9)

    def rates(self) -> dict[str, float]:
        t = max(self.total, 1e-9)
        return {
            "der": self.der,
            "missed": self.missed / t,
            "false_alarm": self.false_alarm / t,
            "confusion": self.confusion / t,
        }


def score(reference: Annotation, hypothesis: Annotation, uem: Timeline | None = None) -> DerParts:
    metric = DiarizationErrorRate(collar=COLLAR, skip_overlap=False)
    parts = metric(reference, hypothesis, uem=uem, detailed=True)
    return DerParts(
        total=parts["total"],
        missed=parts["missed detection"],
        false_alarm=parts["false alarm"],
        confusion=parts["confusion"],
    )
