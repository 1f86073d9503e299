"""One call's report as a file for supervisors and compliance: JSON (everything, events
included), a CSV call timeline for spreadsheets, or one printable HTML page (print it to
PDF from the browser; no PDF dependency needed).

    GET /v1/calls/{call_id}/export?format=json|csv|html
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Query, Request, Response

from assist.auth import guard
from assist.cluster import remote_call
from assist.report import call_to_csv, call_to_html, call_to_json
from assist.store import StoreError

if TYPE_CHECKING:
    from assist.server import App

# format -> (renderer, media type, file extension)
FORMATS: dict[str, tuple[Callable[[dict[str, Any]], str], str, str]] = {
    "json": (call_to_json, "application/json", "json"),
    "csv": (call_to_csv, "text/csv", "csv"),
    "html": (call_to_html, "text/html", "html"),
}


def safe_filename(call_id: str, ext: str) -> str:
    """A download name that is safe in a quoted header and on any file system: call ids
    come from the telephony side and may hold anything."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", call_id).strip("._")[:120]
    return f"{stem or 'call'}.{ext}"


def render(report: dict[str, Any], fmt: str) -> str:
    """The report in ``fmt`` (one of FORMATS)."""
    return FORMATS[fmt][0](report)


def _stored_report(cw: App, call_id: str) -> dict[str, Any] | None:
    """A finished call from the store, with its events (blocking: run off the loop)."""
    if cw.store is None:
        return None
    report = remote_call(cw.store, call_id)  # ended, interrupted, or live elsewhere
    if report is None:
        return None
    return {
        **report,
        "status": report.get("status") or "ended",
        "events": cw.store.events_for(call_id),
    }


def chain_evidence(cw: App, call_id: str) -> dict[str, Any] | None:
    """What an auditor keeps to prove later that nothing was changed: the audit chain's
    head (``callwatch verify --head HASH`` checks it is still in the chain) and this call's
    own chain records (blocking: run off the loop)."""
    if cw.store is None:
        return None
    return {
        "head": cw.store.chain_head(),
        "call_records": [
            {k: r.get(k) for k in ("id", "kind", "ref", "content_sha256", "hash", "created_at")}
            for r in cw.store.chain_for_call(call_id)
        ],
        "verify": "callwatch verify --head <head.hash>",
    }


def _live_report(cw: App, call_id: str) -> dict[str, Any] | None:
    """A call this server is running (or ran recently): its report so far. The detail
    adds what a report of an unfinished call lacks (status, the running scorecard)."""
    call = cw.calls.calls.get(call_id)
    if call is None:
        return None
    detail = call.detail()
    keep = ("status", "ended_reason", "scorecard", "silences", "diarization")
    return {**call.report(), **{k: detail[k] for k in keep if k in detail}}


async def report_for(cw: App, call_id: str) -> dict[str, Any]:
    """The call's report, live first, else stored; 404 when neither knows the call."""
    report = _live_report(cw, call_id)  # on the loop: live calls belong to it
    if report is None:
        try:
            report = await asyncio.to_thread(_stored_report, cw, call_id)
        except StoreError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
    if report is None:
        raise HTTPException(status_code=404, detail=f"no call {call_id!r}")
    try:
        chain = await asyncio.to_thread(chain_evidence, cw, call_id)
    except StoreError as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from exc
    return {**report, "audit_chain": chain} if chain else report


def add_export_routes(app: FastAPI) -> None:
    @app.get("/v1/calls/{call_id}/export", dependencies=[guard("calls:read")])
    async def export_call(
        request: Request, call_id: str, fmt: str = Query("json", alias="format")
    ) -> Response:
        """Download one call's report as json, csv or html."""
        key = fmt.strip().lower()
        if key not in FORMATS:
            raise HTTPException(
                status_code=422,
                detail=f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}",
            )
        report = await report_for(request.app.state.cw, call_id)
        body = await asyncio.to_thread(render, report, key)
        _, media_type, ext = FORMATS[key]
        return Response(
            content=body.encode("utf-8"),
            media_type=f"{media_type}; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{safe_filename(call_id, ext)}"',
                "X-Content-Type-Options": "nosniff",
                # the transcript is untrusted text: nothing in the file may load or run
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
                "Cache-Control": "no-store",
            },
        )
