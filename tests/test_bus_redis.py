"""The Redis event bus between instances, against the real local Redis (127.0.0.1:6379).

Two ``RedisEventBus`` objects in one process stand for two ``callwatch serve`` instances;
each test uses its own stream key and deletes it. Redis is taken "down" with ``FaultProxy``,
never by touching the shared server. Without Redis the tests skip locally and fail in CI.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
import redis

from assist.bus import Subscription
from assist.bus_redis import RedisEventBus
from tests.faultproxy import FaultProxy

REDIS_URL = os.environ.get("CALLWATCH_TEST_REDIS", "redis://127.0.0.1:6379/0")
_where = urlsplit(REDIS_URL)
REDIS_HOST, REDIS_PORT = _where.hostname or "127.0.0.1", _where.port or 6379
WAIT_S = 30.0  # generous: only a broken bus ever waits this long


def _redis() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, decode_responses=True)


@pytest.fixture(scope="module")
def redis_up() -> None:
    try:
        _redis().ping()
    except redis.RedisError as exc:
        reason = f"Redis not reachable at {REDIS_URL} ({exc}); start it to run the bus tests"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def stream(redis_up: None) -> Iterator[str]:
    key = f"callwatch:test:{uuid.uuid4().hex}"
    yield key
    _redis().delete(key)


@pytest.fixture
def proxy(redis_up: None) -> Iterator[FaultProxy]:
    with FaultProxy(REDIS_HOST, REDIS_PORT) as p:
        yield p


@asynccontextmanager
async def buses(*specs: tuple[str, str], **kwargs: Any) -> AsyncIterator[list[RedisEventBus]]:
    """Started buses for (url, instance id) pairs, closed afterwards."""
    made = [RedisEventBus(url, iid, **kwargs) for url, iid in specs]
    for b in made:
        await b.start()
    try:
        yield made
    finally:
        for b in made:
            await b.close(deadline_s=1.0)


async def until(cond: Callable[[], bool], what: str) -> None:
    for _ in range(int(WAIT_S / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def take(sub: Subscription, n: int) -> list[dict[str, Any]]:
    """The next ``n`` events of ``sub`` (fails on a cut-off mark or a timeout)."""
    out: list[dict[str, Any]] = []

    async def read() -> None:
        while len(out) < n:  # a plain get per event, as the server's socket pump does
            e = await sub.queue.get()
            assert e is not None, f"subscriber cut off after {len(out)} events"
            out.append(e)

    try:
        await asyncio.wait_for(read(), WAIT_S)
    except TimeoutError:
        raise AssertionError(f"got {len(out)} of {n} events") from None
    return out


def ev(call_id: str, seq: int, **extra: Any) -> dict[str, Any]:
    return {"type": "final", "call_id": call_id, "seq": seq, **extra}


def seqs(events: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(e["call_id"], e["seq"]) for e in events]


def unreachable_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "assist.bus_redis"
        and r.levelno == logging.ERROR
        and "unreachable" in r.getMessage()
    ]


def test_other_instance_gets_every_event_in_order(stream: str) -> None:
    async def run() -> None:
        async with buses((REDIS_URL, "a"), (REDIS_URL, "b"), stream=stream) as (a, b):
            on_b, on_a = b.subscribe(), a.subscribe()
            sent = [ev(f"c{i % 3}", i // 3 + 1, text=f"w{i}") for i in range(300)]
            for i, e in enumerate(sent):
                a.publish(e, "ag1")
                if i % 25 == 0:
                    await asyncio.sleep(0)
            got = await take(on_b, 300)
            assert got == sent  # content and order, across the calls interleaved
            assert seqs(await take(on_a, 300)) == seqs(sent)  # local ones once, no echo
            await until(lambda: a.stats()["sent"] == 300, "A to send everything")
            assert on_a.queue.empty() and on_b.queue.empty()
            sa, sb = a.stats(), b.stats()
            assert (sa["published"], sa["sent"], sa["received"], sa["outbox"]) == (300, 300, 0, 0)
            assert (sb["published"], sb["received"], sb["dropped"]) == (0, 300, 0)
            assert sa["redis_up"] and sb["redis_up"] and sa["outages"] == 0

    asyncio.run(run())


def test_listeners_see_only_their_own_instances_events(stream: str) -> None:
    async def run() -> None:
        async with buses((REDIS_URL, "a"), (REDIS_URL, "b"), stream=stream) as (a, b):
            heard_a: list[dict[str, Any]] = []
            heard_b: list[dict[str, Any]] = []
            a.add_listener(heard_a.append)
            b.add_listener(heard_b.append)
            board_a, board_b = a.subscribe(), b.subscribe()
            for i in range(1, 11):
                a.publish(ev("ca", i), "ag1")
            for i in range(1, 6):
                b.publish(ev("cb", i), "ag2")
            # every subscriber sees both instances' events ...
            assert sorted(seqs(await take(board_a, 15))) == sorted(seqs(await take(board_b, 15)))
            # ... but each webhook listener only its own instance's, so none fires twice
            assert seqs(heard_a) == [("ca", i) for i in range(1, 11)]
            assert seqs(heard_b) == [("cb", i) for i in range(1, 6)]

    asyncio.run(run())


def test_agent_and_call_filters_work_across_instances(stream: str) -> None:
    async def run() -> None:
        async with buses((REDIS_URL, "a"), (REDIS_URL, "b"), stream=stream) as (a, b):
            agent1 = b.subscribe(agent_id="ag1")
            call2 = b.subscribe(call_id="c2")
            agent2_call3 = b.subscribe(call_id="c3", agent_id="ag2")
            wrong_pair = b.subscribe(call_id="c1", agent_id="ag2")
            board = b.subscribe()
            owner = {"c1": "ag1", "c2": "ag2", "c3": "ag2", "c4": None}
            for i in range(1, 21):
                for call, agent in owner.items():
                    a.publish(ev(call, i), agent)
            await take(board, 80)
            assert seqs(await take(agent1, 20)) == [("c1", i) for i in range(1, 21)]
            assert seqs(await take(call2, 20)) == [("c2", i) for i in range(1, 21)]
            assert seqs(await take(agent2_call3, 20)) == [("c3", i) for i in range(1, 21)]
            for sub in (agent1, call2, agent2_call3, wrong_pair):
                assert sub.queue.empty()

    asyncio.run(run())


def test_redis_cut_while_publishing_loses_and_repeats_nothing(
    stream: str, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    url = proxy.url_for(REDIS_URL)

    async def run() -> None:
        async with buses((url, "a"), (url, "b"), stream=stream) as (a, b):
            on_b = b.subscribe(call_id="c1")
            for i in range(1, 51):
                a.publish(ev("c1", i), "ag1")
            assert [e["seq"] for e in await take(on_b, 50)] == list(range(1, 51))

            proxy.cut()
            for i in range(51, 151):  # published while Redis is away
                a.publish(ev("c1", i), "ag1")
                await asyncio.sleep(0.002)
            await until(lambda: not a.stats()["redis_up"], "A to notice the outage")
            await until(lambda: not b.stats()["redis_up"], "B to notice the outage")
            down = a.stats()
            assert down["outbox"] == 100 and down["sent"] == 50 and down["last_error"]
            assert on_b.queue.empty()

            proxy.restore()
            for i in range(151, 201):
                a.publish(ev("c1", i), "ag1")
                await asyncio.sleep(0)
            got = [e["seq"] for e in await take(on_b, 150)]
            assert got == list(range(51, 201))  # all 200 in order, none twice
            await asyncio.sleep(0.2)
            assert on_b.queue.empty()
            sa, sb = a.stats(), b.stats()
            assert (sa["sent"], sa["outbox"], sa["dropped"], sa["outages"]) == (200, 0, 0, 1)
            assert sa["redis_up"] and sb["redis_up"] and sb["outages"] == 1
            assert sb["received"] == 200 and sb["gaps"] == 0

    asyncio.run(run())
    # one clear error per instance per outage, not one per event or per retry
    errors = unreachable_errors(caplog)
    assert len(errors) == 2, errors
    assert all(f"127.0.0.1:{proxy.port}" in m and stream in m for m in errors)


def test_reader_resumes_from_its_last_entry_after_an_outage(stream: str, proxy: FaultProxy) -> None:
    async def run() -> None:
        # only B goes through the proxy: A keeps writing to Redis while B is cut off
        async with buses((REDIS_URL, "a"), (proxy.url_for(REDIS_URL), "b"), stream=stream) as (
            a,
            b,
        ):
            on_b = b.subscribe()
            for i in range(1, 21):
                a.publish(ev("c1", i))
            assert len(await take(on_b, 20)) == 20
            proxy.cut()
            await until(lambda: not b.stats()["redis_up"], "B to notice the outage")
            for i in range(21, 121):
                a.publish(ev("c1", i))
            await until(lambda: a.stats()["sent"] == 120, "A to write everything")
            assert on_b.queue.empty()
            proxy.restore()
            assert [e["seq"] for e in await take(on_b, 100)] == list(range(21, 121))
            assert b.stats()["received"] == 120 and b.stats()["duplicates"] == 0

    asyncio.run(run())


def test_redis_down_at_start_then_up(stream: str, proxy: FaultProxy) -> None:
    url = proxy.url_for(REDIS_URL)

    async def run() -> None:
        proxy.cut()
        async with buses((url, "a"), (url, "b"), stream=stream) as (a, b):  # must not raise
            for bus in (a, b):
                st = bus.stats()
                assert not st["redis_up"] and st["outages"] == 1 and st["last_error"]
            on_b = b.subscribe()
            heard: list[dict[str, Any]] = []
            a.add_listener(heard.append)
            for i in range(1, 21):
                a.publish(ev("c1", i), "ag1")
            assert len(heard) == 20  # local consumers never wait for Redis
            proxy.restore()
            assert [e["seq"] for e in await take(on_b, 20)] == list(range(1, 21))
            await until(lambda: a.stats()["redis_up"] and b.stats()["redis_up"], "both up")
            assert b.stats()["gaps"] == 0  # a stream that starts after B did lost nothing

    asyncio.run(run())


def test_full_outbox_drops_the_oldest_and_counts_them(stream: str, proxy: FaultProxy) -> None:
    async def run() -> None:
        async with buses(
            (proxy.url_for(REDIS_URL), "a"), (REDIS_URL, "b"), stream=stream, outbox_size=10
        ) as (a, b):
            on_b = b.subscribe()
            local = a.subscribe()
            proxy.cut()
            for i in range(1, 26):
                a.publish(ev("c1", i))
                await asyncio.sleep(0.001)
            st = a.stats()
            assert (st["outbox"], st["dropped"]) == (10, 15)
            assert len(await take(local, 25)) == 25  # local delivery is never dropped
            proxy.restore()
            await until(lambda: a.stats()["outbox"] == 0, "the outbox to drain")
            a.publish(ev("c1", 26))
            got = [e["seq"] for e in await take(on_b, 11)]
            assert got == list(range(16, 27))  # the newest 10 + the one after, in order
            await until(lambda: a.stats()["sent"] == 11, "the last one sent")
            assert a.stats()["dropped"] == 15

    asyncio.run(run())


def test_slow_subscriber_on_another_instance_is_cut_off_alone(stream: str) -> None:
    async def run() -> None:
        async with buses((REDIS_URL, "a"), (REDIS_URL, "b"), stream=stream, maxsize=10) as (a, b):
            stuck = b.subscribe(call_id="c1")  # never reads
            same_call, other_call = b.subscribe(call_id="c1"), b.subscribe(call_id="c2")
            readers = [asyncio.create_task(take(s, 100)) for s in (same_call, other_call)]
            for i in range(1, 101):
                a.publish(ev("c1", i))
                a.publish(ev("c2", i))
                await asyncio.sleep(0)
            same, other = await asyncio.wait_for(asyncio.gather(*readers), WAIT_S)
            assert [e["seq"] for e in same] == list(range(1, 101))
            assert [e["seq"] for e in other] == list(range(1, 101))
            left: list[Any] = []
            while not stuck.queue.empty():
                left.append(stuck.queue.get_nowait())
            assert left[-1] is None and [e["seq"] for e in left[:-1]] == list(range(1, 10))
            assert b.cut_off == 1 and b.stats()["cut_off"] == 1 and a.cut_off == 0

    asyncio.run(run())


def test_resent_entries_are_delivered_once_and_bad_ones_skipped(
    stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    """What a batch re-sent after a lost reply looks like in the stream: same boot, same n."""

    async def run() -> None:
        async with buses((REDIS_URL, "b"), stream=stream) as (b,):
            on_b = b.subscribe()
            r = _redis()

            def put(boot: str, n: int, event: Any, origin: str = "x") -> None:
                m = {"b": boot, "n": n, "o": origin, "a": None, "e": event}
                r.xadd(stream, {"m": json.dumps(m)})

            for n in (1, 2, 2, 3, 1):
                put("boot1", n, {"call_id": "c", "seq": n})
            r.xadd(stream, {"m": '{"b":"boot1","n":4}'})  # no event
            r.xadd(stream, {"other": "field"})  # not ours at all
            put("boot1", 5, [1])  # not an object
            put(b.boot, 1, {"call_id": "own", "seq": 99}, origin="b")  # b's own entry
            put("boot2", 1, {"call_id": "d", "seq": 1}, origin="y")
            assert seqs(await take(on_b, 4)) == [("c", 1), ("c", 2), ("c", 3), ("d", 1)]
            await asyncio.sleep(0.2)
            assert on_b.queue.empty()
            assert b.stats()["duplicates"] == 2 and b.stats()["received"] == 4

    asyncio.run(run())
    assert "skipping malformed entry" in caplog.text
    assert "not an object" in caplog.text


def test_two_processes_with_one_instance_id_still_share_and_are_warned_about(
    stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def run() -> None:
        async with buses((REDIS_URL, "same"), (REDIS_URL, "same"), stream=stream) as (a, b):
            on_b = b.subscribe()
            for i in range(1, 4):
                a.publish(ev("c1", i))
            assert [e["seq"] for e in await take(on_b, 3)] == [1, 2, 3]

    asyncio.run(run())
    assert caplog.text.count("another process publishes as instance 'same'") == 1


def test_close_flushes_the_outbox(stream: str) -> None:
    async def run() -> None:
        async with buses((REDIS_URL, "a"), stream=stream) as (a,):
            for i in range(1, 41):
                a.publish(ev("c1", i), "ag7")
        # closed right after publishing: everything still reached the stream
        entries = cast(list[tuple[str, dict[str, str]]], _redis().xrange(stream))
        messages = [json.loads(f["m"]) for _, f in entries]
        assert [m["n"] for m in messages] == list(range(1, 41))
        assert messages[0] == {"b": a.boot, "n": 1, "o": "a", "a": "ag7", "e": ev("c1", 1)}
        assert a.stats()["sent"] == 40 and a.stats()["outbox"] == 0

    asyncio.run(run())


def test_close_with_redis_down_gives_up_after_its_deadline(
    stream: str, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    async def run() -> RedisEventBus:
        bus = RedisEventBus(proxy.url_for(REDIS_URL), "a", stream=stream)
        await bus.start()
        proxy.cut()
        for i in range(1, 6):
            bus.publish(ev("c1", i))
        await bus.close(deadline_s=0.3)
        return bus

    bus = asyncio.run(run())
    st = bus.stats()
    assert (st["outbox"], st["dropped"], st["sent"]) == (0, 5, 0)
    assert "5 events could not reach Redis before shutdown" in caplog.text


def test_the_stream_is_bounded(stream: str) -> None:
    async def run() -> None:
        async with buses((REDIS_URL, "a"), stream=stream, maxlen=100) as (a,):
            for i in range(1, 2001):
                a.publish(ev("c1", i))
                if i % 100 == 0:
                    await asyncio.sleep(0)
            await until(lambda: a.stats()["sent"] == 2000, "everything sent")
        length = _redis().xlen(stream)
        # approximate trimming removes whole stream nodes (100 entries each by default)
        assert 100 <= length <= 300, length

    asyncio.run(run())


def test_a_reader_away_longer_than_the_stream_keeps_says_so(
    stream: str, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    async def run() -> None:
        async with buses(
            (REDIS_URL, "a"), (proxy.url_for(REDIS_URL), "b"), stream=stream, maxlen=100
        ) as (a, b):
            on_b = b.subscribe()
            for i in range(1, 6):
                a.publish(ev("c1", i))
            assert len(await take(on_b, 5)) == 5
            proxy.cut()
            await until(lambda: not b.stats()["redis_up"], "B to notice the outage")
            for i in range(6, 1006):
                a.publish(ev("c1", i))
            await until(lambda: a.stats()["sent"] == 1005, "A to write everything")
            kept = _redis().xlen(stream)
            assert kept < 1000  # the stream dropped B's position and more
            proxy.restore()
            got = [e["seq"] for e in await take(on_b, kept)]
            assert got == list(range(1006 - kept, 1006))  # what is left, in order
            assert b.stats()["gaps"] == 1

    asyncio.run(run())
    assert "was trimmed past our position" in caplog.text


def test_a_bus_starts_again_after_close(stream: str) -> None:
    a = RedisEventBus(REDIS_URL, "a", stream=stream)
    b = RedisEventBus(REDIS_URL, "b", stream=stream)

    async def run(first: int) -> list[int]:
        await a.start()
        await b.start()
        try:
            sub = b.subscribe()
            for i in range(first, first + 3):
                a.publish(ev("c1", i))
            return [e["seq"] for e in await take(sub, 3)]
        finally:
            await a.close()
            await b.close()

    assert asyncio.run(run(1)) == [1, 2, 3]
    assert asyncio.run(run(4)) == [4, 5, 6]  # a new event loop, as a restarted server has
    assert a.stats()["sent"] == 6 and b.stats()["received"] == 6
