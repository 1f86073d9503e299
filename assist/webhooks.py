"""Alert delivery by webhooks: POST events to the tools supervisors already use.

- A call never waits for a receiver. The bus hands each event to a bounded queue per target
  (``submit``); one background worker per target POSTs them in order.
- Nothing is silently lost. An event that cannot be delivered (the target stayed down for
  every attempt, answered with a final 4xx, its queue was full, or the server shut down
  first) becomes a row of ``webhook_dead_letters`` in the store, which
  ``callwatch webhooks redeliver`` sends again.
- Receivers can trust and de-duplicate what they get. The body is the event exactly as on
  the WebSocket; ``X-Callwatch-Signature`` is an HMAC-SHA256 of ``"{timestamp}.{body}"``
  (check it with ``verify_signature``) and ``X-Callwatch-Delivery`` stays the same across
  retries and redeliveries.

See docs/webhooks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from assist.events import EVENT_TYPES, Event
from assist.store import Store
from qa_rules.loader import yaml_line_of
from qa_rules.schema import Audience, Severity

log = logging.getLogger(__name__)

SECRET_ENV = "CALLWATCH_WEBHOOK_SECRET"  # the secret of targets given as `serve --webhook URL`
FLUSH_TIMEOUT_S = 10.0  # how long shutdown waits for queued events before dead-lettering them
_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
_USER_AGENT = "callwatch-webhooks/0.1"


class WebhookTarget(BaseModel):
    """One receiver, which events it wants, and how hard to try.

    Give the secret inline (``secret``) or, better, the name of an environment variable
    holding it (``secret_env``); it is read when the target is loaded, so a missing variable
    is a configuration error at start-up, not a failed delivery later.
    """

    model_config = ConfigDict(extra="forbid")

    url: str
    secret: SecretStr | None = None
    secret_env: str | None = None
    events: list[str] = Field(default_factory=lambda: ["alert"], min_length=1)
    min_severity: Severity = "warning"  # events without a severity always pass
    audience: Audience | None = None  # only alerts meant for this audience
    timeout_s: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=6, ge=1)
    backoff_base_s: float = Field(default=0.5, ge=0)
    backoff_cap_s: float = Field(default=30.0, ge=0)
    queue_size: int = Field(default=1000, ge=1)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        try:
            url = httpx.URL(v)
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a URL: {exc}") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"must be an http:// or https:// URL with a host (got {v!r})")
        return v

    @field_validator("events")
    @classmethod
    def _known_events(cls, v: list[str]) -> list[str]:
        unknown = [e for e in v if e not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"unknown event type(s) {unknown}; known: {list(EVENT_TYPES)}")
        return v

    @model_validator(mode="after")
    def _resolve_secret(self) -> WebhookTarget:
        if (self.secret is None) == (self.secret_env is None):
            raise ValueError("give exactly one of 'secret' or 'secret_env'")
        if self.secret_env is not None:
            value = os.environ.get(self.secret_env)
            if not value:
                raise ValueError(f"environment variable {self.secret_env} is not set")
            self.secret = SecretStr(value)
        if self.secret is None or not self.secret.get_secret_value():
            raise ValueError("the secret is empty")
        return self

    @property
    def key(self) -> bytes:
        assert self.secret is not None  # _resolve_secret guarantees it
        return self.secret.get_secret_value().encode()

    def wants(self, event: Event) -> bool:
        if event.get("type") not in self.events:
            return False
        severity = event.get("severity")
        # an unknown severity is sent rather than hidden
        if (
            severity is not None
            and _SEVERITY_RANK.get(severity, 2) < _SEVERITY_RANK[self.min_severity]
        ):
            return False
        audience = event.get("audience")
        return self.audience is None or audience is None or self.audience in audience


# -- signatures ----------------------------------------------------------------------------
def sign(secret: str | bytes, timestamp: int | str, body: bytes | str) -> str:
    """The ``X-Callwatch-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of "{timestamp}.{body}".

    The timestamp is part of the signed text so a captured request cannot be replayed later
    with a fresh timestamp.
    """
    key = secret.encode() if isinstance(secret, str) else secret
    raw = body.encode() if isinstance(body, str) else body
    return "sha256=" + hmac.new(key, f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: str | int | None,
    body: bytes | str,
    header: str | None,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """For receivers: is this request from callwatch, unmodified and recent?

    ``timestamp`` and ``header`` are the ``X-Callwatch-Timestamp`` and
    ``X-Callwatch-Signature`` headers, ``body`` the raw request body (not re-serialised JSON).
    Requests older or newer than ``tolerance_s`` are refused, which bounds replays.
    """
    if timestamp is None or header is None:
        return False
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent_at) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body).encode(), header.encode())


# -- delivery ------------------------------------------------------------------------------
@dataclass(eq=False)
class Delivery:
    """One event on its way to one target; ``id`` is the same for every attempt."""

    event: Event
    body: bytes
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    attempts: int = 0
    last_error: str = ""


def encode(event: Event) -> bytes:
    """The event as the WebSocket sends it (Starlette's ``send_json``), so bodies match."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def retry_delay(
    target: WebhookTarget,
    attempt: int,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based).

    Exponential from ``backoff_base_s``, capped at ``backoff_cap_s``, with half of it random
    so the retries of many calls do not hit a recovering receiver at the same instant. A
    ``Retry-After`` from the receiver wins, up to the cap (a worker is not parked for hours).
    """
    if retry_after is not None:
        return min(retry_after, target.backoff_cap_s)
    step = min(target.backoff_cap_s, target.backoff_base_s * 2 ** (attempt - 1))
    return step / 2 + rand() * step / 2


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())


def _retryable(status: int) -> bool:
    return status in (408, 429) or status >= 500


async def deliver(
    client: httpx.AsyncClient,
    target: WebhookTarget,
    delivery: Delivery,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    on_retry: Callable[[], None] | None = None,
) -> bool:
    """POST until a 2xx (True), a final answer, or ``max_attempts`` (False).

    Connection errors, timeouts, 408, 429 and 5xx are retried; any other status is final.
    Each attempt is signed afresh (new timestamp) so a late retry is not refused as stale.
    """
    while True:
        delivery.attempts += 1
        retry_after = None
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Callwatch-Event": str(delivery.event.get("type", "")),
            "X-Callwatch-Delivery": delivery.id,
            "X-Callwatch-Timestamp": ts,
            "X-Callwatch-Signature": sign(target.key, ts, delivery.body),
        }
        try:
            resp = await client.post(
                target.url, content=delivery.body, headers=headers, timeout=target.timeout_s
            )
        except httpx.TransportError as exc:  # connect/read errors and timeouts
            delivery.last_error = f"{type(exc).__name__}: {exc}".removesuffix(": ")
            retry = True
        else:
            if resp.is_success:
                return True
            delivery.last_error = f"HTTP {resp.status_code}"
            if resp.text:
                delivery.last_error += f": {resp.text[:200]}"
            retry = _retryable(resp.status_code)
            retry_after = _retry_after(resp.headers.get("Retry-After"))
        if not retry or delivery.attempts >= target.max_attempts:
            return False
        if on_retry is not None:
            on_retry()
        await sleep(retry_delay(target, delivery.attempts, retry_after))


class WebhookDispatcher:
    """Sends bus events to every target that wants them, in the background.

    ``start`` on the event loop, register ``submit`` as a bus listener, ``aclose`` on the way
    out. Counters: ``sent``, ``retried`` (attempts after a first failure), ``dead_lettered``.
    """

    def __init__(self, targets: list[WebhookTarget], store: Store | None) -> None:
        self.targets = list(targets)
        self.store = store
        self.sent = 0
        self.retried = 0
        self.dead_lettered = 0
        self._running = False
        self._queues: list[asyncio.Queue[Delivery]] = []
        self._current: dict[int, Delivery] = {}  # target index -> delivery in flight
        self._workers: list[asyncio.Task[None]] = []
        self._dead: asyncio.Queue[tuple[str, Delivery] | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    def start(self) -> None:
        """Create the client, queues and workers on the running loop."""
        if self._running:
            return
        self._client = httpx.AsyncClient(headers={"User-Agent": _USER_AGENT})
        self._queues = [asyncio.Queue(maxsize=t.queue_size) for t in self.targets]
        self._dead = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_dead_letters())
        self._workers = [
            asyncio.create_task(self._work(i, t, q))
            for i, (t, q) in enumerate(zip(self.targets, self._queues, strict=True))
        ]
        self._running = True

    @property
    def queued(self) -> int:
        """Events waiting for a target, including those being sent or retried."""
        return sum(q.qsize() for q in self._queues) + len(self._current)

    def stats(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "retried": self.retried,
            "dead_lettered": self.dead_lettered,
            "queued": self.queued,
        }

    def submit(self, event: Event) -> None:
        """Bus listener: queue ``event`` for each target that wants it. Never waits."""
        wanted = [i for i, t in enumerate(self.targets) if t.wants(event)]
        if not wanted:
            return
        if not self._running:
            raise RuntimeError("webhook dispatcher is not running")
        body = encode(event)
        for i in wanted:
            delivery = Delivery(event, body)
            try:
                self._queues[i].put_nowait(delivery)
            except asyncio.QueueFull:
                self._dead_letter(self.targets[i].url, delivery, "queue full")

    async def _work(
        self, index: int, target: WebhookTarget, queue: asyncio.Queue[Delivery]
    ) -> None:
        assert self._client is not None
        while True:
            delivery = await queue.get()
            self._current[index] = delivery
            try:
                ok = await deliver(self._client, target, delivery, on_retry=self._count_retry)
            except Exception as exc:  # a bug costs one event (dead-lettered), not the worker
                log.exception("webhook %s: delivery failed", target.url)
                delivery.last_error = f"{type(exc).__name__}: {exc}"
                ok = False
            del self._current[index]
            if ok:
                self.sent += 1
            else:
                self._dead_letter(target.url, delivery, delivery.last_error)
            queue.task_done()

    def _count_retry(self) -> None:
        self.retried += 1

    def _dead_letter(self, url: str, delivery: Delivery, reason: str) -> None:
        delivery.last_error = reason
        self.dead_lettered += 1
        log.warning(
            "webhook %s: %s event of call %s not delivered after %d attempt(s): %s",
            url,
            delivery.event.get("type"),
            delivery.event.get("call_id"),
            delivery.attempts,
            reason,
        )
        self._dead.put_nowait((url, delivery))

    async def _write_dead_letters(self) -> None:
        """Store dead letters off the event loop, one writer so the store sees them in order."""
        while (item := await self._dead.get()) is not None:
            url, d = item
            if self.store is None:  # --no-store: the log is all there is
                log.error("webhook %s: undelivered event: %s", url, d.body.decode())
                continue
            try:
                await asyncio.to_thread(
                    self.store.add_dead_letter, url, d.id, d.event, d.attempts, d.last_error
                )
            except Exception:  # last resort: the event goes to the log, the writer goes on
                log.exception("webhook %s: cannot keep dead letter: %s", url, d.body.decode())

    async def aclose(self, timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        """Stop taking events, send what is queued within ``timeout_s``, dead-letter the rest."""
        if not self._running:
            return
        self._running = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(q.join() for q in self._queues)), timeout_s)
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for i, (target, queue) in enumerate(zip(self.targets, self._queues, strict=True)):
            left = [self._current.pop(i)] if i in self._current else []
            while not queue.empty():
                left.append(queue.get_nowait())
            for d in left:
                why = (
                    f"shutdown before delivery (last error: {d.last_error})"
                    if d.last_error
                    else "shutdown before delivery"
                )
                self._dead_letter(target.url, d, why)
        self._dead.put_nowait(None)
        if self._writer is not None:
            await self._writer
        if self._client is not None:
            await self._client.aclose()
        self._queues, self._workers, self._writer, self._client = [], [], None, None


# -- redelivery ----------------------------------------------------------------------------
async def redeliver(
    store: Store,
    targets: list[WebhookTarget],
    ids: list[int] | None = None,
    fallback_secret: str | None = None,
) -> list[tuple[int, str | None]]:
    """Send dead letters again with their original delivery id; delete each one accepted.

    The secret for a letter's URL comes from the first target with that URL, else
    ``fallback_secret``. Returns ``(id, error)`` per letter, ``error`` None when delivered.
    """
    letters = await asyncio.to_thread(store.dead_letters, None, ids)
    results: list[tuple[int, str | None]] = []
    found = {row["id"] for row in letters}
    results.extend((i, "no such dead letter") for i in (ids or []) if i not in found)
    by_url: dict[str, WebhookTarget] = {}
    for t in targets:
        by_url.setdefault(t.url, t)
    async with httpx.AsyncClient(headers={"User-Agent": _USER_AGENT}) as client:
        for row in letters:
            target = by_url.get(row["url"])
            if target is None and fallback_secret:
                target = WebhookTarget(url=row["url"], secret=SecretStr(fallback_secret))
            if target is None:
                results.append((row["id"], f"no secret for {row['url']} (set {SECRET_ENV})"))
                continue
            d = Delivery(row["event"], encode(row["event"]), id=row["delivery_id"])
            if await deliver(client, target, d):
                await asyncio.to_thread(store.delete_dead_letter, row["id"])
                results.append((row["id"], None))
            else:
                results.append((row["id"], d.last_error))
    return results


# -- configuration -------------------------------------------------------------------------
class WebhookConfigError(ValueError):
    """Invalid webhook configuration; ``issues`` are "FILE:LINE: FIELD: message" lines."""

    def __init__(self, issues: list[str]) -> None:
        self.issues = issues
        super().__init__("\n".join(issues))


_TARGETS = TypeAdapter(list[WebhookTarget])


def _issues(exc: ValidationError, where: str, node: yaml.Node | None = None) -> list[str]:
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        fld = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        line = yaml_line_of(node, loc)
        place = f"{where}:{line}" if line else where
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{place}: {fld}: {msg}" if fld else f"{place}: {msg}")
    return out


def load_targets(path: str | Path) -> list[WebhookTarget]:
    """Read a YAML list of targets; raises WebhookConfigError naming file, line and field."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WebhookConfigError([f"{p}: cannot read: {exc}"]) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        place = f"{p}:{mark.line + 1}" if mark else str(p)
        raise WebhookConfigError([f"{place}: invalid YAML: {exc}"]) from exc
    if not isinstance(data, list):
        raise WebhookConfigError([f"{p}:1: expected a list of targets ('- url: ...')"])
    try:
        return _TARGETS.validate_python(data)
    except ValidationError as exc:
        raise WebhookConfigError(_issues(exc, str(p), node)) from exc


def targets_from_args(urls: list[str], path: str | None) -> list[WebhookTarget]:
    """``serve --webhook URL`` (secret from $CALLWATCH_WEBHOOK_SECRET) plus ``--webhooks FILE``."""
    targets = load_targets(path) if path else []
    issues = []
    for url in urls:
        try:
            targets.append(WebhookTarget(url=url, secret_env=SECRET_ENV))
        except ValidationError as exc:
            issues.extend(_issues(exc, f"--webhook {url}"))
    if issues:
        raise WebhookConfigError(issues)
    return targets
