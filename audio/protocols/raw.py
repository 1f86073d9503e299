"""The raw PCM protocol: one JSON start message, binary audio frames, an optional stop.

    -> {"type": "start", "call_id": "c-1", "agent_id": "a-7", "sample_rate": 8000,
        "encoding": "pcm16" | "mulaw" | "alaw", "channels": ["agent", "customer"],
        "language": "en"}
       ("channels": ["mixed"] is one mono mix of both sides: speakers are found live.)
    <- {"type": "started", "call_id": "c-1"}
    -> binary frames: samples interleaved in the order of "channels" (pcm16 little-endian)
    -> {"type": "stop"}
    <- {"type": "stopped", "call_id": "c-1"}

Errors are answered with {"type": "error", "message": ...}; a bad start message ends the
connection, a bad frame is skipped.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from audio.protocols.base import (
    CallInfo,
    ChannelDecoder,
    Feed,
    ProtocolError,
    decode_all,
    deinterleave,
    flush_all,
    identifier,
    language_code,
    parse_json,
)
from audio.resample import streamable

ENCODINGS = {"pcm16": 2, "mulaw": 1, "alaw": 1}
ROLES = ("agent", "customer")


def _error(message: str) -> str:
    return json.dumps({"type": "error", "message": message})


class RawAdapter:
    protocol = "raw"

    def __init__(self) -> None:
        self.info: CallInfo | None = None
        self._decoders: list[ChannelDecoder] = []
        self._sample_bytes = 2

    def on_text(self, text: str) -> Feed:
        try:
            msg = parse_json(text)
        except ProtocolError as exc:
            exc.replies = [_error(str(exc))]
            raise
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            raise ProtocolError(
                "message must be a JSON object with a 'type'",
                replies=[_error("message must be a JSON object with a 'type'")],
            )
        kind = msg["type"]
        if kind == "start":
            return self._start(msg)
        if self.info is None:
            text = f"{kind[:40]!r} before 'start'"
            raise ProtocolError(text, fatal=True, replies=[_error(text)])
        if kind == "stop":
            feed = Feed(ended=str(msg.get("reason") or "completed")[:128], close=True)
            feed.audio = flush_all(self._decoders)
            feed.replies.append(json.dumps({"type": "stopped", "call_id": self.info.call_id}))
            return feed
        text = f"unknown message type {kind[:40]!r}"
        raise ProtocolError(text, replies=[_error(text)])

    def _start(self, msg: dict[str, Any]) -> Feed:
        if self.info is not None:
            raise ProtocolError(
                "second 'start' on one connection", replies=[_error("call already started")]
            )
        problems = []
        rate = msg.get("sample_rate")
        if (
            not isinstance(rate, int)
            or isinstance(rate, bool)
            or not 8000 <= rate <= 48000
            or not streamable(rate)
        ):
            problems.append("sample_rate must be 8000, 16000, 32000 or 48000")
        encoding = msg.get("encoding", "pcm16")
        if not isinstance(encoding, str) or encoding not in ENCODINGS:
            problems.append(f"encoding must be one of {sorted(ENCODINGS)}")
        channels = msg.get("channels", ["agent", "customer"])
        if (
            not isinstance(channels, list)
            or not 1 <= len(channels) <= 2
            or any(c not in ROLES for c in channels)
            or len(set(channels)) != len(channels)
        ) and channels != ["mixed"]:
            problems.append(
                'channels must list 1 or 2 distinct roles from ["agent", "customer"], '
                'or be ["mixed"] for one mono mix of both (speakers found live)'
            )
        call_id = msg.get("call_id") or f"raw-{uuid.uuid4().hex[:12]}"
        agent_id = msg.get("agent_id")
        for value, what in ((call_id, "call_id"), (agent_id, "agent_id")):
            if value is None or value == "":
                continue
            try:
                identifier(value, what)
            except ProtocolError as exc:
                problems.append(str(exc))
        lang = msg.get("language")
        if lang not in (None, "") and language_code(lang) is None:
            problems.append("language must be a language code such as 'en' or 'zh-CN'")
        if problems:
            text = "; ".join(problems)
            raise ProtocolError(
                f"bad start: {text}", fatal=True, replies=[_error(f"bad start: {text}")]
            )
        assert isinstance(rate, int) and isinstance(encoding, str)
        self._sample_bytes = ENCODINGS[encoding]
        self._decoders = [ChannelDecoder(encoding, rate) for _ in channels]
        self.info = CallInfo(
            call_id=str(call_id),
            protocol=self.protocol,
            channels=list(channels),
            agent_id=str(agent_id) if agent_id not in (None, "") else None,
            language=language_code(lang),
            metadata={"sample_rate": rate, "encoding": encoding},
        )
        return Feed(
            started=self.info,
            replies=[json.dumps({"type": "started", "call_id": self.info.call_id})],
        )

    def on_bytes(self, data: bytes) -> Feed:
        if self.info is None:
            raise ProtocolError(
                "audio before 'start'", fatal=True, replies=[_error("audio before 'start'")]
            )
        try:
            parts = deinterleave(data, len(self._decoders), self._sample_bytes)
        except ProtocolError as exc:
            exc.replies = [_error(str(exc))]
            raise
        return Feed(audio=decode_all(self._decoders, parts))

    def on_disconnect(self) -> Feed:
        return Feed(ended="disconnected", audio=flush_all(self._decoders))
