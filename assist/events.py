"""The event contract (DESIGN.md): one JSON shape on every channel.

Every event has ``type``, ``call_id``, ``seq`` (per call, strictly increasing), ``t``
(seconds of call audio) and ``emitted_at`` (UTC wall clock, ISO 8601 with milliseconds).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

EVENT_TYPES = (
    "call.started",
    "call.ended",
    "transcript.partial",
    "transcript.final",
    "silence",
    "emotion",
    "alert",
    "suggestion",
    "scorecard",
    "rules.changed",
    "call.language",  # language identification decided the call's language (assist.language)
)

Event = dict[str, Any]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventStamper:
    """Gives one call's events their envelope: call id, next seq, emission time."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self._seq = 0

    def make(self, type_: str, t: float, **fields: Any) -> Event:
        if type_ not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type_!r}")
        self._seq += 1
        return {
            "type": type_,
            "call_id": self.call_id,
            "seq": self._seq,
            "t": round(t, 3),
            **fields,
            "emitted_at": utc_now(),
        }
