"""Alerts: the feed supervisors and QA work through. Filter it, acknowledge, assign or reopen
an alert (with a note), and jump to the call at the moment the alert fired."""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard.client import CallwatchClient, ServerError, alert_id
from dashboard.common import (
    agent_name,
    call_link,
    clock,
    error_text,
    get_client,
    iso_time,
    md_escape,
    refresh_s,
    setup_page,
    severity_markdown,
    show_error,
)

STATUSES = ["open", "acknowledged", "all"]
SEVERITIES = ["critical", "warning", "info"]
FLASH_KEY = "alerts_flash"
ANY = "(any)"


def _act(client: CallwatchClient, action: str, alert: dict[str, Any]) -> None:
    """Button callback: acknowledge / assign / reopen, with the note typed next to it."""
    aid = alert_id(alert)
    call_id, seq = str(alert["call_id"]), int(alert["seq"])
    note = str(st.session_state.get(f"note-{aid}") or "").strip() or None
    try:
        if action == "ack":
            client.ack_alert(call_id, seq, note)
            done = "acknowledged"
        elif action == "assign":
            who = str(st.session_state.get(f"assignee-{aid}") or "").strip()
            if not who:
                st.session_state[FLASH_KEY] = ("warning", "Type a name to assign the alert to.")
                return
            client.assign_alert(call_id, seq, who, note)
            done = f"assigned to {who}"
        else:
            client.reopen_alert(call_id, seq)
            done = "reopened"
    except ServerError as exc:
        st.session_state[FLASH_KEY] = ("error", error_text(exc))
        return
    st.session_state[FLASH_KEY] = ("success", f"Alert {aid} ({alert.get('rule_id')}) {done}.")
    st.session_state.pop(f"note-{aid}", None)


def _state_line(state: dict[str, Any]) -> str:
    parts = [f"**{state.get('status', 'open')}**"]
    if state.get("assignee"):
        parts.append(f"assigned to {md_escape(state['assignee'])}")
    if state.get("acked_by"):
        parts.append(f"by {md_escape(state['acked_by'])} at {iso_time(state.get('acked_at'))}")
    if state.get("note"):
        parts.append(f"note: “{md_escape(state['note'])}”")
    return " · ".join(parts)


def render_alert(client: CallwatchClient, alert: dict[str, Any]) -> None:
    aid = alert_id(alert)
    state = alert.get("state") or {}
    status = str(state.get("status") or "open")
    live = alert.get("call_status") == "active"
    with st.container(border=True):
        head, side = st.columns([5, 2])
        head.markdown(
            f"{severity_markdown(alert.get('severity'))} &nbsp; "
            f"**{md_escape(alert.get('message') or alert.get('rule_id'))}**"
        )
        head.caption(
            f"{iso_time(alert.get('emitted_at'))} · {md_escape(agent_name(alert.get('agent_id')))} · "
            f"rule `{alert.get('rule_id')}` · at {clock(alert.get('t'))} of call "
            f"{md_escape(alert.get('call_id'))}" + (" · 🟢 live" if live else " · ended")
        )
        utterance = (alert.get("evidence") or {}).get("utterance")
        if utterance:
            head.markdown(f"> {md_escape(utterance)}")
        side.markdown(_state_line(state))
        side.markdown(
            f"[▶ Open the call at {clock(alert.get('t'))}]"
            f"({call_link(str(alert['call_id']), alert.get('t'))})"
        )
        note, act, who, assign = st.columns([3, 1.3, 2, 1.2], vertical_alignment="bottom")
        note.text_input(
            "Note", key=f"note-{aid}", placeholder="note (optional)", label_visibility="collapsed"
        )
        if status == "acknowledged":
            act.button("Reopen", key=f"reopen-{aid}", on_click=_act, args=(client, "reopen", alert))
        else:
            act.button(
                "Acknowledge",
                key=f"ack-{aid}",
                type="primary",
                on_click=_act,
                args=(client, "ack", alert),
            )
        who.text_input(
            "Assign to",
            key=f"assignee-{aid}",
            placeholder="assign to (name)",
            label_visibility="collapsed",
        )
        assign.button("Assign", key=f"assign-{aid}", on_click=_act, args=(client, "assign", alert))


def render_feed(client: CallwatchClient, filters: dict[str, Any], status: str) -> None:
    try:
        feed = client.alerts(status=status, limit=500, **filters)
    except ServerError as exc:
        show_error(exc)
        return
    counts = feed.get("counts") or {}
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Open", counts.get("open", "-"), border=True)
    c2.metric("🔴 Open critical", counts.get("open_critical", "-"), border=True)
    c3.metric("Acknowledged", counts.get("acknowledged", "-"), border=True)
    c4.metric(
        "Shown", f"{len(feed['alerts'])} of {feed.get('total', len(feed['alerts']))}", border=True
    )
    flash = st.session_state.pop(FLASH_KEY, None)
    if flash:
        kind, text = flash
        {"success": st.success, "warning": st.warning}.get(kind, st.error)(text)
    if not feed["alerts"]:
        what = {"open": "No open alerts", "acknowledged": "No acknowledged alerts"}.get(
            status, "No alerts"
        )
        st.info(f"{what}{' match these filters' if filters else ''}.", icon="✅")
        return
    for alert in feed["alerts"]:
        render_alert(client, alert)


def filter_options(client: CallwatchClient) -> tuple[list[str], list[str], list[str]]:
    """Rules, agents and calls that have alerts, for the filter boxes."""
    try:
        every = client.alerts(status="all", limit=2000)["alerts"]
    except ServerError:
        return [], [], []
    rules = sorted({str(a.get("rule_id")) for a in every if a.get("rule_id")})
    agents = sorted({str(a.get("agent_id")) for a in every if a.get("agent_id")})
    calls = sorted({str(a.get("call_id")) for a in every if a.get("call_id")})
    return rules, agents, calls


def main() -> None:
    setup_page("Alerts", "🚨")
    st.title("🚨 Alerts")
    client = get_client()
    rules, agents, calls = filter_options(client)
    preset = st.query_params.get("call")
    if preset and preset not in calls:
        calls.append(preset)
    top, toggle = st.columns([3, 1], vertical_alignment="bottom")
    status = top.segmented_control("Status", STATUSES, default="open", key="alerts_status")
    paused = toggle.toggle("Pause auto refresh", key="alerts_paused")
    f2, f3, f4, f5 = st.columns([2, 1.6, 1.4, 2])
    severity = f2.multiselect("Severity", SEVERITIES, key="alerts_severity", placeholder="any")
    rule = f3.selectbox("Rule", [ANY, *rules], key="alerts_rule")
    agent = f4.selectbox(
        "Agent",
        [ANY, *agents],
        key="alerts_agent",
        format_func=lambda a: a if a == ANY else agent_name(a),
    )
    call = f5.selectbox(
        "Call",
        [ANY, *calls],
        key="alerts_call",
        index=(calls.index(preset) + 1) if preset in calls else 0,
    )
    filters: dict[str, Any] = {}
    if severity:
        filters["severity"] = list(severity)
    if rule != ANY:
        filters["rule"] = rule
    if agent != ANY:
        filters["agent"] = agent
    if call != ANY:
        filters["call_id"] = call
    every = None if paused else max(5.0, refresh_s())

    @st.fragment(run_every=every)
    def feed() -> None:
        render_feed(client, filters, str(status or "open"))

    feed()


if __name__ == "__main__":  # how Streamlit runs a page; importing it (tests) renders nothing
    main()
