"""The Insights page's arithmetic: call summaries (``GET /v1/calls`` CallSummary dicts) in,
pandas tables and plain numbers out.

Kept apart from the page so every figure a manager reads can be unit-tested on hand-made
summaries: no Streamlit, no HTTP here. Conventions, the same for every function:

- a call's day is the UTC date of ``started_at`` (epoch seconds);
- shares are 0..1 (the page formats them as percentages); a share over nothing is ``None``
  (a number) or NaN (a table cell), never 0, so "no data" is not read as "never";
- per-agent ratios are ratios of sums over the agent's calls (time-weighted), not means of
  per-call ratios, so one 20-second call does not weigh as much as a 20-minute one;
- calls without an agent id are grouped under ``NO_AGENT``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

Summary = Mapping[str, Any]

NO_AGENT = "(no agent)"
# A caller counts as angry when their anger index reached the level at which the emotion
# tracker marks a speaker escalated (models/emotion/tracker.py ``escalate_at``).
ANGRY_AT = 0.6
FEEDBACK_VERDICTS = ("helpful", "not_helpful", "dismissed", "copied")

RULE_HIT_COLUMNS = [
    "rule_id",
    "fired_calls",
    "fired_share",
    "alerts",
    "failed_calls",
    "failed_share",
]
AGENT_COLUMNS = [
    "agent_id",
    "calls",
    "aht_s",
    "mean_score",
    "agent_share",
    "customer_share",
    "silence_ratio",
    "escalated_calls",
    "escalation_rate",
    "critical_calls",
]


@dataclass(frozen=True)
class Kpis:
    """The tiles at the top of the page."""

    calls: int
    aht_s: float | None  # mean duration of the calls that have one
    mean_score: float | None  # mean of the scores that exist (active calls may have none)
    critical_share: float | None  # share of calls with at least one critical alert
    escalation_share: float | None  # share of calls with an angry caller


# -- reading one summary -------------------------------------------------------------------------
def _num(v: Any) -> float | None:
    """A finite number, or None (missing, null, text, NaN)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def facts_of(call: Summary) -> Mapping[str, Any]:
    facts = call.get("facts")
    return facts if isinstance(facts, Mapping) else {}


def agent_of(call: Summary) -> str:
    agent = call.get("agent_id")
    return str(agent) if agent else NO_AGENT


def day_of(call: Summary) -> date | None:
    """UTC date the call started, None without a usable ``started_at``."""
    t = _num(call.get("started_at"))
    return datetime.fromtimestamp(t, UTC).date() if t is not None else None


def _counts(v: Any) -> dict[str, float]:
    if not isinstance(v, Mapping):
        return {}
    return {str(k): n for k, x in v.items() if (n := _num(x)) is not None}


def talk_of(call: Summary) -> dict[str, float]:
    """Seconds of speech per speaker (``facts.talk_s``)."""
    return _counts(facts_of(call).get("talk_s"))


def failed_rules_of(call: Summary) -> set[str]:
    failed = facts_of(call).get("failed_rules")
    return {str(r) for r in failed} if isinstance(failed, list | tuple | set) else set()


def fired_rules_of(call: Summary) -> dict[str, int]:
    """Alerts per rule id (``facts.fired_rules``), only rules that fired."""
    return {k: int(v) for k, v in _counts(facts_of(call).get("fired_rules")).items() if v > 0}


def is_critical(call: Summary) -> bool:
    return (_num(call.get("critical_alerts")) or 0) > 0


def has_angry_caller(call: Summary) -> bool:
    """The caller's anger index reached ``ANGRY_AT``. Calls whose speakers are not named
    (no ``customer`` in ``facts.peak_anger``) fall back to ``facts.escalations``, which the
    server counts over every speaker."""
    facts = facts_of(call)
    peak = _counts(facts.get("peak_anger"))
    if "customer" in peak:
        return peak["customer"] >= ANGRY_AT
    return (_num(facts.get("escalations")) or 0) > 0


