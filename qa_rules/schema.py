"""Rule pack schema (pydantic). One YAML file is one pack; a pack holds rules of any kind.

Field names are what QA teams write in YAML; see docs/rules.md for a worked example of each.
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Severity = Literal["info", "warning", "critical"]
Audience = Literal["agent", "supervisor"]
SpeakerSel = Literal["agent", "customer", "any"]

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")

# Placeholders each kind offers to its message template, e.g. "Dead air for {duration:.0f} s".
TEMPLATE_FIELDS: dict[str, set[str]] = {
    "phrase": {"phrase", "matched", "speaker", "t", "window_s"},
    "silence": {"duration", "t", "min_s"},
    "speech_rate": {"wpm", "speaker", "t", "min_wpm", "max_wpm", "window_s", "words"},
    "emotion": {"label", "speaker", "t", "index", "confidence", "utterances", "duration"},
}


class Window(BaseModel):
    """Where in the call a rule looks: the first N s, the last N s, or (empty) anytime."""

    model_config = ConfigDict(extra="forbid")
    first_s: float | None = Field(default=None, gt=0)
    last_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_side(self) -> Window:
        if self.first_s is not None and self.last_s is not None:
            raise ValueError("give first_s or last_s, not both")
        return self

    def describe(self) -> str:
        if self.first_s is not None:
            return f"within the first {self.first_s:g} s"
        if self.last_s is not None:
            return f"within the last {self.last_s:g} s"
        return "anytime"


class RuleBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    description: str = ""
    severity: Severity = "warning"
    audience: list[Audience] = Field(default_factory=lambda: list[Audience](["supervisor"]))
    message: str = ""
    weight: float = Field(default=1.0, ge=0)
    cooldown_s: float = Field(default=30.0, ge=0)
    enabled: bool = True

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if not _ID_RE.match(v):
            raise ValueError(
                "id must be lower-case letters, digits, '_', '-' or '.', starting with a "
                f"letter or digit (got {v!r})"
            )
        return v

    @field_validator("audience", mode="before")
    @classmethod
    def _audience_both(cls, v: Any) -> Any:
        if v == "both":
            return ["agent", "supervisor"]
        if isinstance(v, str):
            return [v]
        return v

    @model_validator(mode="after")
    def _template_fields(self) -> RuleBase:
        allowed = TEMPLATE_FIELDS.get(getattr(self, "kind", ""), set())
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(self.message) if f}
        except ValueError as exc:
            raise ValueError(f"message template is malformed: {exc}") from exc
        unknown = sorted(n for n in names if n.split(".")[0].split("[")[0] not in allowed)
        if unknown:
            raise ValueError(
                f"message uses unknown placeholder(s) {unknown}; available: {sorted(allowed)}"
            )
        return self


class PhraseRule(RuleBase):
    """A phrase that must (required) or must not (forbidden) be said."""

    kind: Literal["phrase"]
    mode: Literal["required", "forbidden"]
    phrases: list[str] = Field(min_length=1)
    speaker: SpeakerSel = "agent"
    window: Window = Field(default_factory=Window)
    # Similarity (0-1) a stretch of transcript needs to count as the phrase; 1.0 = exact
    # words. The default tolerates small ASR slips ("recorded" heard as "recorder").
    fuzzy: float = Field(default=0.85, ge=0.5, le=1.0)

    @model_validator(mode="after")
    def _forbidden_window(self) -> PhraseRule:
        if self.mode == "forbidden" and self.window.last_s is not None:
            raise ValueError(
                "a forbidden phrase can use window.first_s or no window; last_s is only "
                "known when the call ends"
            )
        return self

    @field_validator("phrases")
    @classmethod
    def _non_blank(cls, v: list[str]) -> list[str]:
        if any(not p.strip() for p in v):
            raise ValueError("phrases must not be blank")
        return v


class SilenceRule(RuleBase):
    """Dead air: both sides quiet for at least ``min_s`` seconds."""

    kind: Literal["silence"]
    min_s: float = Field(gt=0)


class SpeechRateRule(RuleBase):
    """Words per minute of one speaker over their most recent ``window_s`` s of speech."""

    kind: Literal["speech_rate"]
    speaker: Literal["agent", "customer"] = "agent"
    window_s: float = Field(default=15.0, gt=0)
    min_wpm: float | None = Field(default=None, gt=0)
    max_wpm: float | None = Field(default=None, gt=0)
    min_words: int = Field(default=20, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> SpeechRateRule:
        if self.min_wpm is None and self.max_wpm is None:
            raise ValueError("give min_wpm, max_wpm or both")
        if self.min_wpm is not None and self.max_wpm is not None and self.min_wpm >= self.max_wpm:
            raise ValueError("min_wpm must be below max_wpm")
        return self


EmotionLabel = Literal["neutral", "positive", "frustrated", "angry"]


class EmotionRule(RuleBase):
    """A speaker sounding a certain way, sustained: escalations and coaching.

    The condition is either ``labels`` (the utterance's emotion label is one of them, with at
    least ``min_confidence``) or ``index_above`` (the speaker's rolling anger index). It must
    hold for ``sustained_utterances`` utterances in a row spanning ``sustained_s`` seconds.
    After firing, the rule stays quiet until the condition clears (index below
    ``clear_below``, or an utterance without the label) and ``cooldown_s`` has passed;
    ``notify_clear`` sends an info alert when it clears.
    """

    kind: Literal["emotion"]
    speaker: SpeakerSel = "customer"
    labels: list[EmotionLabel] | None = None
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    index_above: float | None = Field(default=None, gt=0, lt=1)
    clear_below: float | None = Field(default=None, ge=0, lt=1)
    sustained_utterances: int = Field(default=1, ge=1)
    sustained_s: float = Field(default=0.0, ge=0)
    notify_clear: bool = False
    cooldown_s: float = Field(default=120.0, ge=0)

    @model_validator(mode="after")
    def _condition(self) -> EmotionRule:
        if (self.labels is None) == (self.index_above is None):
            raise ValueError("give labels or index_above (one of them)")
        if self.labels is not None and not self.labels:
            raise ValueError("labels must name at least one emotion")
        if self.clear_below is not None:
            if self.index_above is None:
                raise ValueError("clear_below goes with index_above")
            if self.clear_below >= self.index_above:
                raise ValueError("clear_below must be below index_above")
        return self

    @property
    def clear_level(self) -> float:
        if self.index_above is None:
            return 0.0
        return self.clear_below if self.clear_below is not None else self.index_above * 0.6


Rule = Annotated[
    PhraseRule | SilenceRule | SpeechRateRule | EmotionRule, Field(discriminator="kind")
]


class RulePack(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pack: str
    version: int = 1
    language: str = "en"
    description: str = ""
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> RulePack:
        seen: set[str] = set()
        for r in self.rules:
            if r.id in seen:
                raise ValueError(f"rule id {r.id!r} appears twice in pack {self.pack!r}")
            seen.add(r.id)
        return self
