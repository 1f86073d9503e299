"""Rule unit tests: play a scripted call (transcript fixtures) through the rules, check alerts.

A QA team writes what was said, when, and what the rules should do about it::

    cases:
      - name: disclosure read late fires the prompt
        events:
          - {speaker: agent, t: 2, text: "Thank you for calling Acme, how can I help you?"}
          - {speaker: agent, t: 40, text: "This call may be recorded"}
        expect:
          - {rule: recording_disclosure, at: 30}

``parse_cases``/``load_cases`` validate a cases file the way rule packs are validated (every
error names file, line and field); ``run_cases`` plays each case through a fresh
``RuleEngine`` in the order the live pipeline would feed it (``evaluate``) and compares. Nothing
here prints: the CLI (``callwatch rules test``) and the HTTP API format the results.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from qa_rules.engine import RuleEngine
from qa_rules.events import (
    Alert,
    EmotionObserved,
    EngineInput,
    RuleOutcome,
    SilenceEnded,
    SilenceStarted,
    Utterance,
    WordTime,
)
from qa_rules.loader import RuleError, RuleIssue, load_yaml, yaml_line_of
from qa_rules.schema import RulePack, packs_for
from qa_rules.scoring import score_of

SECONDS_PER_WORD = 0.35  # estimated speaking time when an utterance has no t_end
SECONDS_PER_CJK_CHAR = 0.25
EMOTION_SPAN_S = 2.0  # an emotion reading without t_end (and no utterance to take it from)

_SPEAKER_RE = re.compile(r"^(agent|customer|mixed|speaker_[0-9]+)$")
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_PIECE_RE = re.compile(rf"[{_CJK}]|[^{_CJK}]+")
_CJK_RE = re.compile(rf"[{_CJK}]")

# Discriminator tags pydantic adds to error locations (not keys anyone writes).
_UTT, _SIL, _EMO = "<utterance>", "<silence>", "<emotion>"
_TAGS = {_UTT, _SIL, _EMO}


def _speaker(v: str) -> str:
    if not _SPEAKER_RE.match(v):
        raise ValueError(f"speaker must be agent or customer (or mixed, speaker_3, ...), got {v!r}")
    return v


# -- the cases file schema -----------------------------------------------------------------
class UtteranceEvent(BaseModel):
    """Someone said something: ``{speaker: agent, t: 2, text: "..."}``."""

    model_config = ConfigDict(extra="forbid")
    speaker: str
    t: float = Field(ge=0)
    t_end: float | None = None  # default: estimated from the words
    text: str
    language: str | None = None  # default: the case's language

    @field_validator("speaker")
    @classmethod
    def _speaker_shape(cls, v: str) -> str:
        return _speaker(v)

    @field_validator("text")
    @classmethod
    def _has_words(cls, v: str) -> str:
        if not any(c.isalnum() for c in v):
            raise ValueError("text must contain words")
        return v


class SilenceEvent(BaseModel):
    """Both sides quiet: ``{silence: 20, t: 30}`` is dead air from 30 s to 50 s."""

    model_config = ConfigDict(extra="forbid")
    silence: float = Field(gt=0)
    t: float = Field(ge=0)


class EmotionEvent(BaseModel):
    """How a speaker sounded: ``{emotion: angry, speaker: customer, t: 40, anger_index: 0.7}``."""

    model_config = ConfigDict(extra="forbid")
    emotion: Literal["neutral", "positive", "frustrated", "angry"]
    speaker: str
    t: float = Field(ge=0)
    t_end: float | None = None  # default: the end of the speaker's utterance at t, or t + 2
    confidence: float = Field(default=1.0, ge=0, le=1)
    anger_index: float = Field(default=0.0, ge=0, le=1)
    text: str | None = None  # default: the text of the speaker's utterance at t

    @field_validator("speaker")
    @classmethod
    def _speaker_shape(cls, v: str) -> str:
        return _speaker(v)


def _event_kind(v: Any) -> str | None:
    if isinstance(v, dict):
        if "silence" in v:
            return _SIL
        if "emotion" in v:
            return _EMO
        if "text" in v:
            return _UTT
        return None
    if isinstance(v, UtteranceEvent):
        return _UTT
    if isinstance(v, SilenceEvent):
        return _SIL
    return _EMO if isinstance(v, EmotionEvent) else None


CaseEvent = Annotated[
    Annotated[UtteranceEvent, Tag(_UTT)]
    | Annotated[SilenceEvent, Tag(_SIL)]
    | Annotated[EmotionEvent, Tag(_EMO)],
    Discriminator(
        _event_kind,
        custom_error_type="event_kind",
        custom_error_message="an event is an utterance {speaker, t, text}, a silence "
        "{silence: SECONDS, t} or an emotion reading {emotion: LABEL, speaker, t}",
    ),
]


class Expect(BaseModel):
    """An alert the case must produce (at least one, or exactly ``count``)."""

    model_config = ConfigDict(extra="forbid")
    rule: str
    at: float | None = Field(default=None, ge=0)
    tolerance_s: float = Field(default=1.0, ge=0)
    speaker: str | None = None
    message_contains: str | None = None
    count: int | None = Field(default=None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return {"rule": v} if isinstance(v, str) else v  # expect: [greeting]

    @field_validator("speaker")
    @classmethod
    def _speaker_shape(cls, v: str | None) -> str | None:
        return None if v is None else _speaker(v)

    def matches(self, a: Alert) -> bool:
        return (
            a.rule_id == self.rule
            and (self.at is None or abs(a.t - self.at) <= self.tolerance_s + 1e-6)
            and (self.speaker is None or a.speaker == self.speaker)
            and (
                self.message_contains is None
                or self.message_contains.casefold() in a.message.casefold()
            )
        )

    def describe(self) -> str:
        s = f"from {self.rule}"
        if self.at is not None:
            s += f" at {_n(self.at)}±{_n(self.tolerance_s)} s"
        if self.speaker is not None:
            s += f" about {self.speaker}"
        if self.message_contains is not None:
            s += f' saying "{self.message_contains}"'
        return s


Status = Literal["passed", "failed", "not_applicable"]


class ScoreRange(BaseModel):
    """``score: {min: 50, max: 80}``, or ``score: 75`` for exactly 75."""

    model_config = ConfigDict(extra="forbid")
    min: float | None = Field(default=None, ge=0, le=100)
    max: float | None = Field(default=None, ge=0, le=100)

    @model_validator(mode="before")
    @classmethod
    def _exact(cls, v: Any) -> Any:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return {"min": v, "max": v}
        return v

    @model_validator(mode="after")
    def _bounds(self) -> ScoreRange:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not be above max")
        return self

    def holds(self, score: float) -> bool:
        return (self.min is None or score >= self.min - 1e-9) and (
            self.max is None or score <= self.max + 1e-9
        )

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            return _n(self.min) if self.min == self.max else f"{_n(self.min)} to {_n(self.max)}"
        return f"at least {_n(self.min)}" if self.min is not None else f"at most {_n(self.max)}"


@dataclass(frozen=True)
class _Ref:
    """A rule id the case refers to, and where."""

    rule: str
    field: str
    line: int | None


class Case(BaseModel):
    """One scripted call and what the rules should make of it."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    description: str = ""
    language: str = "en"
    duration_s: float | None = Field(default=None, gt=0)
    events: list[CaseEvent] = Field(default_factory=list)
    expect: list[Expect] = Field(default_factory=list)
    expect_no: list[str] = Field(default_factory=list)
    only_expected: bool = False
    scorecard: dict[str, Status] = Field(default_factory=dict)
    score: ScoreRange | None = None

    _file: str = PrivateAttr(default="<cases>")
    _line: int | None = PrivateAttr(default=None)
    _refs: list[_Ref] = PrivateAttr(default_factory=list)

    @property
    def file(self) -> str:
        return self._file

    @property
    def line(self) -> int | None:
        return self._line

    @property
    def where(self) -> str:
        return f"{self._file}:{self._line}" if self._line else self._file

    def inputs(self) -> list[EngineInput]:
        """The engine inputs this case describes, in file order (``evaluate`` sorts them).

        A silence gives two (started, ended). An emotion reading without ``t_end``/``text``
        takes them from the same speaker's utterance starting at the same ``t``.
        """
        said = {
            (ev.speaker, ev.t): _utterance(ev, self.language)
            for ev in reversed(self.events)
            if isinstance(ev, UtteranceEvent)
        }
        out: list[EngineInput] = []
        for ev in self.events:
            if isinstance(ev, UtteranceEvent):
                out.append(_utterance(ev, self.language))
            elif isinstance(ev, SilenceEvent):
                out.append(SilenceStarted(ev.t))
                out.append(SilenceEnded(ev.t, ev.t + ev.silence))
            else:
                u = said.get((ev.speaker, ev.t))
                t_end = (
                    ev.t_end if ev.t_end is not None else u.t_end if u else ev.t + EMOTION_SPAN_S
                )
                text = ev.text if ev.text is not None else u.text if u else ""
                out.append(
                    EmotionObserved(
                        ev.speaker, ev.t, t_end, ev.emotion, ev.confidence, ev.anger_index, text
                    )
                )
        return out

    def end(self) -> float:
        """When the call ends: ``duration_s``, or 1 s after the last event."""
        if self.duration_s is not None:
            return self.duration_s
        return _last_end(self.inputs()) + 1.0


class CasesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cases: list[Case] = Field(min_length=1)


def _utterance(ev: UtteranceEvent, default_language: str) -> Utterance:
    pieces = _words(ev.text)
    weights = [SECONDS_PER_CJK_CHAR if _CJK_RE.search(p) else SECONDS_PER_WORD for p in pieces]
    estimated = sum(weights)
    t_end = ev.t_end if ev.t_end is not None else ev.t + estimated
    scale = (t_end - ev.t) / estimated if estimated else 0.0
    words: list[WordTime] = []
    at = ev.t
    for p, w in zip(pieces, weights, strict=True):
        words.append(WordTime(p, round(at, 3), round(at + w * scale, 3)))
        at += w * scale
    return Utterance(
        ev.speaker, ev.t, round(t_end, 3), ev.text, tuple(words), ev.language or default_language
    )


def _words(text: str) -> list[str]:
    """ASR-like words: whitespace-separated, each Chinese character its own word; bare
    punctuation sticks to the word before it."""
    out: list[str] = []
    for tok in text.split():
        for piece in _PIECE_RE.findall(tok):
            if out and not _CJK_RE.search(piece) and not any(c.isalnum() for c in piece):
                out[-1] += piece
            else:
                out.append(piece)
    return [w for w in out if any(c.isalnum() for c in w) or _CJK_RE.search(w)] or [text.strip()]


