"""``callwatch serve``: the live sidecar's HTTP and WebSocket API (FastAPI).

Ingest (one WebSocket per call):
    /v1/ingest/twilio      Twilio Media Streams
    /v1/ingest/audiohook   Genesys Cloud AudioHook
    /v1/ingest/raw         raw PCM with a JSON start message
Consume:
    GET /agent                         the agent panel (assist/web/)
    WS  /v1/agents/{agent_id}/events   everything about that agent's calls (token: see below)
    GET /v1/agents/{agent_id}/session  check an agent's token; the agent's active calls
    WS  /v1/calls/{call_id}/events     one call (supervisor drill-down)
    GET /v1/calls/{call_id}            transcript, alerts, scorecard
Supervisor board (assist/board_api.py, assist/audit_api.py, assist/export.py):
    GET /v1/calls (live, stored, filtered), GET /v1/calls/{id}/events, GET /v1/alerts,
    POST /v1/alerts/{call_id}/{seq}/ack|assign|reopen, GET /v1/search,
    /v1/audits..., GET /v1/calls/{id}/audio, GET /v1/calls/{id}/export
    GET /healthz, GET /metrics
Agent assist:
    GET /v1/playbooks, POST /v1/calls/{id}/suggestions/{sid}/feedback, GET /v1/suggestions/feedback
With ``auth`` on, the agent routes need a token (``callwatch tokens create --agent ID``):
``Authorization: Bearer T``, or on the WebSocket a first frame ``{"type":"auth","token":T}``
(browsers cannot set headers there). An agent token opens only that agent's panel.
QA rules (versioned, hot-reloaded into live calls; see docs/rules.md):
    GET /v1/rules, GET|PUT|DELETE /v1/rules/{pack}, POST /v1/rules/validate,
    GET /v1/rules/{pack}/versions[/{n}], POST /v1/rules/{pack}/versions/{n}/restore,
    GET|PUT|DELETE /v1/rules/{pack}/rules/{rule_id}
Push: alerts (and any other events) POSTed to webhook targets, see assist/webhooks.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from assist.audit_api import AuditJobs, add_audit_routes
from assist.board_api import add_board_routes, request_user
from assist.bus import EventBus
from assist.export import add_export_routes
from assist.panel import add_panel_routes
from assist.playbook import BUILTIN_PLAYBOOKS, load_playbooks
from assist.rules_registry import (
    ConflictError,
    NotFoundError,
    RegistryError,
    RuleRegistry,
    VersionInfo,
)
from assist.session import CallManager, LiveCall, LiveConfig
from assist.store import VERDICTS, Store, StoreError
from assist.suggest import AssistLibrary
from assist.webhooks import WebhookDispatcher, WebhookTarget
from audio.protocols.audiohook import AudioHookAdapter
from audio.protocols.base import Feed, ProtocolError
from audio.protocols.raw import RawAdapter
from audio.protocols.twilio import TwilioAdapter
from models.asr import AsrConfig, WhisperAsr
from models.diarize.encoder import shared_encoder
from models.embed import shared_embedder
from models.emotion import EmotionAnalyzer
from models.scheduler import AsrScheduler
from qa_rules.cases import parse_cases, run_cases, summary
from qa_rules.explain import explain
from qa_rules.loader import RuleError
from qa_rules.schema import RulePack

log = logging.getLogger("callwatch.server")

MAX_FRAME_BYTES = 256 * 1024  # larger WebSocket messages are refused (uvicorn ws_max_size)
MAX_PROTOCOL_ERRORS = 50  # a stream that keeps sending garbage is ended


@dataclass
class ServerConfig:
    model: str = "tiny.en"
    threads: int = 1
    workers: int = 2  # ASR calls in parallel (one CPU thread each): one per core
    max_batch: int = 4
    rules: str | None = None  # pack folder (or one file); None: $CALLWATCH_HOME/rules/
    rules_poll_s: float = 2.0  # how often the rules folder is checked for edits; 0 = never
    db_url: str | None = None
    store: bool = True
    live: LiveConfig = field(default_factory=LiveConfig)
    webhooks: list[WebhookTarget] = field(default_factory=list)
    emotion: bool = True  # emotion events and emotion rules
    emotion_model: str | None = None  # a local speech-emotion checkpoint (else prosody)
    diarize: bool = True  # find speakers on mono "mixed" streams (raw protocol)
    assist: bool = True  # playbook suggestions for agents
    playbooks: str | None = None  # playbook file or folder (None: the built-in one)
    auth: bool = True  # agent routes need a token (see the module docstring)
    # Server-side recording folders the board may audit (None: $CALLWATCH_HOME/recordings);
    # no path outside them (and the uploads folder) is ever read.
    audit_dirs: list[str] = field(default_factory=list)
    max_upload_mb: int = 200  # per uploaded recording
    # -- scale-out and durability (docs/deployment.md) --
    # This server among several behind one store; a restart under the same id marks the
    # calls it left unfinished "interrupted".
    instance_id: str = field(default_factory=lambda: default_instance_id())
    bus_url: str | None = None  # redis://host:6379/0 shares events between instances
    retention_days: int | None = None  # delete audio and transcripts older than this


def default_instance_id() -> str:
    """``$CALLWATCH_INSTANCE_ID``, else the host name (stable across restarts)."""
    return os.environ.get("CALLWATCH_INSTANCE_ID") or socket.gethostname()


ADAPTERS: dict[str, Callable[[], Any]] = {
    "twilio": TwilioAdapter,
    "audiohook": AudioHookAdapter,
    "raw": RawAdapter,
}


class App:
    """Process-wide state: one model, one scheduler, one bus, the calls."""

    def __init__(
        self,
        config: ServerConfig,
        asr: WhisperAsr | None = None,
        packs: list[RulePack] | None = None,
    ) -> None:
        self.config = config
        self.asr = asr or WhisperAsr(
            AsrConfig(model=config.model, threads=config.threads, workers=config.workers)
        )
        self.store = Store(config.db_url) if config.store else None
        # ``packs`` (tests, embedding) seed an empty rules folder; a folder with packs wins.
        self.rules = RuleRegistry(config.rules, self.store, seed=packs)
        self.scheduler = AsrScheduler(
            self.asr,
            max_batch=config.max_batch,
            workers=min(config.workers, self.asr.config.workers),
        )
        self.bus = EventBus()
        self.emotion = EmotionAnalyzer(config.emotion_model) if config.emotion else None
        self.assist: AssistLibrary | None = None
        if config.assist:
            books = load_playbooks(config.playbooks or BUILTIN_PLAYBOOKS)
            self.assist = AssistLibrary(books, shared_embedder())
            self.assist.warm()  # embed the playbook examples now, not on the first call
        self.calls = CallManager(
            self.rules.packs,
            self.scheduler,
            self.bus,
            self.store,
            config.live,
            self.asr.model_id,
            emotion=self.emotion,
            diarize=config.diarize,
            assist=self.assist,
        )
        if config.diarize:
            shared_encoder()  # load the 17 MB speaker encoder now, not on the first mono call
        self.webhooks = WebhookDispatcher(config.webhooks, self.store)
        self.audits = AuditJobs(self)  # recordings audited on request (the board's Audits page)
        self.started = time.time()
        self.protocol_errors = 0

    @property
    def packs(self) -> list[RulePack]:
        """The rule packs running now (they change as rules are edited)."""
        return self.rules.packs

    def close(self) -> None:
        self.audits.close()
        self.scheduler.close()


def create_app(config: ServerConfig | None = None, state: App | None = None) -> FastAPI:
    cfg = config or ServerConfig()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cw = state if state is not None else await asyncio.to_thread(App, cfg)
        app.state.cw = cw
        cw.webhooks.start()
        cw.bus.add_listener(cw.webhooks.submit)
        loop = asyncio.get_running_loop()

        def on_rules(packs: list[RulePack]) -> None:
            # registry changes happen on worker threads; live calls belong to the loop
            loop.call_soon_threadsafe(cw.calls.set_packs, packs)

        cw.rules.add_listener(on_rules)
        if cw.calls.packs is not cw.rules.packs:
            cw.calls.set_packs(cw.rules.packs)
        poller = (
            asyncio.create_task(poll_rules(cw.rules, cw.config.rules_poll_s))
            if cw.config.rules_poll_s > 0
            else None
        )
        yield
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        cw.rules.remove_listener(on_rules)
        for call in list(cw.calls.calls.values()):
            if call.active:
                await cw.calls.end(call, "server_shutdown")
        # after the calls, so their last alerts and call.ended still go out (or dead-letter)
        cw.bus.remove_listener(cw.webhooks.submit)
        await cw.webhooks.aclose()
        if state is None:
            cw.close()

    app = FastAPI(title="callwatch", version="0.1.0", lifespan=lifespan)

    def cw_of(obj: Any) -> App:
        return obj.app.state.cw

    # -- ingest --------------------------------------------------------------------------
    @app.websocket("/v1/ingest/{protocol}")
    async def ingest(ws: WebSocket, protocol: str) -> None:
        factory = ADAPTERS.get(protocol)
        if factory is None:
            await ws.close(code=1008, reason=f"unknown protocol {protocol!r}")
            return
        await ws.accept()
        await run_ingest(cw_of(ws), ws, factory())

    # -- consume -------------------------------------------------------------------------
    @app.websocket("/v1/agents/{agent_id}/events")
    async def agent_events(ws: WebSocket, agent_id: str) -> None:
        await stream_events(cw_of(ws), ws, agent_id=agent_id)

    @app.get("/v1/agents/{agent_id}/session")
    async def agent_session(request: Request, agent_id: str) -> dict[str, Any]:
        cw: App = app.state.cw
        await _require_agent(cw, _bearer(request), agent_id)
        calls = [
            c.summary() for c in cw.calls.calls.values() if c.active and c.info.agent_id == agent_id
        ]
        return {"agent_id": agent_id, "auth": cw.config.auth, "calls": calls}

    @app.websocket("/v1/calls/{call_id}/events")
    async def call_events(ws: WebSocket, call_id: str) -> None:
        await stream_events(cw_of(ws), ws, call_id=call_id)

    @app.get("/v1/calls/{call_id}")
    async def get_call(call_id: str) -> dict[str, Any]:
        cw: App = app.state.cw
        call = cw.calls.calls.get(call_id)
        if call is not None:
            return call.detail()
        if cw.store is not None:
            report = await asyncio.to_thread(cw.store.get_report, call_id)
            if report is not None:
                return {**report, "status": "ended"}
        raise HTTPException(status_code=404, detail=f"no call {call_id!r}")

    add_board_routes(app)
    add_rules_routes(app)
    add_assist_routes(app)
    add_panel_routes(app)
    add_audit_routes(app)
    add_export_routes(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> dict[str, Any]:
        cw: App = app.state.cw
        finals, partials = cw.scheduler.queued
        st = cw.scheduler.stats
        active = [c for c in cw.calls.calls.values() if c.active]
        return {
            "active_calls": len(active),
            "asr_lag_s": round(cw.scheduler.lag_s, 3),
            "asr_queue_finals": finals,
            "asr_queue_partials": partials,
            "asr_finals_done": st.finals_done,
            "asr_partials_done": st.partials_done,
            "asr_partials_dropped": st.partials_replaced + st.partials_stale,
            "asr_busy_s": round(st.busy_s, 2),
            "asr_audio_s": round(st.audio_s, 2),
            "bus_subscribers": cw.bus.subscribers,
            "bus_cut_off": cw.bus.cut_off,
            "protocol_errors": cw.protocol_errors,
            **{f"webhook_{k}": v for k, v in cw.webhooks.stats().items()},
            "uptime_s": round(time.time() - cw.started, 1),
            "model": cw.asr.model_id,
        }

    return app


async def poll_rules(rules: RuleRegistry, every_s: float) -> None:
    """Pick up rule files edited on disk, until cancelled."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(rules.reload_from_folder)
        except Exception:
            log.exception("checking the rules folder failed")


