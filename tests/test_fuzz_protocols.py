"""Property tests of the protocol adapters: whatever a socket sends, only ProtocolError.

Frames are arbitrary text and bytes, the protocols' real messages with fields deleted or
given other types and values (huge numbers, NaN, wrong base64, odd sample counts), and
hand-made hostile JSON (deep nesting, 5000-digit numbers). The oracle (bench/fuzz.py
``Session``) checks every Feed: float32 audio in [-1, 1], channels that exist, replies
that parse (none at all on Twilio), a sane CallInfo, and, when the socket closes, exactly
as many 16 kHz samples per channel as the input had at its own rate.

Profiles: ``fuzz-ci`` (default) is derandomized so CI runs are reproducible;
``CALLWATCH_FUZZ_PROFILE=fuzz-bench`` runs 10x the examples from a fresh seed each time.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from audio.codecs import decode, float_to_int16, pcm16_to_ulaw
from audio.protocols import audiohook, twilio
from audio.protocols.base import Feed, ProtocolError, deinterleave
from audio.protocols.raw import RawAdapter
from audio.resample import to_16k
from bench.fuzz import Session, Violation
from tests.fuzzing import fuzz_settings

FUZZ = fuzz_settings(300, 3000)
PROTOCOLS = ["twilio", "audiohook", "raw"]

# -- values --------------------------------------------------------------------------------------
HOSTILE_STRINGS = [
    "",
    " ",
    "PT1S",
    "PT-1S",
    "PT1e9S",
    "PT" + "9" * 400 + "S",
    "PT99999999S",
    "inbound",
    "outbound",
    "external",
    "internal",
    "mixed",
    "PCMU",
    "audio/x-mulaw",
    "NaN",
    "@@@",
    "AAAA",
    "AAA=",
    "8000",
    "1e400",
    "-1",
    "\ud800",
    "\x00",
    "呼叫",
    "a" * 300,
    "en-US",
    "english",
]
HUGE = [0, -1, 1, 2, 7999, 8000, 16000, 44100, 2**31, 2**63, 10**30, 10**400, -(10**400)]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(HUGE),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(HOSTILE_STRINGS),
)
json_values = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=8,
)
HOSTILE_TEXT = [
    "[" * 50_000 + "]" * 50_000,
    '{"a":' * 30_000 + "1" + "}" * 30_000,
    '{"event": "media", "sequenceNumber": ' + "9" * 5000 + "}",
    '{"version": "2", "seq": ' + "1" * 5000 + "}",
    '{"type": "start", "sample_rate": ' + "8" * 5000 + "}",
    '{"event": NaN}',
    '{"seq": Infinity}',
    '{"type": -Infinity}',
    '{"sequenceNumber": 1e999}',
    "null",
    "[]",
    '"start"',
    "\ufeff{}",
]


# -- the protocols' real messages ---------------------------------------------------------------
def ulaw(n: int) -> bytes:
    t = np.arange(n) / 8000
    return pcm16_to_ulaw(float_to_int16(0.3 * np.sin(2 * np.pi * 440 * t)))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@st.composite
def payload(draw: st.DrawFn) -> bytes:
    """Audio bytes: random, full-scale square waves (resampler overshoot), odd lengths."""
    kind = draw(st.sampled_from(["random", "square", "ulaw"]))
    n = draw(st.integers(0, 480))
    if kind == "random":
        return draw(st.binary(min_size=n, max_size=n))
    if kind == "square":
        period = draw(st.integers(1, 8))
        hi, lo = draw(st.sampled_from([(b"\x80", b"\x00"), (b"\xff\x7f", b"\x00\x80")]))
        return b"".join((hi if (i // period) % 2 else lo) for i in range(n))
    return ulaw(n)


def twilio_message(d: Any, seq: int) -> dict[str, Any]:
    """One Twilio client message of any kind, as Twilio sends it."""
    kind = d.draw(st.sampled_from(["connected", "start", "media", "media", "mark", "dtmf", "stop"]))
    base: dict[str, Any] = {"event": kind, "sequenceNumber": str(seq), "streamSid": "MZ1"}
    if kind == "connected":
        return {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    if kind == "start":
        tracks = d.draw(st.sampled_from([["inbound"], ["outbound"], ["inbound", "outbound"]]))
        return json.loads(twilio.start_message("MZ1", "CA1", {"agent_id": "a-1"}, tuple(tracks)))
    if kind == "media":
        ts = d.draw(st.integers(0, 5000))
        media = {"track": d.draw(st.sampled_from(["inbound", "outbound"])), "chunk": "1"}
        return {**base, "media": {**media, "timestamp": str(ts), "payload": b64(d.draw(payload()))}}
    if kind == "mark":
        return {**base, "mark": {"name": "m"}}
    if kind == "dtmf":
        return {**base, "dtmf": {"track": "inbound_track", "digit": "5"}}
    return {**base, "stop": {"accountSid": "AC1", "callSid": "CA1"}}


AH_OPEN: dict[str, Any] = {
    "organizationId": "o",
    "conversationId": "conv-1",
    "participant": {"id": "p", "ani": "+1", "aniName": "", "dnis": ""},
    "media": [
        {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000},
        {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000},
    ],
    "language": "en-US",
    "customConfig": {"agent_id": "a-1"},
}


def audiohook_message(d: Any, seq: int) -> dict[str, Any]:
    kind = d.draw(
        st.sampled_from(
            ["open", "ping", "paused", "resumed", "discarded", "update", "error", "close"]
        )
    )
    params: dict[str, Any] = {}
    if kind == "open":
        params = copy.deepcopy(AH_OPEN)
    elif kind in ("resumed", "discarded"):
        gap = d.draw(st.sampled_from(["PT0S", "PT0.02S", "PT1.5S", "PT30S"]))
        params = {"start": "PT1S", "discarded": gap}
    elif kind == "update":
        params = {"language": d.draw(st.sampled_from(["es-ES", "zh-CN", "en"]))}
    elif kind == "error":
        params = {"code": 500, "message": "x"}
    elif kind == "close":
        params = {"reason": "end"}
    return json.loads(audiohook.client_message(kind, seq, "s-1", params))


def raw_message(d: Any, seq: int) -> dict[str, Any]:
    if d.draw(st.booleans()):
        return {"type": "stop", "reason": "done"}
    return {
        "type": "start",
        "call_id": "c-1",
        "agent_id": "a-1",
        "sample_rate": d.draw(st.sampled_from([8000, 16000, 32000, 48000])),
        "encoding": d.draw(st.sampled_from(["pcm16", "mulaw", "alaw"])),
        "channels": d.draw(st.sampled_from([["agent"], ["customer", "agent"], ["mixed"]])),
        "language": "en",
    }


MESSAGES = {"twilio": twilio_message, "audiohook": audiohook_message, "raw": raw_message}


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, (*prefix, i))
    return out


def mutate(d: Any, original: dict[str, Any]) -> Any:
    """Delete fields, give them other types or hostile values, wrap or unwrap them."""
    msg: Any = copy.deepcopy(original)
    for _ in range(d.draw(st.integers(1, 3))):
        where = d.draw(st.sampled_from(paths(msg)))
        op = d.draw(st.sampled_from(["delete", "value", "hostile", "wrap", "string"]))
        if not where:
            if op == "wrap":
                msg = [msg]
            continue
        parent = msg
        try:
            for k in where[:-1]:
                parent = parent[k]
            key = where[-1]
            if op == "delete":
                del parent[key]
            elif op == "value":
                parent[key] = d.draw(json_values)
            elif op == "hostile":
                parent[key] = d.draw(st.sampled_from([*HUGE, *HOSTILE_STRINGS, float("nan")]))
            elif op == "wrap":
                parent[key] = [parent[key]]
            else:
                parent[key] = str(parent[key])
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation moved this path
    return msg


def next_seq(ad: Any) -> int:
    """The seq (or sequenceNumber) the peer would send next on this adapter."""
    return int(getattr(ad, "_clientseq", 0) or getattr(ad, "_last_seq", 0)) + 1


def any_frame(d: Any, protocol: str, ad: Any) -> str | bytes:
    kind = d.draw(
        st.sampled_from(["text", "bytes", "audio", "valid", "mutated", "mutated", "hostile"])
    )
    if kind == "text":
        return d.draw(st.text(max_size=200))
    if kind == "bytes":
        return d.draw(st.binary(max_size=200))
    if kind == "audio":
        return d.draw(payload())
    if kind == "hostile":
        return d.draw(st.sampled_from(HOSTILE_TEXT))
    msg = MESSAGES[protocol](d, next_seq(ad))
    if kind == "mutated":
        msg = mutate(d, msg)
    return json.dumps(msg)


def valid_start(protocol: str) -> str:
    if protocol == "twilio":
        return twilio.start_message("MZ1", "CA1", {"agent_id": "a-1", "language": "en"})
    if protocol == "audiohook":
        return audiohook.client_message("open", 1, "s-1", AH_OPEN)
    return json.dumps(
        {"type": "start", "call_id": "c-1", "sample_rate": 8000, "channels": ["agent", "customer"]}
    )


# -- properties ---------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
@FUZZ
@given(data=st.data(), started=st.booleans(), n=st.integers(1, 12))
def test_any_frames_give_feeds_or_protocol_errors(
    protocol: str, data: st.DataObject, started: bool, n: int
) -> None:
    s = Session(protocol)
    if started:
        feed = s.send(valid_start(protocol))
        assert isinstance(feed, Feed) and feed.started is not None
    for _ in range(n):
        s.send(any_frame(data, protocol, s.adapter))
        if s.dead:
            break
    s.finish()


def script_frame(
    protocol: str, step: tuple[str, Any], ad: Any, clock: dict[str, int]
) -> str | bytes:
    """One valid frame of a scripted call, numbered for the adapter's current state."""
    kind, arg = step
    seq = next_seq(ad)
    if protocol == "twilio":
        if kind == "audio":
            track, n = arg
            ts = clock.get(track, 0)
            clock[track] = ts + n // 8
            media = {"track": track, "chunk": "1", "timestamp": str(ts), "payload": b64(ulaw(n))}
            return twilio.client_message("media", seq, "MZ1", media=media)
        return twilio.client_message("stop", seq, "MZ1", stop={})
    if protocol == "audiohook":
        if kind == "audio":
            return ulaw(arg[1] * 2)
        if kind == "ping":
            return audiohook.client_message("ping", seq, "s-1")
        return audiohook.client_message("close", seq, "s-1", {"reason": "end"})
    if kind == "audio":
        return (np.arange(arg[1] * 2, dtype="<i2") * 37).tobytes()
    return json.dumps({"type": "stop"})


