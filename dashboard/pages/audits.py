"""Audits: compliance audits recordings in bulk (uploads or a server folder), watches the jobs
run, filters the audited calls and searches what was said in them, each row a link to the
Call page as the evidence.

The server does the work (``/v1/audits``); this page only starts, cancels and shows. While a
job runs, only the jobs panel refreshes (a fragment every ``REFRESH_S``), not the page; when
the last job ends the whole page reruns once so the results table picks up the new calls.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import insights
from dashboard.client import ServerError
from dashboard.common import (
    call_link,
    clock,
    duration,
    get_client,
    iso_time,
    setup_page,
    show_error,
    wall_time,
)

REFRESH_S = 2.0
RUNNING = ("queued", "running")
ANY = "(any)"
CHANNELS = {
    "auto": None,
    "agent on the left channel": "left",
    "agent on the right channel": "right",
}
STATUS_ICON = {
    "queued": "⏳",
    "running": "▶️",
    "done": "✅",
    "failed": "❌",
    "cancelled": "⏹️",
    "skipped": "⏭️",
}
SHOWN_JOBS = 10

# session_state keys (widget keys are also what the tests use)
AGENT = "audit_agent"
CHANNEL = "audit_channel"
UPLOAD_GEN = "audit_upload_gen"  # bumped after a start so the uploader empties
FOLDER = "audit_folder"
FILES = "audit_files"
FAILED_RULE = "audit_failed_rule"
AGENT_FILTER = "audit_agent_filter"
DATES = "audit_dates"
SCORES = "audit_scores"
QUERY = "audit_q"
NOTICE = "audit_notice"  # (kind, text | ServerError) from the last start/cancel, shown once


def _upload_key() -> str:
    return f"audit_upload_{st.session_state.get(UPLOAD_GEN, 0)}"


def _agent_args() -> tuple[str | None, str | None]:
    agent = str(st.session_state.get(AGENT) or "").strip() or None
    channel = CHANNELS.get(str(st.session_state.get(CHANNEL) or "auto"))
    return agent, channel


def _started(job: Mapping[str, Any]) -> str:
    n = int(job.get("total") or 0)
    return f"Audit started: job {job.get('job_id')} ({n} file{'s' if n != 1 else ''})."


# -- actions (button callbacks) ----------------------------------------------------------------
def _start_upload() -> None:
    uploaded = st.session_state.get(_upload_key()) or []
    if not uploaded:
        st.session_state[NOTICE] = ("warning", "Choose one or more recordings first.")
        return
    agent, channel = _agent_args()
    try:
        job = get_client().upload_audit(
            [(f.name, f.getvalue()) for f in uploaded], agent_id=agent, agent_channel=channel
        )
    except ServerError as exc:
        st.session_state[NOTICE] = ("error", exc)
        return
    st.session_state[UPLOAD_GEN] = int(st.session_state.get(UPLOAD_GEN, 0)) + 1
    st.session_state[NOTICE] = ("success", _started(job))


def _start_folder(folder: str) -> None:
    files = list(st.session_state.get(FILES) or []) or None
    agent, channel = _agent_args()
    try:
        job = get_client().start_folder_audit(
            folder, files=files, agent_id=agent, agent_channel=channel
        )
    except ServerError as exc:
        st.session_state[NOTICE] = ("error", exc)
        return
    st.session_state[FILES] = []
    st.session_state[NOTICE] = ("success", _started(job))


def _cancel(job_id: str) -> None:
    try:
        get_client().cancel_audit(job_id)
    except ServerError as exc:
        st.session_state[NOTICE] = ("error", exc)
        return
    st.session_state[NOTICE] = ("info", f"Job {job_id} cancelled; files already audited stay.")


def show_notice() -> None:
    notice = st.session_state.pop(NOTICE, None)
    if notice is None:
        return
    kind, payload = notice
    if isinstance(payload, ServerError):
        show_error(payload)
    elif kind == "success":
        st.success(payload)
    elif kind == "warning":
        st.warning(payload)
    else:
        st.info(payload)


# -- tables -------------------------------------------------------------------------------------
def files_table(job: Mapping[str, Any]) -> pd.DataFrame:
    rows = []
    for f in job.get("files") or []:
        cid = f.get("call_id")
        rows.append(
            {
                "file": f.get("name"),
                "status": f"{STATUS_ICON.get(str(f.get('status')), '')} {f.get('status')}",
                "progress": float(f.get("progress") or 0.0),
                "score": f.get("score"),
                "alerts": f.get("alerts"),
                "call": call_link(str(cid)) if cid else None,
                "error": f.get("error") or "",
            }
        )
    return pd.DataFrame(
        rows, columns=["file", "status", "progress", "score", "alerts", "call", "error"]
    )


def results_table(calls: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    rows = []
    for c in calls:
        sources = c.get("sources") or []
        rows.append(
            {
                "call": call_link(str(c.get("call_id"))),
                "call_id": c.get("call_id"),
                "started": wall_time(c.get("started_at")),
                "agent": c.get("agent_id") or "",
                "duration": duration(c.get("duration_s")),
                "score": c.get("score"),
                "alerts": c.get("alerts"),
                "critical": c.get("critical_alerts"),
                "failed rules": ", ".join(sorted(insights.failed_rules_of(c))),
                "recording": ", ".join(Path(str(s)).name for s in sources),
            }
        )
    cols = [
        "call",
        "call_id",
        "started",
        "agent",
        "duration",
        "score",
        "alerts",
        "critical",
        "failed rules",
        "recording",
    ]
    return pd.DataFrame(rows, columns=cols)


def hits_table(hits: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    rows = [
        {
            "call": call_link(str(h.get("call_id")), h.get("t")),
            "call_id": h.get("call_id"),
            "agent": h.get("agent_id") or "",
            "mode": h.get("mode"),
            "speaker": h.get("speaker"),
            "at": clock(h.get("t")),
            "line": h.get("text"),
        }
        for h in hits
    ]
    return pd.DataFrame(rows, columns=["call", "call_id", "agent", "mode", "speaker", "at", "line"])


LINK_COLUMNS = {
    "call": st.column_config.LinkColumn("call", display_text=r"call=([^&]+)"),
    "call_id": None,  # in the frame for tests and exports; the link shows it
}


# -- sections -----------------------------------------------------------------------------------
def start_section() -> None:
    st.subheader("Start an audit")
    c1, c2 = st.columns(2)
    c1.text_input("Agent id (optional)", key=AGENT, help="Whose calls these are")
    c2.selectbox(
        "Agent channel",
        list(CHANNELS),
        key=CHANNEL,
        help="Stereo recordings: which side is the agent. Auto finds the voices on mono files.",
    )
    tab_upload, tab_folder = st.tabs(["Upload recordings", "Server folder"])
    with tab_upload:
        uploaded = st.file_uploader(
            "Recordings (wav, flac, mp3)",
            type=["wav", "flac", "mp3"],
            accept_multiple_files=True,
            key=_upload_key(),
        )
        n = len(uploaded or [])
        st.button(
            f"Audit {n} uploaded file{'s' if n != 1 else ''}" if n else "Audit uploaded files",
            key="audit_upload_start",
            type="primary",
            disabled=not n,
            on_click=_start_upload,
        )
    with tab_folder:
        folder_picker()
    show_notice()


def folder_picker() -> None:
    try:
        folders = get_client().audit_folders()
    except ServerError as exc:
        show_error(exc)
        return
    if not folders:
        st.info(
            "The server has no recording folders: start it with `--audit-dir DIR` (default "
            "$CALLWATCH_HOME/recordings)."
        )
        return
    by_name = {str(f.get("name")): f for f in folders}
    names = list(by_name)
    if st.session_state.get(FOLDER) not in names:
        st.session_state[FOLDER] = names[0]
    name = str(
        st.selectbox(
            "Folder",
            names,
            key=FOLDER,
            format_func=lambda n: f"{n} ({len(by_name[n].get('files') or [])} recordings)",
        )
    )
    files = [str(f.get("path")) for f in by_name[name].get("files") or []]
    if not files:
        st.info("This folder holds no recordings.")
        return
    chosen = st.multiselect(
        f"Recordings (none chosen: all {len(files)})",
        files,
        key=FILES,
    )
    n = len(chosen) or len(files)
    st.button(
        f"Audit {n} recording{'s' if n != 1 else ''}",
        key="audit_folder_start",
        type="primary",
        on_click=_start_folder,
        args=(name,),
    )


def job_card(job: Mapping[str, Any]) -> None:
    status = str(job.get("status"))
    job_id = str(job.get("job_id"))
    with st.container(border=True):
        head, action = st.columns([5, 1])
        who = job.get("created_by") or "-"
        agent = f" · agent {job['agent_id']}" if job.get("agent_id") else ""
        head.markdown(f"{STATUS_ICON.get(status, '')} **Job {job_id}** · {status}")
        head.caption(f"started {iso_time(job.get('created_at'))} by {who}{agent}")
        if status in RUNNING:
            action.button("Cancel", key=f"audit_cancel_{job_id}", on_click=_cancel, args=(job_id,))
        total, done, failed = (int(job.get(k) or 0) for k in ("total", "done", "failed"))
        text = f"{done} of {total} done"
        if failed:
            text += f", {failed} failed"
        if status in RUNNING:
            if job.get("current"):
                text += f" · now: {job['current']}"
            if job.get("eta_s") is not None:
                text += f" · about {duration(job['eta_s'])} left"
        st.progress(min(1.0, max(0.0, float(job.get("progress") or 0.0))), text=text)
        st.dataframe(
            files_table(job),
            hide_index=True,
            column_config={
                "progress": st.column_config.ProgressColumn(
                    "progress", min_value=0.0, max_value=1.0, format="percent"
                ),
                "call": st.column_config.LinkColumn("call", display_text=r"call=([^&]+)"),
            },
        )


def jobs_section(running_at_start: bool) -> None:
    """The jobs (newest first) with progress; a fragment that reruns itself while any runs."""

    @st.fragment(run_every=REFRESH_S if running_at_start else None)
    def panel() -> None:
        show_notice()  # a Cancel clicked here reruns only this panel
        try:
            jobs = get_client().audit_jobs()
        except ServerError as exc:
            show_error(exc)
            return
        running = [j for j in jobs if j.get("status") in RUNNING]
        if running_at_start and not running:
            st.rerun(scope="app")  # the last job ended: stop refreshing, show its results
        if not jobs:
            st.info("No audits yet: upload recordings or pick a folder.")
            return
        if running:
            total = sum(int(j.get("total") or 0) for j in running)
            finished = sum(int(j.get("done") or 0) + int(j.get("failed") or 0) for j in running)
            # files weighted by their own progress, so a long first file still moves the bar
            moved = sum(float(j.get("progress") or 0.0) * int(j.get("total") or 0) for j in running)
            etas = [float(j["eta_s"]) for j in running if j.get("eta_s") is not None]
            eta = f" · about {duration(max(etas))} left" if etas else ""
            st.progress(
                min(1.0, moved / total) if total else 0.0,
                text=f"Running: {finished} of {total} files done{eta}",
            )
        for job in jobs[:SHOWN_JOBS]:
            job_card(job)
        if len(jobs) > SHOWN_JOBS:
            st.caption(f"{len(jobs) - SHOWN_JOBS} older jobs not shown.")

    st.subheader("Jobs")
    panel()


def _date_range() -> tuple[dt.date | None, dt.date | None]:
    value = st.session_state.get(DATES) or ()
    if isinstance(value, dt.date):
        return value, value
    picked = [d for d in value if isinstance(d, dt.date)]
    start = picked[0] if picked else None
    end = picked[1] if len(picked) > 1 else None
    return start, end


def results_section() -> None:
    st.subheader("Audited calls")
    client = get_client()
    try:
        audited = client.calls(scope="stored", mode="audit", limit=2000)
    except ServerError as exc:
        show_error(exc)
        return
    if not audited:
        st.info("No audited calls yet: upload recordings or pick a folder.")
        return
    failed_rules = sorted({r for c in audited for r in insights.failed_rules_of(c)})
    agents = insights.agents_of(audited)
    c1, c2, c3, c4 = st.columns(4)
    failed = c1.selectbox("Failed rule", [ANY, *failed_rules], key=FAILED_RULE)
    agent = c2.selectbox("Agent", [ANY, *agents], key=AGENT_FILTER)
    c3.date_input("Started (UTC days)", value=[], key=DATES)
    lo, hi = c4.slider("Score", 0, 100, (0, 100), key=SCORES)
    start, end = _date_range()

    filters: dict[str, Any] = {}
    if failed != ANY:
        filters["failed_rule"] = failed
    if agent != ANY:
        filters["agent"] = agent if agent != insights.NO_AGENT else None
    if start:
        filters["since"] = start.isoformat()
    if end:
        # the server's "until" is on started_at; the day after covers the whole end day and
        # the exact cut is made below
        filters["until"] = (end + dt.timedelta(days=1)).isoformat()
    if (lo, hi) != (0, 100):
        filters["min_score"], filters["max_score"] = lo, hi
    listed = audited
    if filters:
        try:
            listed = client.calls(scope="stored", mode="audit", limit=2000, **filters)
        except ServerError as exc:
            show_error(exc)
            return
    # exact UTC days, and "(no agent)", which the server cannot filter on
    rows = insights.filter_calls(listed, start, end, [agent] if agent != ANY else None)
    if not rows:
        st.info("No audited calls match these filters.")
        return
    st.caption(f"{len(rows)} of {len(audited)} audited calls")
    st.dataframe(
        results_table(rows),
        hide_index=True,
        column_config={
            **LINK_COLUMNS,
            "score": st.column_config.NumberColumn("score", format="%.1f"),
        },
    )


def search_section() -> None:
    st.subheader("Search transcripts")
    q = st.text_input(
        "Words said on a call",
        key=QUERY,
        placeholder="e.g. cancel my account, or 退款",
        help=(
            "Finds lines of live and stored calls that contain these words (any case). "
            "Chinese: type the characters as they are written, without spaces."
        ),
    )
    if not q.strip():
        return
    try:
        hits = get_client().search(q.strip(), limit=50)
    except ServerError as exc:
        show_error(exc)
        return
    if not hits:
        st.info(f"No line says “{q.strip()}”.")
        return
    st.caption(
        f"{len(hits)} line{'s' if len(hits) != 1 else ''} (at most 50); open a call at the line"
    )
    st.dataframe(hits_table(hits), hide_index=True, column_config=LINK_COLUMNS)


def page() -> None:
    setup_page("Audits", "🗂️")
    st.title("🗂️ Audits")
    st.caption(
        "Audit recordings with the running rules: each file becomes a stored call with its "
        "scorecard, alerts and transcript as evidence."
    )
    try:
        jobs = get_client().audit_jobs()
    except ServerError as exc:
        show_error(exc)  # the server is down or slow: nothing below would load either
        return
    start_section()
    jobs_section(any(j.get("status") in RUNNING for j in jobs))
    results_section()
    search_section()


page()
