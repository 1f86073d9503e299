"""The live sidecar against a running server: real WebSocket clients, real Whisper."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from assist.audit import audit_file
from assist.replay import replay
from assist.server import App
from audio.codecs import float_to_int16, pcm16_to_ulaw
from audio.protocols.audiohook import client_message
from audio.protocols.twilio import start_message
from tests.conftest import DEMO, shared
from tests.live_server import make_state, running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def state(asr, packs) -> Iterator[App]:  # type: ignore[no-untyped-def]
    st = make_state(asr, packs)
    yield st
    st.close()


@pytest.fixture(scope="module")
def url(state: App) -> Iterator[str]:
    with running_server(state) as u:
        yield u


def http(url: str) -> str:
    return url.replace("ws://", "http://")


def wait_ended(url: str, call_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(f"{http(url)}/v1/calls/{call_id}")
        if r.status_code == 200 and r.json().get("status") == "ended":
            return dict(r.json())
        time.sleep(0.2)
    raise AssertionError(f"call {call_id} did not end")


@pytest.fixture(scope="module")
def offline_breach(asr, packs, state: App) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return audit_file(str(DEMO / "breach_call.wav"), packs, asr, emotion=state.emotion)


def emotion_keys(events: list[dict[str, Any]]) -> list[tuple[str, float, str, float]]:
    return sorted(
        (e["speaker"], e["t"], e["label"], e["anger_index"])
        for e in events
        if e["type"] == "emotion"
    )


def alert_keys(alerts: list[dict[str, Any]]) -> list[tuple[str, float]]:
    return sorted((a["rule_id"], a["t"]) for a in alerts)


@pytest.mark.parametrize("protocol", ["twilio", "audiohook", "raw"])
def test_full_call_each_protocol(url: str, protocol: str, offline_breach: dict[str, Any]) -> None:
    res = asyncio.run(
        replay(url, str(DEMO / "breach_call.wav"), protocol=protocol, speed=8.0, agent_id="a-7")
    )
    types = [e["type"] for e in res.events]
    assert types[0] == "call.started" and types[-1] == "call.ended"
    seqs = [e["seq"] for e in res.events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    finals = [e for e in res.events if e["type"] == "transcript.final"]
    assert {e["speaker"] for e in finals} == {"agent", "customer"}
    alerts = [e for e in res.events if e["type"] == "alert"]
    # Same audio, same alerts as the offline audit (parity), whatever the protocol.
    assert alert_keys(alerts) == alert_keys(offline_breach["alerts"])
    if protocol == "raw":  # lossless transport: the voice readings agree exactly too
        assert emotion_keys(res.events) == emotion_keys(offline_breach["events"])
    ended = next(e for e in res.events if e["type"] == "call.ended")
    assert ended["reason"] in ("completed", "end")
    detail = wait_ended(url, res.call_id)
    assert detail["agent_id"] == "a-7"
    assert len(detail["transcript"]) == len(finals)


def test_live_offline_parity_on_real_call(url: str, asr, packs, state: App) -> None:  # type: ignore[no-untyped-def]
    folder = shared("stereo/aws_lca_auto_repairs_40")
    agent, caller = str(folder / "agent.wav"), str(folder / "caller.wav")
    offline = audit_file(agent, packs, asr, customer_path=caller, emotion=state.emotion)
    # raw PCM16 carries the 8 kHz PCM file losslessly (Twilio would re-encode it to µ-law)
    live = asyncio.run(replay(url, agent, customer=caller, protocol="raw", speed=12.0))
    live_finals = sorted(
        (e["speaker"], e["t"], e["text"]) for e in live.events if e["type"] == "transcript.final"
    )
    off_finals = sorted((s["speaker"], s["t"], s["text"]) for s in offline["transcript"])
    assert live_finals == off_finals
    live_alerts = [e for e in live.events if e["type"] == "alert"]
    assert alert_keys(live_alerts) == alert_keys(offline["alerts"])
    assert len(off_finals) > 40
    assert emotion_keys(live.events) == emotion_keys(offline["events"])
    # A calm real caller: no escalation, live or offline.
    assert not [a for a in live_alerts if a["rule_id"] in ("caller_angry", "deescalate")]


def test_mono_mix_gets_speakers_live(url: str, state: App) -> None:
    """One mixed channel: the server finds who speaks each utterance as the call goes."""
    folder = shared("stereo/aws_lca_auto_repairs_40")
    agent, caller = str(folder / "agent.wav"), str(folder / "caller.wav")
    live = asyncio.run(replay(url, agent, customer=caller, protocol="raw", speed=12.0, mixed=True))
    finals = [e for e in live.events if e["type"] == "transcript.final"]
    assert len(finals) > 40
    legs = {c.role: c.samples for c in load_channels(agent, caller)}
    right = total = 0.0
    for f in finals:
        a, b = int(f["t"] * 16000), int(f["t_end"] * 16000)
        truth = max(legs, key=lambda k: float(np.sum(legs[k][a:b] ** 2)))
        total += f["t_end"] - f["t"]
        right += (f["t_end"] - f["t"]) * (f["speaker"] == truth)
    assert right / total > 0.85, right / total
    assert finals[0]["speaker"] == "agent"  # "Thank you for calling Platinum Motors..."
    stored = wait_ended(url, live.call_id)
    assert stored["channels"] == ["mixed"]
    if state.store is not None:
        report = state.store.get_report(live.call_id)
        assert report is not None and report["diarization"]["backend"] == "embedding-online"
        assert report["diarization"]["roles"]["S1"] == "agent"


def load_channels(agent: str, caller: str):  # type: ignore[no-untyped-def]
    from audio.reader import read_call

    return read_call(agent, customer_path=caller).channels


def test_angry_caller_reaches_the_supervisor_and_the_agent_while_live(url: str) -> None:
    marks = json.loads((DEMO / "cancel_call.timeline.json").read_text())["marks"]
    res = asyncio.run(
        replay(url, str(DEMO / "cancel_call.wav"), protocol="twilio", speed=8.0, agent_id="a-9")
    )
    angry = [e for e in res.events if e["type"] == "alert" and e["rule_id"] == "caller_angry"]
    assert [(a["severity"], a["audience"]) for a in angry] == [("critical", ["supervisor"])]
    assert marks["complaint"] <= angry[0]["t"] <= marks["complaint"] + 12.0
    (prompt,) = [e for e in res.events if e["type"] == "alert" and e["rule_id"] == "deescalate"]
    assert prompt["audience"] == ["agent"] and "apologise" in prompt["message"]
    # the alert follows the emotion reading that crossed the line, in the same stream
    crossing = next(e for e in res.events if e["type"] == "emotion" and e["escalated"])
    assert crossing["speaker"] == "customer" and crossing["seq"] < angry[0]["seq"]
    detail = wait_ended(url, res.call_id)
    assert detail["mood"]["customer"]["label"] in ("neutral", "frustrated", "angry")
    assert detail["emotion"]["customer"]["escalations"] == 1


def test_partials_arrive_before_their_final(url: str) -> None:
    res = asyncio.run(replay(url, str(DEMO / "cancel_call.wav"), protocol="raw", speed=2.0))
    partials = [e for e in res.events if e["type"] == "transcript.partial"]
    assert partials, "a live call streams partial transcripts"
    finals = [e for e in res.events if e["type"] == "transcript.final"]
    # the first partial of the long cancel request precedes the final that closes it
    final = next(f for f in finals if "cancel" in f["text"].lower())
    early = [
        p for p in partials if p["speaker"] == final["speaker"] and abs(p["t"] - final["t"]) < 1.0
    ]
    assert early and min(p["seq"] for p in early) < final["seq"]


def test_agent_stream_sees_only_its_calls(url: str) -> None:
    got: list[dict[str, Any]] = []

    async def run() -> None:
        import websockets

        async with websockets.connect(f"{url}/v1/agents/alice/events") as ws:
            await asyncio.gather(
                replay(
                    url,
                    str(DEMO / "clean_call.wav"),
                    protocol="raw",
                    speed=10.0,
                    agent_id="alice",
                    call_id="c-alice",
                ),
                replay(
                    url,
                    str(DEMO / "breach_call.wav"),
                    protocol="raw",
                    speed=10.0,
                    agent_id="bob",
                    call_id="c-bob",
                ),
            )
            with pytest.raises(TimeoutError):
                while True:
                    got.append(json.loads(await asyncio.wait_for(ws.recv(), 2.0)))

    asyncio.run(run())
    assert got and {e["call_id"] for e in got} == {"c-alice"}
    assert any(e["type"] == "transcript.final" for e in got)


def _twilio_start(call_id: str) -> str:
    return start_message("MZ1", call_id, {"call_id": call_id, "agent_id": "a-1"})


def _tone_payload(seconds: float = 0.02) -> str:
    t = np.arange(int(8000 * seconds)) / 8000
    return base64.b64encode(
        pcm16_to_ulaw(float_to_int16(0.1 * np.sin(2 * np.pi * 300 * t)))
    ).decode()


def test_twilio_garbage_is_logged_and_the_call_goes_on(url: str, state: App) -> None:
    call_id = f"CA{uuid.uuid4().hex}"
    before = state.protocol_errors
    with connect(f"{url}/v1/ingest/twilio") as ws:
        ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        ws.send(_twilio_start(call_id))
        ws.send("{not json")
        ws.send(
            json.dumps(
                {
                    "event": "media",
                    "sequenceNumber": "2",
                    "media": {"track": "inbound", "payload": "%%%not-base64"},
                }
            )
        )
        ws.send(json.dumps({"event": "teleport", "sequenceNumber": "3"}))
        ws.send(
            json.dumps(
                {
                    "event": "media",
                    "sequenceNumber": "4",
                    "media": {"track": "inbound", "timestamp": "0", "payload": _tone_payload(1.0)},
                }
            )
        )
        ws.send(json.dumps({"event": "stop", "sequenceNumber": "5", "stop": {}}))
    detail = wait_ended(url, call_id)
    assert state.protocol_errors - before == 3
    assert detail["duration_s"] == pytest.approx(1.0, abs=0.05)


def _ah(type_: str, seq: int, sid: str, params: dict[str, Any] | None = None) -> str:
    return client_message(type_, seq, sid, params)


def _ah_open(sid: str) -> str:
    return _ah(
        "open",
        1,
        sid,
        {
            "organizationId": str(uuid.uuid4()),
            "conversationId": sid,
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


def test_audiohook_ping_pong_and_bad_seq(url: str) -> None:
    sid = str(uuid.uuid4())
    with connect(f"{url}/v1/ingest/audiohook") as ws:
        ws.send(_ah_open(sid))
        opened = json.loads(ws.recv(timeout=10))
        assert opened["type"] == "opened" and opened["clientseq"] == 1
        assert opened["parameters"]["media"][0]["channels"] == ["external", "internal"]
        ws.send(bytes(320))  # 20 ms of stereo PCMU
        ws.send(_ah("ping", 2, sid))
        pong = json.loads(ws.recv(timeout=10))
        assert (pong["type"], pong["clientseq"], pong["seq"]) == ("pong", 2, 2)
        ws.send(_ah("ping", 7, sid))  # wrong sequence number
        disc = json.loads(ws.recv(timeout=10))
        assert disc["type"] == "disconnect" and disc["parameters"]["reason"] == "error"
        assert "bad seq 7" in disc["parameters"]["info"]


def test_audiohook_unknown_type_and_close(url: str) -> None:
    sid = str(uuid.uuid4())
    with connect(f"{url}/v1/ingest/audiohook") as ws:
        ws.send(_ah_open(sid))
        json.loads(ws.recv(timeout=10))
        ws.send(_ah("teleport", 2, sid))
        disc = json.loads(ws.recv(timeout=10))
        assert disc["type"] == "disconnect" and "unknown message type" in disc["parameters"]["info"]
        ws.send(_ah("close", 3, sid, {"reason": "disconnect"}))
        closed = json.loads(ws.recv(timeout=10))
        assert closed["type"] == "closed" and closed["clientseq"] == 3
    assert wait_ended(url, sid)["ended_reason"] == "disconnect"


def test_audiohook_audio_before_open_is_refused(url: str) -> None:
    with connect(f"{url}/v1/ingest/audiohook") as ws:
        ws.send(bytes(320))
        disc = json.loads(ws.recv(timeout=10))
        assert (
            disc["type"] == "disconnect" and "outside an open session" in disc["parameters"]["info"]
        )


def test_raw_bad_start_and_bad_frames(url: str) -> None:
    with connect(f"{url}/v1/ingest/raw") as ws:
        ws.send(json.dumps({"type": "start", "sample_rate": 11025, "encoding": "opus"}))
        err = json.loads(ws.recv(timeout=10))
        assert (
            err["type"] == "error"
            and "sample_rate" in err["message"]
            and "encoding" in err["message"]
        )
    call_id = f"raw-{uuid.uuid4().hex[:8]}"
    with connect(f"{url}/v1/ingest/raw") as ws:
        ws.send(
            json.dumps(
                {
                    "type": "start",
                    "call_id": call_id,
                    "sample_rate": 16000,
                    "encoding": "pcm16",
                    "channels": ["agent", "customer"],
                }
            )
        )
        assert json.loads(ws.recv(timeout=10))["type"] == "started"
        ws.send(b"\x00\x01\x02")  # not a whole stereo sample
        assert "whole number" in json.loads(ws.recv(timeout=10))["message"]
        ws.send(bytes(640))
        ws.send(json.dumps({"type": "stop"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "stopped"
    assert wait_ended(url, call_id)["ended_reason"] == "completed"


def test_oversize_frame_ends_the_call_and_keeps_its_data(url: str) -> None:
    call_id = f"raw-{uuid.uuid4().hex[:8]}"
    with connect(f"{url}/v1/ingest/raw") as ws:
        ws.send(
            json.dumps(
                {"type": "start", "call_id": call_id, "sample_rate": 16000, "channels": ["agent"]}
            )
        )
        ws.recv(timeout=10)
        ws.send(bytes(32000))  # 1 s of silence: accepted
        with pytest.raises(Exception):  # noqa: B017 - the server closes with 1009
            ws.send(bytes(2 * 1024 * 1024))
            ws.recv(timeout=10)
    detail = wait_ended(url, call_id)
    assert detail["ended_reason"] == "disconnected"
    assert detail["duration_s"] == pytest.approx(1.0, abs=0.05)


def test_hang_up_mid_utterance_keeps_the_last_words(url: str) -> None:
    timeline = json.loads((DEMO / "cancel_call.timeline.json").read_text())
    turn = next(t for t in timeline["turns"] if t["t"] > 20 and t["t_end"] - t["t"] > 4)
    cut = (turn["t"] + turn["t_end"]) / 2
    res = asyncio.run(
        replay(url, str(DEMO / "cancel_call.wav"), protocol="twilio", speed=8.0, drop_at_s=cut)
    )
    detail = wait_ended(url, res.call_id)
    assert detail["ended_reason"] == "disconnected"
    last = detail["transcript"][-1]
    assert last["speaker"] == turn["speaker"] and last["t"] >= turn["t"] - 0.5
    assert last["words"], "the interrupted utterance was transcribed"


def test_rest_listing_and_404(url: str) -> None:
    r = httpx.get(f"{http(url)}/v1/calls")
    assert r.status_code == 200 and isinstance(r.json()["calls"], list)
    assert httpx.get(f"{http(url)}/v1/calls/nope").status_code == 404
    m = httpx.get(f"{http(url)}/metrics").json()
    assert "asr_lag_s" in m and m["model"].startswith("tiny.en")