def play(protocol: str, steps: list[tuple[str, Any]], garbage: list[list[Any]] | None) -> Session:
    s = Session(protocol, keep_audio=True)
    assert isinstance(s.send(valid_start(protocol)), Feed)
    clock: dict[str, int] = {}
    for i, step in enumerate(steps):
        for junk in (garbage or [])[i] if garbage else []:
            before = copy.deepcopy(s)
            result = s.send(junk(s.adapter))
            if isinstance(result, ProtocolError):
                # the call goes on after one bad frame, and the next good one still works
                assert not result.fatal, f"fatal after start: {result}"
            else:
                s = before  # accepted: it was a real message; replay as if never sent
        result = s.send(script_frame(protocol, step, s.adapter, clock))
        assert isinstance(result, Feed), f"valid {step} refused after garbage: {result}"
    s.finish()
    return s


@pytest.mark.parametrize("protocol", PROTOCOLS)
@FUZZ
@given(data=st.data())
def test_garbage_between_valid_frames_changes_nothing(protocol: str, data: st.DataObject) -> None:
    """A refused frame leaves no trace: the call's audio is what the valid frames carry."""
    n = data.draw(st.integers(1, 5))
    steps: list[tuple[str, Any]] = []
    for _ in range(n):
        track = data.draw(st.sampled_from(["inbound", "outbound"]))
        steps.append(("audio", (track, data.draw(st.integers(1, 40)) * 8)))
        if protocol == "audiohook" and data.draw(st.booleans()):
            steps.append(("ping", None))
    steps.append(("stop", None))
    garbage = [
        [
            (lambda frame: lambda ad: frame)(
                data.draw(st.text(max_size=40) | st.binary(max_size=40))
            )
            if data.draw(st.booleans())
            else _lazy_frame(data, protocol)
            for _ in range(data.draw(st.integers(0, 2)))
        ]
        for _ in steps
    ]
    clean = play(protocol, steps, None)
    dirty = play(protocol, steps, garbage)
    assert clean.audio.keys() == dirty.audio.keys()
    for ch in clean.audio:
        np.testing.assert_array_equal(
            np.concatenate(clean.audio[ch]), np.concatenate(dirty.audio[ch])
        )