def _n(x: float | None) -> str:
    return "?" if x is None else f"{round(x, 2):g}"


def _input_end(x: EngineInput) -> float:
    return x.t if isinstance(x, SilenceStarted) else x.t_end


def _last_end(inputs: Iterable[EngineInput]) -> float:
    return max((_input_end(x) for x in inputs), default=0.0)


# -- parsing -------------------------------------------------------------------------------
def _field_path(loc: Sequence[int | str], data: Any) -> str:
    out = ""
    cur = data
    for part in loc:
        if part in _TAGS:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
            cur = cur[part] if isinstance(cur, list) and part < len(cur) else None
            if (
                isinstance(cur, dict)
                and isinstance(cur.get("name"), str)
                and out == f"cases[{part}]"
            ):
                out += f"(name={cur['name']})"
        else:
            out += f".{part}" if out else str(part)
            cur = cur.get(part) if isinstance(cur, dict) else None
    return out


def _clean(loc: Sequence[int | str]) -> tuple[int | str, ...]:
    return tuple(p for p in loc if p not in _TAGS)


def parse_cases(
    text: str, filename: str = "<cases>", packs: list[RulePack] | None = None
) -> list[Case]:
    """Parse one cases file's YAML text. Raises RuleError naming file/line/field.

    With ``packs``, rule ids the cases mention are checked against them too.
    """
    node, data = load_yaml(text, filename)
    if not isinstance(data, dict):
        raise RuleError(
            [RuleIssue(filename, 1, "", "a cases file is a mapping with a 'cases' list")]
        )
    try:
        cases = CasesFile.model_validate(data).cases
    except ValidationError as exc:
        issues = []
        for err in exc.errors():
            loc = _clean(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            issues.append(RuleIssue(filename, yaml_line_of(node, loc), _field_path(loc, data), msg))
        raise RuleError(issues) from exc

    issues = []
    seen: dict[str, int | None] = {}
    for i, case in enumerate(cases):
        where = _Where(filename, node, data, ("cases", i))
        case._file = filename
        case._line = where.line()
        if case.name in seen:
            issues.append(
                where.issue(
                    ("name",),
                    f"another case is already called {case.name!r} (line {seen[case.name]})",
                )
            )
        seen.setdefault(case.name, case._line)
        refs: list[tuple[str, tuple[int | str, ...]]] = [
            *((e.rule, ("expect", j, "rule")) for j, e in enumerate(case.expect)),
            *((rid, ("expect_no", j)) for j, rid in enumerate(case.expect_no)),
            *((rid, ("scorecard", rid)) for rid in case.scorecard),
        ]
        for rid, loc in refs:
            case._refs.append(_Ref(rid, where.path(*loc), where.line(*loc)))
        issues.extend(_timeline_issues(case, where))
    if issues:
        raise RuleError(issues)
    if packs is not None:
        check_cases(cases, packs)
    return cases


@dataclass(frozen=True)
class _Where:
    """Turns a location inside one case into a line number and a field path."""

    file: str
    node: yaml.Node | None
    data: Any
    base: tuple[int | str, ...]

    def line(self, *loc: int | str) -> int | None:
        return yaml_line_of(self.node, (*self.base, *loc))

    def path(self, *loc: int | str) -> str:
        return _field_path((*self.base, *loc), self.data)

    def issue(self, loc: tuple[int | str, ...], message: str) -> RuleIssue:
        return RuleIssue(self.file, self.line(*loc), self.path(*loc), message)


def _timeline_issues(case: Case, where: _Where) -> list[RuleIssue]:
    """Events the pipeline could never produce: speech inside a silence, ends before starts."""
    issues: list[RuleIssue] = []
    utts: list[tuple[int, Utterance, bool]] = []
    sils: list[tuple[int, float, float]] = []
    for i, ev in enumerate(case.events):
        if (
            isinstance(ev, UtteranceEvent | EmotionEvent)
            and ev.t_end is not None
            and ev.t_end <= ev.t
        ):
            issues.append(
                where.issue(
                    ("events", i, "t_end"), f"t_end ({_n(ev.t_end)}) must be after t ({_n(ev.t)})"
                )
            )
        elif isinstance(ev, UtteranceEvent):
            utts.append((i, _utterance(ev, case.language), ev.t_end is None))
        elif isinstance(ev, SilenceEvent):
            sils.append((i, ev.t, ev.t + ev.silence))
    for k, (i, s, e) in enumerate(sils):
        for i2, s2, e2 in sils[k + 1 :]:
            if s < e2 and s2 < e:
                issues.append(
                    where.issue(
                        ("events", i2),
                        f"silence {_n(s2)}-{_n(e2)} s overlaps the silence {_n(s)}-{_n(e)} s "
                        f"(events[{i}])",
                    )
                )
        for j, u, estimated in utts:
            if u.t < e and s < u.t_end:
                hint = (
                    f" (its end is estimated at {SECONDS_PER_WORD:g} s a word; give t_end)"
                    if estimated
                    else ""
                )
                issues.append(
                    where.issue(
                        ("events", i),
                        f"silence {_n(s)}-{_n(e)} s overlaps the {u.speaker}'s utterance "
                        f"{_n(u.t)}-{_n(u.t_end)} s (events[{j}]){hint}; in a silence nobody "
                        "speaks",
                    )
                )
    if case.duration_s is not None and not issues:
        last = _last_end(case.inputs())
        if case.duration_s < last:
            issues.append(
                where.issue(
                    ("duration_s",),
                    f"the call ends ({_n(case.duration_s)} s) before its last event does "
                    f"({_n(last)} s)",
                )
            )
    return issues


def load_cases(path: str | Path, packs: list[RulePack] | None = None) -> list[Case]:
    """Load a cases file, or every *.yaml/*.yml in a folder. All or nothing."""
    p = Path(path)
    if p.is_dir():
        files = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
        if not files:
            raise RuleError([RuleIssue(str(p), None, "", "no *.yaml cases files in this folder")])
    elif p.is_file():
        files = [p]
    else:
        raise RuleError([RuleIssue(str(p), None, "", "no such file or folder")])
    cases: list[Case] = []
    issues: list[RuleIssue] = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            issues.append(RuleIssue(str(f), None, "", f"cannot read: {exc}"))
            continue
        try:
            cases.extend(parse_cases(text, str(f), packs))
        except RuleError as exc:
            issues.extend(exc.issues)
    if issues:
        raise RuleError(issues)
    return cases


def check_cases(cases: Iterable[Case], packs: list[RulePack]) -> None:
    """Every rule id a case mentions exists (and is switched on) in the packs of the case's
    language (``packs_for``: a Mandarin case runs the ``zh`` packs); else RuleError."""
    elsewhere = {r.id: p for p in packs for r in p.rules}
    issues: list[RuleIssue] = []
    for case in cases:
        rules = {
            r.id: (p.pack, r.enabled) for p in packs_for(packs, case.language) for r in p.rules
        }
        for ref in case._refs:
            if ref.rule not in rules:
                close = difflib.get_close_matches(ref.rule, list(rules), n=1, cutoff=0.6)
                other = elsewhere.get(ref.rule)
                hint = (
                    f": it is in pack {other.pack!r}, which is for language "
                    f"{other.language!r} (set the case's language: {other.language})"
                    if other is not None
                    else f"; did you mean {close[0]!r}?"
                    if close
                    else f" (they have: {', '.join(sorted(rules)) or 'no rules'})"
                )
                issues.append(
                    RuleIssue(
                        case.file,
                        ref.line,
                        ref.field,
                        f"no rule {ref.rule!r} in the packs under test{hint}",
                    )
                )
            elif not rules[ref.rule][1]:
                issues.append(
                    RuleIssue(
                        case.file,
                        ref.line,
                        ref.field,
                        f"rule {ref.rule!r} is switched off (enabled: false) in pack "
                        f"{rules[ref.rule][0]!r}, so it can never fire",
                    )
                )
    if issues:
        raise RuleError(issues)


# -- running -------------------------------------------------------------------------------
_RANK = {SilenceEnded: 0, Utterance: 1, EmotionObserved: 2, SilenceStarted: 3}


def release_key(x: EngineInput) -> float:
    """When the pipeline knows an input (it is released then): the end of what it describes."""
    return x.t if isinstance(x, SilenceStarted) else x.t_end


def input_start(x: EngineInput) -> float:
    """The time the engine clock must not pass before the input is fed."""
    return x.t_end if isinstance(x, SilenceEnded) else x.t


def pipeline_order(inputs: Iterable[EngineInput]) -> list[EngineInput]:
    """Sort inputs the way ``CallPipeline`` releases them: by the time each becomes known
    (an utterance at its end, a silence's start at its start and its end at its end); an
    emotion reading right after the utterance it belongs to."""
    indexed = list(enumerate(inputs))
    indexed.sort(key=lambda p: (release_key(p[1]), _RANK[type(p[1])], p[0]))
    return [x for _, x in indexed]


@dataclass(frozen=True)
class Evaluation:
    """What a fresh engine made of one call."""

    alerts: list[Alert]
    scorecard: list[RuleOutcome]
    score: float
    inputs: list[EngineInput]  # in the order they were fed
    duration_s: float


def run_inputs(
    engine: RuleEngine, inputs: Iterable[EngineInput], duration_s: float | None = None
) -> list[Alert]:
    """Feed ``inputs`` to ``engine`` as the pipeline would, end the call; the alerts, in order.

    Inputs go in ``pipeline_order``. Before each, the clock moves to its start, but never past
    the start of an input still to come (the pipeline's watermark). ``duration_s`` defaults
    to 1 s after the last input ends.
    """
    ordered = pipeline_order(inputs)
    if duration_s is None:
        duration_s = _last_end(ordered) + 1.0
    # The watermark: the earliest start among this input and every later one.
    limits = [input_start(x) for x in ordered]
    for i in range(len(limits) - 2, -1, -1):
        limits[i] = min(limits[i], limits[i + 1])
    alerts: list[Alert] = []
    for item, limit in zip(ordered, limits, strict=True):
        alerts.extend(engine.advance(limit))
        alerts.extend(engine.feed(item))
    alerts.extend(engine.finish(duration_s))
    return alerts


def evaluate(
    packs: list[RulePack], inputs: Iterable[EngineInput], duration_s: float | None = None
) -> Evaluation:
    """Run ``inputs`` through a new ``RuleEngine`` (see ``run_inputs``) and score the call."""
    ordered = pipeline_order(inputs)
    if duration_s is None:
        duration_s = _last_end(ordered) + 1.0
    engine = RuleEngine(packs)
    alerts = run_inputs(engine, ordered, duration_s)
    lines = engine.scorecard()
    return Evaluation(alerts, lines, score_of(lines), ordered, duration_s)


@dataclass
class CaseResult:
    case: Case
    passed: bool
    alerts: list[Alert]
    failures: list[str]
    scorecard: list[RuleOutcome]
    score: float

    @property
    def name(self) -> str:
        return self.case.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.case.name,
            "file": self.case.file,
            "line": self.case.line,
            "passed": self.passed,
            "failures": list(self.failures),
            "alerts": [a.to_dict() for a in self.alerts],
            "scorecard": [o.to_dict() for o in self.scorecard],
            "score": self.score,
        }


