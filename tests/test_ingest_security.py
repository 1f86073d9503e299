"""Ingest security on a running server: each protocol's own credential is checked on the
WebSocket upgrade, before any audio is read (Twilio's request signature, AudioHook's API key
and HTTP message signature, a raw stream's token), and the per-connection limits (message
rate, frame size) close a stream while keeping what the call said so far. The server sits
"behind a proxy": it is configured with a public URL its clients sign for, not the local
address they really connect to."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from assist.cli import main as cli_main
from assist.ingest_auth import (
    AudioHookVerifier,
    SfError,
    audiohook_sign,
    parse_dictionary,
    twilio_signature,
    twilio_valid,
)
from assist.replay import ingest_headers, replay
from assist.server import App
from audio.protocols.audiohook import client_message
from audio.protocols.twilio import start_message
from tests.conftest import DEMO
from tests.live_server import auth_header, make_state, make_tokens, running_server

PUBLIC = "wss://callwatch.example.com"
TWILIO_TOKEN = "twilio-auth-token-for-tests"
API_KEY = "ah-key-1"
SECRET = base64.b64encode(b"a 32-byte client secret for test").decode()

# -- the schemes against published examples (no server) -----------------------------------------


def test_twilio_signature_matches_twilios_own_test_vectors() -> None:
    """twilio-python's RequestValidator tests: URL + sorted POST params, HMAC-SHA1, base64;
    a URL with a port validates against the signature made without it and vice versa."""
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
        "Caller": "+14158675309",
    }
    assert twilio_signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    # a Media Streams upgrade is a GET: the URL alone is signed
    sig = twilio_signature("12345", "wss://mycompany.com/v1/ingest/twilio")
    assert twilio_valid("12345", "wss://mycompany.com:443/v1/ingest/twilio", sig)
    assert twilio_valid("12345", "wss://mycompany.com/v1/ingest/twilio/", sig)
    assert not twilio_valid("12345", "wss://evil.example.com/v1/ingest/twilio", sig)
    assert not twilio_valid("other", "wss://mycompany.com/v1/ingest/twilio", sig)
    assert not twilio_valid("12345", "wss://mycompany.com/v1/ingest/twilio", "")


# Genesys' own example request (developer.genesys.cloud, AudioHook session walkthrough).
GENESYS = {
    "audiohook-organization-id": "d7934305-0972-4844-938e-9060eef73d05",
    "audiohook-correlation-id": "e160e428-53e2-487c-977d-96989bf5c99d",
    "audiohook-session-id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
    "x-api-key": "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh",
    "signature": "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:",
    "signature-input": 'sig1=("@request-target" "@authority" "audiohook-organization-id" '
    '"audiohook-session-id" "audiohook-correlation-id" "x-api-key");'
    'keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";'
    'alg="hmac-sha256";created=1641013200;expires=3282026430',
}
GENESYS_SECRET = "TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU="
GENESYS_TARGET, GENESYS_HOST = "/api/v1/voicebiometrics/ws", "audiohook.example.com"


def test_audiohook_signature_matches_the_genesys_example() -> None:
    headers = Headers(headers=GENESYS)
    verifier = AudioHookVerifier([GENESYS["x-api-key"]], GENESYS_SECRET)
    at = 1641013201.0
    assert verifier.check(headers, GENESYS_TARGET, GENESYS_HOST, now=at) is None
    # the same request again: its nonce was used
    assert "already used" in str(verifier.check(headers, GENESYS_TARGET, GENESYS_HOST, now=at))
    fresh = AudioHookVerifier([GENESYS["x-api-key"]], GENESYS_SECRET)
    assert "expired" in str(fresh.check(headers, GENESYS_TARGET, GENESYS_HOST, now=at + 60))
    assert "does not match" in str(fresh.check(headers, "/other/path", GENESYS_HOST, now=at))
    # signing the same request reproduces Genesys' signature byte for byte
    unsigned = {k: v for k, v in GENESYS.items() if not k.startswith("signature")}
    signed = audiohook_sign(
        unsigned,
        target=GENESYS_TARGET,
        authority=GENESYS_HOST,
        client_secret=GENESYS_SECRET,
        created=1641013200,
        expires=3282026430,
        nonce="VGhpc0lzQVVuaXF1ZU5vbmNl",
    )
    assert signed["Signature"] == GENESYS["signature"]
    assert signed["Signature-Input"] == GENESYS["signature-input"]


def test_audiohook_signature_must_cover_the_session_headers() -> None:
    verifier = AudioHookVerifier([GENESYS["x-api-key"]], GENESYS_SECRET)
    narrow = dict(GENESYS)
    narrow["signature-input"] = GENESYS["signature-input"].replace(' "x-api-key"', "")
    problem = verifier.check(Headers(headers=narrow), GENESYS_TARGET, GENESYS_HOST, now=1641013201)
    assert problem == "signature does not cover x-api-key"


@pytest.mark.parametrize(
    "text",
    ['sig1=("a" "b"', "sig1=:not base64!:", 'sig1=("a");created=1x', "Sig1=:AA==:", "sig1=(1 2),"],
)
def test_malformed_signature_headers_are_errors(text: str) -> None:
    with pytest.raises(SfError):
        parse_dictionary(text)


# -- a running server -----------------------------------------------------------------------------


@dataclass
class Server:
    state: App
    ws: str
    http: str
    tokens: dict[str, str]

    def metrics(self) -> dict[str, Any]:
        r = httpx.get(f"{self.http}/metrics", headers=auth_header(self.tokens["admin"]))
        return dict(r.json())

    def call(self, call_id: str) -> dict[str, Any] | None:
        r = httpx.get(
            f"{self.http}/v1/calls/{call_id}", headers=auth_header(self.tokens["supervisor"])
        )
        return r.json() if r.status_code == 200 else None

    def ended(self, call_id: str, timeout_s: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            d = self.call(call_id)
            if d is not None and d.get("status") == "ended":
                return d
            time.sleep(0.2)
        raise AssertionError(f"call {call_id} did not end")


@pytest.fixture(scope="module")
def server(asr, packs) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    state = make_state(
        asr,
        packs,
        auth=True,
        diarize=False,
        assist=False,
        public_url=PUBLIC,
        twilio_auth_token=TWILIO_TOKEN,
        audiohook_api_keys=["ah-key-0", API_KEY],
        audiohook_client_secret=SECRET,
    )
    tokens = make_tokens(state, "alice")
    try:
        with running_server(state) as ws:
            yield Server(state, ws, ws.replace("ws://", "http://"), tokens)
    finally:
        state.close()


@contextlib.contextmanager
def limits(state: App, **kw: Any) -> Iterator[None]:
    """Change the server's limits for one test (read per connection)."""
    old = {k: getattr(state.config, k) for k in kw}
    for k, v in kw.items():
        setattr(state.config, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(state.config, k, v)


def refused(url: str, headers: dict[str, str], messages: list[str | bytes]) -> tuple[int, str]:
    """Open an ingest stream, send what the platform would, return how the server closed it."""
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        try:
            for m in messages:
                ws.send(m)
            while True:
                ws.recv(timeout=15)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None, "closed without a close frame"
            return exc.rcvd.code, exc.rcvd.reason
    raise AssertionError("the server kept the stream open")


def _no_call(server: Server, call_id: str) -> bool:
    store = server.state.store
    return call_id not in server.state.calls.calls and (
        store is None or store.get_report(call_id) is None
    )


def _finals(events: list[dict[str, Any]]) -> list[str]:
    return [e["text"] for e in events if e["type"] == "transcript.final"]


pytestmark_slow = pytest.mark.slow


@pytestmark_slow
def test_twilio_stream_signed_for_the_public_url_is_transcribed(server: Server) -> None:
    res = asyncio.run(
        replay(
            server.ws,
            str(DEMO / "clean_call.wav"),
            protocol="twilio",
            speed=16.0,
            agent_id="alice",
            twilio_auth_token=TWILIO_TOKEN,
            public_url=PUBLIC,
            events_token=server.tokens["supervisor"],
        )
    )
    assert _finals(res.events) and res.events[-1]["type"] == "call.ended"
    detail = server.ended(res.call_id)
    assert detail["agent_id"] == "alice" and detail["transcript"]


@pytestmark_slow
@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing X-Twilio-Signature"),
        (
            {"X-Twilio-Signature": twilio_signature("wrong-token", f"{PUBLIC}/v1/ingest/twilio")},
            "bad X-Twilio-Signature",
        ),
        # signed for the address the proxy forwards to, not the URL Twilio was given
        ({"local": "yes"}, "bad X-Twilio-Signature"),
        ({"Authorization": "Bearer cw_not-a-token"}, "unknown or revoked token"),
    ],
)
def test_twilio_stream_without_a_good_signature_is_refused_before_audio(
    server: Server, headers: dict[str, str], reason: str
) -> None:
    if headers.get("local"):
        headers = {
            "X-Twilio-Signature": twilio_signature(TWILIO_TOKEN, f"{server.ws}/v1/ingest/twilio")
        }
    call_id = f"CA{uuid.uuid4().hex}"
    before = server.metrics()["ingest_refused"]
    code, why = refused(
        f"{server.ws}/v1/ingest/twilio",
        headers,
        [
            json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
            start_message("MZ1", call_id, {"call_id": call_id, "agent_id": "alice"}),
        ],
    )
    assert (code, reason in why) == (1008, True), why
    assert _no_call(server, call_id)
    assert server.metrics()["ingest_refused"] == before + 1


