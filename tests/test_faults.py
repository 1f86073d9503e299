"""Faults a live server must survive, against real servers, real sockets and real SQLite:
a subscriber that stops reading, subscribers whose TCP connection vanishes, callers hanging
up mid-sentence on every protocol, and the disk filling up during an audit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import soundfile as sf
import websockets
from sqlalchemy import event
from sqlalchemy.engine import Engine
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.uri import parse_uri

from assist.replay import ReplayResult, replay
from assist.server import App
from bench.metrics import normalise_words
from tests.conftest import DEMO
from tests.live_server import make_state, running_server

pytestmark = pytest.mark.slow

PROTOCOLS = ("twilio", "audiohook", "raw")
# How long a replay waits for call.ended after its last frame: calls played at 10-20x queue
# their transcription, more so on a busy machine (a hang guard, not a measurement).
SETTLE_S = 180.0


def http(url: str) -> str:
    return url.replace("ws://", "http://")


def metrics(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{http(url)}/metrics", timeout=10).json())


def wait_for(cond: Any, what: str, timeout: float = 60) -> Any:
    """Poll ``cond()`` until it returns something truthy (the deadline only guards a hang)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def stored_events(state: App, call_id: str) -> list[dict[str, Any]]:
    """The call's events once the store has its end (stored after call.ended goes out)."""
    assert state.store is not None
    store = state.store

    def ended() -> list[dict[str, Any]] | None:
        evs = store.events_for(call_id)
        return evs if any(e["type"] == "call.ended" for e in evs) else None

    return list(wait_for(ended, f"call {call_id} in the store"))


def assert_complete(res: ReplayResult, reason: str | None = None) -> None:
    """A subscriber that saw the whole call: seq 1, 2, 3 ... with no gap or repeat, from
    call.started to call.ended."""
    seqs = [e["seq"] for e in res.events]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    assert res.events[0]["type"] == "call.started", res.events[0]
    assert res.events[-1]["type"] == "call.ended", res.events[-1]
    if reason is not None:
        assert res.events[-1]["reason"] == reason
    assert any(e["type"] == "transcript.final" for e in res.events)


def assert_stored_as_received(state: App, res: ReplayResult) -> None:
    stored = stored_events(state, res.call_id)
    assert [(e["seq"], e["type"]) for e in stored] == [(e["seq"], e["type"]) for e in res.events]


