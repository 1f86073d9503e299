"""Live calls written to the store as they happen, on one thread.

Every event a live call publishes is appended to the store (and its audit chain) within
``flush_every_s``, so a server that dies mid-call leaves everything it had said up to
then; on restart the call is marked ``interrupted`` (``Store.mark_interrupted``). The
event loop never waits on the database: it hands operations to this writer, which runs
them in order on its own thread.

When the store is down (PostgreSQL restarting, a full disk) the writer keeps the
operations in order, logs one error per outage, retries with a growing pause and writes
everything once the store is back. Only if more than ``max_pending`` events pile up are the
oldest dropped, counted in ``stats()["dropped"]`` and logged: memory is bounded, and the
final report written at the end of each call still carries every event of that call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from assist.store import Store, StoreError

log = logging.getLogger(__name__)


@dataclass
class _Op:
    kind: str  # start | events | live | end
    call_id: str
    events: list[dict[str, Any]] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] | None = None


class LiveStoreWriter:
    """Runs store writes for live calls in submission order, off the event loop."""

    def __init__(
        self,
        store: Store,
        instance_id: str,
        flush_every_s: float = 0.2,
        max_pending: int = 200_000,
        retry_max_s: float = 5.0,
    ) -> None:
        self.store = store
        self.instance_id = instance_id
        self.flush_every_s = flush_every_s
        self.max_pending = max_pending
        self.retry_max_s = retry_max_s
        self._ops: deque[_Op] = deque()
        self._pending_events = 0
        self._cv = threading.Condition()
        self._stop = False
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="callwatch-store", daemon=True)
        self.written = 0
        self.dropped = 0
        self.errors = 0
        self.store_up = True
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    # -- called on the event loop --------------------------------------------------------
    def call_started(self, call_id: str, **fields: Any) -> None:
        self._put(_Op("start", call_id, fields={**fields, "instance_id": self.instance_id}))

    def events(self, events: list[dict[str, Any]]) -> None:
        if events:
            self._put(_Op("events", events[0]["call_id"], events=list(events)))

    def live_update(self, call_id: str, **fields: Any) -> None:
        """Refresh the listing of a live call (other instances' boards read it)."""
        self._put(_Op("live", call_id, fields=fields))

    def call_ended(
        self, report: dict[str, Any], status: str = "ended", reason: str | None = None
    ) -> None:
        fields = {"status": status, "ended_reason": reason}
        self._put(_Op("end", report["call_id"], fields=fields, report=report))

    def _put(self, op: _Op) -> None:
        with self._cv:
            if op.kind == "live":
                # only the newest listing of a call matters
                for i, old in enumerate(self._ops):
                    if old.kind == "live" and old.call_id == op.call_id:
                        del self._ops[i]
                        break
            self._ops.append(op)
            self._pending_events += len(op.events)
            self._trim()
            self._idle.clear()
            self._cv.notify()

    def _trim(self) -> None:
        """Keep memory bounded while the store is down: drop the oldest queued events."""
        while self._pending_events > self.max_pending:
            op = next((o for o in self._ops if o.kind == "events"), None)
            if op is None:
                return
            n = len(op.events)
            self._ops.remove(op)
            self._pending_events -= n
            if self.dropped == 0 or self.dropped // 10_000 != (self.dropped + n) // 10_000:
                log.error(
                    "store unreachable and %d events queued: dropping the oldest (%d so far); "
                    "each call's final report still carries all its events",
                    self.max_pending,
                    self.dropped + n,
                )
            self.dropped += n

    # -- the writer thread ---------------------------------------------------------------
    def _run(self) -> None:
        delay = self.flush_every_s
        while True:
            with self._cv:
                while not self._ops and not self._stop:
                    self._idle.set()
                    self._cv.wait()
                if not self._ops and self._stop:
                    self._idle.set()
                    return
                op = self._take()
            try:
                self._apply(op)
            except StoreError as exc:
                self._failed(op, exc)
                time.sleep(delay)
                delay = min(self.retry_max_s, max(0.1, delay * 2))
                continue
            except Exception:  # a bug in one operation must not stop every later write
                log.exception("writing %s of call %s failed; skipped", op.kind, op.call_id)
                continue
            if not self.store_up:
                log.warning("store %s is back: writing what was queued", self.store.url)
            self.store_up = True
            delay = self.flush_every_s

    def _take(self) -> _Op:
        """The next operation; consecutive event batches merge into one transaction."""
        op = self._ops.popleft()
        if op.kind == "events":
            merged = list(op.events)
            while self._ops and self._ops[0].kind == "events" and len(merged) < 2000:
                merged.extend(self._ops.popleft().events)
            op = _Op("events", op.call_id, events=merged)
        return op

    def _apply(self, op: _Op) -> None:
        s = self.store
        if op.kind == "start":
            s.start_call(op.call_id, **op.fields)
        elif op.kind == "events":
            s.append_events(op.events)
        elif op.kind == "live":
            s.update_live(op.call_id, **op.fields)
        elif op.kind == "end":
            assert op.report is not None
            s.save_report(op.report, "live", **op.fields)
        with self._cv:
            self._pending_events -= len(op.events)
        self.written += len(op.events)

    def _failed(self, op: _Op, exc: StoreError) -> None:
        """Put the operation back first in line; say so once per outage."""
        with self._cv:
            self._ops.appendleft(op)
        self.errors += 1
        self.last_error = str(exc)
        if self.store_up:
            log.error("store write failed; queuing and retrying until it is back: %s", exc)
        self.store_up = False

    # -- lifecycle -----------------------------------------------------------------------
    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything queued so far is written; False if it was not in time."""
        return self._idle.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (up to ``timeout_s``), then stop the thread."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._ops:
            log.error(
                "store writer stopped with %d operations unwritten (%d events): %s",
                len(self._ops),
                self._pending_events,
                self.last_error or "timed out",
            )

    def stats(self) -> dict[str, Any]:
        return {
            "pending_ops": len(self._ops),
            "pending_events": self._pending_events,
            "written_events": self.written,
            "dropped_events": self.dropped,
            "errors": self.errors,
            "up": self.store_up,
            "last_error": self.last_error,
        }