def _lazy_frame(data: st.DataObject, protocol: str) -> Any:
    """A (mutated) message drawn when it is sent: AudioHook numbers it from the session."""
    return lambda ad: any_frame(data, protocol, ad)


# -- what the fuzzers found (each once crashed an adapter with something other than
#    ProtocolError, or broke an oracle) ----------------------------------------------------------
def media(payload_b64: str = "", seq: int = 2, **extra: Any) -> str:
    body = {"track": "inbound", "chunk": "1", "payload": payload_b64, **extra}
    return json.dumps({"event": "media", "sequenceNumber": str(seq), "media": body})


TW_START = json.loads(twilio.start_message("MZ1", "CA1", {"agent_id": "a-1"}))


def tw_start(**start: Any) -> str:
    return json.dumps({**TW_START, "start": {**TW_START["start"], **start}})


def ah_open(**params: Any) -> str:
    return audiohook.client_message("open", 1, "s-1", {**AH_OPEN, **params})


RAW_START = {"type": "start", "call_id": "c", "sample_rate": 8000, "channels": ["agent"]}

FOUND: list[tuple[str, list[str | bytes], str]] = [
    ("twilio", ["[" * 50_000 + "]" * 50_000], "malformed JSON"),
    ("twilio", ['{"event": "connected", "sequenceNumber": ' + "9" * 5000 + "}"], "malformed JSON"),
    ("twilio", ['{"event": "connected", "sequenceNumber": 1e999}'], "malformed JSON"),
    ("twilio", [tw_start(mediaFormat=["audio/x-mulaw"])], "mediaFormat"),
    ("twilio", [tw_start(mediaFormat={"sampleRate": "fast"})], "mediaFormat"),
    ("twilio", [tw_start(mediaFormat={"sampleRate": None})], "mediaFormat"),
    ("twilio", [tw_start(tracks=[["inbound"]])], "tracks"),
    ("twilio", [tw_start(), media(track=["inbound"])], "track"),
    ("twilio", [tw_start(), media(timestamp=10**400)], "timestamp"),
    ("twilio", [tw_start(customParameters={"call_id": "x" * 500})], "call_id"),
    (
        "twilio",
        [json.dumps({"event": "start", "start": {"callSid": {"a": 1}, "tracks": ["inbound"]}})],
        "names no usable call",
    ),
    # atheris: a refused start left its decoders behind (audio for a call that never began)
    ("twilio", [json.dumps({"event": "start", "start": {"tracks": ["inbound"]}})], "no usable"),
    (
        "audiohook",
        [
            ah_open(),
            audiohook.client_message("discarded", 2, "s-1", {"discarded": "PT" + "9" * 400 + "S"}),
        ],
        "discarded",
    ),
    (
        "audiohook",
        [ah_open(), audiohook.client_message("resumed", 2, "s-1", {"discarded": "PTxS"})],
        "bad duration",
    ),
    ("audiohook", [ah_open(conversationId="c" * 200)], "conversationId"),
    (
        "audiohook",
        [
            json.dumps(
                {"version": "2", "id": "s-1", "type": "open", "seq": True, "parameters": AH_OPEN}
            )
        ],
        "bad seq",
    ),
    ("raw", [json.dumps({**RAW_START, "encoding": ["pcm16"]})], "encoding"),
    ("raw", [json.dumps({**RAW_START, "agent_id": {"id": 1}})], "agent_id"),
    ("raw", [json.dumps({**RAW_START, "language": "english please"})], "language"),
]


