"""Calls live on other instances, seen through the shared store.

Several ``callwatch serve`` instances behind a load balancer share one store (PostgreSQL)
and one event bus (Redis). Each instance keeps its own live calls in memory and writes
them to the store as they happen (assist/persist.py); the board may ask any instance, so
an instance lists the others' live calls from the store, and streams their events from
the bus after a backlog read from the store.

A live call whose listing was not refreshed for ``STALE_S`` (its instance died without a
restart) is no longer listed as live; it stays in the store as ``active`` until its
instance restarts and marks it ``interrupted``.
"""

from __future__ import annotations

import time
from typing import Any

from assist.store import Store, StoreError

STALE_S = 60.0  # four missed heartbeats (assist.session.HEARTBEAT_S)


def remote_live_calls(
    store: Store | None, instance_id: str, local_ids: set[str]
) -> list[dict[str, Any]]:
    """Live calls of other instances as listing rows (``status`` active); [] without a store
    or when the store cannot be read (the local calls are still listed)."""
    if store is None:
        return []
    try:
        rows = store.active_calls(exclude_instance=instance_id)
    except StoreError:
        return []
    fresh = time.time() - STALE_S
    return [
        {**r, "status": "active", "mode": "live"}
        for r in rows
        if r["call_id"] not in local_ids and (r.get("live_at") or 0) >= fresh
    ]


def remote_call(store: Store | None, call_id: str) -> dict[str, Any] | None:
    """A call that is not live here, rebuilt from the store: its final report if it ended,
    else its events so far (live elsewhere, or interrupted)."""
    if store is None:
        return None
    report = store.get_report(call_id)
    if report is not None:
        return report
    return store.report_from_events(call_id)