@pytestmark_slow
def test_an_ingest_token_opens_any_protocol(server: Server) -> None:
    """Connectors that can set a header use an ingest token instead of a signature."""
    call_id = f"CA{uuid.uuid4().hex}"
    url = f"{server.ws}/v1/ingest/twilio"
    with connect(url, additional_headers=auth_header(server.tokens["ingest"])) as ws:
        ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        ws.send(start_message("MZ1", call_id, {"call_id": call_id, "agent_id": "alice"}))
        ws.send(json.dumps({"event": "stop", "sequenceNumber": "3", "stop": {}}))
    assert server.ended(call_id)["agent_id"] == "alice"
    for who in ("alice", "supervisor", "qa"):
        code, why = refused(url, auth_header(server.tokens[who]), [])
        assert code == 1008 and "token may not stream calls in" in why


def _audiohook_open(session_id: str, org_id: str) -> str:
    return client_message(
        "open",
        1,
        session_id,
        {
            "organizationId": org_id,
            "conversationId": session_id,
            "participant": {"id": str(uuid.uuid4()), "ani": "", "aniName": "", "dnis": ""},
            "media": [
                {
                    "type": "audio",
                    "format": "PCMU",
                    "channels": ["external", "internal"],
                    "rate": 8000,
                }
            ],
        },
    )


