"""The event types the rule engine reads and writes (no dependency on the rest of callwatch).

Inputs are what the pipeline knows about the call; outputs are alerts. Times are seconds of
call audio since the call started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Speaker = str  # "agent", "customer" (or "mixed" before diarization)


@dataclass(frozen=True)
class WordTime:
    w: str
    t: float
    t_end: float


@dataclass(frozen=True)
class Utterance:
    """A final transcript of one speaker's utterance."""

    speaker: Speaker
    t: float
    t_end: float
    text: str
    words: tuple[WordTime, ...] = ()
    language: str = "en"


@dataclass(frozen=True)
class SilenceStarted:
    """Nobody has spoken since ``t`` (both sides quiet)."""

    t: float


@dataclass(frozen=True)
class SilenceEnded:
    t: float  # when the silence started
    t_end: float  # when someone spoke again


@dataclass(frozen=True)
class EmotionObserved:
    """How one speaker sounded in one utterance (from the emotion model)."""

    speaker: Speaker
    t: float
    t_end: float
    label: str  # neutral | positive | frustrated | angry
    confidence: float
    anger_index: float  # the speaker's rolling anger index after this utterance
    text: str = ""


EngineInput = Utterance | SilenceStarted | SilenceEnded | EmotionObserved


@dataclass(frozen=True)
class Alert:
    rule_id: str
    kind: str
    severity: str
    audience: tuple[str, ...]
    message: str
    t: float
    speaker: Speaker | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "kind": self.kind,
            "severity": self.severity,
            "audience": list(self.audience),
            "message": self.message,
            "t": round(self.t, 3),
            "speaker": self.speaker,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class RuleOutcome:
    """One scorecard line: did the call pass this rule."""

    rule_id: str
    description: str
    status: str  # "passed" | "failed" | "not_applicable"
    weight: float
    alerts: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "description": self.description,
            "status": self.status,
            "weight": self.weight,
            "alerts": self.alerts,
        }
