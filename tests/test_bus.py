"""The in-process event bus (drop policy, listeners, make_bus) and the fault proxy."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from assist.bus import EventBus, Subscription, make_bus
from assist.bus_redis import DEFAULT_MAXLEN, DEFAULT_STREAM, RedisEventBus
from tests.faultproxy import FaultProxy


def ev(call_id: str, seq: int, type_: str = "final") -> dict[str, Any]:
    return {"type": type_, "call_id": call_id, "seq": seq}


def drain(sub: Subscription) -> list[dict[str, Any] | None]:
    out: list[dict[str, Any] | None] = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait())
    return out


# -- in-process bus -------------------------------------------------------------------------


def test_subscribers_get_matching_events_and_listeners_every_event() -> None:
    async def run() -> None:
        bus = EventBus(instance_id="solo")
        await bus.start()
        everything = bus.subscribe()
        by_call = bus.subscribe(call_id="c1")
        by_agent = bus.subscribe(agent_id="ag2")
        both = bus.subscribe(call_id="c2", agent_id="ag1")  # c2 is ag2's: never matches
        heard: list[dict[str, Any]] = []
        bus.add_listener(heard.append)
        bus.publish(ev("c1", 1), "ag1")
        bus.publish(ev("c2", 1), "ag2")
        bus.publish(ev("c1", 2), "ag1")
        assert [(e["call_id"], e["seq"]) for e in drain(everything) if e] == [
            ("c1", 1),
            ("c2", 1),
            ("c1", 2),
        ]
        assert [e["seq"] for e in drain(by_call) if e] == [1, 2]
        assert [e["call_id"] for e in drain(by_agent) if e] == ["c2"]
        assert drain(both) == []
        assert len(heard) == 3
        assert bus.stats() == {
            "backend": "memory",
            "instance_id": "solo",
            "published": 3,
            "subscribers": 4,
            "cut_off": 0,
        }
        bus.unsubscribe(by_call)
        bus.remove_listener(heard.append)
        bus.publish(ev("c1", 3), "ag1")
        assert drain(by_call) == [] and len(heard) == 3 and bus.subscribers == 3
        await bus.close()

    asyncio.run(run())


def test_a_broken_listener_does_not_stop_delivery(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    sub = bus.subscribe()
    seen: list[dict[str, Any]] = []

    def broken(_: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    bus.add_listener(broken)
    bus.add_listener(seen.append)
    bus.publish(ev("c1", 1))
    assert [e["seq"] for e in drain(sub) if e] == [1]
    assert len(seen) == 1
    assert "bus listener" in caplog.text and "boom" in caplog.text


def test_slow_subscriber_is_cut_off_and_nobody_else_loses_an_event() -> None:
    """The documented drop policy: a subscriber that never reads gets ``maxsize - 1`` events
    and the ``None`` mark, then nothing; readers of the same and other calls get everything."""

    async def run() -> None:
        bus = EventBus(maxsize=10)
        stuck = bus.subscribe(call_id="c1")  # never read
        same_call = bus.subscribe(call_id="c1")
        other_call = bus.subscribe(call_id="c2")
        board = bus.subscribe()
        got: dict[str, list[int]] = {"same": [], "other": [], "board": []}

        async def read(name: str, sub: Subscription, n: int) -> None:
            while len(got[name]) < n:
                e = await sub.queue.get()
                assert e is not None, f"{name} was cut off"
                got[name].append(e["seq"] if e["call_id"] == "c1" else -e["seq"])

        readers = [
            asyncio.create_task(read("same", same_call, 100)),
            asyncio.create_task(read("other", other_call, 100)),
            asyncio.create_task(read("board", board, 200)),
        ]
        for i in range(1, 101):  # as live calls do: one event per loop turn or so
            bus.publish(ev("c1", i), "ag1")
            bus.publish(ev("c2", i), "ag2")
            await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*readers), 10)
        assert got["same"] == list(range(1, 101))
        assert got["other"] == [-i for i in range(1, 101)]
        assert got["board"] == [x for i in range(1, 101) for x in (i, -i)]
        queued = drain(stuck)
        assert queued[-1] is None and len(queued) == 10
        assert [e["seq"] for e in queued[:-1] if e] == list(range(1, 10))
        assert stuck.dropped and not same_call.dropped and not board.dropped
        assert bus.cut_off == 1 and bus.stats()["cut_off"] == 1

    asyncio.run(run())


def test_bus_maxsize_must_leave_room_for_the_cut_off_mark() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        EventBus(maxsize=1)


def test_make_bus_picks_the_backend_from_the_url() -> None:
    assert type(make_bus(None, "i1")) is EventBus
    mem = make_bus("", "i1", maxsize=50)
    assert type(mem) is EventBus and mem.maxsize == 50 and mem.instance_id == "i1"
    bus = make_bus("redis://127.0.0.1:6379/0", "i2", maxsize=20)
    assert isinstance(bus, RedisEventBus)
    assert (bus.stream, bus.maxlen, bus.maxsize, bus.instance_id) == (
        DEFAULT_STREAM,
        DEFAULT_MAXLEN,
        20,
        "i2",
    )
    custom = make_bus("redis://:pw@127.0.0.1:6379/2?stream=cw:x&maxlen=500&db=3", "i3")
    assert isinstance(custom, RedisEventBus)
    assert (custom.stream, custom.maxlen) == ("cw:x", 500)
    assert custom.url == "redis://:pw@127.0.0.1:6379/2?db=3"  # ours removed, redis-py's kept
    with pytest.raises(ValueError, match="not supported"):
        make_bus("http://127.0.0.1:6379", "i4")
    with pytest.raises(ValueError, match="maxlen must be an integer"):
        make_bus("redis://127.0.0.1:6379/0?maxlen=lots", "i5")


def test_redis_bus_stats_before_start() -> None:
    stats = RedisEventBus("redis://127.0.0.1:6379/0", "i", stream="s").stats()
    assert stats["backend"] == "redis" and stats["stream"] == "s"
    for key in ("published", "sent", "received", "outbox", "dropped"):
        assert stats[key] == 0
    assert stats["redis_up"] is False and stats["last_error"] is None


# -- fault proxy ------------------------------------------------------------------------------


class EchoServer:
    """Upstream for the proxy tests: echoes, or (``mode="reverse"``) reads to EOF and then
    answers with the reversed bytes, which only works if half-closes are passed on."""

    def __init__(self, mode: str = "echo") -> None:
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.1)
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(None)
        with conn, contextlib.suppress(OSError):
            if self.mode == "echo":
                while data := conn.recv(65536):
                    conn.sendall(data)
            else:
                buf = b""
                while data := conn.recv(65536):
                    buf += data
                conn.sendall(buf[::-1])

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


def roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while data := s.recv(65536):
            out += data
        return out


def test_proxy_forwards_many_connections_at_once(echo: EchoServer) -> None:
    with FaultProxy("127.0.0.1", echo.port) as proxy:
        results: dict[int, bytes] = {}

        def client(i: int) -> None:
            results[i] = roundtrip(proxy.port, bytes([i % 256]) * (50_000 + i))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(60)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(results) == list(range(60))
        for i, data in results.items():
            assert data == bytes([i % 256]) * (50_000 + i)
        assert proxy.accepted == 60 and proxy.refused == 0


def test_proxy_passes_half_close_on() -> None:
    server = EchoServer(mode="reverse")
    try:
        with FaultProxy("127.0.0.1", server.port) as proxy:
            # the server answers only after it sees our EOF; the answer must still come back
            assert roundtrip(proxy.port, b"abc" * 10_000) == (b"abc" * 10_000)[::-1]
    finally:
        server.close()


def _dead(sock: socket.socket) -> bool:
    """True if the connection is closed or reset (what a client sees when the server goes)."""
    try:
        sock.sendall(b"ping")
        return sock.recv(16) == b""
    except OSError:
        return True


def _refused(port: int) -> bool:
    """True if a new connection fails at once (reset during connect or right after)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        return True
    with s:
        return _dead(s)