class ErrorLog(logging.Handler):
    """Every ERROR record from any thread (uvicorn's loggers stop at "uvicorn", short of
    the root)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" for r in self.records]


@pytest.fixture
def errors() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    loggers = [logging.getLogger(), logging.getLogger("uvicorn")]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        yield handler
    finally:
        for lg in loggers:
            lg.removeHandler(handler)


# -- servers -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def state(asr, packs) -> Iterator[App]:  # type: ignore[no-untyped-def]
    st = make_state(asr, packs, emotion=False, assist=False)
    yield st
    st.close()


@pytest.fixture(scope="module")
def url(state: App) -> Iterator[str]:
    with running_server(state) as u:
        yield u


SMALL_QUEUE = 16  # events a subscriber may fall behind before it is cut off


@pytest.fixture(scope="module")
def small(asr, packs) -> Iterator[tuple[App, str]]:  # type: ignore[no-untyped-def]
    """A server whose subscribers may fall only SMALL_QUEUE events behind (1000 in
    production), so a stalled reader reaches the bound within one burst of calls (emotion
    readings on: more events per call)."""
    st = make_state(asr, packs, assist=False, subscriber_queue=SMALL_QUEUE)
    with running_server(st) as u:
        yield st, u
    st.close()


# -- a subscriber that never reads ---------------------------------------------------------
class StalledSubscriber:
    """A WebSocket client (websockets' sans-I/O protocol on a plain socket) that completes
    the handshake and then never reads, like a frozen browser tab. Both ends of its TCP
    connection get small kernel buffers, so the server's writes back up after ~90 kB (most of
    it asyncio's 64 kB write buffer) instead of the megabytes Linux would otherwise allow."""

    def __init__(self, ws_url: str) -> None:
        uri = parse_uri(ws_url)
        self.proto = ClientProtocol(uri, max_size=None)
        self.events: list[dict[str, Any]] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect((uri.host, uri.port))
        # before the upgrade request: the server sends what it has the moment it accepts
        wait_for(lambda: shrink_send_buffer(self.address), "the server's end of the socket")
        self.proto.send_request(self.proto.connect())
        self.sock.sendall(b"".join(self.proto.data_to_send()))
        while self.proto.state.name == "CONNECTING":  # the 101 only, byte by byte
            data = self.sock.recv(1)
            if not data:
                raise ConnectionError("the server closed the connection during the handshake")
            self.proto.receive_data(data)
        if self.proto.handshake_exc is not None:
            raise self.proto.handshake_exc

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def read_all(self, timeout: float = 15) -> Close | None:
        """Read now, until the server closes or goes quiet; returns its close frame."""
        self.sock.settimeout(timeout)
        while self.proto.close_rcvd is None:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            if data:
                self.proto.receive_data(data)
            else:
                self.proto.receive_eof()
            for frame in self.proto.events_received():
                if isinstance(frame, Frame) and frame.opcode == Opcode.TEXT:
                    self.events.append(json.loads(bytes(frame.data)))
            out = self.proto.data_to_send()
            if any(out):
                with contextlib.suppress(OSError):  # the server may have gone already
                    self.sock.sendall(b"".join(out))
            if not data:
                break
        return self.proto.close_rcvd

    def close(self) -> None:
        self.sock.close()


def shrink_send_buffer(peer: tuple[str, int], size: int = 4096) -> bool:
    """Give the server's socket to ``peer`` a small kernel send buffer (a slow network path
    to that one client; the server runs in this process, so its sockets are ours to find)."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            sock = socket.fromfd(int(fd), socket.AF_INET, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            if sock.getpeername()[:2] == peer:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
                return True
        except OSError:
            pass
        finally:
            sock.close()
    return False


# The slow agent's calls: ~265 events, ~180 kB of JSON in all.
SLOW_CALLS = ("breach_call", "cancel_call", "clean_call", "breach_call", "cancel_call")
# The stalled panel opens once they have said this much: the backlog it is sent on joining
# (~100 kB) already fills its socket, so the events that follow queue up and reach the
# bound within seconds (well before the server's 40 s keepalive would drop it instead).
JOIN_AFTER = 150


def test_stalled_subscriber_is_cut_off_and_no_one_else_notices(
    small: tuple[App, str], errors: ErrorLog
) -> None:
    state, url = small
    before = metrics(url)
    stalled: list[StalledSubscriber] = []

    def stall_then_read() -> Close | None:
        """A panel of the slow agent that freezes on joining; once the server has cut it
        off, it wakes up and reads what it was sent."""
        stalled.append(StalledSubscriber(f"{url}/v1/agents/slow-agent/events"))
        wait_for(lambda: metrics(url)["bus_cut_off"] > before["bus_cut_off"], "the cut-off")
        return stalled[0].read_all()

    async def scenario() -> tuple[list[ReplayResult], Close | None]:
        said = 0
        joined: list[asyncio.Future[Close | None]] = []

        def on_event(ev: dict[str, Any], _lat: float) -> None:
            nonlocal said
            said += 1
            if said == JOIN_AFTER:
                joined.append(asyncio.ensure_future(asyncio.to_thread(stall_then_read)))

        def play(name: str, agent: str) -> Any:
            return replay(
                url,
                str(DEMO / f"{name}.wav"),
                protocol="raw",
                speed=20.0,
                agent_id=agent,
                settle_s=SETTLE_S,
                on_event=on_event if agent == "slow-agent" else None,
            )

        results = await asyncio.gather(
            *(play(name, "slow-agent") for name in SLOW_CALLS),
            play("clean_call", "steady-agent"),  # another agent's call on the same server
        )
        assert joined, f"the slow agent's calls said only {said} events"
        return list(results), await joined[0]

    try:
        results, close = asyncio.run(scenario())
        # the stalled panel was cut off, once, and told to reconnect (1013)
        assert metrics(url)["bus_cut_off"] - before["bus_cut_off"] == 1
        assert close is not None and close.code == 1013, close
        assert "too slow" in close.reason
        # every other subscriber (each call's own, the slow agent's calls included) got
        # every event in order, and the store has each call whole
        for res in results:
            assert_complete(res, "completed")
            assert_stored_as_received(state, res)
        slow = results[: len(SLOW_CALLS)]
        # what the stalled panel got before the cut: per call, the start of the call in
        # order without gaps, and less than the calls said
        got = stalled[0].events
        assert got and {e["call_id"] for e in got} <= {r.call_id for r in slow}
        assert len(got) < sum(len(r.events) for r in slow)
        for cid in {e["call_id"] for e in got}:
            seqs = [e["seq"] for e in got if e["call_id"] == cid]
            assert seqs == list(range(1, len(seqs) + 1)), (cid, seqs)
        # its subscription is gone (nothing keeps queueing for it)
        wait_for(
            lambda: metrics(url)["bus_subscribers"] == before["bus_subscribers"],
            "the cut-off subscription to go",
        )
    finally:
        for s in stalled:
            s.close()
    assert not errors.messages(), errors.messages()


def abort(ws: Any) -> None:
    """Drop the TCP connection with a reset: no close frame, no FIN."""
    sock = ws.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.transport.abort()


def test_subscribers_dropped_without_a_close_leave_no_trace(
    state: App, url: str, errors: ErrorLog
) -> None:
    before = metrics(url)
    call_id = "fault-drop-1"

    async def scenario() -> list[ReplayResult]:
        dropped = [
            await websockets.connect(f"{url}/v1/agents/drop-agent/events"),
            await websockets.connect(f"{url}/v1/calls/{call_id}/events"),
        ]
        plays = asyncio.gather(
            replay(
                url,
                str(DEMO / "breach_call.wav"),
                protocol="raw",
                speed=10.0,
                call_id=call_id,
                agent_id="drop-agent",
                settle_s=SETTLE_S,
            ),
            replay(
                url,
                str(DEMO / "clean_call.wav"),
                protocol="twilio",
                speed=10.0,
                settle_s=SETTLE_S,
            ),
        )
        for ws in dropped:  # each has seen the call start, then its network goes
            first = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert first["call_id"] == call_id
            abort(ws)
        return list(await plays)

    results = asyncio.run(scenario())
    for res in results:
        assert_complete(res, "completed")
        assert_stored_as_received(state, res)
    wait_for(
        lambda: metrics(url)["bus_subscribers"] == before["bus_subscribers"],
        "the dropped subscriptions to go",
    )
    assert metrics(url)["bus_cut_off"] == before["bus_cut_off"]
    assert not errors.messages(), errors.messages()


# -- hang-ups mid-sentence -----------------------------------------------------------------
def _cut_turn() -> dict[str, Any]:
    """cancel_call: the customer's long complaint at 58.6-68.4 s, "I asked for this
    discount a month ago and nobody called me back. This is ridiculous, I am really angry,
    I have been waiting for weeks." """
    turns = json.loads((DEMO / "cancel_call.timeline.json").read_text())["turns"]
    return dict(next(t for t in turns if t["text"].startswith("I asked for this discount")))


TURN = _cut_turn()
CUT_S = TURN["t"] + 0.4 * (TURN["t_end"] - TURN["t"])  # ~62.5 s: "... a month ago and nobody"


@pytest.fixture(scope="module")
def hangups(url: str) -> dict[str, ReplayResult]:
    """The same call on each protocol at once, each caller hanging up (TCP dropped, no stop
    message) in the middle of that sentence."""

    async def run() -> list[ReplayResult]:
        return list(
            await asyncio.gather(
                *(
                    replay(
                        url,
                        str(DEMO / "cancel_call.wav"),
                        protocol=p,
                        speed=10.0,
                        agent_id=f"hangup-{p}",
                        drop_at_s=CUT_S,
                        settle_s=SETTLE_S,
                    )
                    for p in PROTOCOLS
                )
            )
        )

    return dict(zip(PROTOCOLS, asyncio.run(run()), strict=True))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_hang_up_mid_sentence_finalises_publishes_and_stores_the_last_words(
    state: App, url: str, hangups: dict[str, ReplayResult], protocol: str
) -> None:
    res = hangups[protocol]
    # published: the subscriber saw the whole call, ended by the hang-up
    assert_complete(res, "disconnected")
    finals = [e for e in res.events if e["type"] == "transcript.final"]
    last = finals[-1]
    assert last["speaker"] == "customer"
    assert TURN["t"] - 0.5 <= last["t"] < CUT_S <= last["t_end"] + 0.5
    words = normalise_words(last["text"])
    # the words said before the cut are there; none from after it
    assert "discount" in words and ("asked" in words or "month" in words), last["text"]
    assert not {"ridiculous", "angry", "weeks"} & set(words), last["text"]
    # stored: the same final (same seq, same words) and the call ended by the hang-up
    stored = stored_events(state, res.call_id)
    assert [(e["seq"], e["type"]) for e in stored] == [(e["seq"], e["type"]) for e in res.events]
    stored_last = next(e for e in stored if e["seq"] == last["seq"])
    assert stored_last["text"] == last["text"]
    detail = httpx.get(f"{http(url)}/v1/calls/{res.call_id}", timeout=10).json()
    assert detail["ended_reason"] == "disconnected"
    assert detail["transcript"][-1]["text"] == last["text"]


# -- disk full during an audit -------------------------------------------------------------
class DiskFull:
    """Make a SQLite store's disk "fill up" once it holds ``after`` audited calls: from then
    on every connection the pool hands out is capped (``PRAGMA max_page_count``) at the
    pages the database already has, so the next write needing a page fails with SQLite's
    own "database or disk is full" (SQLITE_FULL). ``free()`` gives the space back."""

    def __init__(self, engine: Engine, after: int) -> None:
        assert engine.dialect.name == "sqlite"
        self.engine = engine
        self.after = after
        self.freed = False
        with engine.connect() as conn:
            self.unlimited = int(conn.exec_driver_sql("PRAGMA max_page_count").scalar_one())
        event.listen(engine, "checkout", self._on_checkout)

    def _on_checkout(self, dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            full = False
            if not self.freed:
                audits = cur.execute("SELECT count(*) FROM calls WHERE mode = 'audit'")
                full = int(audits.fetchone()[0]) >= self.after
            if full:
                pages = int(cur.execute("PRAGMA page_count").fetchone()[0])
                cur.execute(f"PRAGMA max_page_count = {pages}")
            else:
                cur.execute(f"PRAGMA max_page_count = {self.unlimited}")
        finally:
            cur.close()

    def free(self) -> None:
        self.freed = True

    def remove(self) -> None:
        event.remove(self.engine, "checkout", self._on_checkout)


CLIPS = {  # the first 13.2 s of each demo call: greeting + the customer's first words
    "a_clean.wav": ("clean_call", "higher than usual"),
    "b_cancel.wav": ("cancel_call", "cancel my contract"),
    "c_breach.wav": ("breach_call", "internet"),
}


@pytest.fixture(scope="module")
def audit_server(asr, packs, tmp_path_factory) -> Iterator[tuple[App, httpx.Client]]:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("disk-full") / "calls"
    folder.mkdir()
    for name, (src, _) in CLIPS.items():
        data, rate = sf.read(DEMO / f"{src}.wav", dtype="int16")
        sf.write(folder / name, data[: int(13.2 * rate)], rate, subtype="PCM_16")
    st = make_state(  # its own store: the disk fills after ITS first audited call
        asr,
        packs,
        audit_dirs=[str(folder)],
        diarize=False,
        emotion=False,
        assist=False,
        db_url=f"sqlite:///{folder.parent / 'store.db'}",
    )
    with (
        running_server(st) as u,
        httpx.Client(base_url=http(u), timeout=60) as client,
    ):
        yield st, client
    st.close()


def run_audit(client: httpx.Client, files: list[str]) -> dict[str, Any]:
    r = client.post("/v1/audits", json={"folder": "calls", "files": files})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]

    def ended() -> dict[str, Any] | None:
        job = client.get(f"/v1/audits/{job_id}").json()
        return job if job["status"] in ("done", "failed", "cancelled") else None

    return dict(wait_for(ended, f"audit job {job_id}", timeout=300))


def said(call: dict[str, Any]) -> str:
    return " ".join(line["text"] for line in call["transcript"]).lower()


@pytest.fixture(scope="module")
def disk_full(audit_server: tuple[App, httpx.Client]) -> Iterator[dict[str, Any]]:
    """An audit of three recordings during which the disk fills up after the first is
    stored; what the server answered meanwhile; then the space comes back."""
    state, client = audit_server
    assert state.store is not None
    disk = DiskFull(state.store.engine, after=1)
    try:
        job = run_audit(client, list(CLIPS))
        first_id = job["files"][0]["call_id"]
        with state.store.engine.connect() as conn:
            audited = conn.exec_driver_sql("SELECT count(*) FROM calls WHERE mode = 'audit'")
            audit_calls = int(audited.scalar_one())
        out = {
            "job": job,
            "audit_calls": audit_calls,
            "health": client.get("/healthz").status_code,
            "listing": client.get("/v1/calls", params={"scope": "stored"}).json(),
            "first": client.get(f"/v1/calls/{first_id}").json() if first_id else None,
        }
        disk.free()
        yield out
    finally:
        disk.remove()


def test_disk_full_mid_audit_fails_the_rest_with_a_clear_error(
    audit_server: tuple[App, httpx.Client], disk_full: dict[str, Any]
) -> None:
    state, _ = audit_server
    job = disk_full["job"]
    first, *rest = job["files"]
    assert first["status"] == "done" and first["call_id"] and first["error"] is None
    assert job["status"] == "done" and (job["done"], job["failed"]) == (1, 2)
    assert state.store is not None
    db_file = Path(state.store.engine.url.database or "").name
    for f in rest:
        assert f["status"] == "failed" and f["call_id"] is None
        err = f["error"]
        assert err.startswith("audited but not stored"), err
        assert "database or disk is full" in err, err
        assert db_file and db_file in err, err  # it names the store that is full
        assert f["score"] is not None  # what was worked out is still shown


def test_disk_full_keeps_what_was_stored_and_the_server_serving(
    audit_server: tuple[App, httpx.Client], disk_full: dict[str, Any]
) -> None:
    state, client = audit_server
    assert state.store is not None
    job = disk_full["job"]
    first_id = job["files"][0]["call_id"]
    # while the disk was full: the server answered, listed and served the stored call
    assert disk_full["health"] == 200
    assert first_id in {c["call_id"] for c in disk_full["listing"]["calls"]}
    assert disk_full["first"] is not None
    assert CLIPS["a_clean.wav"][1] in said(disk_full["first"])
    # afterwards the call stored before the disk filled is intact and readable
    stored = client.get(f"/v1/calls/{first_id}").json()
    assert stored == disk_full["first"]
    events = state.store.events_for(first_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "call.ended"
    with state.store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
    assert disk_full["audit_calls"] == 1  # nothing half-written for the files that failed


def test_audit_succeeds_once_space_returns(
    audit_server: tuple[App, httpx.Client], disk_full: dict[str, Any]
) -> None:
    _, client = audit_server
    job = run_audit(client, ["b_cancel.wav", "c_breach.wav"])
    assert job["status"] == "done" and (job["done"], job["failed"]) == (2, 0), job
    for f in job["files"]:
        text = said(client.get(f"/v1/calls/{f['call_id']}").json())
        assert CLIPS[f["name"]][1] in text, (f["name"], text)
    first_id = disk_full["job"]["files"][0]["call_id"]
    assert client.get(f"/v1/calls/{first_id}").json() == disk_full["first"]


def test_disk_full_error_carries_no_sql_or_call_content(disk_full: dict[str, Any]) -> None:
    """The per-file error is read on the board: a sentence, not the failed INSERT with the
    report (transcript included) as its parameters."""
    for f in disk_full["job"]["files"][1:]:
        err = f["error"]
        assert "[SQL:" not in err and "[parameters:" not in err, err
        assert len(err) < 300, len(err)