@pytest.mark.parametrize(("protocol", "frames", "error"), FOUND)
def test_found_inputs_are_protocol_errors(
    protocol: str, frames: list[str | bytes], error: str
) -> None:
    s = Session(protocol)
    results = [s.send(f) for f in frames]
    last = results[-1]
    assert isinstance(last, ProtocolError), f"accepted: {last}"
    assert error in str(last)
    s.finish()


def test_odd_values_are_ignored_not_crashed_on() -> None:
    """Values of the wrong type where a fallback exists: dropped, never stored or echoed."""
    s = Session("twilio")
    feed = s.send(tw_start(callSid={"a": 1}, customParameters={"agent_id": 7, "language": []}))
    assert isinstance(feed, Feed) and feed.started is not None
    assert feed.started.call_id == "MZ1" and feed.started.metadata["callSid"] is None
    assert feed.started.agent_id is None and feed.started.language is None
    assert feed.started.metadata["customParameters"] == {}
    s = Session("audiohook")
    offer = {**AH_OPEN["media"][0], "channels": [["external"]]}
    feed = s.send(ah_open(media=[offer]))  # once a TypeError (unhashable list)
    assert isinstance(feed, Feed) and feed.started is None
    assert [json.loads(str(r))["type"] for r in feed.replies] == ["opened", "disconnect"]


