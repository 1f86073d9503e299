"""Twilio Media Streams (https://www.twilio.com/docs/voice/media-streams/websocket-messages).

Twilio sends JSON text frames: ``connected``, ``start`` (streamSid, callSid, tracks,
customParameters, mediaFormat {audio/x-mulaw, 8000, 1}), ``media`` (track inbound|outbound,
chunk, timestamp in ms, base64 µ-law payload), ``mark``, ``dtmf`` and ``stop``.
``sequenceNumber``, ``chunk`` and ``timestamp`` are strings.

Roles: the ``inbound`` track is the caller (customer), ``outbound`` is what the caller hears
(agent). Custom ``<Parameter>`` values ``agent_id``, ``call_id`` and ``language`` are read
from ``customParameters``. Gaps in a track's ``timestamp`` (lost packets) are filled with
silence so both sides stay on the call clock. A unidirectional stream must not be answered,
so protocol errors are logged (``Feed.warnings``) rather than replied to.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from audio.protocols.base import (
    MAX_FILL_S,
    CallInfo,
    ChannelDecoder,
    Feed,
    ProtocolError,
    identifier,
    language_code,
    parse_json,
)

TRACK_ROLE = {"outbound": "agent", "inbound": "customer"}
RATE = 8000
GAP_TOLERANCE = 80  # samples (10 ms) of timestamp jitter accepted without filling


def client_message(event: str, seq: int, stream_sid: str, **body: Any) -> str:
    """A message as Twilio (the client) sends it; used by the replay client and tests."""
    return json.dumps({"event": event, "sequenceNumber": str(seq), "streamSid": stream_sid, **body})


def start_message(
    stream_sid: str,
    call_sid: str,
    custom: dict[str, str],
    tracks: tuple[str, ...] = ("inbound", "outbound"),
) -> str:
    """The ``start`` message of a µ-law 8 kHz stream with these ``<Parameter>`` values."""
    return client_message(
        "start",
        1,
        stream_sid,
        start={
            "streamSid": stream_sid,
            "accountSid": "AC" + "0" * 32,
            "callSid": call_sid,
            "tracks": list(tracks),
            "customParameters": custom,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1},
        },
    )


class TwilioAdapter:
    protocol = "twilio"

    def __init__(self) -> None:
        self.info: CallInfo | None = None
        self._decoders: dict[str, ChannelDecoder] = {}
        self._index: dict[str, int] = {}
        self._last_seq = 0
        self.stream_sid: str | None = None

    def on_bytes(self, data: bytes) -> Feed:
        raise ProtocolError(f"Twilio sends text frames only; got {len(data)} binary bytes")

    def on_text(self, text: str) -> Feed:
        msg = parse_json(text)
        if not isinstance(msg, dict):
            raise ProtocolError("message is not a JSON object")
        event = msg.get("event")
        feed = Feed()
        self._check_seq(msg, feed)
        if event == "connected":
            return feed
        if event == "start":
            return self._start(msg, feed)
        if self.info is None:
            raise ProtocolError(f"'{str(event)[:40]}' before 'start'", fatal=event == "media")
        if event == "media":
            return self._media(msg, feed)
        if event == "stop":
            feed.ended = "completed"
            feed.close = True
            feed.audio = [(self._index[t], d.flush()) for t, d in self._decoders.items()]
            return feed
        if event in ("mark", "dtmf"):
            return feed
        raise ProtocolError(f"unknown event {str(event)[:40]!r}")

    def _check_seq(self, msg: dict[str, Any], feed: Feed) -> None:
        raw = msg.get("sequenceNumber")
        if raw is None:
            return
        try:
            seq = int(raw)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ProtocolError(f"sequenceNumber {str(raw)[:40]!r} is not a number") from exc
        if self._last_seq and seq != self._last_seq + 1:
            feed.warnings.append(f"sequenceNumber jumped from {self._last_seq} to {seq}")
        self._last_seq = max(self._last_seq, seq)

    def _start(self, msg: dict[str, Any], feed: Feed) -> Feed:
        if self.info is not None:
            raise ProtocolError("second 'start' on one stream")
        start = msg.get("start")
        if not isinstance(start, dict):
            raise ProtocolError("'start' without a start object", fatal=True)
        fmt = start.get("mediaFormat") or {}
        if not isinstance(fmt, dict) or (
            fmt.get("encoding", "audio/x-mulaw") != "audio/x-mulaw"
            or fmt.get("sampleRate", RATE) not in (RATE, str(RATE))
        ):
            raise ProtocolError(
                f"unsupported mediaFormat {str(fmt)[:200]}; expected audio/x-mulaw at 8000 Hz",
                fatal=True,
            )
        tracks = start.get("tracks") or ["inbound"]
        if (
            not isinstance(tracks, list)
            or not all(isinstance(t, str) and t in TRACK_ROLE for t in tracks)
            or len(set(tracks)) != len(tracks)
        ):
            raise ProtocolError(
                f"tracks must be 'inbound' and/or 'outbound', got {str(tracks)[:200]}", fatal=True
            )
        ordered = [t for t in ("outbound", "inbound") if t in tracks]  # agent first
        raw_params = start.get("customParameters") or {}
        # <Parameter> values are strings; anything else is not from Twilio and not kept
        params = (
            {str(k): v for k, v in raw_params.items() if isinstance(v, str)}
            if isinstance(raw_params, dict)
            else {}
        )
        sid = start.get("streamSid") or msg.get("streamSid")
        stream_sid = sid if isinstance(sid, str) else ""
        call_sid = start.get("callSid") if isinstance(start.get("callSid"), str) else None
        try:
            call_id = identifier(params.get("call_id") or call_sid or stream_sid, "call_id")
            agent_id = (
                identifier(params["agent_id"], "agent_id") if params.get("agent_id") else None
            )
        except ProtocolError as exc:
            raise ProtocolError(
                f"'start' names no usable call: {exc} (customParameters.call_id, callSid or "
                "streamSid)",
                fatal=True,
            ) from exc
        self.stream_sid = stream_sid
        self._index = {t: i for i, t in enumerate(ordered)}
        self._decoders = {t: ChannelDecoder("mulaw", RATE) for t in ordered}
        account = start.get("accountSid")
        self.info = CallInfo(
            call_id=call_id,
            protocol=self.protocol,
            channels=[TRACK_ROLE[t] for t in ordered],
            agent_id=agent_id,
            language=language_code(params.get("language")),
            metadata={
                "streamSid": self.stream_sid,
                "callSid": call_sid,
                "accountSid": account if isinstance(account, str) else None,
                "customParameters": params,
            },
        )
        feed.started = self.info
        return feed

    def _media(self, msg: dict[str, Any], feed: Feed) -> Feed:
        media = msg.get("media")
        if not isinstance(media, dict):
            raise ProtocolError("'media' without a media object")
        track = media.get("track", "inbound")
        dec = self._decoders.get(track) if isinstance(track, str) else None
        if dec is None:
            raise ProtocolError(
                f"media on track {str(track)[:40]!r}, which 'start' did not announce"
            )
        try:
            payload = base64.b64decode(media.get("payload", ""), validate=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise ProtocolError(f"media payload is not valid base64: {exc}") from exc
        ts = media.get("timestamp")
        if ts is not None:
            try:
                expected = int(float(ts) * RATE / 1000)
            except (TypeError, ValueError, OverflowError) as exc:
                raise ProtocolError(f"media timestamp {str(ts)[:40]!r} is not a number") from exc
            gap = expected - dec.clock
            if gap > GAP_TOLERANCE:
                feed.audio.append((self._index[track], dec.silence(gap)))
                if gap > MAX_FILL_S * RATE:
                    feed.warnings.append(
                        f"{track}: timestamp jumped {gap / RATE:.0f} s ahead; the first "
                        f"{MAX_FILL_S:.0f} s filled with silence, the rest not filled"
                    )
                else:
                    feed.warnings.append(
                        f"{track}: {gap / RATE * 1000:.0f} ms of audio missing, filled with silence"
                    )
        feed.audio.append((self._index[track], dec.decode(payload)))
        return feed

    def on_disconnect(self) -> Feed:
        return Feed(
            ended="disconnected",
            audio=[(self._index[t], d.flush()) for t, d in self._decoders.items()],
        )
