"""Composite rules: ``all`` / ``any`` / ``not`` over signals, optionally "within N s after X".

Signals (a phrase said, an emotion, an anger level, dead air, another rule's alert) are
recorded as times. The condition is judged over a span: the whole call (or its first N s),
or ``within_s`` after each time the trigger happens. ``all``/``any`` can become true as soon
as their signals are in; a ``not`` only when its span has closed without the signal, which
is why "no apology within 30 s of the caller getting angry" fires at the 30th second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from qa_rules.events import Alert, EmotionObserved, Utterance
from qa_rules.matching import UtteranceMatches
from qa_rules.schema import CompositeRule, Cond

MAX_TIMES = 500  # occurrences kept per signal; spans only look back within_s


@dataclass
class Span:
    start: float
    end: float  # math.inf: until the call ends
    trigger_speaker: str | None = None


@dataclass(frozen=True)
class Verdict:
    value: bool | None  # None: not decided yet
    t: float = 0.0


class CompositeTracker:
    """The signals and open spans of one composite rule on one call."""

    def __init__(self, rule: CompositeRule) -> None:
        self.rule = rule
        self.leaves = [c for c in rule.conditions() if not c.children]
        self.times: dict[int, list[float]] = {id(c): [] for c in self.leaves}
        self.speakers: dict[int, list[str | None]] = {id(c): [] for c in self.leaves}
        self.spans: list[Span] = []
        if rule.after is None:
            self.spans.append(Span(0.0, rule.window.first_s or math.inf))
        self.dirty = False
        self._next_end = min((s.end for s in self.spans), default=math.inf)

    # -- signals -------------------------------------------------------------------------
    def _record(self, c: Cond, t: float, speaker: str | None) -> None:
        times = self.times[id(c)]
        times.append(t)
        self.speakers[id(c)].append(speaker)
        if len(times) > MAX_TIMES:
            del times[0]
            del self.speakers[id(c)][0]
        self.dirty = True
        if self.rule.after is not None and c is self.rule.after:
            assert self.rule.within_s is not None
            self.spans.append(Span(t, t + self.rule.within_s, speaker))
            self._next_end = min(self._next_end, t + self.rule.within_s)

    def on_utterance(self, u: Utterance, matches: UtteranceMatches) -> None:
        for c in self.leaves:
            if c.said is None or c.speaker not in ("any", u.speaker):
                continue
            m = matches.any_phrase(c.said, c.fuzzy)
            if m is not None:
                words = matches.seq.words_of(m.start, m.end)
                t = u.words[words[0]].t if u.words and len(words) else u.t
                self._record(c, t, u.speaker)

    def on_emotion(self, e: EmotionObserved) -> None:
        for c in self.leaves:
            if c.speaker not in ("any", e.speaker):
                continue
            if _sounds(c, e):
                self._record(c, e.t_end, e.speaker)

    def on_silence(self, since: float, now: float, fired: set[tuple[int, float]]) -> None:
        """An open silence since ``since``: each silence signal fires once when crossed."""
        for c in self.leaves:
            if c.silence is not None and now - since >= c.silence and (id(c), since) not in fired:
                fired.add((id(c), since))
                self._record(c, since + c.silence, None)

    def on_alert(self, a: Alert) -> None:
        for c in self.leaves:
            if c.rule == a.rule_id and a.evidence.get("state") != "cleared":
                self._record(c, a.t, a.speaker)

    # -- judging -------------------------------------------------------------------------
    def due(self, now: float) -> bool:
        """Anything to judge: a new signal, or a span whose end has come."""
        return self.dirty or self._next_end <= now

    def judge(self, now: float, final: bool) -> list[tuple[Span, float]]:
        """Spans whose condition became true (with the time it did); decided spans close."""
        self.dirty = False
        fired: list[tuple[Span, float]] = []
        still_open: list[Span] = []
        for span in self.spans:
            closed = final or now >= span.end
            v = self._eval(self.rule.when, span, min(now, span.end), closed)
            if v.value is True:
                fired.append((span, v.t))
            elif v.value is None and not closed:
                still_open.append(span)
        self.spans = still_open
        self._next_end = min((s.end for s in self.spans), default=math.inf)
        return fired

    def _eval(self, c: Cond, span: Span, now: float, closed: bool) -> Verdict:
        op = c.op
        if op == "not":
            inner = self._eval(c.children[0], span, now, closed)
            if inner.value is True:
                return Verdict(False)
            return Verdict(True, now) if closed else Verdict(None)
        if op in ("all", "any"):
            parts = [self._eval(x, span, now, closed) for x in c.children]
            if op == "all":
                if any(p.value is False for p in parts):
                    return Verdict(False)
                if all(p.value is True for p in parts):
                    return Verdict(True, max(p.t for p in parts))
                return Verdict(None)
            trues = [p.t for p in parts if p.value is True]
            if trues:
                return Verdict(True, min(trues))
            if all(p.value is False for p in parts):
                return Verdict(False)
            return Verdict(None)
        for t in self.times[id(c)]:
            if span.start <= t <= span.end:
                return Verdict(True, t)
        return Verdict(False) if closed else Verdict(None)

    def evidence(self, span: Span, t: float) -> dict[str, Any]:
        signals = []
        for c in self.leaves:
            hits = [x for x in self.times[id(c)] if span.start <= x <= min(span.end, t)]
            signals.append({"signal": c.describe(), "times": [round(x, 3) for x in hits[:10]]})
        return {
            "t": round(t, 3),
            "trigger_t": round(span.start, 3) if self.rule.after is not None else None,
            "within_s": self.rule.within_s,
            "speaker": span.trigger_speaker,
            "condition": self.rule.when.describe(),
            "after": self.rule.after.describe() if self.rule.after is not None else None,
            "signals": signals,
        }


def _sounds(c: Cond, e: EmotionObserved) -> bool:
    """Does this emotion reading meet an ``emotion`` or ``anger_above`` signal?"""
    if c.emotion is not None:
        return e.label in c.emotion and e.confidence >= c.min_confidence
    return c.anger_above is not None and e.anger_index >= c.anger_above
