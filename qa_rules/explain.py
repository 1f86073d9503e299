"""Why a rule fired on a call, or why it did not: the evidence, and the near misses.

QA asks "why didn't the disclosure rule see 'this call is recorded'?". The answer is in the
call's stored transcript: the rule is run again on it, and for its kind the closest things
the call contained are listed (best phrase similarity per utterance, longest silences,
fastest stretch, peak anger, overlaps, talk shares, signals of a composite rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qa_rules.cases import run_inputs
from qa_rules.engine import RuleEngine
from qa_rules.events import (
    EmotionObserved,
    EngineInput,
    SilenceEnded,
    SilenceStarted,
    Utterance,
    WordTime,
)
from qa_rules.matching import is_backchannel
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
from qa_rules.text import TokenSeq, find_phrase, speech_units


@dataclass
class Explanation:
    rule_id: str
    kind: str
    description: str
    verdict: str
    stored_alerts: list[dict[str, Any]] = field(default_factory=list)
    replay_alerts: list[dict[str, Any]] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "kind": self.kind,
            "description": self.description,
            "verdict": self.verdict,
            "stored_alerts": self.stored_alerts,
            "replay_alerts": self.replay_alerts,
            "findings": self.findings,
        }

    def lines(self) -> list[str]:
        out = [f"{self.rule_id} ({self.kind}): {self.description}".rstrip(": "), self.verdict]
        if self.stored_alerts:
            out.append("Alerts stored with the call:")
            out += [f"  {a['t']:8.2f} s  {a['message']}" for a in self.stored_alerts]
        out.append("Why:")
        out += [f"  {f}" for f in self.findings] or ["  (nothing in the call relates to it)"]
        return out


def inputs_from_report(report: dict[str, Any]) -> tuple[list[EngineInput], float]:
    """The engine inputs a stored call report holds (transcript, silences, emotions)."""
    inputs: list[EngineInput] = []
    for tr in report.get("transcript", []):
        words = tuple(WordTime(w["w"], w["t"], w["t_end"]) for w in tr.get("words", []))
        inputs.append(
            Utterance(
                tr["speaker"], tr["t"], tr["t_end"], tr["text"], words, tr.get("language", "en")
            )
        )
    for ev in report.get("events", []):
        if ev.get("type") == "silence":
            inputs.append(SilenceStarted(ev["t"]))
            inputs.append(SilenceEnded(ev["t"], ev["t_end"]))
        elif ev.get("type") == "emotion":
            inputs.append(
                EmotionObserved(
                    ev["speaker"],
                    ev["t"],
                    ev["t_end"],
                    ev["label"],
                    ev["confidence"],
                    ev["anger_index"],
                )
            )
    return inputs, float(report.get("duration_s") or 0.0)


def explain(rule_id: str, packs: list[RulePack], report: dict[str, Any]) -> Explanation:
    """Explain ``rule_id`` (from ``packs``) on the stored call ``report``."""
    rules = {r.id: r for p in packs for r in p.rules}
    rule = rules.get(rule_id)
    if rule is None:
        raise KeyError(rule_id)
    inputs, duration = inputs_from_report(report)
    needed = _with_dependencies(rule, rules)
    engine = RuleEngine([RulePack(pack="explain", rules=needed)])
    replay_alerts = [
        a.to_dict() for a in run_inputs(engine, inputs, duration) if a.rule_id == rule_id
    ]
    stored = [
        {"t": a["t"], "message": a["message"], "evidence": a.get("evidence", {})}
        for a in report.get("alerts", [])
        if a.get("rule_id") == rule_id
    ]
    status = next((o.status for o in engine.scorecard() if o.rule_id == rule_id), "passed")
    fired = len(stored) if stored else len(replay_alerts)
    verdict = (f"FIRED {fired} time(s)" if fired else f"did not fire (scorecard: {status})") + (
        "" if rule.enabled else " — the rule is disabled"
    )
    utterances = [x for x in inputs if isinstance(x, Utterance)]
    findings = (
        _composite(rule, engine)
        if isinstance(rule, CompositeRule)
        else _findings(rule, inputs, utterances, duration)
    )
    if stored and not replay_alerts:
        findings.append(
            "Re-running today's version of the rule on the stored transcript does not fire: "
            "the rule (or the call's rule version) has changed since."
        )
    elif replay_alerts and not stored and report.get("alerts") is not None:
        findings.append(
            f"Today's version of the rule would fire {len(replay_alerts)} time(s) on this call; "
            "the call ran with an earlier version."
        )
    return Explanation(
        rule.id, rule.kind, rule.description, verdict, stored, replay_alerts, findings
    )


def _with_dependencies(rule: AnyRule, rules: dict[str, AnyRule]) -> list[AnyRule]:
    out: dict[str, AnyRule] = {}
    todo = [rule]
    while todo:
        r = todo.pop()
        if r.id in out:
            continue
        out[r.id] = r
        if isinstance(r, CompositeRule):
            todo.extend(rules[x] for x in r.referenced_rules() if x in rules)
    return list(reversed(out.values()))


def _findings(
    rule: AnyRule, inputs: list[EngineInput], utts: list[Utterance], duration: float
) -> list[str]:
    """Near misses for the simple kinds (composites: ``_composite``)."""
    if isinstance(rule, PhraseRule):
        return _phrase(rule, utts, duration)
    if isinstance(rule, SilenceRule | HoldRule):
        return _silences(rule, inputs, utts)
    if isinstance(rule, SpeechRateRule):
        return _rates(rule, utts)
    if isinstance(rule, EmotionRule):
        return _emotions(rule, inputs)
    if isinstance(rule, TalkOverRule):
        return _overlaps(rule, utts)
    if isinstance(rule, TalkRatioRule):
        return _shares(rule, utts)
    if isinstance(rule, PiiRule):
        return [
            "Stored transcripts are redacted, so the numbers themselves are not kept; the "
            "alerts above show the type and a masked value."
        ]
    return []


def _who(speaker: str) -> str:
    return "anyone" if speaker == "any" else f"the {speaker}"


def _phrase(rule: PhraseRule, utts: list[Utterance], duration: float) -> list[str]:
    out = [
        f"Looks for {rule.match} of {rule.items} said by {_who(rule.speaker)} "
        f"{rule.window.describe()} (similarity ≥ {rule.fuzzy:g})."
    ]
    lo, hi = 0.0, duration
    if rule.window.first_s is not None:
        hi = rule.window.first_s
    if rule.window.last_s is not None:
        lo = max(0.0, duration - rule.window.last_s)
    by_speaker = [u for u in utts if rule.speaker in ("any", u.speaker)]
    if not by_speaker:
        return [*out, f"Nothing was transcribed for {_who(rule.speaker)}."]
    scored: list[tuple[float, str, Utterance]] = []
    for u in by_speaker:
        seq = TokenSeq.from_words([w.w for w in u.words] if u.words else u.text.split())
        for p in rule.phrases:
            m = find_phrase(seq, p, 0.5)
            if m is not None:
                scored.append((m.score, p, u))
    scored.sort(key=lambda x: -x[0])
    if not scored:
        out.append("No utterance comes close to any of the phrases (similarity < 0.5).")
    for score, p, u in scored[:5]:
        where = "in the window" if lo <= u.t <= hi else "OUTSIDE the window"
        verdict = "counts" if score >= rule.fuzzy else f"below {rule.fuzzy:g}"
        out.append(f'{u.t:7.2f} s {u.speaker}: "{u.text}" — "{p}" {score:.2f} ({verdict}, {where})')
    return out


def _silences(
    rule: SilenceRule | HoldRule, inputs: list[EngineInput], utts: list[Utterance]
) -> list[str]:
    gaps = sorted(
        ((x.t_end - x.t, x.t) for x in inputs if isinstance(x, SilenceEnded)), reverse=True
    )
    limit = rule.min_s if isinstance(rule, SilenceRule) else rule.max_s
    out = [f"Fires on silence of {limit:g} s or more."]
    if not gaps:
        out.append("No silence of 2 s or more was recorded on this call.")
    out += [f"{t:7.2f} s: silence of {d:.1f} s" for d, t in gaps[:5]]
    if isinstance(rule, HoldRule):
        for u in utts:
            if u.speaker == "agent":
                seq = TokenSeq.from_text(u.text)
                for p in rule.phrases:
                    if find_phrase(seq, p, rule.fuzzy) is not None:
                        out.append(f'{u.t:7.2f} s agent announced a hold: "{u.text}"')
                        break
    return out


def _rates(rule: SpeechRateRule, utts: list[Utterance]) -> list[str]:
    rates = []
    for u in utts:
        if u.speaker != rule.speaker or u.t_end <= u.t:
            continue
        latin, han = speech_units([w.w for w in u.words] if u.words else u.text.split())
        unit, n = ("cpm", han) if han > latin else ("wpm", latin)
        rates.append((60.0 * n / (u.t_end - u.t), unit, u))
    if not rates:
        return [f"The {rule.speaker} said nothing."]
    rates.sort(key=lambda x: -x[0])
    out = [
        f"Bounds: wpm {rule.min_wpm}–{rule.max_wpm}, cpm {rule.min_cpm}–{rule.max_cpm}, over "
        f"{rule.window_s:g} s of speech and at least {rule.min_words} words."
    ]
    for rate, unit, u in rates[:3]:
        out.append(f'fastest: {u.t:7.2f} s {rate:.0f} {unit}: "{u.text[:80]}"')
    rate, unit, u = rates[-1]
    out.append(f'slowest: {u.t:7.2f} s {rate:.0f} {unit}: "{u.text[:80]}"')
    return out


def _emotions(rule: EmotionRule, inputs: list[EngineInput]) -> list[str]:
    obs = [
        x for x in inputs if isinstance(x, EmotionObserved) and rule.speaker in ("any", x.speaker)
    ]
    if not obs:
        return ["No emotion readings were stored for this speaker (was emotion detection on?)."]
    peak = max(obs, key=lambda e: e.anger_index)
    labels: dict[str, int] = {}
    for e in obs:
        labels[e.label] = labels.get(e.label, 0) + 1
    cond = (
        f"anger index ≥ {rule.index_above}"
        if rule.index_above is not None
        else f"label in {rule.labels} at confidence ≥ {rule.min_confidence}"
    )
    return [
        f"Fires on {cond}, for {rule.sustained_utterances} utterance(s) in a row.",
        f"Labels heard: {labels}.",
        f"Peak anger index {peak.anger_index:.2f} at {peak.t_end:.2f} s ({peak.label}).",
    ]


def _overlaps(rule: TalkOverRule, utts: list[Utterance]) -> list[str]:
    out = [f"Counts overlaps of {rule.min_overlap_s:g} s or more; {rule.allowed} allowed."]
    found = 0
    for i, a in enumerate(utts):
        for b in utts[i + 1 :]:
            if a.speaker == b.speaker:
                continue
            overlap = min(a.t_end, b.t_end) - max(a.t, b.t)
            if overlap < 0.3:
                continue
            late, early = (b, a) if b.t >= a.t else (a, b)
            note = (
                " (backchannel, ignored)" if is_backchannel(TokenSeq.from_text(late.text)) else ""
            )
            out.append(
                f"{late.t:7.2f} s {late.speaker} over {early.speaker} for {overlap:.1f} s: "
                f'"{late.text[:60]}"{note}'
            )
            found += 1
    if not found:
        out.append("The two sides never spoke at the same time for 0.3 s or more.")
    return out


def _shares(rule: TalkRatioRule, utts: list[Utterance]) -> list[str]:
    talk: dict[str, float] = {}
    for u in utts:
        talk[u.speaker] = talk.get(u.speaker, 0.0) + u.t_end - u.t
    total = talk.get("agent", 0.0) + talk.get("customer", 0.0)
    if total <= 0:
        return ["Neither side spoke."]
    share = talk.get(rule.speaker, 0.0) / total
    return [
        f"Bounds for the {rule.speaker}'s share: {rule.min_share}–{rule.max_share}, judged after "
        f"{rule.min_talk_s:g} s of talk.",
        f"Over the call the {rule.speaker} talked {100 * share:.0f}% ({talk.get(rule.speaker, 0.0):.0f} "
        f"of {total:.0f} s).",
    ]


def _composite(rule: CompositeRule, engine: RuleEngine) -> list[str]:
    """When each signal happened, read from the engine that re-ran the call."""
    out = [
        f"Condition: {rule.when.describe()}"
        + (f", within {rule.within_s:g} s after {rule.after.describe()}" if rule.after else "")
    ]
    tracker = engine.tracker(rule.id)
    if tracker is not None:
        for c in tracker.leaves:
            times = tracker.times[id(c)]
            seen = ", ".join(f"{t:.1f}" for t in times[:10]) or "never"
            out.append(f"{c.describe()}: {seen}" + (" s" if times else ""))
    return out
