"""Call: what happened on one call, in one page. The two-sided transcript (live partial lines
too), the talk/silence/mood timeline with the rule hits, the scorecard, the alerts with "why
did this fire?", the recording and the exports. ``?call=ID`` picks the call, ``&t=SECONDS``
the moment to highlight; a live call refreshes itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from dashboard.client import CallwatchClient, ServerError
from dashboard.common import (
    SPEAKER_LABEL,
    agent_name,
    call_link,
    clock,
    duration,
    error_text,
    get_client,
    has_cjk,
    md_escape,
    refresh_s,
    setup_page,
    severity_markdown,
    show_error,
    wall_time,
)
from dashboard.timeline import timeline_panels

SPEAKER_MD_COLOR = {"agent": "blue", "customer": "violet"}
EXPORTS = [
    ("json", "JSON", "application/json"),
    ("csv", "CSV", "text/csv"),
    ("html", "HTML", "text/html"),
]
PICK_KEY = "call_pick"


# -- pure helpers (tested without Streamlit) ---------------------------------------------------
def query_time(raw: str | None) -> float | None:
    """``&t=`` as seconds (None when absent or not a number)."""
    try:
        t = float(raw) if raw not in (None, "") else None
    except ValueError:
        return None
    return t if t is None or t >= 0 else None


def highlighted_index(transcript: list[dict[str, Any]], t: float | None) -> int | None:
    """The line being spoken at ``t``, else the last one started before it."""
    if t is None or not transcript:
        return None
    best: int | None = None
    for i, line in enumerate(transcript):
        start, end = float(line.get("t") or 0), float(line.get("t_end") or 0)
        if start <= t <= end:
            return i
        if start <= t:
            best = i
    return best if best is not None else 0


def live_partials(
    transcript: list[dict[str, Any]], partials: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The newest partial line per speaker that starts after that speaker's last final line
    (what is being said right now), in time order."""
    last_final: dict[str, float] = {}
    for line in transcript:
        spk = str(line.get("speaker"))
        last_final[spk] = max(last_final.get(spk, -1.0), float(line.get("t") or 0))
    newest: dict[str, dict[str, Any]] = {}
    for p in partials:
        spk = str(p.get("speaker"))
        if float(p.get("t") or 0) <= last_final.get(spk, -1.0) + 0.05 or not p.get("text"):
            continue
        if spk not in newest or int(p.get("seq") or 0) >= int(newest[spk].get("seq") or 0):
            newest[spk] = p
    return sorted(newest.values(), key=lambda p: float(p.get("t") or 0))


def transcript_markdown(
    line: dict[str, Any], highlight: bool = False, partial: bool = False
) -> str:
    """One transcript line as markdown: coloured speaker, call time, escaped text."""
    spk = str(line.get("speaker") or "?")
    color = SPEAKER_MD_COLOR.get(spk, "gray")
    who = SPEAKER_LABEL.get(spk, spk.capitalize())
    raw = line.get("text") or ""
    text = md_escape(raw)
    when = clock(line.get("t"))
    if partial:  # in grey; in italics too, except Chinese (CJK faces have no italics)
        said = f"{text} …" if has_cjk(raw) else f"*{text} …*"
        return f":{color}[**{who}**] :gray[{when} · {said}]"
    if highlight:
        return f"👉 :{color}[**{who}**] :gray[{when}] :orange-background[{text}]"
    return f":{color}[**{who}**] :gray[{when}] {text}"


def talk_split(detail: dict[str, Any]) -> dict[str, float]:
    """Seconds of talk per speaker: the stored stats, else summed transcript lines."""
    stats = detail.get("stats") or {}
    if isinstance(stats.get("talk_s"), dict) and stats["talk_s"]:
        return {k: float(v) for k, v in stats["talk_s"].items()}
    out: dict[str, float] = {}
    for line in detail.get("transcript") or []:
        spk = str(line.get("speaker"))
        out[spk] = out.get(spk, 0.0) + max(
            0.0, float(line.get("t_end") or 0) - float(line.get("t") or 0)
        )
    return out


