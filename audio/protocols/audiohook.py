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

import base64
import hashlib
import hmac
import json
import re
import time
from typing import Any

from audio.protocols.base import (
    CallInfo,
    ChannelDecoder,
    Feed,
    ProtocolError,
    decode_all,
    deinterleave,
    flush_all,
)

ROLE = {"external": "customer", "internal": "agent"}
RATE = 8000
_DURATION = re.compile(r"^PT(\d*\.?\d+)S$")
SIGNED_COMPONENTS = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)


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
    m = _DURATION.match(value) if isinstance(value, str) else None
    if not m:
        raise ProtocolError(f"bad duration {value!r}; expected e.g. 'PT1.5S'")
    return float(m.group(1))


def signature_base(headers: dict[str, str], target: str, authority: str, params: str) -> str:
    values = {"@request-target": target, "@authority": authority}
    lines = []
    for comp in SIGNED_COMPONENTS:
        value = values.get(comp, headers.get(comp, ""))
        lines.append(f'"{comp}": {value.strip()}')
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines)


def verify_signature(
    headers: dict[str, str],
    target: str,
    authority: str,
    client_secret: str,
    now: float | None = None,
    max_age_s: float = 30.0,
) -> str | None:
    """Check the RFC 9421 HMAC-SHA256 signature Genesys puts on the upgrade request.

    ``headers`` keys are lower-case. Returns None when valid, else the reason.
    """
    sig_input = headers.get("signature-input", "")
    sig = headers.get("signature", "")
    if not sig_input.startswith("sig1=") or not sig.startswith("sig1=:"):
        return "missing or malformed Signature / Signature-Input"
    params = sig_input[len("sig1=") :]
    comps = re.match(r"^\(([^)]*)\)", params)
    if not comps or tuple(c.strip('"') for c in comps.group(1).split()) != SIGNED_COMPONENTS:
        return "signature does not cover the required components"
    fields = dict(re.findall(r';(\w+)=("[^"]*"|\d+)', params))
    if fields.get("alg", "").strip('"') != "hmac-sha256":
        return "signature alg must be hmac-sha256"
    if fields.get("keyid", "").strip('"') != headers.get("x-api-key"):
        return "signature keyid does not match X-API-KEY"
    now = time.time() if now is None else now
    try:
        created = int(fields.get("created", "0"))
        expires = int(fields.get("expires", "0"))
    except ValueError:
        return "bad created/expires"
    if created > now + 5 or now - created > max_age_s or (expires and expires < now):
        return "signature expired or not yet valid"
    key = base64.b64decode(client_secret)
    base = signature_base(headers, target, authority, params)
    expected = base64.b64encode(hmac.new(key, base.encode(), hashlib.sha256).digest()).decode()
    given = sig[len("sig1=:") :].rstrip(":")
    return None if hmac.compare_digest(expected, given) else "signature mismatch"


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
            msg = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self._fail(f"malformed JSON: {exc}") from exc
        if not isinstance(msg, dict):
            raise self._fail("message is not a JSON object")
        if msg.get("version") != "2":
            raise self._fail(f'unsupported version {msg.get("version")!r}; expected "2"')
        seq = msg.get("seq")
        if not isinstance(seq, int) or seq != self._clientseq + 1:
            raise self._fail(f"bad seq {seq!r}; expected {self._clientseq + 1}")
        self._clientseq = seq
        if self.session_id is not None and msg.get("id") != self.session_id:
            raise self._fail(f"message id {msg.get('id')!r} is not this session")
        serverseq = msg.get("serverseq", 0)
        if not isinstance(serverseq, int) or serverseq > self._seq:
            raise self._fail(f"serverseq {serverseq!r} is ahead of our seq {self._seq}")
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
            feed = Feed(ended=str(params.get("reason") or "end"), close=False)
            feed.audio = flush_all(self._decoders)
            feed.replies.append(self._msg("closed"))
            return feed
        if kind == "paused":
            self._paused = True
            return Feed()
        if kind in ("resumed", "discarded"):
            self._paused = False if kind == "resumed" else self._paused
            gap = parse_duration(params.get("discarded", "PT0S"))
            n = round(gap * RATE)
            feed = Feed()
            if n > 0:  # keep the channels on the call clock across the lost audio
                feed.audio = [(i, d.silence(n)) for i, d in enumerate(self._decoders)]
                feed.warnings.append(f"{gap:.2f} s of audio discarded by the client")
            return feed
        if kind == "update":
            lang = params.get("language")
            if isinstance(lang, str) and self.info is not None:
                self.info.language = lang.split("-")[0].lower()
            return Feed()
        if kind == "error":
            return Feed(warnings=[f"client error {params.get('code')}: {params.get('message')}"])
        raise self._fail(f"unknown message type {kind!r}")

    def _open(self, msg: dict[str, Any], params: dict[str, Any]) -> Feed:
        if self.info is not None:
            raise self._fail("second 'open' in one session")
        sid = msg.get("id")
        if not isinstance(sid, str) or not sid:
            raise self._fail("open without a session id")
        self.session_id = sid
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
        lang = params.get("language")
        participant = (
            params.get("participant") if isinstance(params.get("participant"), dict) else {}
        )
        self._decoders = [ChannelDecoder("mulaw", RATE) for _ in chosen["channels"]]
        self.info = CallInfo(
            call_id=conv,
            protocol=self.protocol,
            channels=[ROLE[c] for c in chosen["channels"]],
            agent_id=str(custom["agent_id"]) if custom.get("agent_id") else None,
            language=lang.split("-")[0].lower() if isinstance(lang, str) else None,
            metadata={
                "sessionId": sid,
                "organizationId": params.get("organizationId"),
                "participant": participant,
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
            and all(c in ROLE for c in m["channels"])
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
