"""Genesys Cloud AudioHook, protocol version 2 (Genesys reference implementation:
github.com/purecloudlabs/audiohook-reference-implementation; developer.genesys.cloud/devapps/audiohook).

Client (Genesys) and server exchange JSON text messages with ``version`` "2", session ``id``,
``type``, ``seq`` (each side counts from 1), ``serverseq``/``clientseq`` (the last seq seen
from the other side), ``position`` (client only, ISO 8601 ``PT1.5S``) and ``parameters``.
Client: open, ping, paused, resumed, discarded, update, error, close. Server: opened, pong,
pause, resume, disconnect, closed. Audio is binary PCMU at 8 kHz, stereo interleaved in the
order of the negotiated ``channels``: ``external`` (customer) and ``internal`` (agent).

Any violation (bad sequence number, wrong session id, audio before ``opened`` or while
paused, unknown message type) is answered with ``disconnect`` (reason ``error``, with
``info``), after which Genesys closes the session with ``close`` / ``closed``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from audio.protocols.base import (
    MAX_FILL_S,
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
    strict_json,
)

ROLE = {"external": "customer", "internal": "agent"}
RATE = 8000
_DURATION = re.compile(r"PT(\d{1,9}(?:\.\d{1,9})?|\.\d{1,9})S")


def client_message(
    type_: str,
    seq: int,
    session_id: str,
    parameters: dict[str, Any] | None = None,
    serverseq: int = 0,
    position_s: float = 0.0,
) -> str:
    """A message as Genesys (the client) sends it; used by the replay client and tests."""
    return json.dumps(
        {
            "version": "2",
            "id": session_id,
            "type": type_,
            "seq": seq,
            "serverseq": serverseq,
            "position": f"PT{position_s:.2f}S",
            "parameters": parameters or {},
        }
    )


def parse_duration(value: Any) -> float:
    """ISO 8601 seconds as AudioHook writes them ('PT1.5S'), up to 999999999 s."""
    m = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if not m:
        raise ProtocolError(f"bad duration {str(value)[:40]!r}; expected e.g. 'PT1.5S'")
    return float(m.group(1))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any, limit: int = 40) -> str:
    """A wire value quoted for an error message, cut so a huge one cannot flood the log."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class AudioHookAdapter:
    protocol = "audiohook"

    def __init__(self) -> None:
        self.info: CallInfo | None = None
        self.session_id: str | None = None
        self._clientseq = 0  # last seq received from the client
        self._seq = 0  # our last seq
        self._decoders: list[ChannelDecoder] = []
        self._paused = False
        self._closed = False

    # -- replies -------------------------------------------------------------------------
    def _msg(self, type_: str, parameters: dict[str, Any] | None = None) -> str:
        self._seq += 1
        return json.dumps(
            {
                "version": "2",
                "id": self.session_id or "",
                "type": type_,
                "seq": self._seq,
                "clientseq": self._clientseq,
                "parameters": parameters or {},
            }
        )

    def _fail(self, info: str) -> ProtocolError:
        return ProtocolError(
            info, fatal=False, replies=[self._msg("disconnect", {"reason": "error", "info": info})]
        )

    # -- input ---------------------------------------------------------------------------
    def on_text(self, text: str) -> Feed:
        try:
            msg = parse_json(text)
        except ProtocolError as exc:
            raise self._fail(str(exc)) from exc
        if not isinstance(msg, dict):
            raise self._fail("message is not a JSON object")
        if msg.get("version") != "2":
            raise self._fail(f'unsupported version {_short(msg.get("version"))}; expected "2"')
        seq = msg.get("seq")
        if not _is_int(seq) or seq != self._clientseq + 1:
            raise self._fail(f"bad seq {_short(seq)}; expected {self._clientseq + 1}")
        self._clientseq = seq
        if self.session_id is not None and msg.get("id") != self.session_id:
            raise self._fail(f"message id {_short(msg.get('id'))} is not this session")
        serverseq = msg.get("serverseq", 0)
        if not _is_int(serverseq) or serverseq > self._seq:
            raise self._fail(f"serverseq {_short(serverseq)} is ahead of our seq {self._seq}")
        params = msg.get("parameters")
        if not isinstance(params, dict):
            raise self._fail("parameters must be an object")
        kind = msg.get("type")
        if kind == "open":
            return self._open(msg, params)
        if self.info is None:
            raise self._fail(f"{kind!r} before 'open'")
        if kind == "ping":
            return Feed(replies=[self._msg("pong")])
        if kind == "close":
            self._closed = True
            feed = Feed(ended=str(params.get("reason") or "end")[:128], close=False)
            feed.audio = flush_all(self._decoders)
            feed.replies.append(self._msg("closed"))
            return feed
        if kind == "paused":
            self._paused = True
            return Feed()
        if kind in ("resumed", "discarded"):
            try:
                gap = parse_duration(params.get("discarded", "PT0S"))
            except ProtocolError as exc:
                raise self._fail(f"{kind}.parameters.discarded: {exc}") from exc
            self._paused = False if kind == "resumed" else self._paused
            n = round(gap * RATE)
            feed = Feed()
            if n > 0:  # keep the channels on the call clock across the lost audio
                feed.audio = [(i, d.silence(n)) for i, d in enumerate(self._decoders)]
                filled = "" if gap <= MAX_FILL_S else f" ({MAX_FILL_S:.0f} s filled with silence)"
                feed.warnings.append(f"{gap:.2f} s of audio discarded by the client{filled}")
            return feed
        if kind == "update":
            lang = language_code(params.get("language"))
            if lang is not None and self.info is not None:
                self.info.language = lang
            return Feed()
        if kind == "error":
            code, message = _short(params.get("code")), _short(params.get("message"), 200)
            return Feed(warnings=[f"client error {code}: {message}"])
        raise self._fail(f"unknown message type {_short(kind)}")

    def _open(self, msg: dict[str, Any], params: dict[str, Any]) -> Feed:
        if self.info is not None:
            raise self._fail("second 'open' in one session")
        try:
            sid = identifier(msg.get("id"), "open id (the session id)")
        except ProtocolError as exc:
            raise self._fail(str(exc)) from exc
        self.session_id = sid  # replies carry it, the disconnect for a bad open too
        try:
            return self._open_session(sid, params)
        except ProtocolError:
            self.session_id = None  # a refused open leaves the session unopened
            raise

    def _open_session(self, sid: str, params: dict[str, Any]) -> Feed:
        media = params.get("media")
        if not isinstance(media, list):
            raise self._fail("open.parameters.media must be a list")
        chosen = self._choose_media(media)
        if chosen is None:
            # Spec: an empty media list in 'opened' means "no audio", then we end the session.
            reply = self._msg("opened", {"media": []})
            return Feed(
                replies=[
                    reply,
                    self._msg(
                        "disconnect",
                        {"reason": "error", "info": "no offered media is PCMU at 8000 Hz"},
                    ),
                ]
            )
        conv = params.get("conversationId")
        if not isinstance(conv, str) or not conv:
            raise self._fail("open.parameters.conversationId is required")
        raw_custom = params.get("customConfig")
        custom: dict[str, Any] = raw_custom if isinstance(raw_custom, dict) else {}
        try:
            call_id = identifier(conv, "open.parameters.conversationId")
            agent = custom.get("agent_id")
            agent_id = identifier(agent, "customConfig.agent_id") if agent else None
        except ProtocolError as exc:
            raise self._fail(str(exc)) from exc
        participant = params.get("participant")
        org = params.get("organizationId")
        self._decoders = [ChannelDecoder("mulaw", RATE) for _ in chosen["channels"]]
        self.info = CallInfo(
            call_id=call_id,
            protocol=self.protocol,
            channels=[ROLE[c] for c in chosen["channels"]],
            agent_id=agent_id,
            language=language_code(params.get("language")),
            metadata={
                "sessionId": sid,
                "organizationId": org if isinstance(org, str) else None,
                "participant": strict_json(participant) if isinstance(participant, dict) else {},
                "probe": conv == "00000000-0000-0000-0000-000000000000",
            },
        )
        return Feed(
            started=self.info,
            replies=[self._msg("opened", {"media": [chosen], "startPaused": False})],
        )

    @staticmethod
    def _choose_media(media: list[Any]) -> dict[str, Any] | None:
        """Prefer stereo PCMU (both parties), else mono PCMU; exactly as offered."""
        ok = [
            m
            for m in media
            if isinstance(m, dict)
            and m.get("type") == "audio"
            and m.get("format") == "PCMU"
            and m.get("rate") == RATE
            and isinstance(m.get("channels"), list)
            and 1 <= len(m["channels"]) <= 2
            and all(isinstance(c, str) and c in ROLE for c in m["channels"])
            and len(set(m["channels"])) == len(m["channels"])
        ]
        ok.sort(key=lambda m: -len(m["channels"]))
        return ok[0] if ok else None

    def on_bytes(self, data: bytes) -> Feed:
        if self.info is None or self._closed:
            raise self._fail("audio frame outside an open session")
        if self._paused:
            raise self._fail("audio frame while paused")
        try:
            parts = deinterleave(data, len(self._decoders), 1)
        except ProtocolError as exc:
            raise self._fail(str(exc)) from exc
        return Feed(audio=decode_all(self._decoders, parts))

    def on_disconnect(self) -> Feed:
        return Feed(ended="disconnected", audio=flush_all(self._decoders))
