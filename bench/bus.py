"""Redis event bus between two instances: events/s and cross-instance delivery latency.

    python -m bench.bus [--url redis://127.0.0.1:6379/0] [--events 20000] [--rate 1000]
                        [--seconds 5] [--size 200]

Instance A (this process) publishes; instance B (a second process, so each has its own event
loop and core, as two ``callwatch serve`` would) subscribes and timestamps what it receives.
Two phases on a fresh stream (deleted afterwards):

- throughput: ``--events`` events published as fast as the loop allows (500 per loop turn);
  events/s = events / (last received by B - first published by A).
- latency: ``--rate`` events/s for ``--seconds``, paced; latency = received by B - published
  by A (both ``time.time()`` on one machine).

Events look like live ``partial`` events (``--size`` characters of text, 20 calls). Loss,
duplicates and per-call order are checked for both phases.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import time
import uuid
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import redis

from assist.bus_redis import RedisEventBus

CALLS = 20
CHUNK = 500


def event(phase: str, i: int, size: int) -> dict[str, Any]:
    return {
        "type": "partial",
        "call_id": f"bench-{i % CALLS}",
        "seq": i // CALLS + 1,
        "phase": phase,
        "i": i,
        "text": "x" * size,
        "t": time.time(),
    }


async def _receive(url: str, stream: str, pipe: Connection, expect: dict[str, int]) -> None:
    bus = RedisEventBus(url, "bench-b", maxsize=10_000_000, stream=stream)
    await bus.start()
    sub = bus.subscribe()
    pipe.send("ready")
    got: dict[str, list[tuple[int, float, float]]] = {p: [] for p in expect}
    deadline = time.time() + 600
    while any(len(got[p]) < n for p, n in expect.items()) and time.time() < deadline:
        try:
            ev = await asyncio.wait_for(sub.queue.get(), 30)
        except TimeoutError:
            break
        if ev is None:
            break
        got[ev["phase"]].append((ev["i"], ev["t"], time.time()))
        if ev["phase"] == "throughput" and len(got["throughput"]) == expect["throughput"]:
            pipe.send("throughput done")  # A starts the latency phase on an idle bus
    pipe.send({"got": got, "stats": bus.stats()})
    await bus.close()


def receiver(url: str, stream: str, pipe: Connection, expect: dict[str, int]) -> None:
    asyncio.run(_receive(url, stream, pipe, expect))


async def publish(
    url: str, stream: str, args: argparse.Namespace, pipe: Connection
) -> dict[str, Any]:
    bus = RedisEventBus(url, "bench-a", stream=stream)
    await bus.start()
    t0 = time.time()
    spent = 0.0
    for start in range(0, args.events, CHUNK):
        for i in range(start, min(start + CHUNK, args.events)):
            e = event("throughput", i, args.size)
            c = time.perf_counter()
            bus.publish(e)
            spent += time.perf_counter() - c
        await asyncio.sleep(0)
        # what the bus sustains: publish no faster than the sender moves events to Redis
        while len(bus.outbox) > 2 * CHUNK:
            await asyncio.sleep(0.0005)
    if not await asyncio.to_thread(pipe.poll, 60) or pipe.recv() != "throughput done":
        print("# instance B did not get every throughput event within 60 s")
    n_paced = int(args.rate * args.seconds)
    begin = time.perf_counter()
    for i in range(n_paced):
        due = begin + i / args.rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        bus.publish(event("latency", i, args.size))
    await bus.close(deadline_s=30)
    return {"t0": t0, "publish_us": spent / max(args.events, 1) * 1e6, "stats": bus.stats()}


def check(rows: list[tuple[int, float, float]], n: int) -> tuple[int, int, int]:
    """(lost, duplicates, out of order within a call) for events 0..n-1."""
    ids = [i for i, _, _ in rows]
    dup = len(ids) - len(set(ids))
    lost = n - len(set(ids))
    last: dict[int, int] = {}
    disorder = 0
    for i in ids:
        call = i % CALLS
        if i < last.get(call, -1):
            disorder += 1
        last[call] = i
    return lost, dup, disorder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--events", type=int, default=20_000, help="throughput phase")
    ap.add_argument("--rate", type=float, default=1000.0, help="latency phase, events/s")
    ap.add_argument("--seconds", type=float, default=5.0, help="latency phase length")
    ap.add_argument("--size", type=int, default=200, help="characters of text per event")
    args = ap.parse_args()

    stream = f"callwatch:bench:{uuid.uuid4().hex}"
    expect = {"throughput": args.events, "latency": int(args.rate * args.seconds)}
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=receiver, args=(args.url, stream, theirs, expect))
    child.start()
    try:
        if not ours.poll(60) or ours.recv() != "ready":
            raise SystemExit("instance B did not start")
        sent = asyncio.run(publish(args.url, stream, args, ours))
        if not ours.poll(660):
            raise SystemExit("instance B did not report")
        result = ours.recv()
        while not isinstance(result, dict):  # a late "throughput done"
            result = ours.recv()
    finally:
        child.join(30)
        if child.is_alive():
            child.terminate()
        redis.Redis.from_url(args.url).delete(stream)

    thr = result["got"]["throughput"]
    lat = result["got"]["latency"]
    lost_t, dup_t, dis_t = check(thr, args.events)
    lost_l, dup_l, dis_l = check(lat, expect["latency"])
    span = (max(r for _, _, r in thr) - sent["t0"]) if thr else float("nan")
    ms = np.array([(r - t) * 1000 for _, t, r in lat]) if lat else np.array([np.nan])
    print(
        f"# {platform.machine()} {os.cpu_count()} cores, {platform.python_version()}, "
        f"redis {redis.Redis.from_url(args.url).info('server')['redis_version']}, "
        f"A and B in separate processes, {args.size}-char events over {CALLS} calls"
    )
    print(f"bus_throughput_events: {args.events}")
    print(f"bus_events_per_s: {args.events / span:.0f}")
    print(f"bus_publish_us: {sent['publish_us']:.1f}")
    print(f"bus_latency_rate_per_s: {args.rate:.0f}")
    print(f"bus_latency_events: {expect['latency']}")
    print(f"bus_latency_p50_ms: {np.percentile(ms, 50):.2f}")
    print(f"bus_latency_p95_ms: {np.percentile(ms, 95):.2f}")
    print(f"bus_latency_p99_ms: {np.percentile(ms, 99):.2f}")
    print(f"bus_latency_max_ms: {ms.max():.2f}")
    print(f"bus_lost: {lost_t + lost_l}")
    print(f"bus_duplicates: {dup_t + dup_l}")
    print(f"bus_out_of_order: {dis_t + dis_l}")
    print(f"bus_dropped: {sent['stats']['dropped']}")


if __name__ == "__main__":
    main()
