"""The per-call rule engine: stateful, incremental, fed in time order.

Inputs are final utterances, silence boundaries and emotion observations; ``advance(t)``
moves the call clock, which is when time-based rules fire (a required phrase missing at the
end of its window, dead air crossing its threshold, a composite ``not`` whose span closed).
The caller only advances the clock to a time up to which every input has been delivered, so
the engine never needs to look ahead: live and offline runs over the same audio produce the
same alerts.

Rules can be swapped on a live call (``reload``): unchanged rules keep their state; new or
changed ones learn the call so far by a silent replay and apply from then on.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from qa_rules.composite import CompositeTracker
from qa_rules.events import (
    Alert,
    EmotionObserved,
    EngineInput,
    RuleOutcome,
    SilenceEnded,
    SilenceStarted,
    Utterance,
)
from qa_rules.matching import Occurrence, UtteranceMatches, compiled_for, is_backchannel
from qa_rules.pii import PiiFinding, PiiTracker, RedactSpan
from qa_rules.schema import (
    AnyRule,
    CompositeRule,
    EmotionRule,
    HoldRule,
    PhraseRule,
    PiiRule,
    RulePack,
    SilenceRule,
    SpeechRateRule,
    TalkOverRule,
    TalkRatioRule,
)
from qa_rules.text import TokenSeq, join_words, speech_units

HISTORY = 200  # utterances kept per speaker: far more than any rate window or overlap needs


class _SafeDict(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render(template: str, default: str, values: dict[str, Any]) -> str:
    try:
        return (template or default).format_map(_SafeDict(values))
    except (ValueError, TypeError, IndexError, KeyError):
        return default.format_map(_SafeDict(values))


@dataclass
class _RuleState:
    rule: AnyRule
    alerts: int = 0
    last_alert_t: float | None = None
    satisfied: bool = False  # required phrases
    done: bool = False  # window closed / decided
    extra: dict[str, Any] = field(default_factory=dict)
    deferred: list[Alert] = field(default_factory=list)  # window.last_s: judged at the end
    composite: CompositeTracker | None = None
    pii: PiiTracker | None = None

    def cooled(self, t: float) -> bool:
        return self.last_alert_t is None or t - self.last_alert_t >= self.rule.cooldown_s


@dataclass(frozen=True)
class _Spoken:
    """An utterance with what rates and overlaps need, computed once."""

    u: Utterance
    units: int
    unit: str  # "wpm" (words) or "cpm" (Chinese characters)
    start: float  # first word to last word (VAD padding excluded)
    end: float
    backchannel: bool  # "mm-hmm", "yeah": listening, not interrupting


def _new_states(rules: list[AnyRule]) -> list[_RuleState]:
    """Fresh states; pii rules that look for the same things share one tracker."""
    trackers: dict[tuple[tuple[str, ...], int], PiiTracker] = {}
    out = []
    for rule in rules:
        st = _RuleState(rule)
        if isinstance(rule, CompositeRule):
            st.composite = CompositeTracker(rule)
        elif isinstance(rule, PiiRule):
            key = (tuple(sorted(rule.types)), rule.min_digits)
            if key not in trackers:
                trackers[key] = PiiTracker(rule.types, min_digits=rule.min_digits)
            st.pii = trackers[key]
        out.append(st)
    return out


_CLOCKED = (PhraseRule, SilenceRule, HoldRule, CompositeRule)
_HEARS_SPEECH = (
    PhraseRule,
    SpeechRateRule,
    TalkOverRule,
    TalkRatioRule,
    HoldRule,
    PiiRule,
    CompositeRule,
)


class RuleEngine:
    """Evaluate rule packs on one call. Not thread-safe: one engine per call."""

    def __init__(self, packs: list[RulePack]) -> None:
        self.packs = list(packs)
        rules = [r for p in packs for r in p.rules if r.enabled]
        self._compiled = compiled_for(self.packs, rules)
        self._states = _new_states(rules)
        self._route()
        self.clock = 0.0
        self._silence_since: float | None = None
        self._hold_announced: float | None = None  # last "let me put you on hold" by the agent
        self._silence_signals: set[tuple[int, float]] = set()
        self._speech: dict[str, deque[_Spoken]] = {}
        self._talk: dict[str, float] = {}
        self._finished = False
        self._log: list[tuple[float, EngineInput | Alert]] = []  # for reload and explain
        self._utt_ids = itertools.count()
        self._redactions: list[RedactSpan] = []
        self._pii_seen: dict[int, list[PiiFinding]] = {}

    def _route(self) -> None:
        """Which states each input concerns, worked out once per rule set."""
        self._clocked = [
            st
            for st in self._states
            if isinstance(st.rule, _CLOCKED)
            and not (isinstance(st.rule, PhraseRule) and st.rule.window.first_s is None)
        ]
        self._hearing = [st for st in self._states if isinstance(st.rule, _HEARS_SPEECH)]
        self._feeling = [
            st for st in self._states if isinstance(st.rule, EmotionRule | CompositeRule)
        ]
        self._composites = [st for st in self._states if st.composite is not None]

    @property
    def rule_ids(self) -> list[str]:
        return [s.rule.id for s in self._states]

    def rule(self, rule_id: str) -> AnyRule | None:
        return next((s.rule for s in self._states if s.rule.id == rule_id), None)

    def tracker(self, rule_id: str) -> CompositeTracker | None:
        """A composite rule's signals and spans (``rules explain`` shows them)."""
        return next((s.composite for s in self._states if s.rule.id == rule_id), None)

    # -- inputs --------------------------------------------------------------------------
    def feed(self, event: EngineInput) -> list[Alert]:
        self._log.append((self.clock, event))
        if isinstance(event, Utterance):
            out = self._on_utterance(event)
        elif isinstance(event, SilenceStarted):
            self._silence_since = event.t
            out = []
        elif isinstance(event, SilenceEnded):
            self._silence_since = None
            out = []
        elif isinstance(event, EmotionObserved):
            out = self._on_emotion(event)
        else:
            raise TypeError(f"unknown engine input {event!r}")
        return self._settle(out)

    def advance(self, t: float) -> list[Alert]:
        """Move the call clock to ``t``; fire what became due on the way."""
        if t <= self.clock:
            return []
        self.clock = t
        out: list[Alert] = []
        for st in self._clocked:
            r = st.rule
            if isinstance(r, PhraseRule):
                out.extend(self._phrase_window_closed(st, r, t))
            elif isinstance(r, SilenceRule):
                out.extend(self._silence_due(st, r, t))
            elif isinstance(r, HoldRule):
                out.extend(self._hold_due(st, r, t))
            elif st.composite is not None and self._silence_since is not None:
                st.composite.on_silence(self._silence_since, t, self._silence_signals)
        return self._settle(out)

    def finish(self, t_end: float) -> list[Alert]:
        """The call is over: decide rules that wait for the end (required anytime / last N s)."""
        out = self.advance(t_end)
        if self._finished:
            return out
        self._finished = True
        end: list[Alert] = []
        for st in self._states:
            r = st.rule
            if isinstance(r, PhraseRule):
                end.extend(self._phrase_at_end(st, r, t_end))
            elif isinstance(r, TalkRatioRule):
                end.extend(self._talk_ratio(st, r, t_end, final=True))
            elif isinstance(r, CompositeRule) and st.composite is not None:
                end.extend(self._composite(st, r, t_end, final=True))
            if st.deferred and r.window.last_s is not None:
                end.extend(self._last_window(st, t_end - r.window.last_s))
        return out + self._settle(end)

    @staticmethod
    def _last_window(st: _RuleState, cutoff: float) -> list[Alert]:
        """The deferred alerts of a ``last_s`` rule that fall in the window, cooldown applied
        among those only (one outside the window must not silence one inside)."""
        keep: list[Alert] = []
        for a in st.deferred:
            if a.t >= cutoff and (not keep or a.t - keep[-1].t >= st.rule.cooldown_s):
                keep.append(a)
        st.deferred = []
        st.alerts += len(keep)
        return keep

    def scorecard(self) -> list[RuleOutcome]:
        lines = []
        for st in self._states:
            r = st.rule
            if (
                isinstance(r, PhraseRule)
                and r.mode == "required"
                and not self._finished
                and not st.done
            ):
                status = "passed" if st.satisfied else "pending"
            else:
                status = "failed" if st.alerts else "passed"
            lines.append(RuleOutcome(r.id, r.description, status, r.weight, st.alerts))
        return lines

    def take_redactions(self) -> list[RedactSpan]:
        """Words found to be PII (by rules with ``redact``) since the last call."""
        out, self._redactions = self._redactions, []
        return out

    # -- hot reload ----------------------------------------------------------------------
    def reload(self, packs: list[RulePack]) -> dict[str, list[str]]:
        """Swap in a new rule set mid-call. Returns the rule ids added, changed and removed.

        A rule whose definition is unchanged keeps its state. A new or changed rule replays
        the call so far in a shadow engine: it knows e.g. that the disclosure was already
        read, its alerts from the past are not sent (they are history) but do count in the
        scorecard, so the call scores as an audit of it with the new rules would, and PII
        it finds in the past is masked from then on.
        """
        old = {st.rule.id: st for st in self._states}
        rules = [r for p in packs for r in p.rules if r.enabled]
        fresh = [r for r in rules if r.id not in old or old[r.id].rule != r]
        fresh_ids = {r.id for r in fresh}
        learned: dict[str, _RuleState] = {}
        if fresh:
            shadow = RuleEngine([RulePack(pack="reload", rules=fresh)])
            for clock, item in self._log:
                if isinstance(item, Alert):
                    if item.rule_id not in fresh_ids:  # those the shadow makes itself
                        shadow._settle([item], external=True)
                else:
                    shadow.advance(clock)
                    shadow.feed(item)
            shadow.advance(self.clock)
            learned = {st.rule.id: st for st in shadow._states}
            self._silence_signals |= shadow._silence_signals
            self._redactions.extend(shadow.take_redactions())
        self.packs = list(packs)
        self._compiled = compiled_for(self.packs, rules)
        self._states = [learned.get(r.id) or old[r.id] for r in rules]
        self._route()
        return {
            "added": [r.id for r in fresh if r.id not in old],
            "changed": [r.id for r in fresh if r.id in old],
            "removed": [rid for rid in old if rid not in {r.id for r in rules}],
        }

    # -- utterances ----------------------------------------------------------------------
    def _on_utterance(self, u: Utterance) -> list[Alert]:
        out: list[Alert] = []
        words = [w.w for w in u.words] if u.words else u.text.split()
        seq = TokenSeq.from_words(words)
        um = self._compiled.scan(seq)
        latin, han = speech_units(words)
        spoken = _Spoken(
            u,
            han if han > latin else latin,
            "cpm" if han > latin else "wpm",
            u.words[0].t if u.words else u.t,
            u.words[-1].t_end if u.words else u.t_end,
            is_backchannel(seq),
        )
        hist = self._speech.setdefault(u.speaker, deque(maxlen=HISTORY))
        hist.append(spoken)
        self._talk[u.speaker] = self._talk.get(u.speaker, 0.0) + (u.t_end - u.t)
        if u.speaker == "agent" and um.announces_hold():
            self._hold_announced = u.t_end
        utt_id = next(self._utt_ids)
        self._pii_seen = {}
        for st in self._hearing:
            r = st.rule
            if isinstance(r, PhraseRule):
                out.extend(self._phrase(st, r, u, um))
            elif isinstance(r, SpeechRateRule):
                if r.speaker == u.speaker:
                    out.extend(self._speech_rate(st, r, spoken))
            elif isinstance(r, TalkOverRule):
                out.extend(self._talk_over(st, r, spoken))
            elif isinstance(r, TalkRatioRule):
                out.extend(self._talk_ratio(st, r, u.t_end, final=False))
            elif isinstance(r, HoldRule):
                if u.speaker == "agent":
                    m = um.any_phrase(r.phrases, r.fuzzy)
                    if m is not None:
                        st.extra["announced"] = (u.t_end, " ".join(seq.toks[m.start : m.end]))
            elif isinstance(r, PiiRule):
                out.extend(self._pii(st, r, u, seq, utt_id))
            elif isinstance(r, CompositeRule) and st.composite is not None:
                st.composite.on_utterance(u, um)
        return out

    # -- phrase --------------------------------------------------------------------------
    def _part(self, o: Occurrence, r: PhraseRule, u: Utterance, seq: TokenSeq) -> dict[str, Any]:
        """One found item as evidence: its words and times."""
        m = o.match
        idx = seq.words_of(m.start, m.end)
        words = [u.words[i] for i in idx if i < len(u.words)] if u.words else []
        return {
            "item": r.items[o.item],
            "item_index": o.item,
            "matched": join_words(w.w for w in words)
            if words
            else join_words(seq.toks[m.start : m.end]),
            "t": words[0].t if words else u.t,
            "t_end": words[-1].t_end if words else u.t_end,
            "score": round(m.score, 3),
            "utterance": u.text,
            "words": [{"w": w.w, "t": w.t, "t_end": w.t_end} for w in words],
        }

    def _phrase(
        self, st: _RuleState, r: PhraseRule, u: Utterance, um: UtteranceMatches
    ) -> list[Alert]:
        if r.speaker != "any" and r.speaker != u.speaker:
            return []
        if r.mode == "required" and r.window.last_s is None and (st.satisfied or st.done):
            return []
        occ = um.occurrences(r)
        if not occ:
            return []
        if r.within_words is not None:
            combo = um.combination(r, occ)
            if combo is None:
                return []
            parts = [self._part(o, r, u, um.seq) for o in combo]
            candidates = [(max(p["t"] for p in parts), parts, True)]
        else:
            candidates = [(p["t"], [p], False) for p in (self._part(o, r, u, um.seq) for o in occ)]
        out: list[Alert] = []
        for t, parts, whole in candidates:
            if r.window.first_s is not None and t > r.window.first_s:
                continue
            if r.window.last_s is not None:  # required, judged at the end
                st.extra.setdefault("late", []).append((t, parts, whole))
                continue
            done = parts if whole else self._progress(st, r, parts[0])
            if done is None:
                continue
            if r.mode == "required":
                st.satisfied = True
                st.extra["evidence"] = {"parts": done}
                return []
            out.extend(self._forbidden(st, r, u, done))
            if out and r.match == "any":
                break
        return out

    @staticmethod
    def _progress(
        st: _RuleState, r: PhraseRule, part: dict[str, Any]
    ) -> list[dict[str, Any]] | None:
        """Add one found item to the rule's progress; the parts once the rule's match is met."""
        if r.match == "any":
            return [part]
        got: dict[int, dict[str, Any]] = st.extra.setdefault("progress", {})
        i = part["item_index"]
        if (r.match == "all" and i not in got) or (r.match == "in_order" and i == len(got)):
            got[i] = part
        if len(got) < len(r.items):
            return None
        st.extra["progress"] = {}
        return [got[k] for k in sorted(got)]

    def _forbidden(
        self, st: _RuleState, r: PhraseRule, u: Utterance, parts: list[dict[str, Any]]
    ) -> list[Alert]:
        t = max(p["t"] for p in parts)
        matched = " … ".join(p["matched"] for p in parts)
        evidence = {
            "phrase": " … ".join(p["item"] for p in parts),
            "matched": matched,
            "speaker": u.speaker,
            "t": round(t, 3) if len(parts) > 1 else round(parts[0]["t"], 3),
            "t_end": round(max(p["t_end"] for p in parts), 3),
            "score": min(p["score"] for p in parts),
            "utterance": u.text,
            "window_s": r.window.first_s or r.window.last_s,
            "words": [w for p in parts for w in p["words"]],
        }
        if len(parts) > 1:
            evidence["parts"] = [{k: v for k, v in p.items() if k != "words"} for p in parts]
        t_alert = parts[0]["t"] if len(parts) == 1 else t
        return self._emit(
            st, t_alert, u.speaker, evidence, f'Forbidden phrase said by {u.speaker}: "{matched}"'
        )

    def _phrase_at_end(self, st: _RuleState, r: PhraseRule, t_end: float) -> list[Alert]:
        if r.window.last_s is not None:
            cutoff = t_end - r.window.last_s
            st.extra["progress"] = {}
            for t, parts, whole in sorted(st.extra.get("late", []), key=lambda x: x[0]):
                if t >= cutoff and (whole or self._progress(st, r, parts[0]) is not None):
                    st.satisfied = True
                    break
        if r.mode != "required" or st.satisfied or st.done:
            return []
        st.done = True
        return self._missing(st, r, t_end)

    def _missing(self, st: _RuleState, r: PhraseRule, t: float) -> list[Alert]:
        label = r.items[0] if r.match == "any" else " … ".join(r.items)
        return self._emit(
            st,
            t,
            None,
            {
                "phrase": label,
                "matched": None,
                "speaker": r.speaker,
                "t": round(t, 3),
                "window_s": r.window.first_s or r.window.last_s,
                "phrases": r.items,
                "match": r.match,
                "window": r.window.describe(),
            },
            f'Required phrase not said {r.window.describe()}: "{label}"',
            windowed=False,
        )

    def _phrase_window_closed(self, st: _RuleState, r: PhraseRule, now: float) -> list[Alert]:
        first = r.window.first_s
        if r.mode != "required" or first is None or st.satisfied or st.done or now < first:
            return []
        st.done = True
        return self._missing(st, r, first)

    # -- silence and hold ----------------------------------------------------------------
    def _silence_due(self, st: _RuleState, r: SilenceRule, now: float) -> list[Alert]:
        since = self._silence_since
        if since is None or st.extra.get("fired_for") == since:
            return []
        due = since + r.min_s
        if now < due:
            return []
        st.extra["fired_for"] = since
        held = self._hold_announced
        within = self._compiled.hold_within_s
        if not r.during_hold and held is not None and since - within <= held <= since + 1:
            return []  # an announced hold: the hold kind judges it
        return self._emit(
            st,
            due,
            None,
            {
                "duration": r.min_s,
                "t": round(due, 3),
                "min_s": r.min_s,
                "silence_start": round(since, 3),
            },
            "Dead air: no one has spoken for {duration:.0f} s",
        )

    def _hold_due(self, st: _RuleState, r: HoldRule, now: float) -> list[Alert]:
        since = self._silence_since
        if since is None or st.extra.get("fired_for") == since:
            return []
        announced: tuple[float, str] | None = st.extra.get("announced")
        is_hold = announced is not None and since - r.announce_within_s <= announced[0] <= since + 1
        if not is_hold:
            announced = None
        limit = r.max_s if is_hold else r.unannounced_s
        if limit is None or now < since + limit:
            return []
        st.extra["fired_for"] = since
        due = since + limit
        values = {
            "duration": limit,
            "t": round(due, 3),
            "phrase": announced[1] if announced else None,
            "max_s": r.max_s,
            "hold_start": round(since, 3),
            "announced": is_hold,
            "announced_at": round(announced[0], 3) if announced else None,
        }
        default = (
            "Caller on hold for {duration:.0f} s: check back with them"
            if is_hold
            else "Silent for {duration:.0f} s without telling the caller: announce the hold"
        )
        return self._emit(st, due, None, values, default)

    # -- pace, overlap, share ------------------------------------------------------------
    def _speech_rate(self, st: _RuleState, r: SpeechRateRule, now: _Spoken) -> list[Alert]:
        """Rate over the speaker's most recent ``window_s`` seconds of their own speech."""
        lo, hi = r.bounds(now.unit)
        if lo is None and hi is None:
            return []
        units = 0
        speaking = 0.0
        for h in reversed(self._speech[now.u.speaker]):
            if h.unit != now.unit:
                continue
            room = r.window_s - speaking
            if room <= 0:
                break
            dur = h.u.t_end - h.u.t
            if dur <= room:
                speaking += dur
                units += h.units
            else:  # only the end of this utterance fits in the window
                cutoff = h.u.t_end - room
                speaking += room
                if h.u.words:
                    late = [w.w for w in h.u.words if w.t >= cutoff]
                    latin, han = speech_units(late)
                    units += han if now.unit == "cpm" else latin
                else:
                    units += int(h.units * room / dur)
        if units < r.min_words or speaking <= 0:
            return []
        rate = 60.0 * units / speaking
        too_fast = hi is not None and rate > hi
        too_slow = lo is not None and rate < lo
        if not (too_fast or too_slow):
            return []
        word = "words" if now.unit == "wpm" else "characters"
        default = (
            f"Slow down: {{rate:.0f}} {word} per minute"
            if too_fast
            else f"Speaking slowly: {{rate:.0f}} {word} per minute"
        )
        u = now.u
        return self._emit(
            st,
            u.t_end,
            u.speaker,
            {
                "rate": round(rate, 1),
                "unit": now.unit,
                "wpm": round(rate, 1) if now.unit == "wpm" else None,
                "cpm": round(rate, 1) if now.unit == "cpm" else None,
                "speaker": u.speaker,
                "t": round(u.t_end, 3),
                "min_wpm": r.min_wpm,
                "max_wpm": r.max_wpm,
                "min_cpm": r.min_cpm,
                "max_cpm": r.max_cpm,
                "window_s": r.window_s,
                "words": units,
                "speaking_s": round(speaking, 2),
                "direction": "fast" if too_fast else "slow",
            },
            default,
        )

    def _talk_over(self, st: _RuleState, r: TalkOverRule, now: _Spoken) -> list[Alert]:
        """Each overlapping pair is seen once: when the later-ending utterance arrives."""
        out: list[Alert] = []
        for speaker, hist in self._speech.items():
            if speaker == now.u.speaker:
                continue
            for other in reversed(hist):
                if other.end <= now.start - 30:
                    break
                overlap = min(now.end, other.end) - max(now.start, other.start)
                if overlap < r.min_overlap_s:
                    continue
                late, early = (now, other) if now.start >= other.start else (other, now)
                if r.speaker not in ("any", late.u.speaker):
                    continue
                if r.ignore_backchannel and late.backchannel:
                    continue
                count = st.extra["count"] = st.extra.get("count", 0) + 1
                if count <= r.allowed:
                    continue
                out.extend(
                    self._emit(
                        st,
                        late.start,
                        late.u.speaker,
                        {
                            "speaker": late.u.speaker,
                            "interrupted": early.u.speaker,
                            "overlap": round(overlap, 2),
                            "count": count,
                            "t": round(late.start, 3),
                            "t_end": round(min(now.end, other.end), 3),
                            "utterance": late.u.text,
                            "interrupted_utterance": early.u.text,
                        },
                        "{speaker} talked over the {interrupted} for {overlap:.1f} s",
                    )
                )
        return out

    def _talk_ratio(self, st: _RuleState, r: TalkRatioRule, t: float, final: bool) -> list[Alert]:
        total = sum(self._talk.get(s, 0.0) for s in ("agent", "customer"))
        if total <= 0 or (total < r.min_talk_s and not final) or (final and st.alerts):
            return []
        share = self._talk.get(r.speaker, 0.0) / total
        high = r.max_share is not None and share > r.max_share
        low = r.min_share is not None and share < r.min_share
        if not (high or low):
            return []
        default = (
            "{speaker} talks {percent:.0f}% of the time: let the other side speak"
            if high
            else "{speaker} talks only {percent:.0f}% of the time"
        )
        return self._emit(
            st,
            t,
            r.speaker,
            {
                "speaker": r.speaker,
                "share": round(share, 3),
                "percent": round(100 * share, 1),
                "talk_s": round(self._talk.get(r.speaker, 0.0), 1),
                "total_talk_s": round(total, 1),
                "t": round(t, 3),
                "min_share": r.min_share,
                "max_share": r.max_share,
                "final": final,
            },
            default,
        )

    # -- PII -----------------------------------------------------------------------------
    def _pii(
        self, st: _RuleState, r: PiiRule, u: Utterance, seq: TokenSeq, utt_id: int
    ) -> list[Alert]:
        if st.pii is None or r.speaker not in ("any", u.speaker):
            return []
        found = self._pii_seen.get(id(st.pii))
        if found is None:  # one look per tracker, however many rules share it
            times = [(w.t, w.t_end) for w in u.words] if u.words else None
            found = st.pii.observe(utt_id, u.speaker, seq, times, u.t, u.t_end)
            self._pii_seen[id(st.pii)] = found
        out: list[Alert] = []
        for f in found:
            if r.redact:
                self._redactions.extend(f.parts)
            out.extend(
                self._emit(
                    st,
                    f.t,
                    f.speaker,
                    {
                        "type": f.kind,
                        "masked": f.masked,
                        "speaker": f.speaker,
                        "t": round(f.t, 3),
                        "t_end": round(f.t_end, 3),
                        "redacted": r.redact,
                    },
                    "{speaker} said a {type} ({masked}): it is redacted from the record",
                )
            )
        return out

    # -- emotion -------------------------------------------------------------------------
    def _on_emotion(self, e: EmotionObserved) -> list[Alert]:
        out: list[Alert] = []
        for st in self._feeling:
            r = st.rule
            if isinstance(r, EmotionRule) and r.speaker in ("any", e.speaker):
                out.extend(self._emotion(st, r, e))
            elif isinstance(r, CompositeRule) and st.composite is not None:
                st.composite.on_emotion(e)
        return out

    def _emotion(self, st: _RuleState, r: EmotionRule, e: EmotionObserved) -> list[Alert]:
        """Sustained condition -> one alert; quiet until it clears (hysteresis)."""
        if r.index_above is not None:
            holds = e.anger_index >= r.index_above
            cleared = e.anger_index < r.clear_level
        else:
            holds = e.label in (r.labels or []) and e.confidence >= r.min_confidence
            cleared = not holds
        x = st.extra.setdefault(e.speaker, {})  # with speaker: any, each speaker on its own
        if holds:
            if x.get("run_n", 0) == 0:
                x["run_t"] = e.t
            x["run_n"] = x.get("run_n", 0) + 1
        else:
            x["run_n"] = 0
        values = {
            "label": e.label,
            "speaker": e.speaker,
            "t": round(e.t_end, 3),
            "index": round(e.anger_index, 3),
            "confidence": round(e.confidence, 3),
            "utterances": x.get("run_n", 0),
            "duration": round(e.t_end - x.get("run_t", e.t), 2),
        }
        if x.get("active"):
            if not cleared:
                return []
            x["active"] = False
            if not r.notify_clear:
                return []
            return [
                Alert(
                    rule_id=r.id,
                    kind=r.kind,
                    severity=r.severity,  # same as the raise: whoever got it hears it ended
                    audience=tuple(r.audience),
                    message=render(
                        r.clear_message,
                        "Cleared: {speaker} sounds calmer (anger index {index:.2f})",
                        values,
                    ),
                    t=round(e.t_end, 3),
                    speaker=e.speaker,
                    evidence={**values, "state": "cleared"},
                )
            ]
        if (
            not holds
            or x["run_n"] < r.sustained_utterances
            or e.t_end - x["run_t"] < r.sustained_s
            or not st.cooled(e.t_end)
        ):
            return []
        x["active"] = True
        default = (
            f"{e.speaker.capitalize()} sounds angry (anger index {e.anger_index:.2f})"
            if r.index_above is not None
            else f"{e.speaker.capitalize()} sounds {e.label}"
        )
        return self._emit(
            st, e.t_end, e.speaker, {**values, "state": "raised", "utterance": e.text}, default
        )

    # -- composite -----------------------------------------------------------------------
    def _composite(
        self, st: _RuleState, r: CompositeRule, now: float, final: bool = False
    ) -> list[Alert]:
        comp = st.composite
        if comp is None or not (final or comp.due(now)):
            return []
        out: list[Alert] = []
        for span, t in comp.judge(now, final):
            ev = comp.evidence(span, t)
            out.extend(
                self._emit(
                    st,
                    t,
                    span.trigger_speaker,
                    ev,
                    f"{r.description or r.id}: {ev['condition']}"
                    + (f" within {r.within_s:g} s after {ev['after']}" if r.after else ""),
                )
            )
        return out

    def _settle(self, alerts: list[Alert], external: bool = False) -> list[Alert]:
        """Let composite rules see the alerts (and the clock) until nothing new fires."""
        if not external:
            self._log.extend((self.clock, a) for a in alerts)
        if not self._composites:
            return alerts
        out = [] if external else list(alerts)
        pending = list(alerts)
        for _ in range(len(self._composites) + 1):  # composites cannot loop (checked at load)
            for a in pending:
                for st in self._composites:
                    assert st.composite is not None
                    st.composite.on_alert(a)
            pending = []
            for st in self._composites:
                pending.extend(self._composite(st, st.rule, self.clock))  # type: ignore[arg-type]
            if not pending:
                break
            self._log.extend((self.clock, a) for a in pending)
            out.extend(pending)
        return out

    # -- alerts --------------------------------------------------------------------------
    def _emit(
        self,
        st: _RuleState,
        t: float,
        speaker: str | None,
        evidence: dict[str, Any],
        default: str,
        windowed: bool = True,
    ) -> list[Alert]:
        """An alert from a rule, if its window and cooldown let it through."""
        r = st.rule
        if windowed and r.window.first_s is not None and t > r.window.first_s:
            return []
        deferred = windowed and r.window.last_s is not None and not isinstance(r, PhraseRule)
        if windowed and not deferred and not st.cooled(t):
            return []
        alert = Alert(
            rule_id=r.id,
            kind=r.kind,
            severity=r.severity,
            audience=tuple(r.audience),
            message=render(r.message, default, evidence),
            t=round(t, 3),
            speaker=speaker,
            evidence=evidence,
        )
        if deferred:  # known to be in the window (and cooled) only when the call ends
            st.deferred.append(alert)
            return []
        st.last_alert_t = t
        st.alerts += 1
        return [alert]