@pytestmark_slow
def test_audiohook_stream_with_key_and_signature_is_transcribed(server: Server) -> None:
    res = asyncio.run(
        replay(
            server.ws,
            str(DEMO / "breach_call.wav"),
            protocol="audiohook",
            speed=16.0,
            agent_id="alice",
            api_key=API_KEY,
            client_secret=SECRET,
            public_url=PUBLIC,
            events_token=server.tokens["supervisor"],
        )
    )
    assert _finals(res.events) and res.events[-1]["type"] == "call.ended"
    assert server.ended(res.call_id)["transcript"]


def _signed(session_id: str, org_id: str, **kw: Any) -> dict[str, str]:
    key = kw.pop("api_key", API_KEY)
    secret = kw.pop("client_secret", SECRET)
    headers = {
        "Audiohook-Organization-Id": org_id,
        "Audiohook-Correlation-Id": str(uuid.uuid4()),
        "Audiohook-Session-Id": session_id,
        "X-API-KEY": key,
    }
    return {
        **headers,
        **audiohook_sign(
            headers,
            target="/v1/ingest/audiohook",
            authority="callwatch.example.com",
            client_secret=secret,
            **kw,
        ),
    }


@pytestmark_slow
@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no key", "needs an X-API-KEY"),
        ("wrong key", "unknown AudioHook API key"),
        ("unsigned", "not signed"),
        ("other secret", "signature does not match"),
        ("expired", "expired"),
        ("signed for the local address", "signature does not match"),
    ],
)
def test_audiohook_stream_without_good_credentials_is_refused_before_audio(
    server: Server, case: str, reason: str
) -> None:
    sid, org = str(uuid.uuid4()), str(uuid.uuid4())
    if case == "no key":
        headers: dict[str, str] = {}
    elif case == "wrong key":
        headers = _signed(sid, org, api_key="ah-key-9")
    elif case == "unsigned":
        headers = {k: v for k, v in _signed(sid, org).items() if not k.startswith("Signature")}
    elif case == "other secret":
        headers = _signed(sid, org, client_secret=base64.b64encode(b"guess").decode())
    elif case == "expired":
        headers = _signed(sid, org, created=int(time.time()) - 60)
    else:
        headers = ingest_headers(
            server.ws, "audiohook", sid, org, api_key=API_KEY, client_secret=SECRET
        )
    before = server.metrics()["ingest_refused"]
    code, why = refused(
        f"{server.ws}/v1/ingest/audiohook", headers, [_audiohook_open(sid, org), bytes(320)]
    )
    assert (code, reason in why) == (1008, True), why
    assert _no_call(server, sid)
    assert server.metrics()["ingest_refused"] == before + 1