# -- sections ----------------------------------------------------------------------------------
def header(detail: dict[str, Any]) -> None:
    live = detail.get("status") == "active"
    st.title(f"📞 {md_escape(agent_name(detail.get('agent_id')))}'s call")
    badge = ":green-badge[● live]" if live else ":gray-badge[ended]"
    facts = [
        badge,
        f":gray[{md_escape(detail.get('call_id'))}]",
        f"started {wall_time(detail.get('started_at'))}",
        duration(detail.get("duration_s")),
        str(detail.get("protocol") or detail.get("mode") or ""),
    ]
    if detail.get("ended_reason"):
        facts.append(f"ended: {detail['ended_reason']}")
    st.markdown(" · ".join(f for f in facts if f))
    card = detail.get("scorecard") or {}
    alerts = detail.get("alerts") or []
    crit = sum(1 for a in alerts if a.get("severity") == "critical")
    mood = (detail.get("mood") or {}).get("customer") or {}
    split = talk_split(detail)
    total_talk = sum(split.values()) or 1.0
    longest = max(
        (float(s.get("duration") or 0) for s in detail.get("silences") or []), default=0.0
    )
    score = card.get("score")
    anger = mood.get("anger_index")
    m = st.columns(5)
    m[0].metric(
        "Score" + (" so far" if live else ""),
        f"{float(score):.0f}" if isinstance(score, int | float) else "-",
        border=True,
    )
    m[1].metric(
        "Alerts",
        len(alerts),
        delta=f"{crit} critical" if crit else None,
        delta_color="inverse",
        delta_arrow="off",
        border=True,
    )
    m[2].metric(
        "Caller mood",
        str(mood.get("label") or "-"),
        delta=f"anger {float(anger):.2f}" if isinstance(anger, int | float) else None,
        delta_color="inverse" if mood.get("escalated") else "off",
        delta_arrow="off",
        border=True,
    )
    m[3].metric(
        "Agent talk share",
        f"{100 * split.get('agent', 0) / total_talk:.0f}%",
        help="Share of the talk time that is the agent's",
        border=True,
    )
    m[4].metric("Longest silence", f"{longest:.0f} s" if longest else "none", border=True)


def transcript_section(client: CallwatchClient, detail: dict[str, Any], t: float | None) -> None:
    st.subheader("Transcript")
    lines = list(detail.get("transcript") or [])
    partials: list[dict[str, Any]] = []
    if detail.get("status") == "active":
        try:
            partials = live_partials(
                lines, client.call_events(str(detail["call_id"]), types=["transcript.partial"])
            )
        except ServerError:
            partials = []  # the finals still show; partials come back on the next refresh
    if not lines and not partials:
        st.info("Nothing said yet." if detail.get("status") == "active" else "No transcript.")
        return
    mark = highlighted_index(lines, t)
    with st.container(border=True):
        for i, line in enumerate(lines):
            st.markdown(transcript_markdown(line, highlight=i == mark))
        for p in partials:
            st.markdown(transcript_markdown(p, partial=True))


def scorecard_section(detail: dict[str, Any]) -> None:
    st.subheader("Scorecard")
    card = detail.get("scorecard") or {}
    rules = card.get("rules") or []
    if not rules:
        st.caption("No rules scored yet.")
        return
    failed = [r for r in rules if r.get("status") == "failed" or r.get("passed") is False]
    score = card.get("score")
    score_text = f"{float(score):.0f}" if isinstance(score, int | float) else "-"
    st.markdown(
        f"**Score {score_text}** · {len(rules) - len(failed)} passed · "
        + (f":red[**{len(failed)} failed**]" if failed else "0 failed")
    )
    rows = []
    for r in rules:
        status = str(r.get("status") or ("passed" if r.get("passed") else "failed"))
        icon = {"passed": "✅", "failed": "❌"}.get(status, "➖")
        rows.append(
            {
                "Result": f"{icon} {status}",
                "Rule": r.get("rule_id"),
                "Weight": r.get("weight"),
                "Alerts": r.get("alerts", 0),
                "What it checks": r.get("description") or "",
            }
        )
    rows.sort(key=lambda r: (not str(r["Result"]).startswith("❌"), -(r["Weight"] or 0)))
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        height=35 * (len(rows) + 1) + 3,  # every rule in view, no inner scrolling
        column_config={
            "Result": st.column_config.TextColumn(width="small"),
            "Weight": st.column_config.NumberColumn(format="%.0f", width=60),
            "Alerts": st.column_config.NumberColumn(width=60),
        },
    )


def explain_result(result: dict[str, Any]) -> None:
    st.markdown(f"**{md_escape(result.get('verdict') or '')}**")
    if result.get("description"):
        st.caption(
            f"{result.get('rule_id')} ({result.get('kind')}): {md_escape(result['description'])}"
        )
    findings = result.get("findings") or []
    if findings:
        st.markdown("\n".join(f"- {md_escape(f)}" for f in findings))
    else:
        st.caption("Nothing in the call relates to this rule.")


def alerts_section(client: CallwatchClient, detail: dict[str, Any]) -> None:
    st.subheader("Alerts")
    alerts = sorted(detail.get("alerts") or [], key=lambda a: float(a.get("t") or 0))
    if not alerts:
        st.caption("No alerts on this call.")
        return
    call_id = str(detail["call_id"])
    for a in alerts:
        rule = str(a.get("rule_id"))
        key = f"explain-{call_id}-{rule}"
        with st.container(border=True):
            st.markdown(
                f"{severity_markdown(a.get('severity'))} [{clock(a.get('t'))}]"
                f"({call_link(call_id, a.get('t'))}) · `{rule}`  \n{md_escape(a.get('message'))}"
            )
            if st.button(
                "Why did this fire?", key=f"why-{call_id}-{a.get('seq')}", type="tertiary"
            ):
                try:
                    st.session_state[key] = client.explain(call_id, rule)
                except ServerError as exc:
                    st.session_state[key] = {"verdict": error_text(exc)}
            if key in st.session_state:
                explain_result(st.session_state[key])


