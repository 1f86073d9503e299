"""``callwatch replay``: play a recording into a server as a live call, in real time.

Speaks the chosen protocol exactly as the telephony platform would (Twilio Media Streams,
Genesys AudioHook or raw PCM), in 20 ms frames paced by the wall clock (``speed`` > 1 plays
faster), while listening on ``/v1/calls/{id}/events`` and reporting each event with its
latency: how long after the moment it describes (in replayed time) it arrived.

Credentials (a server with auth on, see docs/security.md): ``token`` is sent as a Bearer
token on the ingest stream (any protocol; an ``ingest`` or admin token) and, unless
``events_token`` says otherwise, on the event stream (that one needs a role that may read
calls). ``twilio_auth_token`` signs a Twilio stream as Twilio does (``public_url``: the URL
the server believes it is called at), ``api_key`` and ``client_secret`` make an AudioHook
stream carry the API key and the HTTP message signature as Genesys Cloud sends them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import soundfile as sf
import websockets
from scipy.signal import resample_poly

from assist.ingest_auth import audiohook_sign, twilio_signature
from audio.codecs import float_to_int16, pcm16_to_ulaw
from audio.protocols import twilio
from audio.protocols.audiohook import client_message
from audio.resample import streamable

FRAME_S = 0.02


@dataclass
class ReplayResult:
    call_id: str
    events: list[dict[str, Any]] = field(default_factory=list)
    latency: dict[str, list[float]] = field(default_factory=dict)  # event type -> seconds
    audio_s: float = 0.0


def load_legs(
    path: str, customer: str | None, agent_channel: str = "left"
) -> tuple[int, np.ndarray, np.ndarray]:
    """(rate, agent, customer) at the file's own rate."""
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    if customer:
        cdata, crate = sf.read(customer, dtype="float32", always_2d=True)
        if crate != rate:
            raise ValueError(f"{path} and {customer} have different sample rates")
        n = max(len(data), len(cdata))
        agent = np.pad(data[:, 0], (0, n - len(data)))
        cust = np.pad(cdata[:, 0], (0, n - len(cdata)))
        return int(rate), agent, cust
    if data.shape[1] == 1:
        # A mono mix: only the raw protocol's "mixed" channel can carry it (see replay(mixed=)).
        return int(rate), data[:, 0].copy(), np.zeros(len(data), dtype=np.float32)
    if data.shape[1] != 2:
        raise ValueError(f"{path} has {data.shape[1]} channels: expected mono or stereo")
    a = 0 if agent_channel == "left" else 1
    return int(rate), data[:, a].copy(), data[:, 1 - a].copy()


