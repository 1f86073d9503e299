"""Rule pack schema (pydantic). One YAML file is one pack; a pack holds rules of any kind.

Field names are what QA teams write in YAML; see docs/rules.md for a worked example of each.
"""

from __future__ import annotations

import re
import re._constants as sre
import re._parser as sre_parse
import string
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

Severity = Literal["info", "warning", "critical"]
Audience = Literal["agent", "supervisor"]
SpeakerSel = Literal["agent", "customer", "any"]

_ID_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_PACK_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # the pack's file name, too
MAX_WEIGHT = 1000.0  # a rule's weight in the score; sums of huge weights overflow to inf

# Placeholders each kind offers to its message template, e.g. "Dead air for {duration:.0f} s".
TEMPLATE_FIELDS: dict[str, set[str]] = {
    "phrase": {"phrase", "matched", "speaker", "t", "window_s"},
    "silence": {"duration", "t", "min_s"},
    "speech_rate": {
        "wpm",
        "cpm",
        "rate",
        "unit",
        "speaker",
        "t",
        "min_wpm",
        "max_wpm",
        "min_cpm",
        "max_cpm",
        "window_s",
        "words",
    },
    "emotion": {"label", "speaker", "t", "index", "confidence", "utterances", "duration"},
    "talk_over": {"speaker", "interrupted", "overlap", "count", "t"},
    "talk_ratio": {"speaker", "share", "percent", "talk_s", "t"},
    "hold": {"duration", "t", "phrase", "max_s"},
    "pii": {"type", "masked", "speaker", "t"},
    "composite": {"t", "trigger_t", "within_s", "speaker"},
}
KINDS = tuple(TEMPLATE_FIELDS)


