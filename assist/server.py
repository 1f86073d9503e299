"""``callwatch serve``: the live sidecar's HTTP and WebSocket API (FastAPI).

Ingest (one WebSocket per call):
    /v1/ingest/twilio      Twilio Media Streams
    /v1/ingest/audiohook   Genesys Cloud AudioHook
    /v1/ingest/raw         raw PCM with a JSON start message
Consume:
    WS  /v1/agents/{agent_id}/events   everything about that agent's calls
    WS  /v1/calls/{call_id}/events     one call (supervisor drill-down)
    GET /v1/calls                      active and recent calls
    GET /v1/calls/{call_id}            transcript, alerts, scorecard
    GET /healthz, GET /metrics
Push: alerts (and any other events) POSTed to webhook targets, see assist/webhooks.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, HTTPException, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from assist.bus import EventBus
from assist.session import CallManager, LiveCall, LiveConfig
from assist.store import Store
from assist.webhooks import WebhookDispatcher, WebhookTarget
from audio.protocols.audiohook import AudioHookAdapter
from audio.protocols.base import Feed, ProtocolError
from audio.protocols.raw import RawAdapter
from audio.protocols.twilio import TwilioAdapter
from models.asr import AsrConfig, WhisperAsr
from models.diarize.encoder import shared_encoder
from models.emotion import EmotionAnalyzer
from models.scheduler import AsrScheduler
from qa_rules.loader import load_packs
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
    rules: str | None = None
    db_url: str | None = None
    store: bool = True
    live: LiveConfig = field(default_factory=LiveConfig)
    webhooks: list[WebhookTarget] = field(default_factory=list)
    emotion: bool = True  # emotion events and emotion rules
    emotion_model: str | None = None  # a local speech-emotion checkpoint (else prosody)
    diarize: bool = True  # find speakers on mono "mixed" streams (raw protocol)


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
        self.packs = (
            packs
            if packs is not None
            else (load_packs(config.rules) if config.rules else load_packs())
        )
        self.scheduler = AsrScheduler(
            self.asr,
            max_batch=config.max_batch,
            workers=min(config.workers, self.asr.config.workers),
        )
        self.bus = EventBus()
        self.store = Store(config.db_url) if config.store else None
        self.emotion = EmotionAnalyzer(config.emotion_model) if config.emotion else None
        self.calls = CallManager(
            self.packs,
            self.scheduler,
            self.bus,
            self.store,
            config.live,
            self.asr.model_id,
            emotion=self.emotion,
            diarize=config.diarize,
        )
        if config.diarize:
            shared_encoder()  # load the 17 MB speaker encoder now, not on the first mono call
        self.webhooks = WebhookDispatcher(config.webhooks, self.store)
        self.started = time.time()
        self.protocol_errors = 0

    def close(self) -> None:
        self.scheduler.close()


def create_app(config: ServerConfig | None = None, state: App | None = None) -> FastAPI:
    cfg = config or ServerConfig()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cw = state if state is not None else await asyncio.to_thread(App, cfg)
        app.state.cw = cw
        cw.webhooks.start()
        cw.bus.add_listener(cw.webhooks.submit)
        yield
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

    @app.websocket("/v1/calls/{call_id}/events")
    async def call_events(ws: WebSocket, call_id: str) -> None:
        await stream_events(cw_of(ws), ws, call_id=call_id)

    @app.get("/v1/calls")
    async def list_calls(status: str | None = None) -> dict[str, Any]:
        cw: App = app.state.cw
        calls = [c.summary() for c in cw.calls.calls.values()]
        if status:
            calls = [c for c in calls if c["status"] == status]
        calls.sort(key=lambda c: (c["status"] != "active", -c["critical_alerts"], -c["started_at"]))
        return {"calls": calls}

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
    sub = cw.bus.subscribe(call_id=call_id, agent_id=agent_id)
    # A late joiner first gets what the call already said, then live events (no repeats).
    sent_upto = 0
    if call_id is not None and call_id in cw.calls.calls:
        for ev in list(cw.calls.calls[call_id].events):
            await ws.send_json(ev)
            sent_upto = ev["seq"]

    async def pump() -> None:
        while True:
            ev = await sub.queue.get()
            if ev is None:
                await ws.close(code=1013, reason="subscriber too slow; reconnect")
                return
            if call_id is not None and ev["seq"] <= sent_upto:
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
