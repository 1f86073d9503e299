"""PostgreSQL goes away in the middle of a live call and comes back: the call goes on
(transcripts, alerts and prompts keep flowing), the server says the store is down, and
once it is back every event is written, in order, with an intact audit chain (a real
server on the local PostgreSQL behind a proxy that is cut and restored; real tiny.en)."""

from __future__ import annotations

from typing import Any

import httpx

from assist.store import Store
from tests.board_server import start_held_call
from tests.faultproxy import FaultProxy
from tests.live_server import make_state, running_server, wait_until
from tests.pg import throwaway_database


def metrics(http: str) -> dict[str, Any]:
    return dict(httpx.get(f"{http}/metrics", timeout=10).json())


def test_postgres_outage_mid_call_loses_nothing(asr, packs) -> None:  # type: ignore[no-untyped-def]
    with throwaway_database("outage") as db, FaultProxy("127.0.0.1", 5432) as proxy:
        direct = Store(db)
        state = make_state(asr, packs, db_url=proxy.url_for(db), instance_id="outage-1")
        try:
            with running_server(state) as ws:
                http = ws.replace("ws://", "http://")
                live = start_held_call(ws, http, "breach_call", hold_at_s=25.0, speed=8.0)
                wait_until(
                    lambda: any(
                        e["type"] == "transcript.final" for e in direct.events_for(live.call_id)
                    ),
                    "a first final stored",
                )
                proxy.cut()
                result = live.finish(180)  # the rest of the call while the store is down
                assert result is not None and result.events[-1]["type"] == "call.ended"
                down = metrics(http)
                assert down["store_up"] is False and down["store_pending_events"] > 0
                # store-backed routes say so instead of failing obscurely
                r = httpx.get(f"{http}/v1/calls", params={"scope": "stored"}, timeout=30)
                assert r.status_code == 503 and "cannot list calls from postgresql" in r.text

                proxy.restore()
                wait_until(
                    lambda: (m := metrics(http))["store_up"] and m["store_pending_events"] == 0,
                    "the queue written once the store is back",
                )
            got = [e["seq"] for e in result.events]
            stored = direct.events_for(live.call_id)
            assert [e["seq"] for e in stored] == list(range(1, len(stored) + 1))
            assert set(got) <= {e["seq"] for e in stored}
            said_live = [e["text"] for e in result.events if e["type"] == "transcript.final"]
            said_stored = [e["text"] for e in stored if e["type"] == "transcript.final"]
            assert said_live == said_stored and len(said_stored) >= 5
            row = next(c for c in direct.list_calls() if c["call_id"] == live.call_id)
            assert row["status"] == "ended"
            assert direct.verify().ok
        finally:
            state.close()
