"""Two ``callwatch serve`` processes behind one PostgreSQL store and one Redis bus: calls
spread over both, and either instance's API (the board's only source) sees all of them,
live and stored (real processes, the local PostgreSQL and Redis, real tiny.en)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import websockets

from tests.board_server import start_held_call
from tests.live_server import wait_until
from tests.pg import throwaway_database
from tests.server_process import ServerProcess


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ...]]:
    home = tmp_path_factory.mktemp("cluster")
    stream = f"callwatch:test:{uuid.uuid4().hex[:8]}"
    bus = f"redis://127.0.0.1:6379/0?stream={stream}"
    with throwaway_database("scaleout") as db:
        a = ServerProcess(home / "a", db, "inst-a", bus).start()
        try:
            b = ServerProcess(home / "b", db, "inst-b", bus).start()
        except BaseException:
            a.stop()
            raise
        try:
            yield a, b
        finally:
            a.stop()
            b.stop()
            redis.Redis.from_url("redis://127.0.0.1:6379/0").delete(stream)


async def watch(ws_url: str, call_id: str, into: list[dict[str, Any]]) -> None:
    """Every event of one call, until call.ended."""
    async with websockets.connect(f"{ws_url}/v1/calls/{call_id}/events", max_size=None) as ws:
        async for raw in ws:
            ev = json.loads(raw)
            into.append(ev)
            if ev["type"] == "call.ended":
                return


def test_two_instances_share_calls_events_and_alerts(cluster: tuple[ServerProcess, ...]) -> None:
    a, b = cluster
    on_a = start_held_call(a.ws, a.http, "cancel_call", hold_at_s=70.0, speed=4.0, agent_id="dana")
    on_b = start_held_call(b.ws, b.http, "clean_call", hold_at_s=15.0, speed=4.0, agent_id="sam")
    try:
        # both calls are live, each on its own instance, and either instance lists both
        for server in (a, b):
            wait_until(
                lambda s=server: (
                    {on_a.call_id, on_b.call_id}
                    <= {
                        c["call_id"] for c in s.get("/v1/calls")["calls"] if c["status"] == "active"
                    }
                ),
                f"{server.instance_id} lists both live calls",
            )
        listed = {c["call_id"]: c for c in a.get("/v1/calls")["calls"]}
        assert listed[on_b.call_id]["agent_id"] == "sam"
        assert listed[on_b.call_id]["instance_id"] == "inst-b"

        # the call running on B, watched through A: what it said so far (from the store),
        # then the rest live (over Redis), every seq once and in order
        watched: list[dict[str, Any]] = []
        watcher = asyncio.new_event_loop()
        task = watcher.create_task(watch(a.ws, on_b.call_id, watched))
        watcher.run_until_complete(asyncio.sleep(1.0))
        on_b.finish(120)
        watcher.run_until_complete(asyncio.wait_for(task, 120))
        watcher.close()
        seqs = [e["seq"] for e in watched]
        assert seqs == list(range(1, len(seqs) + 1))
        assert watched[-1]["type"] == "call.ended"
        said = " ".join(e["text"] for e in watched if e["type"] == "transcript.final").lower()
        assert "thank you for calling" in said

        # A's angry caller raises its critical alert; B's API shows it while A's call is live
        wait_until(
            lambda: any(
                al["rule_id"] == "caller_angry" and al["call_id"] == on_a.call_id
                for al in b.get("/v1/alerts")["alerts"]
            ),
            "B's alert feed shows A's angry caller",
            timeout_s=180,
        )
        detail = b.get(f"/v1/calls/{on_a.call_id}")
        assert detail["status"] == "active"
        assert any("cancel" in t["text"].lower() for t in detail["transcript"])
    finally:
        on_a.finish(180)
        on_b.finish(60)

    # both stored once in the shared store, each by the instance that ran it
    for server in (a, b):

        def both_stored(s: ServerProcess = server) -> dict[str, Any]:
            rows = {c["call_id"]: c for c in s.get("/v1/calls", scope="stored")["calls"]}
            return rows if {on_a.call_id, on_b.call_id} <= set(rows) else {}

        stored = wait_until(both_stored, f"{server.instance_id} lists both stored calls")
        assert stored[on_a.call_id]["instance_id"] == "inst-a"
        assert stored[on_b.call_id]["instance_id"] == "inst-b"
        assert stored[on_a.call_id]["status"] == stored[on_b.call_id]["status"] == "ended"