def test_huge_twilio_gap_fills_at_most_a_minute_and_keeps_the_clock() -> None:
    """A timestamp hours ahead once allocated hours of silence in one go (memory blow-up)."""
    s = Session("twilio", keep_audio=True)
    s.send(twilio.start_message("MZ1", "CA1", {}, ("inbound",)))
    feed = s.send(media(b64(ulaw(160)), timestamp="36000000"))  # ten hours in
    assert isinstance(feed, Feed)
    assert sum(a.size for _, a in feed.audio) <= 61 * 16000
    assert any("not filled" in w for w in feed.warnings)
    later = s.send(media(b64(ulaw(160)), seq=3, timestamp="36000020"))
    assert isinstance(later, Feed) and not later.warnings  # on the new clock: no second gap
    s.finish()


@FUZZ
@given(
    rate=st.sampled_from([8000, 16000, 32000, 48000]),
    encoding=st.sampled_from(["pcm16", "mulaw", "alaw"]),
    channels=st.sampled_from([["agent"], ["agent", "customer"]]),
    data=st.data(),
)
def test_live_chunks_give_the_offline_audio_exactly(
    rate: int, encoding: str, channels: list[str], data: st.DataObject
) -> None:
    """However the frames cut the stream, each channel is the offline 16 kHz conversion of
    its samples: same length, same values to float32 precision (live and audits must hear
    the same call; clipping the live path once broke that on a real call)."""
    width = {"pcm16": 2, "mulaw": 1, "alaw": 1}[encoding] * len(channels)
    frames = [
        data.draw(st.one_of(payload(), st.binary(max_size=300)))
        for _ in range(data.draw(st.integers(1, 6)))
    ]
    frames = [f[: len(f) - len(f) % width] for f in frames]
    s = Session("raw", keep_audio=True)
    start = {**RAW_START, "sample_rate": rate, "encoding": encoding, "channels": channels}
    assert isinstance(s.send(json.dumps(start)), Feed)
    for f in frames:
        assert isinstance(s.send(f), Feed)
    assert isinstance(s.send(json.dumps({"type": "stop"})), Feed)
    s.finish()
    whole = b"".join(frames)
    for ch in range(len(channels)):
        mine = b"".join(deinterleave(whole, len(channels), width // len(channels))[ch : ch + 1])
        want = to_16k(decode(mine, encoding), rate)
        got = np.concatenate(s.audio.get(ch, [np.zeros(0, np.float32)]))
        assert got.size == want.size
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)  # filter state across chunks


def test_nan_in_twilio_parameters_is_refused_not_stored() -> None:
    s = Session("twilio")
    text = json.dumps(
        {**TW_START, "start": {**TW_START["start"], "customParameters": {"x": float("nan")}}}
    )
    result = s.send(text)
    assert isinstance(result, ProtocolError) and "NaN" in str(result)


def test_oracle_catches_a_bad_adapter() -> None:
    """The oracle itself: an adapter leaking a KeyError is reported, not ignored."""

    class Leaky(RawAdapter):
        def on_text(self, text: str) -> Feed:
            raise KeyError("boom")

    with pytest.raises(Violation, match="KeyError escaped"):
        Session("raw", adapter=Leaky()).send("{}")
