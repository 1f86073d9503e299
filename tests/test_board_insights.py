"""The Insights page's arithmetic (dashboard/insights.py) on hand-made call summaries."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

import pytest

from dashboard import insights as ins


def ts(day: int, hour: int = 12) -> float:
    """Epoch seconds of 2025-03-DAY HOUR:00 UTC."""
    return datetime(2025, 3, day, hour, tzinfo=UTC).timestamp()


def call(
    cid: str,
    agent: str | None,
    started: float | None,
    duration: float | None,
    score: float | None,
    *,
    critical: int = 0,
    failed: list[str] | None = None,
    fired: dict[str, int] | None = None,
    talk: dict[str, float] | None = None,
    silence: float = 0.0,
    intents: dict[str, int] | None = None,
    peak: dict[str, float] | None = None,
    escalations: int = 0,
) -> dict[str, Any]:
    return {
        "call_id": cid,
        "agent_id": agent,
        "mode": "live",
        "status": "ended",
        "started_at": started,
        "duration_s": duration,
        "score": score,
        "alerts": sum((fired or {}).values()),
        "critical_alerts": critical,
        "facts": {
            "failed_rules": failed or [],
            "fired_rules": fired or {},
            "talk_s": talk or {},
            "silence_s": silence,
            "longest_silence_s": silence,
            "wpm": {},
            "intents": intents or {},
            "peak_anger": peak or {},
            "escalations": escalations,
        },
    }


CALLS = [
    # sarah, day 1: clean
    call(
        "a",
        "sarah",
        ts(1, 9),
        100.0,
        100.0,
        talk={"agent": 40.0, "customer": 40.0},
        silence=10.0,
        intents={"billing": 2},
        peak={"customer": 0.2},
    ),
    # sarah, day 1 late evening: a critical breach
    call(
        "b",
        "sarah",
        ts(1, 23),
        200.0,
        50.0,
        critical=1,
        failed=["dead_air", "forbidden_language"],
        fired={"dead_air": 2, "forbidden_language": 1},
        talk={"agent": 120.0, "customer": 40.0},
        silence=30.0,
        intents={"billing": 1, "cancel": 1},
        peak={"customer": 0.3},
    ),
    # emma, day 2: angry caller (alert fired but weight 0: not failed)
    call(
        "c",
        "emma",
        ts(2),
        300.0,
        80.0,
        critical=2,
        failed=["dead_air"],
        fired={"caller_angry": 1, "dead_air": 1},
        talk={"agent": 100.0, "customer": 150.0, "speaker_3": 10.0},
        silence=20.0,
        intents={"cancel": 3},
        peak={"customer": 0.75, "agent": 0.1},
        escalations=1,
    ),
    # no agent, day 3: still active, no score yet, no duration
    call(
        "d",
        None,
        ts(3),
        None,
        None,
        talk={"agent": 5.0},
        peak={},
        escalations=1,
    ),
]


def test_kpis_are_exact() -> None:
    k = ins.kpis(CALLS)
    assert k.calls == 4
    assert k.aht_s == pytest.approx((100 + 200 + 300) / 3)  # the active call has no duration
    assert k.mean_score == pytest.approx((100 + 50 + 80) / 3)  # ...nor a score
    assert k.critical_share == pytest.approx(2 / 4)
    # c: customer peak 0.75 >= 0.6; d: no named customer, falls back to escalations
    assert k.escalation_share == pytest.approx(2 / 4)


def test_kpis_of_nothing_are_none_not_zero() -> None:
    k = ins.kpis([])
    assert (k.calls, k.aht_s, k.mean_score, k.critical_share, k.escalation_share) == (
        0,
        None,
        None,
        None,
        None,
    )


def test_angry_caller_uses_the_customer_peak_when_there_is_one() -> None:
    # the agent escalated (escalations counts every speaker) but the caller stayed calm
    calm = call("x", "a", ts(1), 10, 100, peak={"customer": 0.59, "agent": 0.9}, escalations=1)
    assert not ins.has_angry_caller(calm)
    assert ins.has_angry_caller(call("y", "a", ts(1), 10, 100, peak={"customer": 0.6}))
    assert not ins.has_angry_caller(call("z", "a", ts(1), 10, 100))


def test_rule_hits_counts_calls_not_alerts() -> None:
    df = ins.rule_hits(CALLS)
    assert list(df.columns) == ins.RULE_HIT_COLUMNS
    rows = {r["rule_id"]: r for r in df.to_dict("records")}
    assert set(rows) == {"dead_air", "forbidden_language", "caller_angry"}
    assert rows["dead_air"]["fired_calls"] == 2
    assert rows["dead_air"]["alerts"] == 3
    assert rows["dead_air"]["fired_share"] == pytest.approx(2 / 4)
    assert rows["dead_air"]["failed_calls"] == 2
    assert rows["dead_air"]["failed_share"] == pytest.approx(2 / 4)
    assert rows["forbidden_language"]["failed_share"] == pytest.approx(1 / 4)
    assert rows["caller_angry"]["fired_calls"] == 1
    assert rows["caller_angry"]["failed_calls"] == 0
    # most failed first, then most fired, then by name
    assert list(df["rule_id"]) == ["dead_air", "forbidden_language", "caller_angry"]


def test_rule_hits_of_no_calls_is_an_empty_table() -> None:
    df = ins.rule_hits([])
    assert df.empty
    assert list(df.columns) == ins.RULE_HIT_COLUMNS


def test_scores_by_agent_day() -> None:
    df = ins.scores_by_agent_day(CALLS)
    assert df.to_dict("records") == [
        {"day": date(2025, 3, 1), "agent_id": "sarah", "mean_score": 75.0, "calls": 2},
        {"day": date(2025, 3, 2), "agent_id": "emma", "mean_score": 80.0, "calls": 1},
    ]


def test_day_is_the_utc_date() -> None:
    assert ins.day_of({"started_at": ts(1, 23)}) == date(2025, 3, 1)
    assert ins.day_of({"started_at": None}) is None


def test_top_intents() -> None:
    df = ins.top_intents(CALLS)
    assert df.to_dict("records") == [
        {"intent": "cancel", "mentions": 4, "calls": 2},
        {"intent": "billing", "mentions": 3, "calls": 2},
    ]
    assert list(ins.top_intents(CALLS, n=1)["intent"]) == ["cancel"]


def test_feedback_by_intent() -> None:
    fb = {
        "by_intent": {
            "billing": {"helpful": 3, "not_helpful": 1, "dismissed": 0, "copied": 2},
            "rule:greeting": {"helpful": 0, "not_helpful": 0, "dismissed": 1, "copied": 0},
        }
    }
    rows = ins.feedback_by_intent(fb).to_dict("records")
    assert [r["intent"] for r in rows] == ["billing", "rule:greeting"]
    assert rows[0]["helpful"] == 3 and rows[0]["not_helpful"] == 1 and rows[0]["copied"] == 2
    assert rows[0]["helpful_share"] == pytest.approx(0.75)
    assert math.isnan(rows[1]["helpful_share"])  # no helpful/not-helpful verdicts at all
    assert ins.feedback_by_intent({"feedback": [], "by_intent": {}}).empty


def test_per_agent() -> None:
    df = ins.per_agent(CALLS)
    assert list(df.columns) == ins.AGENT_COLUMNS
    assert list(df["agent_id"]) == ["emma", "sarah", ins.NO_AGENT]
    rows = {r["agent_id"]: r for r in df.to_dict("records")}

    sarah = rows["sarah"]
    assert sarah["calls"] == 2
    assert sarah["aht_s"] == pytest.approx(150.0)
    assert sarah["mean_score"] == pytest.approx(75.0)
    # ratio of sums: (40 + 120) / (80 + 160), not the mean of 0.5 and 0.75
    assert sarah["agent_share"] == pytest.approx(160 / 240)
    assert sarah["customer_share"] == pytest.approx(80 / 240)
    assert sarah["silence_ratio"] == pytest.approx(40 / 300)
    assert sarah["escalated_calls"] == 0
    assert sarah["escalation_rate"] == 0.0
    assert sarah["critical_calls"] == 1

    emma = rows["emma"]
    # a third voice is neither side: shares are of agent + customer talk only
    assert emma["agent_share"] == pytest.approx(100 / 250)
    assert emma["customer_share"] == pytest.approx(150 / 250)
    assert emma["silence_ratio"] == pytest.approx(20 / 300)
    assert emma["escalation_rate"] == 1.0

    nobody = rows[ins.NO_AGENT]
    assert nobody["calls"] == 1
    assert math.isnan(nobody["aht_s"]) and math.isnan(nobody["mean_score"])
    assert nobody["agent_share"] == 1.0 and nobody["customer_share"] == 0.0
    assert math.isnan(nobody["silence_ratio"])  # no call time to set silence against


def test_filter_calls_by_days_and_agents() -> None:
    ids = lambda cs: [c["call_id"] for c in cs]  # noqa: E731
    assert ids(ins.filter_calls(CALLS)) == ["a", "b", "c", "d"]
    # end day is included up to its last second (b started 23:00 on day 1)
    assert ids(ins.filter_calls(CALLS, end=date(2025, 3, 1))) == ["a", "b"]
    assert ids(ins.filter_calls(CALLS, start=date(2025, 3, 2))) == ["c", "d"]
    assert ids(ins.filter_calls(CALLS, date(2025, 3, 2), date(2025, 3, 2))) == ["c"]
    assert ids(ins.filter_calls(CALLS, agents=["sarah"])) == ["a", "b"]
    assert ids(ins.filter_calls(CALLS, agents=[ins.NO_AGENT])) == ["d"]
    assert ids(ins.filter_calls(CALLS, agents=[])) == ["a", "b", "c", "d"]
    undated = [call("u", "x", None, 1, 1)]
    assert ids(ins.filter_calls(undated)) == ["u"]
    assert ins.filter_calls(undated, start=date(2025, 3, 1)) == []


def test_agents_of() -> None:
    assert ins.agents_of(CALLS) == ["emma", "sarah", ins.NO_AGENT]


def test_calls_per_day() -> None:
    assert ins.calls_per_day(CALLS).to_dict("records") == [
        {"day": date(2025, 3, 1), "calls": 2},
        {"day": date(2025, 3, 2), "calls": 1},
        {"day": date(2025, 3, 3), "calls": 1},
    ]


def test_junk_fields_do_not_break_anything() -> None:
    junk: list[dict[str, Any]] = [
        {"call_id": "j1", "facts": None, "score": "n/a", "duration_s": float("nan")},
        {"call_id": "j2", "facts": {"talk_s": {"agent": "x"}, "fired_rules": {"r": None}}},
    ]
    k = ins.kpis(junk)
    assert (k.calls, k.aht_s, k.mean_score) == (2, None, None)
    assert ins.rule_hits(junk).empty
    assert list(ins.per_agent(junk)["calls"]) == [2]


def test_number_formats() -> None:
    assert ins.percent(0.25) == "25%"
    assert ins.percent(2 / 3) == "67%"
    assert ins.percent(None) == "-"
    assert ins.score_text(76.66666) == "76.7"
    assert ins.score_text(None) == "-"
