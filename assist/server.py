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
Access (assist/auth.py, docs/security.md): with ``auth`` on (the default) every route but
/healthz, /docs, /openapi.json and the panel's static page needs a token with a role
(``callwatch tokens create --role ROLE``): ``Authorization: Bearer T``, or on an event
WebSocket a first frame ``{"type":"auth","token":T}`` (browsers cannot set headers there).
An agent token reaches only its own calls. Ingest streams are checked per protocol on the
upgrade (Twilio signature, AudioHook API key and signature, or an ingest token).
    GET /v1/tokens, POST /v1/tokens, DELETE /v1/tokens/{id}   token management (admin)
QA rules (versioned, hot-reloaded into live calls; see docs/rules.md):
    GET /v1/rules, GET|PUT|DELETE /v1/rules/{pack}, POST /v1/rules/validate,
    GET /v1/rules/{pack}/versions[/{n}], POST /v1/rules/{pack}/versions/{n}/restore,
    GET|PUT|DELETE /v1/rules/{pack}/rules/{rule_id}
Push: alerts (and any other events) POSTed to webhook targets, see assist/webhooks.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import (
    Depends,
    FastAPI,
    HTTPException,
    Request,
    Response,
    WebSocket,
    WebSocketDisconnect,
)
from starlette.websockets import WebSocketState

from assist.audit_api import AuditJobs, add_audit_routes
from assist.auth import (
    IngestGrant,
    IngestGuard,
    RedactTokens,
    RowId,
    access_stats,
    add_token_routes,
    guard,
    principal_of,
    route_problems,
    ws_guard,
)
from assist.board_api import add_board_routes, request_user
from assist.bus import make_bus
from assist.cluster import remote_call, remote_live_calls
from assist.export import add_export_routes
from assist.language import LanguageConfig, LanguageModels
from assist.panel import add_panel_routes
from assist.persist import LiveStoreWriter
from assist.playbook import BUILTIN_PLAYBOOKS, load_playbooks
from assist.retention import run_retention
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
from models.asr import WhisperAsr
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
    model: str = "tiny.en"  # the English model
    # Languages served (each on its own model, sharing the ASR workers); the language of a
    # call that names none ("auto": identified on its first utterance; None: the only
    # served language, else auto); other languages' models (default: multilingual base).
    languages: list[str] = field(default_factory=lambda: ["en"])
    language: str | None = None
    lang_models: dict[str, str] = field(default_factory=dict)
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
    # redis://host:6379/0 shares events between instances (default $CALLWATCH_BUS_URL)
    bus_url: str | None = field(default_factory=lambda: os.environ.get("CALLWATCH_BUS_URL"))
    retention_days: int | None = None  # delete audio and transcripts older than this
    # events a subscriber (agent panel, board stream) may fall behind before it is cut off
    subscriber_queue: int = 1000
    # -- access control (assist/auth.py, docs/security.md) --
    # The base URL clients really call (wss://host[:port][/prefix]) when a proxy sits in
    # front: Twilio signs that URL and AudioHook that host. None: the request's own.
    public_url: str | None = None
    twilio_auth_token: str | None = None  # checks X-Twilio-Signature on /v1/ingest/twilio
    audiohook_api_keys: list[str] = field(default_factory=list)  # X-API-KEY values let in
    audiohook_client_secret: str | None = None  # base64; AudioHook requests must be signed
    max_frame_bytes: int = MAX_FRAME_BYTES  # a larger ingest message ends the stream (1009)
    # Per ingest connection: messages per second sustained, and the burst absorbed (a
    # client catching up after a stall); beyond that the stream is closed (1008). Twilio
    # sends 100 messages/s per call in real time, raw and AudioHook 50.
    ingest_msgs_per_s: float = 1500.0
    ingest_burst: int = 3000


def language_config(config: ServerConfig) -> LanguageConfig:
    """The served languages and their models (``--model`` is the English one)."""
    models = dict(config.lang_models)
    if "en" in config.languages and "en" not in models:
        models["en"] = config.model
    return LanguageConfig.parse(
        config.languages, config.language, [f"{k}={v}" for k, v in models.items()]
    )