def test_proxy_cut_drops_connections_and_refuses_new_ones_until_restored(
    echo: EchoServer,
) -> None:
    with FaultProxy("127.0.0.1", echo.port) as proxy:
        open_conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        open_conn.sendall(b"hello")
        assert open_conn.recv(16) == b"hello"
        proxy.cut()
        assert proxy.is_cut
        assert _dead(open_conn)
        open_conn.close()
        for _ in range(3):
            assert _refused(proxy.port)
        assert proxy.refused >= 3 and proxy.connections == 0
        proxy.restore()
        assert roundtrip(proxy.port, b"back again") == b"back again"


def test_proxy_resets_clients_when_upstream_is_down() -> None:
    port = socket.create_server(("127.0.0.1", 0))
    dead_port = port.getsockname()[1]
    port.close()  # nothing listens there now
    with FaultProxy("127.0.0.1", dead_port) as proxy:
        assert _refused(proxy.port)
        assert proxy.refused == 1 and proxy.accepted == 0


def test_proxy_url_for_keeps_everything_but_host_and_port() -> None:
    with FaultProxy("127.0.0.1", 9) as proxy:
        p = proxy.port
        assert proxy.url_for("redis://localhost:6379/0") == f"redis://127.0.0.1:{p}/0"
        assert proxy.url_for("redis://:s3cret@10.0.0.5:6379/2?stream=k") == (
            f"redis://:s3cret@127.0.0.1:{p}/2?stream=k"
        )
        assert proxy.url_for("postgresql+psycopg://postgres@127.0.0.1:5432/test") == (
            f"postgresql+psycopg://postgres@127.0.0.1:{p}/test"
        )
        assert proxy.url_for("postgresql://u:p@db/x") == f"postgresql://u:p@127.0.0.1:{p}/x"
        with pytest.raises(ValueError, match="not a URL"):
            proxy.url_for("127.0.0.1:6379")
