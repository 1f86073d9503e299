"""Event bus shared by several ``callwatch serve`` instances through one Redis stream.

Why a stream and not pub/sub: an instance that loses Redis for a while (or is slow) resumes
reading from the last entry it saw, so nothing published meanwhile is missed, and a short
outage costs no events.

Flow. ``publish`` (synchronous, on the event loop) delivers at once to this instance's
listeners (webhooks) and subscribers, then queues the event in a bounded outbox. A sender
task XADDs the outbox to the stream in order, in pipelined batches. A reader task XREADs
(BLOCK) from the last id it read and hands events of *other* processes to local subscribers
only, so every webhook is delivered by exactly one instance. The stream is one ordered log and
each process writes it in publish order, so per-call order holds everywhere; a batch re-sent
after a lost reply is recognised by (boot id, ``n``) and delivered once.

Entry format: one field ``m``, a JSON object with ``b`` (a per-process boot id), ``n`` (that
process's publish counter), ``o`` (origin instance id), ``a`` (agent id) and ``e`` (the
event). One field because redis-py's pure-Python parser reads each field separately and that
dominates a reader's cost; ``b`` comes first so a process skips its own entries by prefix.

Bounds (both constructor arguments; ``maxlen`` and the stream key also as URL query
parameters ``?stream=KEY&maxlen=N``):

- stream: ``XADD ... MAXLEN ~ 100000`` (``DEFAULT_MAXLEN``), so Redis keeps about the last
  100,000 events (roughly 30-60 MB at typical event sizes) and never grows without bound. A
  reader away longer than that window loses the oldest events; it logs the gap, and clients
  reload those calls from the API (the shared store).
- outbox: ``DEFAULT_OUTBOX`` = 10,000 events waiting for Redis. When it is full the *oldest*
  queued event is dropped and counted in ``stats()["dropped"]`` (a warning is logged once per
  outage). Dropped events were still delivered to local subscribers, to webhooks and to the
  store; only other instances' live screens miss them.

Redis down: ``start`` never fails (it logs and retries); one error is logged per outage, not
per event; the sender and reader retry with backoff (50 ms doubling to 2 s) and, when Redis
returns, the sender flushes the outbox in order and the reader resumes from its last id.
``close`` gives the outbox a short deadline to drain and counts what could not be sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from itertools import islice
from typing import Any, NamedTuple, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from assist.bus import DEFAULT_MAXSIZE, Event, EventBus

log = logging.getLogger(__name__)

DEFAULT_STREAM = "callwatch:events"
DEFAULT_MAXLEN = 100_000
DEFAULT_OUTBOX = 10_000
BATCH = 500  # entries per XADD pipeline / per XREAD
BLOCK_MS = 1000  # how long one XREAD waits for new entries
BACKOFF_S = (0.05, 2.0)  # first and longest wait between attempts while Redis is down
CLOSE_DEADLINE_S = 2.0
# connection/IO errors as redis-py raises them, plus the OS and loop ones it lets through
REDIS_ERRORS = (RedisError, OSError, EOFError, asyncio.IncompleteReadError)


Entries = list[tuple[str, dict[str, str]]]  # stream entries as read (decode_responses=True)


class Outgoing(NamedTuple):
    n: int  # this process's publish counter: order and duplicate detection
    payload: str  # the stream message as JSON, taken at publish time


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """The Redis URL without our own query parameters (``stream``, ``maxlen``), and those."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in ("stream", "maxlen"):
            ours[key] = value
        else:
            rest.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