class Window(BaseModel):
    """Where in the call a rule looks: the first N s, the last N s, or (empty) anytime."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
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
    # inf/NaN weights and durations would reach scores and JSON answers (which refuse them)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: str
    description: str = ""
    severity: Severity = "warning"
    audience: list[Audience] = Field(default_factory=lambda: list[Audience](["supervisor"]))
    message: str = ""
    # Lines the agent could say when this fires (audience agent): sent as a suggestion card.
    prompt: list[str] = Field(default_factory=list)
    weight: float = Field(default=1.0, ge=0, le=MAX_WEIGHT)
    cooldown_s: float = Field(default=30.0, ge=0)
    enabled: bool = True
    # Where in the call the rule looks. Event rules: first_s drops alerts after N s; last_s
    # keeps only alerts of the last N s, so those are known (and sent) when the call ends.
    window: Window = Field(default_factory=Window)

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if not _ID_RE.fullmatch(v):
            raise ValueError(
                "id must be lower-case letters, digits, '_', '-' or '.', starting with a "
                f"letter or digit (got {v!r})"
            )
        return v

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_lines(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

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
        check_template(self.message, getattr(self, "kind", ""), "message")
        return self


def check_template(template: str, kind: str, what: str) -> None:
    """A message template names only the values its rule kind provides (ValueError)."""
    allowed = TEMPLATE_FIELDS.get(kind, set())
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    except ValueError as exc:
        raise ValueError(f"{what} template is malformed: {exc}") from exc
    reached = sorted(n for n in names if "." in n or "[" in n)
    if reached:  # "{t.__class__...}" would read attributes of the values at alert time
        raise ValueError(
            f"{what} placeholders name a value, not an attribute or item of it: {reached}"
        )
    unknown = sorted(n for n in names if n not in allowed)
    if unknown:
        raise ValueError(
            f"{what} uses unknown placeholder(s) {unknown}; available: {sorted(allowed)}"
        )


class PhraseRule(RuleBase):
    """Something that must (required) or must not (forbidden) be said.

    ``match`` says how the listed phrases (and regexes) combine: ``any`` one of them, ``all``
    of them, or all ``in_order``. With ``within_words`` they must fall that close together in
    one utterance ("refund" within 10 words of "cancel"); without it, ``all``/``in_order``
    may be spread over the call.
    """

    kind: Literal["phrase"]
    mode: Literal["required", "forbidden"]
    regex: list[str] = Field(default_factory=list)  # before phrases: their check reads it
    phrases: list[str] = Field(default_factory=list)
    match: Literal["any", "all", "in_order"] = "any"
    within_words: int | None = Field(default=None, ge=1)
    speaker: SpeakerSel = "agent"
    # Similarity (0-1) a stretch of transcript needs to count as the phrase; 1.0 = exact
    # words. The default tolerates small ASR slips ("recorded" heard as "recorder").
    fuzzy: float = Field(default=0.85, ge=0.5, le=1.0)
    # "I can't guarantee" is not a promise: skip matches with a negation just before them.
    ignore_negated: bool = False
    # A match does not count when one of these is said within ``near_words`` of it.
    unless_near: list[str] = Field(default_factory=list)
    near_words: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _shape(self) -> PhraseRule:
        if not self.phrases and not self.regex:
            raise ValueError("give phrases, regex or both")
        if self.mode == "forbidden" and self.window.last_s is not None:
            raise ValueError(
                "a forbidden phrase can use window.first_s or no window; last_s is only "
                "known when the call ends"
            )
        if self.within_words is not None and self.match == "any":
            raise ValueError("within_words needs match: all or match: in_order")
        if self.match != "any" and len(self.phrases) + len(self.regex) < 2:
            raise ValueError(f"match: {self.match} needs at least two phrases/regexes")
        return self

    @field_validator("phrases", "unless_near")
    @classmethod
    def _non_blank(cls, v: list[str], info: ValidationInfo) -> list[str]:
        if any(not p.strip() for p in v):
            raise ValueError("phrases must not be blank")
        if info.field_name == "phrases" and not v and not info.data.get("regex"):
            raise ValueError("give at least one phrase (or a regex)")
        return v

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: list[str]) -> list[str]:
        for i, pattern in enumerate(v):
            try:
                re.compile(pattern)
            except (re.error, OverflowError, RecursionError) as exc:
                raise ValueError(f"regex[{i}] {pattern!r} does not compile: {exc}") from exc
            why = backtracking_risk(pattern)
            if why:
                raise ValueError(
                    f"regex[{i}] {pattern!r} can backtrack catastrophically ({why}) and stall "
                    "every live call; make the repeats unambiguous, or use a possessive "
                    "quantifier (x++) or an atomic group (?>...)"
                )
        return v

    @property
    def items(self) -> list[str]:
        """Phrases then regexes, the units ``match`` combines (regexes as ``re:PATTERN``)."""
        return [*self.phrases, *(f"re:{r}" for r in self.regex)]


# -- regexes that cannot stall the engine ------------------------------------------------------
# Regexes run on every final transcript, in the live engine. Python's ``re`` backtracks: a
# pattern like ``(\w+\s?)+refund`` takes exponential time on an utterance without "refund"
# (seconds at 8 words, hours at 20). Such patterns are refused when the pack loads. The test
# is on the parsed pattern: a repeat is ambiguous when what its body starts with can also
# follow it, so one text splits into iterations in many ways.
_SAMPLE = frozenset(string.printable + "éßñ中文字١٢")  # characters standing for the alphabet
_CATEGORY = {"DIGIT": r"\d", "SPACE": r"\s", "WORD": r"\w"}
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT)
Items = list[tuple[Any, Any]]


def _category(name: str) -> frozenset[str]:
    base = next(v for k, v in _CATEGORY.items() if k in name)
    chars = frozenset(c for c in _SAMPLE if re.fullmatch(base, c))
    return _SAMPLE - chars if "NOT" in name else chars


def _class_chars(items: Items) -> frozenset[str]:
    chars: set[str] = set()
    negate = False
    for op, av in items:
        if op is sre.NEGATE:
            negate = True
        elif op is sre.LITERAL:
            chars |= {chr(av), chr(av).lower(), chr(av).upper()}
        elif op is sre.RANGE:
            chars |= {c for c in _SAMPLE if av[0] <= ord(c) <= av[1]} | {chr(av[0])}
        elif op is sre.CATEGORY:
            chars |= _category(str(av))
        else:
            chars |= _SAMPLE
    return _SAMPLE - chars if negate else frozenset(chars)


def _first(items: Items, follow: frozenset[str]) -> frozenset[str]:
    """Characters a match of ``items`` can start with (``follow`` if it can be empty)."""
    out: set[str] = set()
    for op, av in items:
        if op is sre.LITERAL:
            return frozenset(out | {chr(av), chr(av).lower(), chr(av).upper()})
        if op in (sre.NOT_LITERAL, sre.ANY, sre.GROUPREF, sre.GROUPREF_EXISTS):
            return _SAMPLE  # GROUPREF: whatever the group matched; conservative
        if op is sre.IN:
            return frozenset(out | _class_chars(av))
        if op is sre.SUBPATTERN or op is sre.ATOMIC_GROUP:
            inner = av[3] if op is sre.SUBPATTERN else av
            out |= _first(list(inner), frozenset())
            if not _nullable(list(inner)):
                return frozenset(out)
        elif op is sre.BRANCH:
            for alt in av[1]:
                out |= _first(list(alt), frozenset())
            if not any(_nullable(list(alt)) for alt in av[1]):
                return frozenset(out)
        elif op in (*_REPEATS, sre.POSSESSIVE_REPEAT):
            out |= _first(list(av[2]), frozenset())
            if av[0] > 0 and not _nullable(list(av[2])):
                return frozenset(out)
        # AT, ASSERT, ASSERT_NOT: zero width, look further
    return frozenset(out | follow)


def _nullable(items: Items) -> bool:
    """Whether ``items`` can match the empty string."""
    for op, av in items:
        if op in (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN):
            return False
        if op is sre.SUBPATTERN or op is sre.ATOMIC_GROUP:
            if not _nullable(list(av[3] if op is sre.SUBPATTERN else av)):
                return False
        elif op is sre.BRANCH:
            if not any(_nullable(list(alt)) for alt in av[1]):
                return False
        elif op in (*_REPEATS, sre.POSSESSIVE_REPEAT) and av[0] > 0 and not _nullable(list(av[2])):
            return False
    return True


def _literal(items: Items) -> str | None:
    if all(op is sre.LITERAL for op, _ in items):
        return "".join(chr(av) for _, av in items)
    return None


def _risk(items: Items, follow: frozenset[str], loop: bool) -> str | None:
    """Why ``items`` (followed by ``follow``; ``loop``: inside a repeat of more than one
    iteration) can backtrack catastrophically, or None."""
    run = 0  # adjacent unbounded repeats whose end is ambiguous: polynomial of that degree
    for i, (op, av) in enumerate(items):
        after = _first(items[i + 1 :], follow)
        if op in _REPEATS:
            lo, hi, body = av[0], av[1], list(av[2])
            ambiguous = lo != hi and bool(_first(body, frozenset()) & after)
            if ambiguous and loop:
                return "a repeat inside a repeat can split the same text in many ways"
            run = run + 1 if ambiguous and hi == sre.MAXREPEAT else 0
            if run >= 3:
                return f"{run} adjacent repeats can share the same characters"
            inner_follow = after | (_first(body, frozenset()) if hi > 1 else frozenset())
            why = _risk(body, inner_follow, loop or hi > 1)
        elif op is sre.POSSESSIVE_REPEAT or op is sre.ATOMIC_GROUP:
            run = 0  # never backtracked into: only its inside can go wrong
            body = list(av[2] if op is sre.POSSESSIVE_REPEAT else av)
            why = _risk(body, frozenset(), False)
        elif op is sre.SUBPATTERN:
            why = _risk(list(av[3]), after, loop)
        elif op is sre.BRANCH:
            alts = [list(a) for a in av[1]]
            why = _branch_risk(alts, after) if loop else None
            for alt in alts:
                why = why or _risk(alt, after, loop)
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            why = _risk(list(av[1]), _SAMPLE, False)
        else:
            if op is not sre.AT:  # a zero-width anchor keeps repeats adjacent
                run = 0
            continue
        if why:
            return why
    return None


def _branch_risk(alts: list[Items], after: frozenset[str]) -> str | None:
    """Two alternatives of a repeated group that can match the same text."""
    for a in range(len(alts)):
        for b in range(a + 1, len(alts)):
            s1, s2 = _literal(alts[a]), _literal(alts[b])
            if s1 is not None and s2 is not None:
                short, long_ = sorted((s1, s2), key=len)
                clash = long_.startswith(short) and (short == long_ or long_[len(short)] in after)
            else:
                clash = bool(_first(alts[a], after) & _first(alts[b], after))
            if clash:
                return "two alternatives of a repeated group can match the same text"
    return None


def backtracking_risk(pattern: str) -> str | None:
    """Why ``pattern`` could take exponential (or high-polynomial) time on a transcript."""
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, OverflowError, RecursionError):
        return None  # the compile check reports it
    return _risk(list(parsed), frozenset(), False)


class SilenceRule(RuleBase):
    """Dead air: both sides quiet for at least ``min_s`` seconds."""

    kind: Literal["silence"]
    min_s: float = Field(gt=0)
    # A silence the agent announced ("let me put you on hold") is a hold, judged by the
    # hold kind; true counts it as dead air anyway.
    during_hold: bool = False


class SpeechRateRule(RuleBase):
    """Pace of one speaker over their most recent ``window_s`` s of speech.

    English (and other spaced languages) in words per minute; Chinese in characters per
    minute (``min_cpm``/``max_cpm``). An utterance is measured in the unit of its script.
    """

    kind: Literal["speech_rate"]
    speaker: Literal["agent", "customer"] = "agent"
    window_s: float = Field(default=15.0, gt=0)
    min_wpm: float | None = Field(default=None, gt=0)
    max_wpm: float | None = Field(default=None, gt=0)
    min_cpm: float | None = Field(default=None, gt=0)
    max_cpm: float | None = Field(default=None, gt=0)
    min_words: int = Field(default=20, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> SpeechRateRule:
        if None is self.min_wpm is self.max_wpm is self.min_cpm is self.max_cpm:
            raise ValueError("give min_wpm/max_wpm (words) or min_cpm/max_cpm (characters)")
        for lo, hi, unit in (
            (self.min_wpm, self.max_wpm, "wpm"),
            (self.min_cpm, self.max_cpm, "cpm"),
        ):
            if lo is not None and hi is not None and lo >= hi:
                raise ValueError(f"min_{unit} must be below max_{unit}")
        return self

    def bounds(self, unit: str) -> tuple[float | None, float | None]:
        return (self.min_cpm, self.max_cpm) if unit == "cpm" else (self.min_wpm, self.max_wpm)


EmotionLabel = Literal["neutral", "positive", "frustrated", "angry"]


class EmotionRule(RuleBase):
    """A speaker sounding a certain way, sustained: escalations and coaching.

    The condition is either ``labels`` (the utterance's emotion label is one of them, with at
    least ``min_confidence``) or ``index_above`` (the speaker's rolling anger index). It must
    hold for ``sustained_utterances`` utterances in a row spanning ``sustained_s`` seconds.
    After firing, the rule stays quiet until the condition clears (index below
    ``clear_below``, or an utterance without the label) and ``cooldown_s`` has passed;
    ``notify_clear`` sends an info alert when it clears, worded by ``clear_message`` (the
    same placeholders as ``message``; a Mandarin pack says it in Chinese).
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
    clear_message: str = ""
    cooldown_s: float = Field(default=120.0, ge=0)

    @model_validator(mode="after")
    def _clear_template(self) -> EmotionRule:
        check_template(self.clear_message, self.kind, "clear_message")
        return self

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


class TalkOverRule(RuleBase):
    """One side starts talking while the other is still speaking, for ``min_overlap_s``.

    ``speaker`` is who interrupts. Backchannels ("mm-hmm", "yeah", 嗯) are not interruptions.
    The first ``allowed`` interruptions of a call pass; each one after that alerts.
    """

    kind: Literal["talk_over"]
    speaker: SpeakerSel = "agent"
    min_overlap_s: float = Field(default=1.0, gt=0)
    allowed: int = Field(default=0, ge=0)
    ignore_backchannel: bool = True
    cooldown_s: float = Field(default=0.0, ge=0)


class TalkRatioRule(RuleBase):
    """One side's share of the talking (speech time / both sides' speech time).

    Checked as the call goes once ``min_talk_s`` of speech is in, and at the end.
    """

    kind: Literal["talk_ratio"]
    speaker: Literal["agent", "customer"] = "agent"
    min_share: float | None = Field(default=None, ge=0, le=1)
    max_share: float | None = Field(default=None, ge=0, le=1)
    min_talk_s: float = Field(default=60.0, ge=0)
    cooldown_s: float = Field(default=120.0, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> TalkRatioRule:
        if self.min_share is None and self.max_share is None:
            raise ValueError("give min_share, max_share or both (0-1)")
        if (
            self.min_share is not None
            and self.max_share is not None
            and self.min_share >= self.max_share
        ):
            raise ValueError("min_share must be below max_share")
        return self


# Explicit hold language only: "let me check" followed by silence is dead air, not a hold.
DEFAULT_HOLD_PHRASES = [
    "put you on hold",
    "place you on hold",
    "put you on a brief hold",
    "put you on a short hold",
    "place you on a brief hold",
    "请稍等",
    "请稍候",
    "稍等一下",
]


class HoldRule(RuleBase):
    """Holds: a silence the agent announced ("let me put you on hold") that runs too long,
    and (with ``unannounced_s``) long silences the agent did not announce."""

    kind: Literal["hold"]
    phrases: list[str] = Field(default_factory=lambda: list(DEFAULT_HOLD_PHRASES), min_length=1)
    announce_within_s: float = Field(default=15.0, gt=0)
    max_s: float = Field(default=60.0, gt=0)
    unannounced_s: float | None = Field(default=None, gt=0)
    fuzzy: float = Field(default=0.85, ge=0.5, le=1.0)
    cooldown_s: float = Field(default=0.0, ge=0)


PiiType = Literal["card_number", "ssn", "cn_resident_id", "cn_mobile", "date_of_birth", "digits"]


class PiiRule(RuleBase):
    """Sensitive numbers spoken on the call: alert, and (``redact``) mask them in everything
    callwatch stores or reports."""

    kind: Literal["pii"]
    types: list[PiiType] = Field(
        default_factory=lambda: list[PiiType](["card_number", "ssn", "cn_resident_id"]),
        min_length=1,
    )
    speaker: SpeakerSel = "any"
    redact: bool = True
    min_digits: int = Field(default=8, ge=4)
    cooldown_s: float = Field(default=0.0, ge=0)


class Cond(BaseModel):
    """One node of a composite rule's condition: a signal, or ``all``/``any``/``not`` of nodes.

    Signals: ``rule`` (another rule alerted), ``said`` (phrases, by ``speaker``), ``emotion``
    (labels, by ``speaker``, at ``min_confidence``), ``anger_above`` (the speaker's anger
    index), ``silence`` (dead air of at least N s).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    all_: list[Cond] | None = Field(default=None, alias="all", min_length=1)
    any_: list[Cond] | None = Field(default=None, alias="any", min_length=1)
    not_: Cond | None = Field(default=None, alias="not")
    rule: str | None = None
    said: list[str] | None = Field(default=None, min_length=1)
    emotion: list[EmotionLabel] | None = Field(default=None, min_length=1)
    anger_above: float | None = Field(default=None, gt=0, lt=1)
    silence: float | None = Field(default=None, gt=0)
    speaker: SpeakerSel = "any"
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    fuzzy: float = Field(default=0.85, ge=0.5, le=1.0)

    @model_validator(mode="after")
    def _one(self) -> Cond:
        given = [k for k in COND_KEYS if getattr(self, COND_KEYS[k]) is not None]
        if len(given) != 1:
            raise ValueError(
                "each condition is exactly one of: "
                + ", ".join(COND_KEYS)
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def op(self) -> str:
        return next(k for k in COND_KEYS if getattr(self, COND_KEYS[k]) is not None)

    @property
    def children(self) -> list[Cond]:
        if self.not_ is not None:
            return [self.not_]
        return self.all_ or self.any_ or []

    def walk(self) -> list[Cond]:
        out = [self]
        for c in self.children:
            out.extend(c.walk())
        return out

    def describe(self) -> str:
        op = self.op
        if op in ("all", "any"):
            return f"{op}(" + ", ".join(c.describe() for c in self.children) + ")"
        if op == "not":
            return f"not {self.children[0].describe()}"
        who = "" if self.speaker == "any" else f" by {self.speaker}"
        if op == "rule":
            return f"rule {self.rule} alerted"
        if op == "said":
            return f"said {' / '.join(repr(p) for p in self.said or [])}{who}"
        if op == "emotion":
            return f"{' or '.join(self.emotion or [])}{who}"
        if op == "anger_above":
            return f"anger index above {self.anger_above}{who}"
        return f"silence of {self.silence:g} s"


COND_KEYS = {
    "all": "all_",
    "any": "any_",
    "not": "not_",
    "rule": "rule",
    "said": "said",
    "emotion": "emotion",
    "anger_above": "anger_above",
    "silence": "silence",
}


class CompositeRule(RuleBase):
    """A condition over other signals, optionally within ``within_s`` after a trigger.

    Without ``after`` the condition is judged over the whole call (or ``window.first_s``);
    a ``not`` is only decided when that span ends. With ``after``, every time the trigger
    happens a span of ``within_s`` opens and the condition is judged inside it.
    """

    kind: Literal["composite"]
    when: Cond
    after: Cond | None = None
    within_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _trigger(self) -> CompositeRule:
        if (self.after is None) != (self.within_s is None):
            raise ValueError("after and within_s go together")
        if self.after is not None and self.after.op in ("all", "any", "not"):
            raise ValueError("after is a single signal (rule, said, emotion, anger_above, silence)")
        if self.window.last_s is not None:
            raise ValueError("a composite rule can use window.first_s, not last_s")
        return self

    def conditions(self) -> list[Cond]:
        return [*(self.after.walk() if self.after else []), *self.when.walk()]

    def referenced_rules(self) -> list[str]:
        return [c.rule for c in self.conditions() if c.rule is not None]


AnyRule = (
    PhraseRule
    | SilenceRule
    | SpeechRateRule
    | EmotionRule
    | TalkOverRule
    | TalkRatioRule
    | HoldRule
    | PiiRule
    | CompositeRule
)
Rule = Annotated[AnyRule, Field(discriminator="kind")]


class RulePack(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    pack: str
    version: int = 1
    language: str = "en"
    description: str = ""
    rules: list[Rule] = Field(default_factory=list)

    @field_validator("pack")
    @classmethod
    def _pack_name(cls, v: str) -> str:
        if not _PACK_RE.fullmatch(v):
            raise ValueError(
                "pack name: use letters, digits, '_', '-' or '.', starting with a letter or "
                f"digit, at most 128 characters (it becomes the file name; got {v[:40]!r})"
            )
        return v

    @model_validator(mode="after")
    def _unique_ids(self) -> RulePack:
        seen: set[str] = set()
        for r in self.rules:
            if r.id in seen:
                raise ValueError(f"rule id {r.id!r} appears twice in pack {self.pack!r}")
            seen.add(r.id)
        return self


ANY_LANGUAGE = "any"


def packs_for(packs: Sequence[RulePack], language: str | None) -> list[RulePack]:
    """The packs a call in ``language`` runs: those of its language (``zh`` also matches a
    ``zh-CN`` pack) and the ``any`` ones. None (not known yet): only the ``any`` ones."""

    def code(x: str) -> str:
        return x.replace("_", "-").split("-")[0].lower()

    lang = code(language) if language else None
    return [p for p in packs if p.language == ANY_LANGUAGE or code(p.language) == lang]