def _given_models(
    languages: list[str], asr: WhisperAsr | None, models: dict[str, WhisperAsr] | None
) -> dict[str, WhisperAsr]:
    given = dict(models or {})
    if asr is not None:
        for lang in languages:
            if lang not in given and (asr.multilingual or lang == "en"):
                given[lang] = asr
    return given


def default_instance_id() -> str:
    """``$CALLWATCH_INSTANCE_ID``, else the host name (stable across restarts)."""
    return os.environ.get("CALLWATCH_INSTANCE_ID") or socket.gethostname()


ADAPTERS: dict[str, Callable[[], Any]] = {
    "twilio": TwilioAdapter,
    "audiohook": AudioHookAdapter,
    "raw": RawAdapter,
}


class App:
    """Process-wide state: a model per language, one scheduler, one bus, the calls."""

    def __init__(
        self,
        config: ServerConfig,
        asr: WhisperAsr | None = None,
        packs: list[RulePack] | None = None,
        models: dict[str, WhisperAsr] | None = None,
    ) -> None:
        """``asr`` / ``models`` (tests, embedding): already loaded models, ``asr`` for every
        served language it can transcribe, ``models`` by language."""
        self.config = config
        self.languages = LanguageModels(
            language_config(config),
            threads=config.threads,
            workers=config.workers,
            given=_given_models(config.languages, asr, models),
        )
        self.asr = self.languages.default_model
        self.store = Store(config.db_url) if config.store else None
        # ``packs`` (tests, embedding) seed an empty rules folder; a folder with packs wins.
        self.rules = RuleRegistry(config.rules, self.store, seed=packs)
        self.scheduler = AsrScheduler(
            self.asr,
            max_batch=config.max_batch,
            workers=min(config.workers, self.asr.config.workers),
        )
        self.bus = make_bus(config.bus_url, config.instance_id, config.subscriber_queue)
        # live calls reach the store as they happen (a crash keeps what was said)
        self.writer = LiveStoreWriter(self.store, config.instance_id) if self.store else None
        if self.writer is not None:
            self.writer.start()
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
            self.languages,
            emotion=self.emotion,
            diarize=config.diarize,
            assist=self.assist,
            writer=self.writer,
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
        if self.writer is not None:
            self.writer.close()