# -- selecting ------------------------------------------------------------------------------------
def filter_calls(
    calls: Iterable[Summary],
    start: date | None = None,
    end: date | None = None,
    agents: Collection[str] | None = None,
) -> list[Summary]:
    """Calls that started on ``start``..``end`` (UTC days, both included) by one of
    ``agents`` (``None`` or empty: any agent). Without a start time a call is kept only when
    no date bound is given."""
    lo = datetime.combine(start, datetime.min.time(), UTC).timestamp() if start else None
    hi = (
        datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC).timestamp()
        if end
        else None
    )
    out: list[Summary] = []
    for c in calls:
        if agents and agent_of(c) not in agents:
            continue
        t = _num(c.get("started_at"))
        if (lo is not None or hi is not None) and t is None:
            continue
        if lo is not None and t is not None and t < lo:
            continue
        if hi is not None and t is not None and t >= hi:
            continue
        out.append(c)
    return out


def agents_of(calls: Iterable[Summary]) -> list[str]:
    """Agent ids in the calls, sorted; ``NO_AGENT`` last when some call has none."""
    names = {agent_of(c) for c in calls}
    return sorted(names - {NO_AGENT}) + ([NO_AGENT] if NO_AGENT in names else [])


# -- numbers --------------------------------------------------------------------------------------
def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def kpis(calls: Sequence[Summary]) -> Kpis:
    durations = [d for c in calls if (d := _num(c.get("duration_s"))) is not None]
    scores = [s for c in calls if (s := _num(c.get("score"))) is not None]
    n = len(calls)
    return Kpis(
        calls=n,
        aht_s=_mean(durations),
        mean_score=_mean(scores),
        critical_share=_share(sum(1 for c in calls if is_critical(c)), n),
        escalation_share=_share(sum(1 for c in calls if has_angry_caller(c)), n),
    )


# -- tables ---------------------------------------------------------------------------------------
def _nan(v: float | None) -> float:
    return float("nan") if v is None else v


def rule_hits(calls: Sequence[Summary]) -> pd.DataFrame:
    """Per rule: in how many calls it fired (alerted) and failed (on the scorecard), as counts
    and shares of all the calls, and its total alerts. Most failed first."""
    fired: dict[str, int] = {}
    alerts: dict[str, int] = {}
    failed: dict[str, int] = {}
    for c in calls:
        for rule, k in fired_rules_of(c).items():
            fired[rule] = fired.get(rule, 0) + 1
            alerts[rule] = alerts.get(rule, 0) + k
        for rule in failed_rules_of(c):
            failed[rule] = failed.get(rule, 0) + 1
    n = len(calls)
    rows = [
        {
            "rule_id": rule,
            "fired_calls": fired.get(rule, 0),
            "fired_share": fired.get(rule, 0) / n,
            "alerts": alerts.get(rule, 0),
            "failed_calls": failed.get(rule, 0),
            "failed_share": failed.get(rule, 0) / n,
        }
        for rule in set(fired) | set(failed)
    ]
    df = pd.DataFrame(rows, columns=RULE_HIT_COLUMNS)
    if df.empty:
        return df
    df = df.sort_values(
        ["failed_calls", "fired_calls", "rule_id"], ascending=[False, False, True]
    ).reset_index(drop=True)
    return df


def scores_by_agent_day(calls: Sequence[Summary]) -> pd.DataFrame:
    """Mean score per agent per UTC day (calls without a score or a start time left out),
    sorted by day then agent: the scorecard trend."""
    groups: dict[tuple[date, str], list[float]] = {}
    for c in calls:
        s, d = _num(c.get("score")), day_of(c)
        if s is None or d is None:
            continue
        groups.setdefault((d, agent_of(c)), []).append(s)
    rows = [
        {"day": d, "agent_id": a, "mean_score": sum(v) / len(v), "calls": len(v)}
        for (d, a), v in sorted(groups.items())
    ]
    return pd.DataFrame(rows, columns=["day", "agent_id", "mean_score", "calls"])