class RedisEventBus(EventBus):
    """``EventBus`` whose subscribers also see events published by other instances."""

    backend = "redis"

    def __init__(
        self,
        url: str,
        instance_id: str,
        maxsize: int = DEFAULT_MAXSIZE,
        *,
        stream: str | None = None,
        maxlen: int | None = None,
        outbox_size: int = DEFAULT_OUTBOX,
    ) -> None:
        super().__init__(maxsize, instance_id)
        self.url, params = split_url(url)
        self.stream = stream or params.get("stream") or DEFAULT_STREAM
        try:
            self.maxlen = (
                maxlen if maxlen is not None else int(params.get("maxlen", DEFAULT_MAXLEN))
            )
        except ValueError:
            raise ValueError(
                f"bus URL maxlen must be an integer, got {params['maxlen']!r}"
            ) from None
        if self.maxlen < 1 or outbox_size < 1:
            raise ValueError("bus maxlen and outbox_size must be positive")
        self.boot = uuid.uuid4().hex[:12]  # tells this process's entries from any other's
        self._own = f'{{"b":"{self.boot}"'
        self.outbox: deque[Outgoing] = deque()
        self.outbox_size = outbox_size
        self.sent = 0
        self.received = 0
        self.dropped = 0
        self.duplicates = 0
        self.outages = 0
        self.gaps = 0
        self.redis_up: bool | None = None  # None until the first attempt
        self.last_error: str | None = None
        self.down_since: float | None = None
        self._n = 0
        self._seen: dict[str, int] = {}  # boot id -> last ``n`` delivered from it
        self._warned_twin = False
        self._overflow_warned = False
        self._position: str | None = None  # last stream id read
        self._position_is_entry = False  # an entry's id (not "0-0" or a clock time)
        self._redis: Redis | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        # hand over at most a quarter of a subscriber queue before its pump gets to run
        self._yield_every = max(1, min(16, maxsize // 4))

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and start the sender and reader; never fails if Redis is down (it retries)."""
        if self._tasks:
            return
        self._closing = False
        self._wake = asyncio.Event()  # bound to the running loop
        self._redis = Redis.from_url(
            self.url,
            decode_responses=True,
            socket_connect_timeout=2.0,
            socket_timeout=BLOCK_MS / 1000 + 5.0,
            socket_keepalive=True,
            health_check_interval=30,  # PING a connection idle this long before using it
            retry=Retry(NoBackoff(), 0),  # we retry ourselves, with the outbox and backoff
        )
        await self._init_position()
        self._tasks = [
            asyncio.create_task(self._send_loop(), name=f"bus-send-{self.instance_id}"),
            asyncio.create_task(self._read_loop(), name=f"bus-read-{self.instance_id}"),
        ]
        if self.outbox:
            self._wake.set()

    async def close(self, deadline_s: float = CLOSE_DEADLINE_S) -> None:
        """Stop reading, give the outbox ``deadline_s`` to reach Redis, then disconnect."""
        if not self._tasks:
            return
        send, read = self._tasks
        self._tasks = []
        self._closing = True
        self._wake.set()
        await asyncio.wait([send], timeout=deadline_s)
        await _stop(read)
        await _stop(send)
        if self.outbox:
            lost = len(self.outbox)
            self.dropped += lost
            self.outbox.clear()
            log.error(
                "redis bus %s: %d events could not reach Redis before shutdown (%s)",
                self.stream,
                lost,
                self.last_error or "deadline",
            )
        if self._redis is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await self._redis.aclose()
            self._redis = None

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "stream": self.stream,
            "sent": self.sent,
            "received": self.received,
            "outbox": len(self.outbox),
            "dropped": self.dropped,
            "duplicates": self.duplicates,
            "outages": self.outages,
            "gaps": self.gaps,
            "redis_up": bool(self.redis_up),
            "last_error": self.last_error,
        }

    # -- publish -----------------------------------------------------------------------------
    def publish(self, event: Event, agent_id: str | None = None) -> None:
        """Deliver here at once and queue for the other instances; never blocks."""
        super().publish(event, agent_id)
        n = self._n + 1
        # "b" first: readers skip their own entries by this prefix, without parsing them
        message = {"b": self.boot, "n": n, "o": self.instance_id, "a": agent_id, "e": event}
        try:
            payload = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            log.error("redis bus: %s event is not JSON (%s); not shared", event.get("type"), exc)
            return
        self._n = n
        if len(self.outbox) >= self.outbox_size:
            self.outbox.popleft()
            self.dropped += 1
            if not self._overflow_warned:
                self._overflow_warned = True
                log.warning(
                    "redis bus outbox full (%d events): dropping the oldest; other instances "
                    "miss them until their clients reload from the API",
                    self.outbox_size,
                )
        self.outbox.append(Outgoing(n, payload))
        self._wake.set()

    # -- Redis state ---------------------------------------------------------------------------
    def _mark_down(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.redis_up is not False:
            self.redis_up = False
            self.outages += 1
            self.down_since = time.monotonic()
            log.error(
                "redis bus: Redis at %s unreachable (%s); queueing up to %d events and "
                "retrying until it returns",
                self._where(),
                self.last_error,
                self.outbox_size,
            )

    def _failed(self, exc: Exception, doing: str) -> None:
        """Redis errors are an outage; anything else is a bug, logged in full, and retried
        all the same so that sharing never stops silently."""
        if not isinstance(exc, REDIS_ERRORS):
            log.exception("redis bus: unexpected error while %s", doing)
        self._mark_down(exc)

    def _mark_up(self) -> None:
        if self.redis_up is False:
            away = time.monotonic() - (self.down_since or time.monotonic())
            log.warning(
                "redis bus: Redis at %s back after %.1f s; flushing %d queued events",
                self._where(),
                away,
                len(self.outbox),
            )
        self.redis_up = True

    def _where(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.hostname or parts.path}:{parts.port or ''} stream {self.stream}"

    async def _init_position(self) -> None:
        """Read from the stream's end as of now; from the local clock when Redis is down."""
        assert self._redis is not None
        try:
            last = cast(Entries, await self._redis.xrevrange(self.stream, count=1))
        except REDIS_ERRORS as exc:
            self._mark_down(exc)
            # entries other instances queue during the outage get ids after this time
            self._position = f"{int(time.time() * 1000)}-0"
            self._position_is_entry = False
            return
        self._position = last[0][0] if last else "0-0"
        self._position_is_entry = bool(last)
        self._mark_up()

    def _stopping(self) -> bool:
        """True if this task was cancelled (redis-py may have reported it as an error)."""
        task = asyncio.current_task()
        return task is not None and task.cancelling() > 0

    # -- sender ------------------------------------------------------------------------------
    async def _send_loop(self) -> None:
        delay = BACKOFF_S[0]
        while True:
            if not self.outbox:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = list(islice(self.outbox, BATCH))
            try:
                await self._xadd(batch)
            except Exception as exc:
                if self._stopping():
                    return
                self._failed(exc, "sending")
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_S[1])
                continue
            delay = BACKOFF_S[0]
            self._mark_up()
            self.sent += len(batch)
            last_n = batch[-1].n
            # the outbox may have dropped its oldest entries meanwhile: pop by counter
            while self.outbox and self.outbox[0].n <= last_n:
                self.outbox.popleft()
            if not self.outbox:
                self._overflow_warned = False  # the next overflow is a new episode: warn again

    async def _xadd(self, batch: list[Outgoing]) -> None:
        assert self._redis is not None
        async with self._redis.pipeline(transaction=False) as pipe:
            for item in batch:
                pipe.xadd(self.stream, {"m": item.payload}, maxlen=self.maxlen, approximate=True)
            await pipe.execute()

    # -- reader ------------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        delay = BACKOFF_S[0]
        was_down = self.redis_up is False
        while not self._closing:
            try:
                if was_down:
                    await self._check_gap()
                assert self._redis is not None
                resp = cast(
                    list[tuple[str, Entries]],
                    await self._redis.xread(
                        {self.stream: self._position or "$"}, count=BATCH, block=BLOCK_MS
                    ),
                )
            except Exception as exc:
                if self._stopping():
                    return
                self._failed(exc, "reading")
                was_down = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_S[1])
                continue
            delay = BACKOFF_S[0]
            was_down = False
            self._mark_up()
            for _key, entries in resp or []:
                for k, (entry_id, fields) in enumerate(entries, 1):
                    self._position = entry_id
                    self._position_is_entry = True
                    self._receive(entry_id, fields)
                    if k % self._yield_every == 0:
                        # let subscribers' sockets drain: a batch of BATCH entries must not
                        # cut off a healthy screen
                        await asyncio.sleep(0)

    async def _check_gap(self) -> None:
        """After an outage: say so if the stream was trimmed past the last entry we read."""
        assert self._redis is not None
        first = cast(Entries, await self._redis.xrange(self.stream, count=1))
        pos = self._position or "0-0"
        # only an entry we know existed can tell: a stream that simply starts after a clock
        # position lost nothing
        if self._position_is_entry and first and _id_key(first[0][0]) > _id_key(pos):
            self.gaps += 1
            log.error(
                "redis bus: stream %s was trimmed past our position %s (it now starts at %s): "
                "events in between may be lost here; clients reload those calls from the API",
                self.stream,
                pos,
                first[0][0],
            )

    def _receive(self, entry_id: str, fields: dict[str, str]) -> None:
        raw = fields.get("m", "")
        if raw.startswith(self._own):
            return  # ours: already delivered locally at publish time
        try:
            msg = json.loads(raw)
            boot, n, event = str(msg["b"]), int(msg["n"]), msg["e"]
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("redis bus: skipping malformed entry %s (%s)", entry_id, exc)
            return
        if boot == self.boot:
            return  # ours, written in another layout than the one we skip by prefix
        if not isinstance(event, dict):
            log.warning("redis bus: skipping entry %s: event is not an object", entry_id)
            return
        if n <= self._seen.get(boot, 0):
            self.duplicates += 1  # a batch re-sent after its reply was lost
            return
        self._seen[boot] = n
        if msg.get("o") == self.instance_id and not self._warned_twin:
            self._warned_twin = True
            log.warning(
                "redis bus: another process publishes as instance %r: give each instance its "
                "own CALLWATCH_INSTANCE_ID (restart recovery marks calls by instance)",
                self.instance_id,
            )
        self.received += 1
        agent_id = msg.get("a")
        self._deliver(event, None if agent_id is None else str(agent_id))


async def _stop(task: asyncio.Task[None], within_s: float = 2.0) -> None:
    """Cancel ``task`` and wait for it, cancelling again until it ends.

    On Python 3.11 ``asyncio.wait_for`` (which redis-py wraps around socket writes) swallows
    a cancel that arrives just as the write completes, so one ``cancel()`` is not enough.
    """
    deadline = time.monotonic() + within_s
    while not task.done() and time.monotonic() < deadline:
        task.cancel()
        await asyncio.wait([task], timeout=0.05)
    if not task.done():
        log.warning("redis bus: %s did not stop on close", task.get_name())
    elif not task.cancelled() and task.exception() is not None:
        log.error("redis bus: %s failed", task.get_name(), exc_info=task.exception())


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