def run_case(packs: list[RulePack], case: Case) -> CaseResult:
    """Play one case through the packs. Raises RuleError if it names rules they lack."""
    check_cases([case], packs)
    ev = evaluate(packs_for(packs, case.language), case.inputs(), case.end())
    failures = _failures(case, ev)
    return CaseResult(case, not failures, ev.alerts, failures, ev.scorecard, ev.score)


def run_cases(packs: list[RulePack], cases: Iterable[Case]) -> list[CaseResult]:
    """Run every case (after checking all their rule ids: RuleError lists every unknown one)."""
    cases = list(cases)
    check_cases(cases, packs)
    return [run_case(packs, c) for c in cases]


def summary(results: Sequence[CaseResult]) -> dict[str, Any]:
    """The JSON document ``callwatch rules test --format json`` prints."""
    passed = sum(1 for r in results if r.passed)
    return {
        "passed": passed == len(results),
        "summary": {"cases": len(results), "passed": passed, "failed": len(results) - passed},
        "cases": [r.to_dict() for r in results],
    }


def _fired(alerts: Sequence[Alert], with_speaker: bool = False) -> str:
    shown = [
        f"{_n(a.t)} s{f' ({a.speaker})' if with_speaker and a.speaker else ''}: {_q(a.message)}"
        for a in alerts[:3]
    ]
    more = f"; and {len(alerts) - 3} more" if len(alerts) > 3 else ""
    return "; at ".join(shown) + more


