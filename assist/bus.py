"""In-process event bus: fan call events out to agent and supervisor subscribers.

Each subscriber has a bounded queue. A subscriber that falls ``maxsize`` events behind is
cut off (its queue gets a ``None`` sentinel and the socket closes with 1013 "try again
later"); it reconnects and reads what it missed from ``GET /v1/calls/{id}``. A slow screen
never slows a call or other subscribers.

Listeners (``add_listener``) are for consumers that are not sockets, such as webhooks: they
see every event, synchronously, and must only hand it off (enqueue), never wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Event = dict[str, Any]
Listener = Callable[[Event], None]


@dataclass(eq=False)
class Subscription:
    call_id: str | None = None
    agent_id: str | None = None
    queue: asyncio.Queue[Event | None] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))
    dropped: bool = False

    def matches(self, event: Event, agent_id: str | None) -> bool:
        if self.call_id is not None and event.get("call_id") != self.call_id:
            return False
        return not (self.agent_id is not None and agent_id != self.agent_id)


class EventBus:
    def __init__(self, maxsize: int = 1000) -> None:
        self.maxsize = maxsize
        self._subs: set[Subscription] = set()
        self._listeners: list[Listener] = []
        self.published = 0
        self.cut_off = 0

    def subscribe(self, call_id: str | None = None, agent_id: str | None = None) -> Subscription:
        sub = Subscription(call_id, agent_id, asyncio.Queue(maxsize=self.maxsize))
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` for every published event, on the event loop."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def publish(self, event: Event, agent_id: str | None = None) -> None:
        """Deliver to every matching subscriber; never blocks (call from the event loop)."""
        self.published += 1
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a broken consumer must not break the call that published
                log.exception("bus listener %r failed on a %s event", listener, event.get("type"))
        for sub in list(self._subs):
            if not sub.matches(event, agent_id) or sub.dropped:
                continue
            if sub.queue.qsize() >= self.maxsize - 1:
                sub.dropped = True
                self.cut_off += 1
                log.warning(
                    "subscriber (call=%s agent=%s) fell %d events behind: cut off",
                    sub.call_id,
                    sub.agent_id,
                    self.maxsize,
                )
                sub.queue.put_nowait(None)
                continue
            sub.queue.put_nowait(event)

    @property
    def subscribers(self) -> int:
        return len(self._subs)