def _resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return x
    g = gcd(rate, target)
    return np.asarray(resample_poly(x, target // g, rate // g), dtype=np.float32)


async def replay(
    url: str,
    path: str,
    customer: str | None = None,
    protocol: str = "twilio",
    speed: float = 1.0,
    call_id: str | None = None,
    agent_id: str = "agent-1",
    language: str | None = None,
    agent_channel: str = "left",
    on_event: Callable[[dict[str, Any], float], None] | None = None,
    drop_at_s: float | None = None,
    settle_s: float = 30.0,
    mixed: bool | None = None,
    hold_at_s: float | None = None,
    release: threading.Event | None = None,
    token: str | None = None,
    events_token: str | None = None,
    twilio_auth_token: str | None = None,
    public_url: str | None = None,
    api_key: str | None = None,
    client_secret: str | None = None,
) -> ReplayResult:
    """Stream one call into ``url`` (``ws://host:port``); returns the events it got back.

    ``mixed`` sends one mono mix of both sides (raw protocol, channel ``mixed``) so the
    server has to find the speakers; mono files are always sent that way.

    ``hold_at_s`` with ``release`` stops sending at that point of the recording, keeping the
    call open, until ``release`` is set (a call that stays live for as long as a test needs).

    ``drop_at_s`` cuts the connection abruptly at that point of the recording (a hang-up
    without a stop message), for fault tests.

    ``token`` ... ``client_secret``: the credentials, see the module docstring.
    """
    rate, agent, cust = load_legs(path, customer, agent_channel)
    if mixed is None:
        mixed = customer is None and sf.info(path).channels == 1
    if mixed:
        if protocol != "raw":
            raise ValueError("a mono mix can only be replayed with --protocol raw")
        agent = agent if not np.any(cust) else (agent + cust) / 2
        cust = np.zeros_like(agent)
    call_id = call_id or f"replay-{Path(path).stem}-{uuid.uuid4().hex[:6]}"
    conv_id = str(uuid.uuid4())
    events_id = conv_id if protocol == "audiohook" else call_id
    result = ReplayResult(events_id, audio_s=len(agent) / rate)
    t0_box: list[float] = []
    ended = asyncio.Event()

    listen_token = events_token or token
    listen_headers = {"Authorization": f"Bearer {listen_token}"} if listen_token else None

    async def listen() -> None:
        try:
            await follow()
        finally:  # refused or gone: nothing more to wait for
            ready.set()
            ended.set()

    async def follow() -> None:
        async with websockets.connect(
            f"{url}/v1/calls/{events_id}/events", max_size=None, additional_headers=listen_headers
        ) as ev_ws:
            ready.set()
            async for raw in ev_ws:
                ev = json.loads(raw)
                now = time.monotonic()
                lat = float("nan")
                if t0_box:
                    ref = (
                        ev.get("t_end", ev["t"]) if ev["type"].startswith("transcript") else ev["t"]
                    )
                    lat = now - (t0_box[0] + ref / speed)
                result.events.append(ev)
                result.latency.setdefault(ev["type"], []).append(lat)
                if on_event:
                    on_event(ev, lat)
                if ev["type"] == "call.ended":
                    ended.set()
                    return

    ready = asyncio.Event()
    listener = asyncio.create_task(listen())
    await asyncio.wait_for(ready.wait(), 10)

    if protocol in ("twilio", "audiohook"):
        a8, c8 = _resample(agent, rate, 8000), _resample(cust, rate, 8000)
        send_rate = 8000
    else:
        send_rate = rate if streamable(rate) else 16000
        a8, c8 = _resample(agent, rate, send_rate), _resample(cust, rate, send_rate)
    frame = int(send_rate * FRAME_S)
    n_frames = -(-len(a8) // frame)
    if drop_at_s is not None:
        n_frames = min(n_frames, int(drop_at_s / FRAME_S))

    org_id = str(uuid.uuid4())
    headers = ingest_headers(
        url,
        protocol,
        conv_id,
        org_id,
        token=token,
        twilio_auth_token=twilio_auth_token,
        public_url=public_url,
        api_key=api_key,
        client_secret=client_secret,
    )
    try:
        async with websockets.connect(
            f"{url}/v1/ingest/{protocol}", max_size=None, additional_headers=headers
        ) as ws:
            sender = _Sender(protocol, ws, call_id, conv_id, agent_id, language, send_rate, mixed)
            sender.org_id = org_id
            await sender.begin()
            t0 = time.monotonic()
            t0_box.append(t0)
            hold_frame = int(hold_at_s / FRAME_S) if hold_at_s is not None and release else -1
            for k in range(n_frames):
                if k == hold_frame and release is not None:
                    # keep the call open, sending nothing, until the caller lets it go on
                    while not release.is_set():
                        await asyncio.sleep(0.05)
                    t0 = time.monotonic() - k * FRAME_S / speed
                    t0_box[0] = t0
                delay = t0 + k * FRAME_S / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                a = a8[k * frame : (k + 1) * frame]
                c = c8[k * frame : (k + 1) * frame]
                if len(c) < len(a):
                    c = np.pad(c, (0, len(a) - len(c)))
                await sender.frame(k, a, c)
            if drop_at_s is None:
                await sender.end()
            else:
                # abrupt hang-up: no stop / close message, just drop the TCP connection
                with contextlib.suppress(Exception):
                    ws.transport.abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ended.wait(), settle_s)
    finally:  # refused, dropped or done: the listener goes too
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await listener
    return result


def ingest_headers(
    url: str,
    protocol: str,
    session_id: str,
    org_id: str,
    *,
    token: str | None = None,
    twilio_auth_token: str | None = None,
    public_url: str | None = None,
    api_key: str | None = None,
    client_secret: str | None = None,
) -> dict[str, str]:
    """The upgrade request's headers for ``{url}/v1/ingest/{protocol}``, as the platform
    sends them: Twilio's signature of the URL, AudioHook's ids, API key and signature."""
    headers: dict[str, str] = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    base = (public_url or url).rstrip("/")
    path = f"/v1/ingest/{protocol}"
    if protocol == "twilio" and twilio_auth_token:
        headers["X-Twilio-Signature"] = twilio_signature(twilio_auth_token, base + path)
    if protocol == "audiohook" and api_key:
        parts = urlsplit(base)
        headers.update(
            {
                "Audiohook-Organization-Id": org_id,
                "Audiohook-Correlation-Id": str(uuid.uuid4()),
                "Audiohook-Session-Id": session_id,
                "X-API-KEY": api_key,
            }
        )
        if client_secret:
            headers.update(
                audiohook_sign(
                    headers,
                    target=parts.path.rstrip("/") + path,
                    authority=parts.netloc,
                    client_secret=client_secret,
                )
            )
    return headers


class _Sender:
    """Protocol framing for the replay client."""

    def __init__(
        self,
        protocol: str,
        ws: Any,
        call_id: str,
        conv_id: str,
        agent_id: str,
        language: str | None,
        rate: int,
        mixed: bool = False,
    ) -> None:
        self.p = protocol
        self.mixed = mixed
        self.rate = rate
        self.server_seq = 0
        self.ws = ws
        self.call_id = call_id
        self.conv_id = conv_id
        self.agent_id = agent_id
        self.language = language
        self.seq = 0
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.last_ping = 0.0
        self.org_id = str(uuid.uuid4())

    def _ah(self, type_: str, params: dict[str, Any], position: float) -> str:
        self.seq += 1
        return client_message(type_, self.seq, self.conv_id, params, self.server_seq, position)

    async def begin(self) -> None:
        if self.p == "twilio":
            await self.ws.send(
                json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            )
            self.seq = 1
            custom = {"agent_id": self.agent_id, "call_id": self.call_id}
            if self.language:
                custom["language"] = self.language
            await self.ws.send(
                twilio.start_message(self.stream_sid, "CA" + uuid.uuid4().hex, custom)
            )
        elif self.p == "audiohook":
            params: dict[str, Any] = {
                "organizationId": self.org_id,
                "conversationId": self.conv_id,
                "participant": {
                    "id": str(uuid.uuid4()),
                    "ani": "+15555550100",
                    "aniName": "Caller",
                    "dnis": "+18005550199",
                },
                "media": [
                    {
                        "type": "audio",
                        "format": "PCMU",
                        "channels": ["external", "internal"],
                        "rate": 8000,
                    },
                    {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000},
                ],
                "customConfig": {"agent_id": self.agent_id},
            }
            if self.language:
                params["language"] = f"{self.language}-{'US' if self.language == 'en' else 'CN'}"
            await self.ws.send(self._ah("open", params, 0.0))
            opened = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if opened.get("type") != "opened":
                raise RuntimeError(f"AudioHook server answered {opened}")
            self.server_seq = opened["seq"]
            self._bg = asyncio.create_task(self._drain())
        else:
            await self.ws.send(
                json.dumps(
                    {
                        "type": "start",
                        "call_id": self.call_id,
                        "agent_id": self.agent_id,
                        "sample_rate": self.rate,
                        "encoding": "pcm16",
                        "channels": ["mixed"] if self.mixed else ["agent", "customer"],
                        **({"language": self.language} if self.language else {}),
                    }
                )
            )

    async def _drain(self) -> None:
        """AudioHook: read server messages (pong, closed) and track their seq."""
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                if isinstance(raw, str):
                    msg = json.loads(raw)
                    self.server_seq = msg.get("seq", self.server_seq)
                    if msg.get("type") == "closed":
                        return

    async def frame(self, k: int, agent: np.ndarray, cust: np.ndarray) -> None:
        if self.p == "twilio":
            ts = str(int(k * FRAME_S * 1000))
            for track, x in (("outbound", agent), ("inbound", cust)):
                self.seq += 1
                payload = base64.b64encode(pcm16_to_ulaw(float_to_int16(x))).decode()
                await self.ws.send(
                    twilio.client_message(
                        "media",
                        self.seq,
                        self.stream_sid,
                        media={
                            "track": track,
                            "chunk": str(k + 1),
                            "timestamp": ts,
                            "payload": payload,
                        },
                    )
                )
        elif self.p == "audiohook":
            ext = np.frombuffer(pcm16_to_ulaw(float_to_int16(cust)), dtype=np.uint8)
            inn = np.frombuffer(pcm16_to_ulaw(float_to_int16(agent)), dtype=np.uint8)
            await self.ws.send(np.stack([ext, inn], axis=1).tobytes())
            now = time.monotonic()
            if now - self.last_ping > 5.0:
                self.last_ping = now
                await self.ws.send(self._ah("ping", {}, k * FRAME_S))
        elif self.mixed:
            await self.ws.send(float_to_int16(agent).astype("<i2").tobytes())
        else:
            pcm = np.stack([float_to_int16(agent), float_to_int16(cust)], axis=1)
            await self.ws.send(pcm.astype("<i2").tobytes())

    async def end(self) -> None:
        if self.p == "twilio":
            self.seq += 1
            await self.ws.send(
                twilio.client_message(
                    "stop",
                    self.seq,
                    self.stream_sid,
                    stop={"accountSid": "AC" + "0" * 32, "callSid": "CA"},
                )
            )
        elif self.p == "audiohook":
            await self.ws.send(self._ah("close", {"reason": "end"}, 0.0))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._bg, 30)
        else:
            await self.ws.send(json.dumps({"type": "stop"}))
            with contextlib.suppress(Exception):
                async with asyncio.timeout(30):
                    while json.loads(await self.ws.recv()).get("type") != "stopped":
                        pass