def top_intents(calls: Sequence[Summary], n: int = 10) -> pd.DataFrame:
    """The ``n`` intents heard most (``facts.intents``): times detected and in how many
    calls. Ties by name."""
    mentions: dict[str, float] = {}
    in_calls: dict[str, int] = {}
    for c in calls:
        for intent, k in _counts(facts_of(c).get("intents")).items():
            if k <= 0:
                continue
            mentions[intent] = mentions.get(intent, 0) + k
            in_calls[intent] = in_calls.get(intent, 0) + 1
    ranked = sorted(mentions.items(), key=lambda im: (-im[1], im[0]))[:n]
    rows = [{"intent": i, "mentions": int(m), "calls": in_calls[i]} for i, m in ranked]
    return pd.DataFrame(rows, columns=["intent", "mentions", "calls"])


def feedback_by_intent(feedback: Mapping[str, Any]) -> pd.DataFrame:
    """Agents' verdicts on suggestions per intent (``GET /v1/suggestions/feedback``
    ``by_intent``), with the helpful share of helpful + not helpful. Most verdicts first."""
    by_intent = feedback.get("by_intent")
    rows: list[dict[str, Any]] = []
    for intent, counts in by_intent.items() if isinstance(by_intent, Mapping) else []:
        c = _counts(counts)
        row: dict[str, Any] = {"intent": str(intent)}
        row.update({v: int(c.get(v, 0)) for v in FEEDBACK_VERDICTS})
        row["helpful_share"] = _nan(_share(row["helpful"], row["helpful"] + row["not_helpful"]))
        rows.append(row)
    rows.sort(key=lambda r: (-sum(r[v] for v in FEEDBACK_VERDICTS), r["intent"]))
    return pd.DataFrame(rows, columns=["intent", *FEEDBACK_VERDICTS, "helpful_share"])


def per_agent(calls: Sequence[Summary]) -> pd.DataFrame:
    """One row per agent: calls, average handle time, mean score, agent and customer share of
    the talk (of the two sides' speech), silence ratio (silence over call time), calls with
    an angry caller and with a critical alert. Sorted by agent."""
    by_agent: dict[str, list[Summary]] = {}
    for c in calls:
        by_agent.setdefault(agent_of(c), []).append(c)
    rows: list[dict[str, Any]] = []
    for agent in agents_of(calls):
        group = by_agent[agent]
        talk_agent = talk_customer = silence = duration = 0.0
        for c in group:
            talk = talk_of(c)
            talk_agent += talk.get("agent", 0.0)
            talk_customer += talk.get("customer", 0.0)
            d = _num(c.get("duration_s"))
            if d is not None and d > 0:  # silence counts only against time it belongs to
                duration += d
                silence += _num(facts_of(c).get("silence_s")) or 0.0
        both = talk_agent + talk_customer
        k = kpis(group)
        escalated = sum(1 for c in group if has_angry_caller(c))
        rows.append(
            {
                "agent_id": agent,
                "calls": len(group),
                "aht_s": _nan(k.aht_s),
                "mean_score": _nan(k.mean_score),
                "agent_share": _nan(_share(talk_agent, both)),
                "customer_share": _nan(_share(talk_customer, both)),
                "silence_ratio": _nan(_share(silence, duration)),
                "escalated_calls": escalated,
                "escalation_rate": escalated / len(group),
                "critical_calls": sum(1 for c in group if is_critical(c)),
            }
        )
    return pd.DataFrame(rows, columns=AGENT_COLUMNS)


def calls_per_day(calls: Sequence[Summary]) -> pd.DataFrame:
    """Calls per UTC day (calls without a start time left out)."""
    days: dict[date, int] = {}
    for c in calls:
        d = day_of(c)
        if d is not None:
            days[d] = days.get(d, 0) + 1
    return pd.DataFrame(
        [{"day": d, "calls": n} for d, n in sorted(days.items())], columns=["day", "calls"]
    )


# -- how the page writes the numbers (here so tests compare like with like) -----------------------
def percent(share: float | None) -> str:
    """0.25 -> '25%'; no data -> '-'."""
    return "-" if share is None else f"{share:.0%}"


def score_text(score: float | None) -> str:
    return "-" if score is None else f"{score:.1f}"