def create_app(config: ServerConfig | None = None, state: App | None = None) -> FastAPI:
    cfg = config or ServerConfig()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cw = state if state is not None else await asyncio.to_thread(App, cfg)
        app.state.cw = cw
        if cw.store is not None:
            await asyncio.to_thread(mark_interrupted, cw.store, cw.config.instance_id)
        await cw.bus.start()
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
        background = [
            asyncio.create_task(every(LISTING_EVERY_S, cw.calls.store_listings, "call listings"))
        ]
        if cw.store is not None and cw.config.retention_days:
            background.append(
                asyncio.create_task(
                    every(RETENTION_EVERY_S, lambda: apply_retention(cw), "retention", thread=True)
                )
            )
        yield
        for task in [*background, *([poller] if poller is not None else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        cw.rules.remove_listener(on_rules)
        for call in list(cw.calls.calls.values()):
            if call.active:
                await cw.calls.end(call, "server_shutdown")
        # after the calls, so their last alerts and call.ended still go out (or dead-letter)
        cw.bus.remove_listener(cw.webhooks.submit)
        await cw.webhooks.aclose()
        await cw.bus.close()
        if state is None:
            cw.close()

    app = FastAPI(title="callwatch", version="0.1.0", lifespan=lifespan, redoc_url=None)
    access_stats(app)  # refusal counters for /metrics

    def cw_of(obj: Any) -> App:
        return obj.app.state.cw

    # -- ingest --------------------------------------------------------------------------
    @app.websocket("/v1/ingest/{protocol}", dependencies=[Depends(IngestGuard(set(ADAPTERS)))])
    async def ingest(ws: WebSocket, protocol: str) -> None:
        grant: IngestGrant = ws.state.ingest
        if grant.gone:
            return
        await run_ingest(cw_of(ws), ws, ADAPTERS[protocol](), first=grant.first)

    # -- consume -------------------------------------------------------------------------
    # every refusal closes the agent panel's stream with 4401: the panel then asks to sign in
    @app.websocket(
        "/v1/agents/{agent_id}/events", dependencies=[ws_guard("agent:panel", refuse_code=4401)]
    )
    async def agent_events(ws: WebSocket, agent_id: str) -> None:
        await stream_events(cw_of(ws), ws, agent_id=agent_id)

    @app.get("/v1/agents/{agent_id}/session", dependencies=[guard("agent:panel")])
    async def agent_session(request: Request, agent_id: str) -> dict[str, Any]:
        cw: App = app.state.cw
        calls = [
            c.summary() for c in cw.calls.calls.values() if c.active and c.info.agent_id == agent_id
        ]
        return {"agent_id": agent_id, "auth": cw.config.auth, "calls": calls}

    @app.websocket("/v1/calls/{call_id}/events", dependencies=[ws_guard("calls:read")])
    async def call_events(ws: WebSocket, call_id: str) -> None:
        await stream_events(cw_of(ws), ws, call_id=call_id)

    @app.get("/v1/calls/{call_id}", dependencies=[guard("calls:read")])
    async def get_call(call_id: str) -> dict[str, Any]:
        cw: App = app.state.cw
        call = cw.calls.calls.get(call_id)
        if call is not None:
            return call.detail()
        if cw.store is not None:
            # ended, interrupted, or live on another instance (rebuilt from its events)
            try:
                report = await asyncio.to_thread(remote_call, cw.store, call_id)
            except StoreError as exc:
                raise HTTPException(status_code=503, detail=str(exc)) from exc
            if report is not None:
                return {**report, "status": report.get("status") or "ended"}
        raise HTTPException(status_code=404, detail=f"no call {call_id!r}")

    add_board_routes(app)
    add_rules_routes(app)
    add_assist_routes(app)
    add_panel_routes(app)
    add_audit_routes(app)
    add_export_routes(app)
    add_token_routes(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/metrics", dependencies=[guard("metrics:read")])
    async def metrics() -> dict[str, Any]:
        cw: App = app.state.cw
        access = access_stats(app)
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
            **{
                f"bus_{k}": v
                for k, v in cw.bus.stats().items()
                if k not in ("cut_off", "subscribers")
            },
            **{f"store_{k}": v for k, v in (cw.writer.stats() if cw.writer else {}).items()},
            "instance_id": cw.config.instance_id,
            "protocol_errors": cw.protocol_errors,
            "auth_refused": access.refused,
            "ingest_refused": access.ingest_refused,
            "ingest_rate_limited": access.ingest_rate_limited,
            "ingest_too_large": access.ingest_too_large,
            **{f"webhook_{k}": v for k, v in cw.webhooks.stats().items()},
            "uptime_s": round(time.time() - cw.started, 1),
            "model": cw.asr.model_id,
            **{f"model_{lang}": mid for lang, mid in cw.languages.model_ids().items()},
        }

    for problem in route_problems(app):  # tests/test_auth.py fails on these too
        log.error("access control: %s", problem)
    document_errors(app)
    return app


def document_errors(app: FastAPI) -> None:
    """Describe our own 422 answers in the OpenAPI schema. FastAPI documents 422 as its
    request-validation error (``detail``: a list), but routes also answer 422 with a
    sentence (``detail``: a string) or, for rules, ``{"message", "issues"}``; clients and
    schema-driven tools must accept all three."""
    make = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = make()
        error = schema.get("components", {}).get("schemas", {}).get("HTTPValidationError")
        if error is not None:
            error["properties"]["detail"] = {
                "title": "Detail",
                "anyOf": [
                    {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}},
                    {"type": "string"},
                    {
                        "type": "object",
                        "properties": {
                            "message": {"type": "string"},
                            "issues": {"type": "array", "items": {"type": "object"}},
                        },
                    },
                ],
            }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


LISTING_EVERY_S = 2.0  # live calls' listings in the store (other instances' boards read them)
RETENTION_EVERY_S = 3600.0  # how often old audio and transcripts are looked for


def mark_interrupted(store: Store, instance_id: str) -> None:
    """Calls this instance left active (it crashed or was killed) are interrupted."""
    try:
        ids = store.mark_interrupted(instance_id)
    except StoreError as exc:
        log.error("cannot mark this instance's unfinished calls interrupted: %s", exc)
        return
    if ids:
        log.warning(
            "%d call(s) were live when instance %s stopped; marked interrupted: %s",
            len(ids),
            instance_id,
            ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else ""),
        )