UTF8_BOM = b"\xef\xbb\xbf"


def spreadsheet_csv(data: bytes) -> bytes:
    """The server's UTF-8 CSV with a byte-order mark: without one, Excel opens a downloaded
    CSV in the computer's legacy code page and Chinese (any non-ASCII text, even the “quotes”
    around evidence) turns into mojibake. The API's CSV stays without (programs read it)."""
    return data if data.startswith(UTF8_BOM) else UTF8_BOM + data


def _exporter(client: CallwatchClient, call_id: str, fmt: str) -> Callable[[], bytes]:
    def fetch() -> bytes:
        data = client.export(call_id, fmt)
        return spreadsheet_csv(data) if fmt == "csv" else data

    return fetch


def media_section(client: CallwatchClient, detail: dict[str, Any]) -> None:
    call_id = str(detail["call_id"])
    live = detail.get("status") == "active"
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Recording")
        if live:
            st.caption("No recording kept for live calls.")
        else:
            try:
                audio = client.audio(call_id)
            except ServerError as exc:
                show_error(exc)
                audio = None
            else:
                if audio is None:
                    st.caption("No recording kept for this call.")
            if audio is not None:
                st.audio(audio[0], format=audio[1])
    with right:
        st.subheader("Export")
        cols = st.columns(len(EXPORTS))
        for col, (fmt, label, mime) in zip(cols, EXPORTS, strict=True):
            col.download_button(
                label,
                data=_exporter(client, call_id, fmt),  # fetched on click, not on every refresh
                file_name=f"{call_id}.{fmt}",
                mime=mime,
                key=f"export-{fmt}",
                icon=":material/download:",
                on_click="ignore",
            )


def render_call(client: CallwatchClient, call_id: str, t: float | None) -> str | None:
    """The whole call view (a live call re-renders it every few seconds); the call's status,
    None when it could not be fetched."""
    try:
        detail = client.call(call_id)
    except ServerError as exc:
        show_error(exc)
        return None
    events: list[dict[str, Any]] = []
    try:
        events = client.call_events(call_id, types=["emotion", "silence", "alert"])
    except ServerError as exc:
        if exc.status != 404:
            show_error(exc)
    header(detail)
    for panel in timeline_panels(detail, events, t_mark=t):
        st.altair_chart(panel, width="stretch")
    left, right = st.columns([3, 2], gap="large")
    with left:
        transcript_section(client, detail, t)
    with right:
        alerts_section(client, detail)
        scorecard_section(detail)
    media_section(client, detail)
    return str(detail.get("status") or "")


def _pick() -> None:
    picked = st.session_state.get(PICK_KEY)
    if picked:
        st.query_params["call"] = picked
        st.query_params.pop("t", None)


def picker(client: CallwatchClient, current: str | None) -> None:
    """A selectbox of recent calls (live first)."""
    try:
        calls = client.calls(scope="all", limit=200)
    except ServerError as exc:
        show_error(exc)
        return
    if not calls:
        st.info(
            "No calls yet: none live and none stored. Calls appear here as they start.", icon="📭"
        )
        return
    calls.sort(key=lambda c: (c.get("status") != "active", -float(c.get("started_at") or 0)))
    labels = {
        str(c["call_id"]): (
            f"{'🟢 live' if c.get('status') == 'active' else '⚪ ended'} · "
            f"{agent_name(c.get('agent_id'))} · {wall_time(c.get('started_at'))} · "
            f"{duration(c.get('duration_s'))} · {c['call_id']}"
        )
        for c in calls
    }
    ids = list(labels)
    st.selectbox(
        "Open a call",
        ids,
        index=ids.index(current) if current in ids else None,
        format_func=lambda cid: labels.get(cid, cid),
        placeholder="Pick a recent call",
        key=PICK_KEY,
        on_change=_pick,
    )


def main() -> None:
    setup_page("Call", "📞")
    client = get_client()
    call_id = st.query_params.get("call")
    t = query_time(st.query_params.get("t"))
    if not call_id:
        st.title("📞 Call")
        picker(client, None)
        return
    try:
        first = client.call(call_id)
    except ServerError as exc:
        st.title("📞 Call")
        if exc.status == 404:
            st.warning(f"No call {md_escape(call_id)} on the server(s). Pick another one below.")
            picker(client, None)
        else:
            show_error(exc)
        return
    every = refresh_s() if first.get("status") == "active" else None

    @st.fragment(run_every=every)
    def view() -> None:
        status = render_call(client, call_id, t)
        if every is not None and status == "ended":
            st.rerun()  # the call just ended: draw it once more, without the timer

    view()
    with st.expander("Open another call"):
        picker(client, call_id)


if __name__ == "__main__":  # how Streamlit runs a page; importing it (tests) renders nothing
    main()
