"""Floor: who needs a supervisor now. Active calls sorted by urgency (open critical alerts,
then angry or escalated callers by anger index, then warnings, then the longest calls), the
floor's totals, and the calls that just ended. Refreshes itself every few seconds."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import pandas as pd
import streamlit as st

from dashboard.client import CallwatchClient, ServerError
from dashboard.common import (
    agent_name,
    call_link,
    clock,
    duration,
    get_client,
    md_escape,
    mood_of,
    mood_text,
    refresh_s,
    setup_page,
    show_error,
    wall_time,
)

NEEDS = {0: "🔴 critical alert", 1: "😡 angry caller", 2: "🟠 warning", 3: "🟢 ok"}


def open_alert_counts(alerts: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """{call_id: {severity: open alerts}} from the open-alerts feed."""
    out: dict[str, dict[str, int]] = {}
    for a in alerts:
        per = out.setdefault(str(a.get("call_id")), {})
        sev = str(a.get("severity") or "info")
        per[sev] = per.get(sev, 0) + 1
    return out


def attention_key(call: Mapping[str, Any], open_by_sev: Mapping[str, int]) -> tuple[Any, ...]:
    """Sort key: critical open alerts first, then angry/escalated callers (by anger index),
    then open warnings, then the longest calls."""
    crit = int(open_by_sev.get("critical", 0))
    warn = int(open_by_sev.get("warning", 0))
    reading = mood_of(call) or {}
    anger = float(reading.get("anger_index") or 0.0)
    angry = bool(reading.get("escalated")) or reading.get("label") == "angry"
    tier = 0 if crit else 1 if angry else 2 if warn else 3
    return (tier, -crit, -anger if tier <= 1 else 0.0, -warn, -float(call.get("duration_s") or 0))


def floor_rows(calls: list[dict[str, Any]], open_alerts: dict[str, dict[str, int]]) -> pd.DataFrame:
    """The active calls as the floor table shows them, most urgent first."""
    active = [c for c in calls if c.get("status") == "active"]
    active.sort(key=lambda c: attention_key(c, open_alerts.get(str(c["call_id"]), {})))
    rows = []
    for c in active:
        per = open_alerts.get(str(c["call_id"]), {})
        reading = mood_of(c)
        rows.append(
            {
                "Needs": NEEDS[attention_key(c, per)[0]],
                "Agent": agent_name(c.get("agent_id")),
                "Call": call_link(str(c["call_id"])),
                "Duration": duration(c.get("duration_s")),
                "Caller mood": mood_text(reading),
                "Anger": float((reading or {}).get("anger_index") or 0.0),
                "Open alerts": sum(per.values()),
                "Critical": int(per.get("critical", 0)),
                "Last alert": c.get("last_alert") or "",
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "Needs",
            "Agent",
            "Call",
            "Duration",
            "Caller mood",
            "Anger",
            "Open alerts",
            "Critical",
            "Last alert",
        ],
    )


def ended_rows(calls: list[dict[str, Any]], limit: int = 10) -> pd.DataFrame:
    ended = [c for c in calls if c.get("status") == "ended"]
    ended.sort(key=lambda c: -float(c.get("started_at") or 0))
    return pd.DataFrame(
        [
            {
                "Agent": agent_name(c.get("agent_id")),
                "Call": call_link(str(c["call_id"])),
                "Started": wall_time(c.get("started_at")),
                "Duration": duration(c.get("duration_s")),
                "Score": c.get("score"),
                "Alerts": int(c.get("alerts") or 0),
                "Critical": int(c.get("critical_alerts") or 0),
                "Ended": c.get("ended_reason") or "",
            }
            for c in ended[:limit]
        ],
        columns=["Agent", "Call", "Started", "Duration", "Score", "Alerts", "Critical", "Ended"],
    )


CALL_LINK = st.column_config.LinkColumn(
    "Call", display_text=r"call\?call=([^&]+)", help="Open the call", width="medium"
)


def render_floor(client: CallwatchClient) -> None:
    try:
        calls = client.calls(scope="live")
    except ServerError as exc:
        show_error(exc)
        return
    try:
        feed = client.alerts(status="open", limit=2000)
        open_alerts = feed["alerts"]
        counts = feed.get("counts") or {}
    except ServerError as exc:
        if exc.status != 404:  # a server without the alerts feed: fall back to call counts
            show_error(exc)
            return
        open_alerts, counts = [], {}
    live_ids = {str(c["call_id"]) for c in calls if c.get("status") == "active"}
    by_call = open_alert_counts(open_alerts)
    if not open_alerts and not counts:
        by_call = {
            str(c["call_id"]): {
                "critical": int(c.get("critical_alerts") or 0),
                "warning": int(c.get("alerts") or 0) - int(c.get("critical_alerts") or 0),
            }
            for c in calls
        }
    lag: list[float] = []
    with contextlib.suppress(ServerError):
        lag = [float(m.get("asr_lag_s") or 0) for m in client.metrics().values()]

    live_open = [a for a in open_alerts if str(a.get("call_id")) in live_ids]
    crit = [a for a in open_alerts if a.get("severity") == "critical"]
    total_open = int(counts.get("open", len(open_alerts)))
    total_crit = int(counts.get("open_critical", len(crit)))
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Active calls", len(live_ids), border=True)
    m2.metric("Open alerts", total_open, border=True)
    m3.metric(
        "🔴 Critical",
        total_crit,
        border=True,
        help="Open critical alerts on all calls",
    )
    m4.metric("ASR lag", f"{max(lag):.2f} s" if lag else "-", border=True)

    if crit:
        crit.sort(key=lambda a: str(a.get("call_id")) not in live_ids)  # live calls first
        lines = [
            f"**{md_escape(agent_name(a.get('agent_id')))}** · {md_escape(a.get('message'))} · "
            f"[open call at {clock(a.get('t'))}]({call_link(str(a['call_id']), a.get('t'))})"
            + ("" if str(a.get("call_id")) in live_ids else " · :gray[ended]")
            for a in crit[:5]
        ]
        more = f"\n\n…and {len(crit) - 5} more on the Alerts page" if len(crit) > 5 else ""
        st.error(
            f"**{total_crit} critical alert{'s' if total_crit != 1 else ''} open**\n\n"
            + "\n\n".join(lines)
            + more,
            icon="🚨",
        )

    st.subheader("Active calls")
    table = floor_rows(calls, by_call)
    if table.empty:
        st.info("No active calls right now.", icon="🎧")
    else:
        st.dataframe(
            table,
            hide_index=True,
            width="stretch",
            column_config={
                "Call": CALL_LINK,
                "Anger": st.column_config.ProgressColumn(
                    "Anger", min_value=0.0, max_value=1.0, format="%.2f", width="small"
                ),
                "Open alerts": st.column_config.NumberColumn(width="small"),
                "Critical": st.column_config.NumberColumn(width="small"),
                "Last alert": st.column_config.TextColumn(width="large"),
            },
        )
        if live_open:
            st.caption(f"{len(live_open)} open alert(s) on live calls · newest first on Alerts")

    st.subheader("Recently ended")
    ended = ended_rows(calls)
    if ended.empty:
        st.caption("No call has ended yet.")
    else:
        st.dataframe(
            ended,
            hide_index=True,
            width="stretch",
            column_config={
                "Call": CALL_LINK,
                "Score": st.column_config.NumberColumn(format="%.0f"),
            },
        )


def main() -> None:
    setup_page("Floor", "🎧")
    st.title("🎧 Floor")
    paused = st.toggle("Pause auto refresh", key="floor_paused")
    every = None if paused else refresh_s()
    st.caption("Paused." if paused else f"Refreshing every {every:g} s.")
    client = get_client()

    @st.fragment(run_every=every)
    def live() -> None:
        render_floor(client)

    live()


if __name__ == "__main__":  # how Streamlit runs a page; importing it (tests) renders nothing
    main()