@pytestmark_slow
def test_a_replayed_audiohook_request_is_refused(server: Server) -> None:
    sid, org = str(uuid.uuid4()), str(uuid.uuid4())
    headers = _signed(sid, org)
    url = f"{server.ws}/v1/ingest/audiohook"
    with connect(url, additional_headers=headers) as ws:
        ws.send(_audiohook_open(sid, org))
        assert json.loads(ws.recv(timeout=10))["type"] == "opened"
        ws.send(client_message("close", 2, sid, {"reason": "end"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "closed"
    code, why = refused(url, headers, [_audiohook_open(sid, org)])
    assert code == 1008 and "nonce already used" in why


@pytestmark_slow
def test_raw_stream_needs_an_ingest_token(server: Server) -> None:
    url = f"{server.ws}/v1/ingest/raw"
    call_id = f"raw-{uuid.uuid4().hex[:8]}"
    start = {"type": "start", "call_id": call_id, "agent_id": "alice", "sample_rate": 16000}
    code, why = refused(url, {}, [json.dumps(start), bytes(640)])
    assert code == 1008 and "a token is needed" in why
    code, why = refused(url, {}, [bytes(640)])  # audio first: no start, no token
    assert code == 1008 and "a token is needed" in why
    code, why = refused(url, auth_header(server.tokens["alice"]), [json.dumps(start)])
    assert code == 1008 and "an agent token may not stream calls in" in why
    bad = {**start, "token": "cw_forged"}
    code, why = refused(url, {}, [json.dumps(bad)])
    assert code == 1008 and "unknown or revoked token" in why
    assert _no_call(server, call_id)


@pytestmark_slow
def test_raw_token_in_the_start_message_is_used_and_never_kept(server: Server) -> None:
    call_id = f"raw-{uuid.uuid4().hex[:8]}"
    token = server.tokens["ingest"]
    start = {"type": "start", "call_id": call_id, "agent_id": "alice", "sample_rate": 16000}
    with connect(f"{server.ws}/v1/ingest/raw") as ws:
        ws.send(json.dumps({**start, "token": token}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "started", "call_id": call_id}
        ws.send(bytes(32000))  # 0.5 s of stereo silence
        ws.send(json.dumps({"type": "stop"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "stopped"
    detail = server.ended(call_id)
    assert detail["duration_s"] == pytest.approx(0.5, abs=0.05)
    assert server.state.store is not None
    stored = json.dumps(server.state.store.events_for(call_id))
    assert token not in stored and token not in json.dumps(detail)


@pytestmark_slow
def test_a_flooding_stream_is_closed_and_its_call_kept(server: Server) -> None:
    call_id = f"raw-{uuid.uuid4().hex[:8]}"
    start = {"type": "start", "call_id": call_id, "agent_id": "alice", "sample_rate": 16000}
    before = server.metrics()["ingest_rate_limited"]
    with limits(server.state, ingest_msgs_per_s=50.0, ingest_burst=100):
        headers = auth_header(server.tokens["ingest"])
        with connect(f"{server.ws}/v1/ingest/raw", additional_headers=headers) as ws:
            ws.send(json.dumps(start))
            assert json.loads(ws.recv(timeout=10))["type"] == "started"
            ws.send(bytes(32000))  # 0.5 s of audio, well within the limit
            with pytest.raises(ConnectionClosed) as closed:
                for _ in range(5000):  # 5000 tiny frames as fast as the socket takes them
                    ws.send(bytes(4))
                while True:
                    ws.recv(timeout=15)
    rcvd = closed.value.rcvd
    assert rcvd is not None and rcvd.code == 1008 and "messages/s" in rcvd.reason
    detail = server.ended(call_id)
    assert detail["ended_reason"] == "rate_limited"
    assert detail["duration_s"] >= 0.5  # what came before the flood is kept
    assert server.metrics()["ingest_rate_limited"] == before + 1


@pytestmark_slow
def test_an_oversize_message_is_refused_even_without_the_servers_frame_limit(
    server: Server,
) -> None:
    """uvicorn's ws_max_size is 256 KiB here; the server's own check (64 KiB) fires first."""
    call_id = f"raw-{uuid.uuid4().hex[:8]}"
    start = {"type": "start", "call_id": call_id, "agent_id": "alice", "sample_rate": 16000}
    with limits(server.state, max_frame_bytes=64 * 1024):
        headers = auth_header(server.tokens["ingest"])
        with connect(f"{server.ws}/v1/ingest/raw", additional_headers=headers) as ws:
            ws.send(json.dumps(start))
            ws.recv(timeout=10)
            ws.send(bytes(32000))  # 0.5 s: under the limit
            with pytest.raises(ConnectionClosed) as closed:
                ws.send(bytes(100_000))
                while True:
                    ws.recv(timeout=15)
    rcvd = closed.value.rcvd
    assert rcvd is not None and rcvd.code == 1009 and "over the 65536 byte limit" in rcvd.reason
    detail = server.ended(call_id)
    assert detail["ended_reason"] == "frame_too_large"
    assert detail["duration_s"] == pytest.approx(0.5, abs=0.05)


@pytestmark_slow
def test_replay_command_reports_a_refused_stream(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "replay",
        str(DEMO / "clean_call.wav"),
        "--url",
        server.ws,
        "--protocol",
        "audiohook",
        "--api-key",
        "ah-key-9",
        "--events-token",
        server.tokens["supervisor"],
    ]
    assert cli_main(args) == 1
    assert "the server closed the stream: 1008 unknown AudioHook API key" in capsys.readouterr().err


@pytestmark_slow
def test_an_unknown_protocol_is_refused(server: Server) -> None:
    before = server.metrics()["ingest_refused"]
    code, why = refused(f"{server.ws}/v1/ingest/sip", auth_header(server.tokens["ingest"]), [])
    assert (code, why) == (1008, "unknown protocol 'sip'")
    assert server.metrics()["ingest_refused"] == before + 1
