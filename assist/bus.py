"""Event bus: fan call events out to agent and supervisor subscribers and to listeners.

``EventBus`` is the in-process default (one ``callwatch serve``). ``make_bus`` returns it, or
``assist.bus_redis.RedisEventBus`` for a ``redis://`` URL, which shares events between
instances; both have the same interface.

Drop policy for slow subscribers (the same for both backends): each subscriber has a queue
of ``maxsize`` events (1000 by default). A subscriber that falls ``maxsize - 1`` events
behind is cut off: it gets no more events, its queue ends with a ``None`` sentinel, the
server closes its socket with 1013 "try again later", and the client reconnects and reads
what it missed from ``GET /v1/calls/{id}``. ``cut_off`` counts these. A slow or dead screen
therefore never slows a call, the bus, or any other subscriber of the same or another call.

Listeners (``add_listener``) are for consumers that are not sockets, such as webhooks: they
see every event published *on this instance*, synchronously, and must only hand it off
(enqueue), never wait. With several instances each event reaches the listeners of exactly
one instance, so a webhook is never delivered twice.
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

DEFAULT_MAXSIZE = 1000
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclass(eq=False)
class Subscription:
    call_id: str | None = None
    agent_id: str | None = None
    queue: asyncio.Queue[Event | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=DEFAULT_MAXSIZE)
    )
    dropped: bool = False

    def matches(self, event: Event, agent_id: str | None) -> bool:
        if self.call_id is not None and event.get("call_id") != self.call_id:
            return False
        return not (self.agent_id is not None and agent_id != self.agent_id)


class EventBus:
    """In-process bus: subscribers and listeners of this process only."""

    backend = "memory"

    def __init__(self, maxsize: int = DEFAULT_MAXSIZE, instance_id: str = "") -> None:
        if maxsize < 2:
            raise ValueError(
                f"bus maxsize must be at least 2 (one event + the cut-off mark), got {maxsize}"
            )
        self.maxsize = maxsize
        self.instance_id = instance_id
        self._subs: set[Subscription] = set()
        self._listeners: list[Listener] = []
        self.published = 0
        self.cut_off = 0

    async def start(self) -> None:
        """Nothing to connect in-process; here so callers treat every backend alike."""

    async def close(self) -> None:
        """Nothing to flush in-process."""

    def stats(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "instance_id": self.instance_id,
            "published": self.published,
            "subscribers": self.subscribers,
            "cut_off": self.cut_off,
        }

    def subscribe(self, call_id: str | None = None, agent_id: str | None = None) -> Subscription:
        sub = Subscription(call_id, agent_id, asyncio.Queue(maxsize=self.maxsize))
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` for every event published here, on the event loop."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def publish(self, event: Event, agent_id: str | None = None) -> None:
        """Hand to listeners and matching subscribers; never blocks (call from the event loop)."""
        self.published += 1
        self._notify(event)
        self._deliver(event, agent_id)

    def _notify(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken consumer must not break the call that published
                log.exception("bus listener %r failed on a %s event", listener, event.get("type"))

    def _deliver(self, event: Event, agent_id: str | None) -> None:
        """Queue ``event`` for every matching subscriber, cutting off those too far behind."""
        for sub in list(self._subs):
            if sub.dropped or not sub.matches(event, agent_id):
                continue
            if sub.queue.qsize() >= self.maxsize - 1:
                sub.dropped = True
                self.cut_off += 1
                log.warning(
                    "subscriber (call=%s agent=%s) fell %d events behind: cut off",
                    sub.call_id,
                    sub.agent_id,
                    self.maxsize - 1,
                )
                sub.queue.put_nowait(None)
                continue
            sub.queue.put_nowait(event)

    @property
    def subscribers(self) -> int:
        return len(self._subs)


def make_bus(url: str | None, instance_id: str, maxsize: int = DEFAULT_MAXSIZE) -> EventBus:
    """The bus for ``url``: in-process when empty, Redis for ``redis://``/``rediss://``/``unix://``.

    A Redis URL may carry ``?stream=KEY&maxlen=N`` to pick the stream key and its length
    bound (see ``assist.bus_redis``); instances that should share events use the same URL.
    """
    if not url:
        return EventBus(maxsize, instance_id)
    if not url.startswith(REDIS_SCHEMES):
        raise ValueError(
            f"bus URL {url!r} is not supported: use redis://host:6379/0 (or rediss://, unix://), "
            "or leave it empty for the in-process bus"
        )
    from assist.bus_redis import RedisEventBus

    return RedisEventBus(url, instance_id, maxsize)
