"""Protocol adapters without sockets: message shapes, sequencing, gaps, signatures."""

import base64
import json

import numpy as np
import pytest

from audio.codecs import float_to_int16, pcm16_to_ulaw
from audio.protocols.audiohook import (
    AudioHookAdapter,
    client_message,
    parse_duration,
)
from audio.protocols.base import ProtocolError
from audio.protocols.raw import RawAdapter
from audio.protocols.twilio import TwilioAdapter, start_message


def ulaw_b64(seconds: float) -> str:
    t = np.arange(int(8000 * seconds)) / 8000
    return base64.b64encode(
        pcm16_to_ulaw(float_to_int16(0.2 * np.sin(2 * np.pi * 300 * t)))
    ).decode()


def twilio_start(tracks: list[str]) -> str:
    return start_message("MZ1", "CA9", {"agent_id": "a-3", "language": "en"}, tuple(tracks))


def test_twilio_tracks_map_to_roles_and_gaps_become_silence() -> None:
    ad = TwilioAdapter()
    assert (
        ad.on_text(
            json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        ).started
        is None
    )
    info = ad.on_text(twilio_start(["inbound", "outbound"])).started
    assert info is not None and info.channels == ["agent", "customer"] and info.call_id == "CA9"
    assert info.agent_id == "a-3" and info.language == "en"
    feed = ad.on_text(
        json.dumps(
            {
                "event": "media",
                "sequenceNumber": "2",
                "media": {
                    "track": "inbound",
                    "chunk": "1",
                    "timestamp": "0",
                    "payload": ulaw_b64(0.02),
                },
            }
        )
    )
    assert [ch for ch, _ in feed.audio] == [1]  # inbound = customer = channel 1
    total = sum(a.size for _, a in feed.audio)
    # 100 ms later than the audio so far: the lost packets come back as silence
    feed = ad.on_text(
        json.dumps(
            {
                "event": "media",
                "sequenceNumber": "4",
                "media": {
                    "track": "inbound",
                    "chunk": "2",
                    "timestamp": "120",
                    "payload": ulaw_b64(0.02),
                },
            }
        )
    )
    total += sum(a.size for _, a in feed.audio)
    assert any("100 ms of audio missing" in w for w in feed.warnings)
    assert any("jumped from 2 to 4" in w for w in feed.warnings)
    end = ad.on_text(json.dumps({"event": "stop", "sequenceNumber": "5", "stop": {}}))
    assert end.ended == "completed"
    total += sum(a.size for ch, a in end.audio if ch == 1)
    assert total == int((0.02 + 0.1 + 0.02) * 16000)  # audio, filled gap, audio; nothing lost


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("{oops", "malformed JSON"),
        (
            json.dumps(
                {
                    "event": "media",
                    "sequenceNumber": "2",
                    "media": {"track": "inbound", "payload": "@@@"},
                }
            ),
            "not valid base64",
        ),
        (
            json.dumps(
                {
                    "event": "media",
                    "sequenceNumber": "2",
                    "media": {"track": "outbound", "payload": ""},
                }
            ),
            "did not announce",
        ),
        (json.dumps({"event": "warp", "sequenceNumber": "2"}), "unknown event 'warp'"),
    ],
)
def test_twilio_errors(message: str, error: str) -> None:
    ad = TwilioAdapter()
    ad.on_text(twilio_start(["inbound"]))
    with pytest.raises(ProtocolError, match=error):
        ad.on_text(message)


def ah(type_: str, seq: int, params: dict | None = None, sid: str = "s-1") -> str:  # type: ignore[type-arg]
    return client_message(type_, seq, sid, params)


OPEN = {
    "organizationId": "o",
    "conversationId": "conv-1",
    "participant": {"id": "p", "ani": "", "aniName": "", "dnis": ""},
    "media": [
        {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000},
        {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000},
    ],
    "language": "en-US",
}


