"""Insights: the charts a contact-center manager expects (rule hit rates, scorecards per agent
over time, top intents, handle time, talk and silence, escalations), from the servers' call
summaries for a date range and a set of agents.

All arithmetic lives in ``dashboard/insights.py`` (unit-tested); this page fetches, filters
and draws. Up to ``MAX_CALLS`` calls are read per range (the API's maximum page).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import insights
from dashboard.client import ServerError
from dashboard.common import duration, get_client, setup_page, show_error
from dashboard.insights import Summary

MAX_CALLS = 2000
DEFAULT_DAYS = 30

# widget keys (also what the tests use)
DATES = "ins_dates"
AGENTS = "ins_agents"

PCT = st.column_config.NumberColumn(format="percent")
SECONDS = st.column_config.NumberColumn(format="%.0f s")


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def date_range() -> tuple[dt.date, dt.date]:
    """The chosen UTC days; while only a start is picked, up to today."""
    value = st.session_state.get(DATES)
    today = _today()
    if isinstance(value, dt.date):
        return value, value
    picked = [d for d in (value or ()) if isinstance(d, dt.date)]
    if not picked:
        return today - dt.timedelta(days=DEFAULT_DAYS - 1), today
    return picked[0], picked[1] if len(picked) > 1 else today


def fetch_calls(start: dt.date, end: dt.date) -> list[dict[str, Any]] | None:
    try:
        return get_client().calls(
            scope="all",
            since=start.isoformat(),
            until=(end + dt.timedelta(days=1)).isoformat(),
            limit=MAX_CALLS,
        )
    except ServerError as exc:
        show_error(exc)
        return None


def kpi_tiles(calls: Sequence[Summary]) -> None:
    k = insights.kpis(calls)
    c = st.columns(5)
    c[0].metric("Calls", k.calls)
    c[1].metric("Average handle time", duration(k.aht_s) if k.aht_s is not None else "-")
    c[2].metric("Mean score", insights.score_text(k.mean_score))
    c[3].metric(
        "Calls with a critical alert",
        insights.percent(k.critical_share),
        help="Share of calls with at least one critical alert",
    )
    c[4].metric(
        "Escalation rate",
        insights.percent(k.escalation_share),
        help=f"Share of calls whose caller's anger index reached {insights.ANGRY_AT}",
    )


def rule_section(calls: Sequence[Summary]) -> None:
    st.subheader("Rule hit rates")
    hits = insights.rule_hits(calls)
    if hits.empty:
        st.info("No rule fired or failed on these calls.")
        return
    long = hits.melt(
        id_vars="rule_id",
        value_vars=["failed_share", "fired_share"],
        var_name="measure",
        value_name="share",
    )
    long["measure"] = long["measure"].map(
        {"failed_share": "failed (scorecard)", "fired_share": "fired (alerted)"}
    )
    chart = (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("share:Q", title="share of calls", axis=alt.Axis(format="%")),
            y=alt.Y(
                "rule_id:N", title=None, sort=list(hits["rule_id"]), axis=alt.Axis(labelLimit=300)
            ),
            yOffset="measure:N",
            color=alt.Color("measure:N", title=None),
            tooltip=["rule_id", "measure", alt.Tooltip("share:Q", format=".0%")],
        )
    )
    st.altair_chart(chart, width="stretch")
    st.dataframe(
        hits,
        hide_index=True,
        column_config={
            "rule_id": "rule",
            "fired_calls": "calls fired",
            "fired_share": st.column_config.NumberColumn("fired", format="percent"),
            "alerts": "alerts",
            "failed_calls": "calls failed",
            "failed_share": st.column_config.NumberColumn("failed", format="percent"),
        },
    )


def score_section(calls: Sequence[Summary]) -> None:
    st.subheader("Scorecards per agent")
    scores = insights.scores_by_agent_day(calls)
    if scores.empty:
        st.info("No scored calls in this range.")
        return
    scores = scores.assign(day=pd.to_datetime(scores["day"]))
    chart = (
        alt.Chart(scores)
        .mark_line(point=True)
        .encode(
            x=alt.X("day:T", title="day (UTC)"),
            y=alt.Y("mean_score:Q", title="mean score", scale=alt.Scale(domain=[0, 100])),
            color=alt.Color("agent_id:N", title="agent"),
            tooltip=[
                "agent_id",
                alt.Tooltip("day:T", format="%Y-%m-%d"),
                alt.Tooltip("mean_score:Q", format=".1f"),
                "calls",
            ],
        )
    )
    st.altair_chart(chart, width="stretch")


def intent_section(calls: Sequence[Summary]) -> None:
    st.subheader("Top customer intents")
    left, right = st.columns(2)
    intents = insights.top_intents(calls)
    with left:
        if intents.empty:
            st.info("No intents detected on these calls.")
        else:
            chart = (
                alt.Chart(intents)
                .mark_bar()
                .encode(
                    x=alt.X("mentions:Q", title="times heard"),
                    y=alt.Y("intent:N", title=None, sort="-x", axis=alt.Axis(labelLimit=300)),
                    tooltip=["intent", "mentions", "calls"],
                )
            )
            st.altair_chart(chart, width="stretch")
    with right:
        st.caption("Agents' verdicts on the suggestions (all time)")
        try:
            feedback = insights.feedback_by_intent(get_client().feedback())
        except ServerError as exc:
            show_error(exc)
            return
        if feedback.empty:
            st.info("No feedback on suggestions yet.")
        else:
            st.dataframe(
                feedback,
                hide_index=True,
                column_config={
                    "helpful_share": st.column_config.NumberColumn("helpful %", format="percent")
                },
            )


def agent_section(calls: Sequence[Summary]) -> None:
    st.subheader("Handle time, talk and escalations per agent")
    table = insights.per_agent(calls)
    left, right = st.columns(2)
    with left:
        chart = (
            alt.Chart(table.dropna(subset=["aht_s"]))
            .mark_bar()
            .encode(
                x=alt.X("aht_s:Q", title="average handle time (s)"),
                y=alt.Y("agent_id:N", title=None),
                tooltip=["agent_id", alt.Tooltip("aht_s:Q", format=".0f"), "calls"],
            )
        )
        st.altair_chart(chart, width="stretch")
    with right:
        shares = table.melt(
            id_vars="agent_id",
            value_vars=["agent_share", "customer_share"],
            var_name="side",
            value_name="share",
        ).dropna(subset=["share"])
        shares["side"] = shares["side"].map({"agent_share": "agent", "customer_share": "customer"})
        chart = (
            alt.Chart(shares)
            .mark_bar()
            .encode(
                x=alt.X("share:Q", title="share of talk", axis=alt.Axis(format="%")),
                y=alt.Y("agent_id:N", title=None),
                color=alt.Color("side:N", title=None),
                tooltip=["agent_id", "side", alt.Tooltip("share:Q", format=".0%")],
            )
        )
        st.altair_chart(chart, width="stretch")
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "agent_id": "agent",
            "aht_s": st.column_config.NumberColumn("AHT", format="%.0f s"),
            "mean_score": st.column_config.NumberColumn("mean score", format="%.1f"),
            "agent_share": st.column_config.NumberColumn("agent talk", format="percent"),
            "customer_share": st.column_config.NumberColumn("customer talk", format="percent"),
            "silence_ratio": st.column_config.NumberColumn("silence", format="percent"),
            "escalated_calls": "angry callers",
            "escalation_rate": st.column_config.NumberColumn("escalation rate", format="percent"),
            "critical_calls": "calls with critical alert",
        },
    )


def page() -> None:
    setup_page("Insights", "📊")
    st.title("📊 Insights")
    today = _today()
    c1, c2 = st.columns([1, 2])
    c1.date_input(
        "Days (UTC)", value=[today - dt.timedelta(days=DEFAULT_DAYS - 1), today], key=DATES
    )
    start, end = date_range()
    fetched = fetch_calls(start, end)
    if fetched is None:
        return
    agents = c2.multiselect("Agents (none chosen: all)", insights.agents_of(fetched), key=AGENTS)
    calls = insights.filter_calls(fetched, start, end, agents or None)
    if not calls:
        st.info("No calls in this range.")
        return
    if len(fetched) >= MAX_CALLS:
        st.warning(f"Only the newest {MAX_CALLS} calls of this range are counted: pick fewer days.")
    kpi_tiles(calls)
    rule_section(calls)
    score_section(calls)
    intent_section(calls)
    agent_section(calls)


page()