def apply_retention(cw: App) -> None:
    """Delete audio and transcripts older than ``retention_days`` (kept: scores, alerts and
    the audit trail of the deletion)."""
    assert cw.store is not None and cw.config.retention_days
    summary = run_retention(
        cw.store,
        cw.config.retention_days,
        # our own copies only: recordings in the configured folders belong to their owners
        audio_roots=[cw.audits.uploads],
        by=f"retention:{cw.config.instance_id}",
    )
    log.info("retention: %s", summary)


async def every(period_s: float, fn: Callable[[], Any], what: str, thread: bool = False) -> None:
    """Run ``fn`` every ``period_s`` until cancelled; a failure is logged, not fatal."""
    while True:
        await asyncio.sleep(period_s)
        try:
            if thread:
                await asyncio.to_thread(fn)
            else:
                fn()
        except Exception:
            log.exception("%s failed", what)


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

    @app.get("/v1/rules", dependencies=[guard("rules:read")])
    async def list_rules(request: Request) -> dict[str, Any]:
        return dict(await _rules_call(rules_of(request).list_packs))

    @app.post("/v1/rules/validate", dependencies=[guard("rules:edit")])
    async def validate_rules(request: Request) -> dict[str, Any]:
        body, _ = await _rules_body(request, '"yaml"')
        pack: RulePack = await _rules_call(rules_of(request).validate, _yaml_of(body))
        return {"ok": True, "pack": pack.pack, "rules": len(pack.rules)}

    @app.post("/v1/rules/test", dependencies=[guard("rules:edit")])
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

    @app.get("/v1/calls/{call_id}/explain/{rule_id}", dependencies=[guard("calls:read")])
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

    @app.get("/v1/rules/{pack}", dependencies=[guard("rules:read")])
    async def get_pack(request: Request, pack: str) -> dict[str, Any]:
        return dict(await _rules_call(rules_of(request).get_pack, pack))

    @app.put("/v1/rules/{pack}", dependencies=[guard("rules:edit")])
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

    @app.delete("/v1/rules/{pack}", dependencies=[guard("rules:edit")])
    async def delete_pack(request: Request, pack: str) -> dict[str, Any]:
        comment = request.headers.get("x-callwatch-comment") or ""
        info = await _rules_call(
            rules_of(request).delete_pack, pack, request_user(request), comment
        )
        return {**info.to_dict(), "deleted": True}

    @app.get("/v1/rules/{pack}/versions", dependencies=[guard("rules:read")])
    async def list_versions(request: Request, pack: str) -> dict[str, Any]:
        return {"pack": pack, "versions": await _rules_call(rules_of(request).versions, pack)}

    @app.get("/v1/rules/{pack}/versions/{n}", dependencies=[guard("rules:read")])
    async def get_version(request: Request, pack: str, n: RowId) -> dict[str, Any]:
        return dict(await _rules_call(rules_of(request).version, pack, n))

    @app.post("/v1/rules/{pack}/versions/{n}/restore", dependencies=[guard("rules:edit")])
    async def restore_version(request: Request, pack: str, n: RowId) -> dict[str, Any]:
        comment = request.headers.get("x-callwatch-comment") or ""
        raw = await request.body()
        if raw and "json" in request.headers.get("content-type", ""):
            _, comment = await _rules_body(request, '"comment"')
        info, changed = await _rules_call(
            rules_of(request).restore, pack, n, request_user(request), comment
        )
        return _version_reply(info, changed)

    @app.get("/v1/rules/{pack}/rules/{rule_id}", dependencies=[guard("rules:read")])
    async def get_rule(request: Request, pack: str, rule_id: str) -> dict[str, Any]:
        return dict(await _rules_call(rules_of(request).get_rule, pack, rule_id))

    @app.put("/v1/rules/{pack}/rules/{rule_id}", dependencies=[guard("rules:edit")])
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

    @app.delete("/v1/rules/{pack}/rules/{rule_id}", dependencies=[guard("rules:edit")])
    async def delete_rule(request: Request, pack: str, rule_id: str) -> dict[str, Any]:
        comment = request.headers.get("x-callwatch-comment") or ""
        info, changed = await _rules_call(
            rules_of(request).delete_rule, pack, rule_id, request_user(request), comment
        )
        return _version_reply(info, changed)


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
    @app.get("/v1/playbooks", dependencies=[guard("playbooks:read")])
    async def list_playbooks(request: Request) -> dict[str, Any]:
        cw: App = request.app.state.cw
        return {"playbooks": cw.assist.describe() if cw.assist else [], "enabled": bool(cw.assist)}

    @app.post(
        "/v1/calls/{call_id}/suggestions/{sid}/feedback", dependencies=[guard("feedback:write")]
    )
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
        # the guard let an agent in on its own calls only; it speaks for itself
        who = principal_of(request).own_agent or body.get("agent_id") or call_agent
        row = await asyncio.to_thread(
            cw.store.add_feedback,
            call_id=call_id,
            suggestion_id=sid,
            agent_id=who,
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

    @app.get("/v1/suggestions/feedback", dependencies=[guard("feedback:read")])
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


class TokenBucket:
    """A message rate limit with a burst allowance (one per connection): ``rate`` tokens a
    second refill a bucket of ``burst``; each message takes one. ``rate`` <= 0: no limit."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(float(burst), 1.0)
        self.tokens = self.burst
        self.at = time.monotonic()

    def take(self) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


def _message_bytes(msg: Mapping[str, Any], limit: int) -> int:
    """A WebSocket message's size (text as UTF-8), exact where it could matter."""
    text = msg.get("text")
    if text is not None:
        return len(text) if len(text) * 4 <= limit else len(text.encode("utf-8"))
    return len(msg.get("bytes") or b"")


def _over_limits(
    cw: App, msg: Mapping[str, Any], bucket: TokenBucket
) -> tuple[int, str, str] | None:
    """(close code, reason, call's ended reason) when ``msg`` breaks a limit, else None.
    uvicorn's ``ws_max_size`` refuses big frames before they get here; this check keeps a
    server started without it (embedded, tests) just as safe."""
    size, limit = _message_bytes(msg, cw.config.max_frame_bytes), cw.config.max_frame_bytes
    if size > limit:
        return 1009, f"message of {size} bytes: over the {limit} byte limit", "frame_too_large"
    if not bucket.take():
        rate, burst = cw.config.ingest_msgs_per_s, cw.config.ingest_burst
        return 1008, f"over {rate:g} messages/s (burst {burst}): stream closed", "rate_limited"
    return None


async def run_ingest(cw: App, ws: WebSocket, adapter: Any, first: str | None = None) -> None:
    """Pump one call's WebSocket through its protocol adapter into a LiveCall. ``first`` is
    a text message the access check already read (a raw start message)."""
    call: LiveCall | None = None
    errors = 0
    peer = f"{ws.client.host}:{ws.client.port}" if ws.client else "?"
    bucket = TokenBucket(cw.config.ingest_msgs_per_s, cw.config.ingest_burst)
    pending: list[Mapping[str, Any]] = [] if first is None else [{"type": "x", "text": first}]
    ended_reason = "disconnected"
    try:
        while True:
            msg = pending.pop() if pending else await ws.receive()
            if msg["type"] == "websocket.disconnect":
                if msg.get("code") == 1012:  # uvicorn closing its sockets: we are stopping
                    ended_reason = "server_shutdown"
                break
            over = _over_limits(cw, msg, bucket)
            if over is not None:
                code, reason, ended_reason = over
                stats = access_stats(ws.app)
                if code == 1009:
                    stats.ingest_too_large += 1
                else:
                    stats.ingest_rate_limited += 1
                log.warning(
                    "%s %s (%s): %s", adapter.protocol, call.call_id if call else "-", peer, reason
                )
                await ws.close(code=code, reason=reason[:120])
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
        await cw.calls.end(call, ended_reason)
    if ws.client_state == WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await ws.close()


async def stream_events(
    cw: App, ws: WebSocket, call_id: str | None = None, agent_id: str | None = None
) -> None:
    """Send matching events as JSON text frames until the client leaves. The route's guard
    accepted the socket and checked who is asking; an agent only ever gets its own calls'
    events (the bus filters on the agent too, not only the guard)."""
    own = principal_of(ws).own_agent
    sub = cw.bus.subscribe(call_id=call_id, agent_id=agent_id or own)
    # A late joiner (or a panel reconnecting) first gets what its calls already said, then
    # live events, with no repeats.
    sent_upto: dict[str, int] = {}
    backlog = [
        c
        for c in list(cw.calls.calls.values())
        if (
            (call_id is not None and c.call_id == call_id)
            or (agent_id is not None and c.active and c.info.agent_id == agent_id)
        )
        and (own is None or c.info.agent_id == own)
    ]
    for c in backlog:
        for ev in list(c.events):
            await ws.send_json(ev)
            sent_upto[c.call_id] = ev["seq"]
    # Calls live on other instances (or ended): what they said so far comes from the store,
    # the rest over the bus; a gap between the two is filled from the store.
    remote = set(await asyncio.to_thread(remote_call_ids, cw, call_id, agent_id or own, backlog))
    for cid in sorted(remote):
        for ev in await asyncio.to_thread(stored_events, cw.store, cid, 0):
            await ws.send_json(ev)
            sent_upto[cid] = ev["seq"]

    async def pump() -> None:
        while True:
            ev = await sub.queue.get()
            if ev is None:
                await ws.close(code=1013, reason="subscriber too slow; reconnect")
                return
            cid = ev["call_id"]
            if ev["seq"] <= sent_upto.get(cid, 0):
                continue
            if cid in remote and ev["seq"] > sent_upto.get(cid, 0) + 1:
                for missed in await fill_gap(cw.store, cid, sent_upto.get(cid, 0), ev["seq"]):
                    await ws.send_json(missed)
            await ws.send_json(ev)
            sent_upto[cid] = ev["seq"]

    async def watch() -> None:
        # nothing is expected from the client; a flood is cut off like on ingest
        bucket = TokenBucket(cw.config.ingest_msgs_per_s, cw.config.ingest_burst)
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            if not bucket.take():
                await ws.close(code=1008, reason="too many messages on an event stream")
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


def remote_call_ids(
    cw: App, call_id: str | None, agent_id: str | None, local: list[LiveCall]
) -> list[str]:
    """Calls a new event stream follows that are not live here: the one call asked for, or
    an agent's calls live on other instances."""
    if cw.store is None:
        return []
    here = {c.call_id for c in local} | set(cw.calls.calls)
    try:
        if call_id is not None:
            return [] if call_id in here else [call_id]
        rows = remote_live_calls(cw.store, cw.config.instance_id, here)
    except StoreError as exc:
        log.error("event stream backlog unavailable: %s", exc)
        return []
    return [r["call_id"] for r in rows if agent_id is None or r.get("agent_id") == agent_id]


def stored_events(store: Store | None, call_id: str, after_seq: int) -> list[dict[str, Any]]:
    """A call's stored events after ``after_seq``; [] when the store cannot be read."""
    if store is None:
        return []
    try:
        return [e for e in store.events_for(call_id) if e["seq"] > after_seq]
    except StoreError as exc:
        log.error("call %s: stored events unavailable: %s", call_id, exc)
        return []


async def fill_gap(
    store: Store | None, call_id: str, sent: int, next_seq: int, wait_s: float = 3.0
) -> list[dict[str, Any]]:
    """The events between ``sent`` and ``next_seq`` that the bus delivered before this
    stream subscribed; the instance running the call stores them within a fraction of a
    second, so wait that long for them."""
    deadline = time.monotonic() + wait_s
    while True:
        got = [
            e
            for e in await asyncio.to_thread(stored_events, store, call_id, sent)
            if e["seq"] < next_seq
        ]
        if len(got) == next_seq - sent - 1 or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.1)


def serve(config: ServerConfig, host: str = "127.0.0.1", port: int = 8080) -> None:
    import uvicorn

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # the access log must not keep the agent panel's sign-in tokens (?token=...)
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config.setdefault("filters", {})["redact_tokens"] = {"()": RedactTokens}
    log_config["handlers"]["access"]["filters"] = ["redact_tokens"]
    uvicorn.run(
        create_app(config),
        log_config=log_config,
        host=host,
        port=port,
        ws_max_size=config.max_frame_bytes,
        log_level="info",
        ws_ping_interval=20,
        ws_ping_timeout=20,
    )
