"""A server that dies or is stopped mid-call loses nothing it had already heard: the call's
events are in the store as they happen, and the call is marked ``interrupted`` (real
``callwatch serve`` processes, SIGKILL and SIGTERM, real tiny.en)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from assist.store import Store
from tests.board_server import start_held_call
from tests.server_process import ROOT, ServerProcess


def finals(events: list[dict[str, Any]]) -> list[str]:
    return [e["text"] for e in events if e["type"] == "transcript.final" and e["text"]]


def wait_stored_finals(store: Store, call_id: str, n: int, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(finals(store.events_for(call_id))) >= n:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{call_id}: fewer than {n} finals stored in {timeout_s} s")


@pytest.fixture()
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'callwatch.db'}"


def test_killed_server_keeps_what_it_heard_and_marks_the_call_interrupted(
    tmp_path: Path, db: str
) -> None:
    home = tmp_path / "home"
    server = ServerProcess(home, db, "restart-1").start()
    store = Store(db)
    # the cancel call up to 30 s: the agent's greeting and the customer's first lines
    live = start_held_call(server.ws, server.http, "cancel_call", hold_at_s=30.0, speed=4.0)
    try:
        wait_stored_finals(store, live.call_id, 3)
        time.sleep(1.0)  # every final of the audio sent so far is in (held: nothing new)
        heard = [
            t["text"] for t in server.get(f"/v1/calls/{live.call_id}")["transcript"] if t["text"]
        ]
        server.kill()
    finally:
        live.release.set()
        if live.thread is not None:
            live.thread.join(60)
    assert len(heard) >= 3

    # everything the server had published is in the store, word for word, in order
    stored = store.events_for(live.call_id)
    assert finals(stored) == heard
    seqs = [e["seq"] for e in stored]
    assert seqs == list(range(1, len(seqs) + 1))
    assert [c["status"] for c in store.list_calls() if c["call_id"] == live.call_id] == ["active"]

    # the same instance comes back: its unfinished call is interrupted, nothing lost
    again = ServerProcess(home, db, "restart-1").start()
    try:
        detail = again.get(f"/v1/calls/{live.call_id}")
        assert detail["status"] == "interrupted"
        assert [t["text"] for t in detail["transcript"] if t["text"]] == heard
        listed = again.get("/v1/calls", scope="stored")["calls"]
        assert {c["call_id"]: c["status"] for c in listed}[live.call_id] == "interrupted"
    finally:
        again.stop()

    # and the audit trail of all of it is intact
    verify = subprocess.run(
        [sys.executable, "-m", "assist.cli", "verify", "--db", db],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_stopped_server_finalises_its_calls_as_interrupted(tmp_path: Path, db: str) -> None:
    server = ServerProcess(tmp_path / "home", db, "restart-2").start()
    store = Store(db)
    live = start_held_call(server.ws, server.http, "clean_call", hold_at_s=12.0, speed=4.0)
    try:
        wait_stored_finals(store, live.call_id, 1)
        server.stop()  # SIGTERM: a deploy, a scale-in
    finally:
        live.release.set()
        if live.thread is not None:
            live.thread.join(60)
    report = store.get_report(live.call_id)
    assert report is not None
    row = next(c for c in store.list_calls() if c["call_id"] == live.call_id)
    assert (row["status"], row["ended_reason"]) == ("interrupted", "server_shutdown")
    ended = [e for e in store.events_for(live.call_id) if e["type"] == "call.ended"]
    assert len(ended) == 1 and ended[0]["reason"] == "server_shutdown"
    assert finals(store.events_for(live.call_id))