# -- QA rules API ------------------------------------------------------------------------------
def _rules_error(exc: Exception) -> HTTPException:
    if isinstance(exc, RuleError):
        return HTTPException(
            status_code=422,
            detail={
                "message": "invalid rules: nothing was changed, the previous rules keep running",
                "issues": [
                    {"file": i.file, "line": i.line, "field": i.field, "message": i.message}
                    for i in exc.issues
                ],
            },
        )
    if isinstance(exc, NotFoundError):
        return HTTPException(status_code=404, detail={"message": str(exc)})
    if isinstance(exc, ConflictError):
        return HTTPException(status_code=409, detail={"message": str(exc)})
    if isinstance(exc, RegistryError):
        return HTTPException(status_code=422, detail={"message": str(exc), "issues": []})
    if isinstance(exc, StoreError):
        return HTTPException(status_code=503, detail={"message": str(exc)})
    raise exc


async def _rules_call(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a registry call off the event loop; its errors become HTTP answers."""
    try:
        return await asyncio.to_thread(fn, *args)
    except (RuleError, RegistryError, StoreError) as exc:
        raise _rules_error(exc) from exc


async def _rules_body(request: Request, what: str) -> tuple[Any, str]:
    """(body, comment): YAML text as-is, or a decoded JSON body; the comment comes from
    ``X-Callwatch-Comment`` or the JSON body's ``comment``."""
    comment = request.headers.get("x-callwatch-comment") or ""
    raw = await request.body()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or ctype.endswith("+json"):
        try:
            data = json.loads(raw or b"null")
        except ValueError as exc:
            raise HTTPException(
                status_code=422, detail={"message": f"body is not JSON: {exc}", "issues": []}
            ) from exc
        if not isinstance(data, dict):
            raise HTTPException(
                status_code=422,
                detail={"message": f"a JSON body is an object with {what}", "issues": []},
            )
        if isinstance(data.get("comment"), str) and not comment:
            comment = data["comment"]
        return data, comment
    try:
        return raw.decode("utf-8"), comment
    except UnicodeDecodeError as exc:
        raise HTTPException(
            status_code=422, detail={"message": "body is not UTF-8 text", "issues": []}
        ) from exc


def _yaml_of(body: Any) -> str:
    if isinstance(body, str):
        return body
    text = body.get("yaml")
    if not isinstance(text, str):
        raise HTTPException(
            status_code=422,
            detail={"message": 'a JSON body needs "yaml": the pack\'s YAML text', "issues": []},
        )
    return text


def _version_reply(info: VersionInfo, changed: bool) -> dict[str, Any]:
    return {**info.to_dict(), "changed": changed}


def add_rules_routes(app: FastAPI) -> None:
    def rules_of(request: Request) -> RuleRegistry:
        cw: App = request.app.state.cw
        return cw.rules

    @app.get("/v1/rules")
    async def list_rules(request: Request) -> dict[str, Any]:
        return dict(await _rules_call(rules_of(request).list_packs))

    @app.post("/v1/rules/validate")
    async def validate_rules(request: Request) -> dict[str, Any]:
        body, _ = await _rules_body(request, '"yaml"')
        pack: RulePack = await _rules_call(rules_of(request).validate, _yaml_of(body))
        return {"ok": True, "pack": pack.pack, "rules": len(pack.rules)}

    @app.post("/v1/rules/test")
    async def test_rules(request: Request) -> dict[str, Any]:
        """Run rule unit tests (the ``rules test`` cases format) against the running packs,
        or with ``"yaml"`` a draft pack in place of the running one of the same name."""
        body, _ = await _rules_body(request, '"cases" (and an optional draft "yaml")')
        cases_text = body.get("cases") if isinstance(body, dict) else body
        if not isinstance(cases_text, str):
            raise HTTPException(
                status_code=422,
                detail={"message": 'give "cases": the cases file as YAML text', "issues": []},
            )
        packs = list(rules_of(request).packs)
        draft = body.get("yaml") if isinstance(body, dict) else None
        if isinstance(draft, str):
            pack: RulePack = await _rules_call(rules_of(request).validate, draft)
            packs = [p for p in packs if p.pack != pack.pack] + [pack]

        def run() -> dict[str, Any]:
            return summary(run_cases(packs, parse_cases(cases_text, "cases.yaml", packs)))

        return dict(await _rules_call(run))

    @app.get("/v1/calls/{call_id}/explain/{rule_id}")
    async def explain_rule(request: Request, call_id: str, rule_id: str) -> dict[str, Any]:
        """Why a rule fired on a call (live or stored), or why it did not."""
        cw: App = request.app.state.cw
        call = cw.calls.calls.get(call_id)
        report = call.report() if call is not None else None
        if report is None and cw.store is not None:
            report = await asyncio.to_thread(cw.store.get_report, call_id)
        if report is None:
            raise HTTPException(status_code=404, detail=f"no call {call_id!r}")
        try:
            result = await asyncio.to_thread(explain, rule_id, list(cw.rules.packs), report)
        except KeyError:
            raise HTTPException(status_code=404, detail=f"no rule {rule_id!r}") from None
        return result.to_dict()

    @app.get("/v1/rules/{pack}")
    async def get_pack(request: Request, pack: str) -> dict[str, Any]:
        return dict(await _rules_call(rules_of(request).get_pack, pack))

    @app.put("/v1/rules/{pack}")
    async def put_pack(request: Request, response: Response, pack: str) -> dict[str, Any]:
        reg = rules_of(request)
        body, comment = await _rules_body(request, '"yaml" (and "comment")')
        existed = pack in {p.pack for p in reg.packs}
        info, changed = await _rules_call(
            reg.put_pack, pack, _yaml_of(body), request_user(request), comment
        )
        if not existed:
            response.status_code = 201
        return _version_reply(info, changed)

    @app.delete("/v1/rules/{pack}")
    async def delete_pack(request: Request, pack: str) -> dict[str, Any]:
        comment = request.headers.get("x-callwatch-comment") or ""
        info = await _rules_call(
            rules_of(request).delete_pack, pack, request_user(request), comment
        )
        return {**info.to_dict(), "deleted": True}

    @app.get("/v1/rules/{pack}/versions")
    async def list_versions(request: Request, pack: str) -> dict[str, Any]:
        return {"pack": pack, "versions": await _rules_call(rules_of(request).versions, pack)}

    @app.get("/v1/rules/{pack}/versions/{n}")
    async def get_version(request: Request, pack: str, n: int) -> dict[str, Any]:
        return dict(await _rules_call(rules_of(request).version, pack, n))

    @app.post("/v1/rules/{pack}/versions/{n}/restore")
    async def restore_version(request: Request, pack: str, n: int) -> dict[str, Any]:
        comment = request.headers.get("x-callwatch-comment") or ""
        raw = await request.body()
        if raw and "json" in request.headers.get("content-type", ""):
            _, comment = await _rules_body(request, '"comment"')
        info, changed = await _rules_call(
            rules_of(request).restore, pack, n, request_user(request), comment
        )
        return _version_reply(info, changed)

    @app.get("/v1/rules/{pack}/rules/{rule_id}")
    async def get_rule(request: Request, pack: str, rule_id: str) -> dict[str, Any]:
        return dict(await _rules_call(rules_of(request).get_rule, pack, rule_id))

    @app.put("/v1/rules/{pack}/rules/{rule_id}")
    async def put_rule(
        request: Request, response: Response, pack: str, rule_id: str
    ) -> dict[str, Any]:
        reg = rules_of(request)
        body, comment = await _rules_body(request, '"rule" (or "yaml"), and "comment"')
        rule: Any = body
        if isinstance(body, dict):
            if isinstance(body.get("rule"), dict):
                rule = body["rule"]
            elif isinstance(body.get("yaml"), str):
                rule = body["yaml"]
            else:
                rule = {k: v for k, v in body.items() if k != "comment"}
        existed = any(r.id == rule_id for p in reg.packs if p.pack == pack for r in p.rules)
        info, changed = await _rules_call(
            reg.put_rule, pack, rule_id, rule, request_user(request), comment
        )
        if not existed:
            response.status_code = 201
        return _version_reply(info, changed)

    @app.delete("/v1/rules/{pack}/rules/{rule_id}")
    async def delete_rule(request: Request, pack: str, rule_id: str) -> dict[str, Any]:
        comment = request.headers.get("x-callwatch-comment") or ""
        info, changed = await _rules_call(
            rules_of(request).delete_rule, pack, rule_id, request_user(request), comment
        )
        return _version_reply(info, changed)


class AuthError(Exception):
    """A missing, unknown or wrong token (HTTP 401/403, WebSocket close 4401)."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


def _bearer(request: Request | WebSocket) -> str:
    value = request.headers.get("authorization", "")
    return value[7:].strip() if value.lower().startswith("bearer ") else ""


async def _check_agent(cw: App, token: str, agent_id: str | None) -> None:
    """Raise AuthError unless ``token`` may act for ``agent_id`` (None: any agent).
    An agent token is good for its own agent only; supervisor and admin tokens for all."""
    if not cw.config.auth:
        return
    if not token:
        raise AuthError("a token is needed: sign in with your agent id and token")
    if cw.store is None:
        raise AuthError("tokens need the store, and this server runs without one", 503)
    info = await asyncio.to_thread(cw.store.check_token, token)
    if info is None:
        raise AuthError("unknown or revoked token")
    if info["role"] == "agent" and agent_id is not None and info["agent_id"] != agent_id:
        raise AuthError(f"this token belongs to agent {info['agent_id']!r}", 403)
    if info["role"] not in ("agent", "supervisor", "admin"):
        raise AuthError(f"a {info['role']} token cannot open an agent's calls", 403)


async def _require_agent(cw: App, token: str, agent_id: str | None) -> None:
    try:
        await _check_agent(cw, token, agent_id)
    except AuthError as exc:
        raise HTTPException(status_code=exc.status, detail=str(exc)) from exc


def _find_suggestion(cw: App, call_id: str, sid: str) -> tuple[dict[str, Any] | None, str | None]:
    """The suggestion event and the call's agent, from the live call or the store."""
    call = cw.calls.calls.get(call_id)
    if call is not None:
        ev = next((e for e in call.pipe.suggestions if e["suggestion_id"] == sid), None)
        return ev, call.info.agent_id
    if cw.store is None:
        return None, None
    evs = cw.store.events_for(call_id)
    started = next((e for e in evs if e["type"] == "call.started"), {})
    ev = next((e for e in evs if e["type"] == "suggestion" and e.get("suggestion_id") == sid), None)
    return ev, started.get("agent_id")


def add_assist_routes(app: FastAPI) -> None:
    @app.get("/v1/playbooks")
    async def list_playbooks(request: Request) -> dict[str, Any]:
        cw: App = request.app.state.cw
        return {"playbooks": cw.assist.describe() if cw.assist else [], "enabled": bool(cw.assist)}

    @app.post("/v1/calls/{call_id}/suggestions/{sid}/feedback")
    async def suggestion_feedback(request: Request, call_id: str, sid: str) -> dict[str, Any]:
        cw: App = request.app.state.cw
        try:
            body = await request.json()
        except ValueError as exc:
            raise HTTPException(status_code=400, detail="the body must be JSON") from exc
        if not isinstance(body, dict) or body.get("verdict") not in VERDICTS:
            raise HTTPException(
                status_code=422, detail=f"'verdict' must be one of: {', '.join(VERDICTS)}"
            )
        line = body.get("line")
        if line is not None and (not isinstance(line, int) or line < 0):
            raise HTTPException(status_code=422, detail="'line' is a script line index (0, 1, ...)")
        if cw.store is None:
            raise HTTPException(status_code=503, detail="feedback needs the store")
        ev, call_agent = await asyncio.to_thread(_find_suggestion, cw, call_id, sid)
        if ev is None:
            raise HTTPException(
                status_code=404, detail=f"no suggestion {sid!r} on call {call_id!r}"
            )
        await _require_agent(cw, _bearer(request), call_agent)
        row = await asyncio.to_thread(
            cw.store.add_feedback,
            call_id=call_id,
            suggestion_id=sid,
            agent_id=body.get("agent_id") or call_agent,
            verdict=body["verdict"],
            intent=ev.get("intent"),
            rule_id=ev.get("rule_id"),
            line=line,
            comment=str(body.get("comment") or "")[:2000] or None,
        )
        call = cw.calls.calls.get(call_id)
        if body["verdict"] == "dismissed" and call is not None and call.active:
            call.dismiss(sid)
        return {"ok": True, "id": row["id"]}

    @app.get("/v1/suggestions/feedback")
    async def list_feedback(
        request: Request,
        call_id: str | None = None,
        intent: str | None = None,
        agent_id: str | None = None,
    ) -> dict[str, Any]:
        cw: App = request.app.state.cw
        if cw.store is None:
            return {"feedback": [], "by_intent": {}}
        rows = await asyncio.to_thread(cw.store.feedback, call_id, intent, agent_id)
        by_intent: dict[str, dict[str, int]] = {}
        for r in rows:
            key = r["intent"] or f"rule:{r['rule_id']}"
            counts = by_intent.setdefault(key, dict.fromkeys(VERDICTS, 0))
            counts[r["verdict"]] += 1
        return {"feedback": rows, "by_intent": by_intent}


async def _send_all(ws: WebSocket, replies: list[str | bytes]) -> None:
    for r in replies:
        if isinstance(r, bytes):
            await ws.send_bytes(r)
        else:
            await ws.send_text(r)


async def run_ingest(cw: App, ws: WebSocket, adapter: Any) -> None:
    """Pump one call's WebSocket through its protocol adapter into a LiveCall."""
    call: LiveCall | None = None
    errors = 0
    peer = f"{ws.client.host}:{ws.client.port}" if ws.client else "?"
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            try:
                if msg.get("text") is not None:
                    feed: Feed = adapter.on_text(msg["text"])
                else:
                    feed = adapter.on_bytes(msg.get("bytes") or b"")
            except ProtocolError as exc:
                errors += 1
                cw.protocol_errors += 1
                log.warning(
                    "%s %s (%s): %s", adapter.protocol, call.call_id if call else "-", peer, exc
                )
                await _send_all(ws, exc.replies)
                if exc.fatal or errors >= MAX_PROTOCOL_ERRORS:
                    break
                continue
            for w in feed.warnings:
                log.warning("%s %s: %s", adapter.protocol, call.call_id if call else "-", w)
            if feed.started is not None:
                try:
                    call = cw.calls.start(feed.started)
                except ValueError as exc:
                    log.warning("%s (%s): %s", adapter.protocol, peer, exc)
                    await ws.close(code=1008, reason=str(exc)[:120])
                    return
            await _send_all(ws, feed.replies)
            if call is not None:
                for channel, samples in feed.audio:
                    call.on_audio(channel, samples)
            if feed.ended is not None:
                if call is not None:
                    await cw.calls.end(call, feed.ended)
                if feed.close and ws.client_state == WebSocketState.CONNECTED:
                    await ws.close()
                return
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("%s ingest failed", adapter.protocol)
    # The peer went away (or broke the protocol) without a clean stop: keep what we have.
    if call is not None and call.active:
        with contextlib.suppress(Exception):
            for channel, samples in adapter.on_disconnect().audio:
                call.on_audio(channel, samples)
        await cw.calls.end(call, "disconnected")
    if ws.client_state == WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await ws.close()


async def stream_events(
    cw: App, ws: WebSocket, call_id: str | None = None, agent_id: str | None = None
) -> None:
    """Send matching events as JSON text frames until the client leaves."""
    await ws.accept()
    if agent_id is not None and cw.config.auth:
        try:
            await _check_agent(cw, _bearer(ws) or await _first_frame_token(ws), agent_id)
        except AuthError as exc:
            await ws.close(code=4401, reason=str(exc)[:120])
            return
    sub = cw.bus.subscribe(call_id=call_id, agent_id=agent_id)
    # A late joiner (or a panel reconnecting) first gets what its calls already said, then
    # live events, with no repeats.
    sent_upto: dict[str, int] = {}
    backlog = [
        c
        for c in list(cw.calls.calls.values())
        if (call_id is not None and c.call_id == call_id)
        or (agent_id is not None and c.active and c.info.agent_id == agent_id)
    ]
    for c in backlog:
        for ev in list(c.events):
            await ws.send_json(ev)
            sent_upto[c.call_id] = ev["seq"]

    async def pump() -> None:
        while True:
            ev = await sub.queue.get()
            if ev is None:
                await ws.close(code=1013, reason="subscriber too slow; reconnect")
                return
            if ev["seq"] <= sent_upto.get(ev["call_id"], 0):
                continue
            await ws.send_json(ev)

    async def watch() -> None:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return

    tasks = [asyncio.create_task(pump()), asyncio.create_task(watch())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except Exception:
        pass
    finally:
        for t in tasks:
            t.cancel()
        cw.bus.unsubscribe(sub)


async def _first_frame_token(ws: WebSocket, timeout_s: float = 10.0) -> str:
    """The token a browser sends as its first frame: ``{"type": "auth", "token": T}``."""
    try:
        msg = await asyncio.wait_for(ws.receive_text(), timeout_s)
        data = json.loads(msg)
    except (TimeoutError, ValueError, WebSocketDisconnect, RuntimeError, KeyError):
        return ""
    if isinstance(data, dict) and data.get("type") == "auth":
        return str(data.get("token") or "")
    return ""


def serve(config: ServerConfig, host: str = "127.0.0.1", port: int = 8080) -> None:
    import uvicorn

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        ws_max_size=MAX_FRAME_BYTES,
        log_level="info",
        ws_ping_interval=20,
        ws_ping_timeout=20,
    )
