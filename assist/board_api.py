"""The read-and-triage API the supervisor board uses: calls (live and stored, filtered),
one call's events, the alert feed with acknowledge / assign / reopen, transcript search.

Live calls come from this server's memory, stored calls from the store; a call in both is
taken from memory (it is the fresher). Alert state (who acknowledged, who is assigned) lives
in the store, keyed by the alert event's call and seq, so every server behind one store and
every supervisor see the same state.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request

from assist.auth import Principal, guard, principal_of
from assist.cluster import remote_live_calls
from assist.store import CallQuery, StoreError, search_needle, transcript_hit

if TYPE_CHECKING:
    from assist.server import App

MAX_LIMIT = 2000
SCOPES = ("live", "stored", "all")
ALERT_FILTER_STATUSES = ("open", "acknowledged", "all")


def parse_time(value: str | None, name: str) -> float | None:
    """An ISO date or datetime (UTC unless it says otherwise), or epoch seconds."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(
            status_code=422,
            detail=f"{name}: {value!r} is not a date (2026-11-24), datetime or epoch seconds",
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _limit(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        raise HTTPException(status_code=422, detail=f"limit is 1..{MAX_LIMIT} and offset 0 or more")


def stored_summary(row: dict[str, Any]) -> dict[str, Any]:
    """A stored call in the same shape as a live call's listing."""
    facts = row.get("facts") or {}
    return {
        "call_id": row["call_id"],
        "agent_id": row.get("agent_id"),
        "mode": row.get("mode"),
        "protocol": row.get("protocol"),
        "channels": row.get("channels"),
        "language": row.get("language"),
        "status": row.get("status") or "ended",
        "ended_reason": row.get("ended_reason"),
        "instance_id": row.get("instance_id"),
        "started_at": row.get("started_at"),
        "duration_s": row.get("duration_s"),
        "score": row.get("score"),
        "alerts": row.get("alerts", 0),
        "critical_alerts": facts.get("critical_alerts", 0),
        "last_alert": None,
        "mood": {},
        "sources": row.get("sources") or [],
        "facts": facts,
    }


def _alert_out(
    ev: dict[str, Any],
    agent_id: str | None,
    call_status: str,
    state: dict[str, Any] | None,
) -> dict[str, Any]:
    st = state or {}
    return {
        **ev,
        "alert_id": f"{ev['call_id']}:{ev['seq']}",
        "agent_id": agent_id,
        "call_status": call_status,
        "state": {
            "status": st.get("status", "open"),
            "assignee": st.get("assignee"),
            "acked_by": st.get("acked_by"),
            "acked_at": st.get("acked_at"),
            "note": st.get("note"),
            "updated_by": st.get("updated_by"),
            "updated_at": st.get("updated_at"),
        },
    }


def request_user(request: Request) -> str:
    """Who did something (an edit, an acknowledgement, an audit): the token's label (or
    agent) with auth on; with auth off, ``X-Callwatch-User`` (the guard's admin is named so)."""
    p = getattr(request.state, "principal", None)
    if isinstance(p, Principal):
        return p.name
    return (request.headers.get("x-callwatch-user") or "").strip()[:256] or "anonymous"


def _own_agent(request: Request, agent: str | None) -> tuple[str | None, bool]:
    """(the agent filter to apply, whether anything can match): an agent token sees its
    own calls only, whatever ``agent`` it asks for."""
    own = principal_of(request).own_agent
    if own is None:
        return agent, True
    return own, agent in (None, "", own)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise HTTPException(status_code=422, detail="the body must be a JSON object") from exc
    if not isinstance(body, dict):
        raise HTTPException(status_code=422, detail="the body must be a JSON object")
    note = body.get("note")
    if note is not None and not isinstance(note, str):
        raise HTTPException(status_code=422, detail="'note' is text")
    return body


def add_board_routes(app: FastAPI) -> None:
    def cw_of(request: Request) -> App:
        cw: App = request.app.state.cw
        return cw

    @app.get("/v1/calls", dependencies=[guard("calls:read")])
    async def list_calls(
        request: Request,
        scope: str = "live",
        status: str | None = None,
        agent: str | None = None,
        mode: str | None = None,
        since: str | None = None,
        until: str | None = None,
        min_score: float | None = None,
        max_score: float | None = None,
        failed_rule: str | None = None,
        fired_rule: str | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> dict[str, Any]:
        """Calls, filtered. ``live`` (default): this server's calls, active first, the most
        critical first; ``stored`` / ``all``: newest first. An agent token lists its own."""
        if scope not in SCOPES:
            raise HTTPException(status_code=422, detail=f"scope is one of: {', '.join(SCOPES)}")
        _limit(limit, offset)
        agent, any_match = _own_agent(request, agent)
        if not any_match:
            return {"calls": [], "total": 0}
        cw = cw_of(request)
        query = CallQuery(
            status=status,
            agent=agent,
            mode=mode,
            since=parse_time(since, "since"),
            until=parse_time(until, "until"),
            min_score=min_score,
            max_score=max_score,
            failed_rule=failed_rule,
            fired_rule=fired_rule,
        )
        here = cw.config.instance_id
        live = []
        if scope != "stored":
            live = [{**c.listing(), "instance_id": here} for c in list(cw.calls.calls.values())]
            # calls live on the other instances behind the same store
            others = await asyncio.to_thread(remote_live_calls, cw.store, here, set(cw.calls.calls))
            live += [stored_summary(r) for r in others]
        out = [c for c in live if query.matches(c)]
        total = len(out)
        if scope != "live" and cw.store is not None and status != "active":
            # stored: what has finished (live calls are listed from memory, or above)
            stored = replace(
                query,
                finished=True,
                exclude=tuple(cw.calls.calls) if scope == "all" else (),
            )
            # rule filters look inside facts (Python); the rest page and count in SQL
            paged = stored.all_in_sql
            try:
                rows = await asyncio.to_thread(
                    cw.store.list_calls, stored, offset + limit if paged else None
                )
                found = [s for s in map(stored_summary, rows) if stored.matches(s)]
                total += (
                    await asyncio.to_thread(cw.store.count_calls, stored) if paged else len(found)
                )
            except StoreError as exc:
                raise HTTPException(status_code=503, detail=str(exc)) from exc
            out += found
        if scope == "live":
            out.sort(
                key=lambda c: (c["status"] != "active", -c["critical_alerts"], -c["started_at"])
            )
        else:
            out.sort(key=lambda c: -(c.get("started_at") or 0.0))
        return {"calls": out[offset : offset + limit], "total": total}

    @app.get("/v1/calls/{call_id}/events", dependencies=[guard("calls:read")])
    async def call_event_list(
        request: Request, call_id: str, types: str | None = None
    ) -> dict[str, Any]:
        """One call's events in seq order (``types``: a comma list), live or stored."""
        cw = cw_of(request)
        call = cw.calls.calls.get(call_id)
        if call is not None:
            evs = list(call.events)
        elif cw.store is not None:
            evs = await asyncio.to_thread(cw.store.events_for, call_id)
            if not evs and await asyncio.to_thread(cw.store.get_report, call_id) is None:
                raise HTTPException(status_code=404, detail=f"no call {call_id!r}")
        else:
            raise HTTPException(status_code=404, detail=f"no call {call_id!r}")
        wanted = {t.strip() for t in types.split(",") if t.strip()} if types else None
        return {"events": [e for e in evs if wanted is None or e["type"] in wanted]}

    async def all_alerts(
        cw: App, call_id: str | None, agent: str | None, since: float | None = None
    ) -> list[dict[str, Any]]:
        live_calls = [
            c
            for c in list(cw.calls.calls.values())
            if (call_id is None or c.call_id == call_id)
            and (agent is None or c.info.agent_id == agent)
        ]
        pairs: list[tuple[dict[str, Any], str | None, str]] = [
            (e, c.info.agent_id, "active" if c.active else "ended")
            for c in live_calls
            for e in list(c.events)
            if e["type"] == "alert"
        ]
        states: dict[tuple[str, int], dict[str, Any]] = {}
        if cw.store is not None:
            stored = await asyncio.to_thread(
                cw.store.alert_rows, call_id, agent, list(cw.calls.calls), since
            )
            pairs += [(e, a, "ended") for e, a in stored]
            states = await asyncio.to_thread(
                cw.store.alert_states, sorted({e["call_id"] for e, _, _ in pairs})
            )
        return [
            _alert_out(e, a, status, states.get((e["call_id"], e["seq"]))) for e, a, status in pairs
        ]

    @app.get("/v1/alerts", dependencies=[guard("alerts:read")])
    async def list_alerts(
        request: Request,
        status: str = "open",
        severity: str | None = None,
        rule: str | None = None,
        agent: str | None = None,
        call_id: str | None = None,
        audience: str | None = None,
        since: str | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> dict[str, Any]:
        """The alert feed, newest first, with what supervisors did about each alert (an
        agent token: its own calls' alerts)."""
        if status not in ALERT_FILTER_STATUSES:
            raise HTTPException(
                status_code=422, detail=f"status is one of: {', '.join(ALERT_FILTER_STATUSES)}"
            )
        _limit(limit, offset)
        agent, any_match = _own_agent(request, agent)
        if not any_match:
            return {
                "alerts": [],
                "total": 0,
                "counts": {"open": 0, "open_critical": 0, "acknowledged": 0},
            }
        t0 = parse_time(since, "since")
        try:
            alerts = await all_alerts(cw_of(request), call_id, agent, t0)
        except StoreError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        counts = {
            "open": sum(1 for a in alerts if a["state"]["status"] == "open"),
            "open_critical": sum(
                1
                for a in alerts
                if a["state"]["status"] == "open" and a.get("severity") == "critical"
            ),
            "acknowledged": sum(1 for a in alerts if a["state"]["status"] == "acknowledged"),
        }
        severities = {s.strip() for s in severity.split(",")} if severity else None
        out = [
            a
            for a in alerts
            if (status == "all" or a["state"]["status"] == status)
            and (severities is None or a.get("severity") in severities)
            and (rule is None or a.get("rule_id") == rule)
            and (audience is None or audience in (a.get("audience") or []))
            and (t0 is None or _epoch(a.get("emitted_at")) >= t0)
        ]
        out.sort(key=lambda a: (a.get("emitted_at") or "", a["seq"]), reverse=True)
        return {"alerts": out[offset : offset + limit], "total": len(out), "counts": counts}

    async def change_alert(
        request: Request, call_id: str, seq: int, **change: Any
    ) -> dict[str, Any]:
        cw = cw_of(request)
        if cw.store is None:
            raise HTTPException(status_code=503, detail="alert triage needs the store")
        alert = next((a for a in await all_alerts(cw, call_id, None) if a["seq"] == seq), None)
        if alert is None:
            raise HTTPException(status_code=404, detail=f"no alert {call_id}:{seq}")
        try:
            state = await asyncio.to_thread(
                cw.store.set_alert_state, call_id, seq, request_user(request), **change
            )
        except StoreError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        return _alert_out(
            {k: v for k, v in alert.items() if k not in ("alert_id", "agent_id", "call_status")},
            alert["agent_id"],
            alert["call_status"],
            state,
        )

    @app.post("/v1/alerts/{call_id}/{seq}/ack", dependencies=[guard("alerts:triage")])
    async def ack_alert(request: Request, call_id: str, seq: int) -> dict[str, Any]:
        body = await _json_body(request)
        return await change_alert(
            request, call_id, seq, status="acknowledged", note=body.get("note")
        )

    @app.post("/v1/alerts/{call_id}/{seq}/reopen", dependencies=[guard("alerts:triage")])
    async def reopen_alert(request: Request, call_id: str, seq: int) -> dict[str, Any]:
        body = await _json_body(request)
        return await change_alert(request, call_id, seq, status="open", note=body.get("note"))

    @app.post("/v1/alerts/{call_id}/{seq}/assign", dependencies=[guard("alerts:triage")])
    async def assign_alert(request: Request, call_id: str, seq: int) -> dict[str, Any]:
        body = await _json_body(request)
        assignee = body.get("assignee")
        if not isinstance(assignee, str) or not assignee.strip():
            raise HTTPException(
                status_code=422, detail="'assignee' is the name to assign the alert to"
            )
        return await change_alert(
            request, call_id, seq, assignee=assignee.strip()[:256], note=body.get("note")
        )

    @app.get("/v1/search", dependencies=[guard("calls:read")])
    async def search(
        request: Request, q: str = "", agent: str | None = None, limit: int = 50
    ) -> dict[str, Any]:
        """Final transcript lines containing ``q`` (any case), live calls first (an agent
        token: in its own calls)."""
        _limit(limit, 0)
        needle = search_needle(q)
        if not needle:
            raise HTTPException(status_code=422, detail="give q: the words to look for")
        agent, any_match = _own_agent(request, agent)
        if not any_match:
            return {"hits": [], "total": 0}
        cw = cw_of(request)
        hits = [
            transcript_hit(e, c.info.agent_id, "live")
            for c in list(cw.calls.calls.values())
            if agent is None or c.info.agent_id == agent
            for e in list(c.events)
            if e["type"] == "transcript.final" and needle in str(e.get("text", "")).lower()
        ]
        if cw.store is not None and len(hits) < limit:
            try:
                hits += await asyncio.to_thread(
                    cw.store.search_transcripts,
                    needle,
                    agent,
                    limit - len(hits),
                    list(cw.calls.calls),
                )
            except StoreError as exc:
                raise HTTPException(status_code=503, detail=str(exc)) from exc
        return {"hits": hits[:limit], "total": len(hits[:limit])}


def _epoch(iso: str | None) -> float:
    if not iso:
        return 0.0
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
