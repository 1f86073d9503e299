"""The per-call rule engine: stateful, incremental, fed in time order.

Inputs are final utterances and silence boundaries; ``advance(t)`` moves the call clock,
which is when time-based rules fire (a required phrase missing at the end of its window,
dead air crossing its threshold). The caller only advances the clock to a time up to which
every utterance has been delivered, so the engine never needs to look ahead: live and
offline runs over the same audio produce the same alerts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from qa_rules.events import (
    Alert,
    EmotionObserved,
    EngineInput,
    RuleOutcome,
    SilenceEnded,
    SilenceStarted,
    Utterance,
)
from qa_rules.schema import EmotionRule, PhraseRule, RulePack, SilenceRule, SpeechRateRule
from qa_rules.text import TokenSeq, find_phrase

AnyRule = PhraseRule | SilenceRule | SpeechRateRule | EmotionRule


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

    def cooled(self, t: float) -> bool:
        return self.last_alert_t is None or t - self.last_alert_t >= self.rule.cooldown_s


class RuleEngine:
    """Evaluate rule packs on one call. Not thread-safe: one engine per call."""

    def __init__(self, packs: list[RulePack]) -> None:
        self._states = [_RuleState(r) for p in packs for r in p.rules if r.enabled]
        self.clock = 0.0
        self._silence_since: float | None = None
        self._speech: dict[str, deque[Utterance]] = {}
        self._finished = False

    @property
    def rule_ids(self) -> list[str]:
        return [s.rule.id for s in self._states]

    # -- inputs --------------------------------------------------------------------------
    def feed(self, event: EngineInput) -> list[Alert]:
        if isinstance(event, Utterance):
            return self._on_utterance(event)
        if isinstance(event, SilenceStarted):
            self._silence_since = event.t
            return []
        if isinstance(event, SilenceEnded):
            self._silence_since = None
            return []
        if isinstance(event, EmotionObserved):
            return self._on_emotion(event)
        raise TypeError(f"unknown engine input {event!r}")

    def advance(self, t: float) -> list[Alert]:
        """Move the call clock to ``t``; fire what became due on the way."""
        if t <= self.clock:
            return []
        self.clock = t
        out: list[Alert] = []
        for st in self._states:
            r = st.rule
            if isinstance(r, PhraseRule):
                out.extend(self._phrase_window_closed(st, r, t))
            elif isinstance(r, SilenceRule):
                out.extend(self._silence_due(st, r, t))
        return out

    def finish(self, t_end: float) -> list[Alert]:
        """The call is over: decide rules that wait for the end (required anytime / last N s)."""
        out = self.advance(t_end)
        if self._finished:
            return out
        self._finished = True
        for st in self._states:
            r = st.rule
            if isinstance(r, PhraseRule) and r.window.last_s is not None:
                cutoff = t_end - r.window.last_s
                st.satisfied = any(t >= cutoff for t in st.extra.get("late_matches", []))
            if (
                isinstance(r, PhraseRule)
                and r.mode == "required"
                and not st.satisfied
                and not st.done
            ):
                st.done = True
                out.append(
                    self._alert(
                        st,
                        t_end,
                        None,
                        {
                            "phrase": r.phrases[0],
                            "matched": None,
                            "speaker": r.speaker,
                            "t": round(t_end, 3),
                            "window_s": r.window.last_s,
                            "phrases": r.phrases,
                            "window": r.window.describe(),
                        },
                        default=f'Required phrase not said {r.window.describe()}: "{r.phrases[0]}"',
                    )
                )
        return out

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

    # -- kinds ---------------------------------------------------------------------------
    def _on_utterance(self, u: Utterance) -> list[Alert]:
        out: list[Alert] = []
        hist = self._speech.setdefault(u.speaker, deque())
        hist.append(u)
        seq = TokenSeq.from_words([w.w for w in u.words] if u.words else u.text.split())
        for st in self._states:
            r = st.rule
            if isinstance(r, PhraseRule):
                out.extend(self._phrase(st, r, u, seq))
            elif isinstance(r, SpeechRateRule) and r.speaker == u.speaker:
                out.extend(self._speech_rate(st, r, u))
        return out

    def _phrase(self, st: _RuleState, r: PhraseRule, u: Utterance, seq: TokenSeq) -> list[Alert]:
        if r.speaker != "any" and r.speaker != u.speaker:
            return []
        if r.mode == "required" and (st.satisfied or st.done):
            return []
        for phrase in r.phrases:
            m = find_phrase(seq, phrase, r.fuzzy)
            if m is None:
                continue
            words = (
                [u.words[i] for i in sorted(set(seq.word_index[m.start : m.end]))]
                if u.words
                else []
            )
            t = words[0].t if words else u.t
            t_end = words[-1].t_end if words else u.t_end
            if not self._in_window(r, t):
                continue
            if r.mode == "required" and r.window.last_s is not None:
                st.extra.setdefault("late_matches", []).append(t)  # judged at the end
                return []
            if r.mode == "required":
                st.satisfied = True
                st.extra["evidence"] = {"phrase": phrase, "t": t, "t_end": t_end}
                return []
            if not st.cooled(t):
                return []
            matched = " ".join(w.w for w in words) if words else " ".join(seq.toks[m.start : m.end])
            return [
                self._alert(
                    st,
                    t,
                    u.speaker,
                    {
                        "phrase": phrase,
                        "matched": matched,
                        "speaker": u.speaker,
                        "t": round(t, 3),
                        "t_end": round(t_end, 3),
                        "score": round(m.score, 3),
                        "utterance": u.text,
                        "window_s": r.window.first_s or r.window.last_s,
                        "words": [{"w": w.w, "t": w.t, "t_end": w.t_end} for w in words],
                    },
                    default=f'Forbidden phrase said by {u.speaker}: "{matched}"',
                )
            ]
        return []

    def _in_window(self, r: PhraseRule, t: float) -> bool:
        if r.window.first_s is not None:
            return t <= r.window.first_s
        return True  # last_s is decided at the end, when the call length is known

    def _phrase_window_closed(self, st: _RuleState, r: PhraseRule, now: float) -> list[Alert]:
        first = r.window.first_s
        if r.mode != "required" or first is None or st.satisfied or st.done or now < first:
            return []
        st.done = True
        return [
            self._alert(
                st,
                first,
                None,
                {
                    "phrase": r.phrases[0],
                    "matched": None,
                    "speaker": r.speaker,
                    "t": first,
                    "window_s": first,
                    "phrases": r.phrases,
                    "window": r.window.describe(),
                },
                default=f'Required phrase not said {r.window.describe()}: "{r.phrases[0]}"',
            )
        ]

    def _silence_due(self, st: _RuleState, r: SilenceRule, now: float) -> list[Alert]:
        since = self._silence_since
        if since is None or st.extra.get("fired_for") == since:
            return []
        due = since + r.min_s
        if now < due:
            return []
        st.extra["fired_for"] = since
        if not st.cooled(due):
            return []
        return [
            self._alert(
                st,
                due,
                None,
                {
                    "duration": r.min_s,
                    "t": round(due, 3),
                    "min_s": r.min_s,
                    "silence_start": round(since, 3),
                },
                default="Dead air: no one has spoken for {duration:.0f} s",
            )
        ]

    def _speech_rate(self, st: _RuleState, r: SpeechRateRule, u: Utterance) -> list[Alert]:
        """Rate over the speaker's most recent ``window_s`` seconds of their own speech."""
        hist = self._speech[u.speaker]
        while len(hist) > 200:  # bounded history; far more than any window needs
            hist.popleft()
        n_words = 0
        speaking = 0.0
        for h in reversed(hist):
            room = r.window_s - speaking
            if room <= 0:
                break
            dur = h.t_end - h.t
            if dur <= room:
                speaking += dur
                n_words += len(h.words) if h.words else len(h.text.split())
            else:  # only the end of this utterance fits in the window
                cutoff = h.t_end - room
                speaking += room
                n_words += (
                    sum(1 for w in h.words if w.t >= cutoff)
                    if h.words
                    else int(len(h.text.split()) * room / dur)
                )
        if n_words < r.min_words or speaking <= 0:
            return []
        wpm = 60.0 * n_words / speaking
        too_fast = r.max_wpm is not None and wpm > r.max_wpm
        too_slow = r.min_wpm is not None and wpm < r.min_wpm
        if not (too_fast or too_slow) or not st.cooled(u.t_end):
            return []
        default = (
            "Slow down: {wpm:.0f} words per minute"
            if too_fast
            else "Speaking slowly: {wpm:.0f} words per minute"
        )
        return [
            self._alert(
                st,
                u.t_end,
                u.speaker,
                {
                    "wpm": round(wpm, 1),
                    "speaker": u.speaker,
                    "t": round(u.t_end, 3),
                    "min_wpm": r.min_wpm,
                    "max_wpm": r.max_wpm,
                    "window_s": r.window_s,
                    "words": n_words,
                    "speaking_s": round(speaking, 2),
                    "direction": "fast" if too_fast else "slow",
                },
                default=default,
            )
        ]

    def _on_emotion(self, e: EmotionObserved) -> list[Alert]:
        out: list[Alert] = []
        for st in self._states:
            r = st.rule
            if isinstance(r, EmotionRule) and r.speaker in ("any", e.speaker):
                out.extend(self._emotion(st, r, e))
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
                    message=f"Cleared: {e.speaker} sounds calmer (anger index {e.anger_index:.2f})",
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
        return [
            self._alert(
                st,
                e.t_end,
                e.speaker,
                {**values, "state": "raised", "utterance": e.text},
                default=default,
            )
        ]

    def _alert(
        self, st: _RuleState, t: float, speaker: str | None, evidence: dict[str, Any], default: str
    ) -> Alert:
        st.alerts += 1
        st.last_alert_t = t
        r = st.rule
        return Alert(
            rule_id=r.id,
            kind=r.kind,
            severity=r.severity,
            audience=tuple(r.audience),
            message=render(r.message, default, evidence),
            t=round(t, 3),
            speaker=speaker,
            evidence=evidence,
        )