def _q(text: str) -> str:
    return '"' + (text if len(text) <= 120 else text[:117] + "...") + '"'


def _failures(case: Case, ev: Evaluation) -> list[str]:
    out: list[str] = []
    alerts = ev.alerts
    for e in case.expect:
        hits = [a for a in alerts if e.matches(a)]
        same_rule = [a for a in alerts if a.rule_id == e.rule]
        others = [a for a in same_rule if a not in hits]
        why = (
            f"it fired at {_fired(others, e.speaker is not None)}" if others else "it did not fire"
        )
        if e.count is None:
            if not hits:
                out.append(f"expected an alert {e.describe()}; got none ({why})")
        elif len(hits) != e.count:
            want = "no alert" if e.count == 0 else f"{e.count} alert{'s' if e.count != 1 else ''}"
            got = f"got {len(hits)} (at {_fired(hits)})" if hits else f"got none ({why})"
            out.append(f"expected {want} {e.describe()}; {got}")
    banned = set(case.expect_no)
    for a in alerts:
        if a.rule_id in banned:
            out.append(
                f"{a.rule_id} fired at {_n(a.t)} s but was listed in expect_no: {_q(a.message)}"
            )
        elif case.only_expected and not any(e.matches(a) for e in case.expect):
            out.append(
                f"{a.rule_id} fired at {_n(a.t)} s but no expect matches it "
                f"(only_expected is on): {_q(a.message)}"
            )
    statuses = {o.rule_id: o for o in ev.scorecard}
    for rid, want_status in case.scorecard.items():
        line = statuses.get(rid)
        got_status = line.status if line else "missing"
        if got_status != want_status:
            n = line.alerts if line else 0
            out.append(
                f"scorecard: expected {rid} to be {want_status}, but it was {got_status}"
                + (f" ({n} alert{'s' if n != 1 else ''})" if n else "")
            )
    if case.score is not None and not case.score.holds(ev.score):
        out.append(f"score is {_n(ev.score)}; expected {case.score.describe()}")
    return out