def test_audiohook_negotiates_stereo_and_orders_channels() -> None:
    ad = AudioHookAdapter()
    feed = ad.on_text(ah("open", 1, OPEN))
    opened = json.loads(feed.replies[0])
    assert opened["type"] == "opened" and opened["clientseq"] == 1 and opened["seq"] == 1
    assert opened["parameters"]["media"] == [OPEN["media"][1]]
    assert feed.started is not None and feed.started.channels == ["customer", "agent"]
    assert feed.started.language == "en"
    frame = bytes([0xFF, 0x00] * 160)  # external silent (0xFF), internal loud (0x00)
    audio = dict(ad.on_bytes(frame).audio)
    assert np.abs(audio[1]).max() > 0.5 > np.abs(audio[0]).max()
    feed = ad.on_text(ah("resumed", 2, {"start": "PT1S", "discarded": "PT0.5S"}))
    assert [a.size for _, a in feed.audio] == [8000, 8000]
    pong = json.loads(ad.on_text(ah("ping", 3)).replies[0])
    assert (pong["type"], pong["clientseq"]) == ("pong", 3)
    closed = ad.on_text(ah("close", 4, {"reason": "end"}))
    assert json.loads(closed.replies[0])["type"] == "closed" and closed.ended == "end"


@pytest.mark.parametrize(
    ("messages", "info"),
    [
        ([ah("open", 1, OPEN), ah("ping", 3)], "bad seq 3"),
        ([ah("open", 1, OPEN), ah("ping", 2, sid="other")], "is not this session"),
        ([ah("ping", 1)], "before 'open'"),
        ([json.dumps({"version": "1", "seq": 1})], "unsupported version"),
    ],
)
def test_audiohook_violations_disconnect(messages: list[str], info: str) -> None:
    ad = AudioHookAdapter()
    replies: list[str] = []
    with pytest.raises(ProtocolError) as err:
        for m in messages:
            replies += [str(r) for r in ad.on_text(m).replies]
        raise AssertionError("no error")
    last = json.loads(str(err.value.replies[-1])) if err.value.replies else json.loads(replies[-1])
    assert last["type"] == "disconnect" and last["parameters"]["reason"] == "error"
    assert info in last["parameters"]["info"]


def test_audiohook_no_media_is_answered_then_disconnected() -> None:
    ad = AudioHookAdapter()
    feed = ad.on_text(ah("open", 1, {**OPEN, "media": []}))
    types = [json.loads(str(r))["type"] for r in feed.replies]
    assert types == ["opened", "disconnect"]


def test_audiohook_duration() -> None:
    assert parse_duration("PT1.5S") == 1.5


def test_raw_start_validation_and_interleaving() -> None:
    ad = RawAdapter()
    with pytest.raises(ProtocolError, match="before 'start'") as err:
        ad.on_bytes(b"\x00\x00")
    assert err.value.fatal
    feed = ad.on_text(
        json.dumps(
            {
                "type": "start",
                "call_id": "c1",
                "sample_rate": 16000,
                "encoding": "pcm16",
                "channels": ["customer", "agent"],
            }
        )
    )
    assert feed.started is not None and feed.started.channels == ["customer", "agent"]
    pcm = np.array([[1000, -2000]] * 160, dtype="<i2")
    audio = dict(ad.on_bytes(pcm.tobytes()).audio)
    assert np.allclose(audio[0], 1000 / 32768) and np.allclose(audio[1], -2000 / 32768)
    with pytest.raises(ProtocolError, match="unknown message type"):
        ad.on_text(json.dumps({"type": "dance"}))
    assert ad.on_text(json.dumps({"type": "stop"})).ended == "completed"


def test_raw_accepts_one_mixed_channel_but_not_mixed_with_roles() -> None:
    start = {"type": "start", "call_id": "m1", "sample_rate": 8000, "encoding": "pcm16"}
    feed = RawAdapter().on_text(json.dumps({**start, "channels": ["mixed"]}))
    assert feed.started is not None and feed.started.channels == ["mixed"]
    with pytest.raises(ProtocolError, match=r'\["mixed"\]'):
        RawAdapter().on_text(json.dumps({**start, "channels": ["mixed", "agent"]}))
