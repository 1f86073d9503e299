"""What the audit chain costs: events stored per second with and without it, and how fast
``verify`` checks a chain, on SQLite (a temporary file, WAL) and PostgreSQL (a throwaway
database on the local server, dropped afterwards).

"Without the chain" is the same batches inserted into ``events`` in one transaction each,
as the store did before issue 9; "with" is ``Store.append_events`` (head lock, duplicate
check, event rows, one chain record per event, head update). Events are transcript lines
of about 600 bytes, sent in batches as a live call's writer sends them.

    python -m bench.store --events 20000 --batch 20 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import platform
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def make_events(n: int, per_call: int = 200) -> list[dict[str, Any]]:
    """Transcript lines of n / per_call calls, in seq order per call."""
    out = []
    text = "I would like to cancel my contract because the router keeps dropping the line"
    for i in range(n):
        call, seq = divmod(i, per_call)
        t = seq * 2.5
        words = [
            {"w": w, "t": round(t + k * 0.3, 3), "t_end": round(t + k * 0.3 + 0.25, 3)}
            for k, w in enumerate(text.split()[:6])
        ]
        out.append(
            {
                "type": "transcript.final",
                "call_id": f"bench-{call:05d}",
                "seq": seq + 1,
                "t": t,
                "t_end": t + 2.0,
                "speaker": "customer" if seq % 2 else "agent",
                "text": text,
                "words": words,
                "emitted_at": "2026-01-01T00:00:00.000Z",
            }
        )
    return out


def batches(evs: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(evs), size):
        yield evs[i : i + size]


def plain_rate(url: str, evs: list[dict[str, Any]], size: int) -> float:
    """Events/s inserted as the store did before the chain."""
    from assist.store import Store, events

    store = Store(url)
    t0 = time.perf_counter()
    for b in batches(evs, size):
        rows = [
            {
                "call_id": e["call_id"],
                "seq": e["seq"],
                "type": e["type"],
                "t": e["t"],
                "payload": json.dumps(e, ensure_ascii=False),
            }
            for e in b
        ]
        with store.engine.begin() as conn:
            conn.execute(events.insert(), rows)
    rate = len(evs) / (time.perf_counter() - t0)
    store.close()
    return rate


def chained_rate(url: str, evs: list[dict[str, Any]], size: int) -> tuple[float, float, int]:
    """(events/s through append_events, verify records/s, records verified)."""
    from assist.store import Store

    store = Store(url)
    t0 = time.perf_counter()
    for b in batches(evs, size):
        store.append_events(b)
    rate = len(evs) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    result = store.verify()
    verify_rate = result.records / (time.perf_counter() - t0)
    assert result.ok, result.first_broken
    store.close()
    return rate, verify_rate, result.records


@contextmanager
def pg_database() -> Iterator[str]:
    import psycopg

    admin = PG_ADMIN.replace("postgresql+psycopg://", "postgresql://")
    name = f"cw_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(name: str, make_url: Any, evs: list[dict[str, Any]], size: int, repeat: int) -> None:
    """Plain and chained runs alternate (a busy machine slows both alike); medians."""
    plains, chaineds, verifies = [], [], []
    records = 0
    for i in range(repeat):
        with make_url(f"plain{i}") as url:
            plains.append(plain_rate(url, evs, size))
        with make_url(f"chained{i}") as url:
            rate, verify_rate, records = chained_rate(url, evs, size)
            chaineds.append(rate)
            verifies.append(verify_rate)
    plain, chained = statistics.median(plains), statistics.median(chaineds)
    verify_rate = statistics.median(verifies)
    print(f"{name}.plain_events_per_s: {plain:.0f}")
    print(f"{name}.chained_events_per_s: {chained:.0f}")
    print(f"{name}.chain_cost_pct: {100 * (plain - chained) / plain:.1f}")
    print(f"{name}.verify_records_per_s: {verify_rate:.0f}")
    print(f"{name}.verify_records: {records}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=20, help="events per transaction")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure (the median)")
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = ap.parse_args()
    evs = make_events(args.events)
    print(f"machine: {platform.machine()} {platform.python_version()}")
    print(f"events: {len(evs)}")
    print(f"batch: {args.batch}")
    print(f"repeat: {args.repeat}")

    with tempfile.TemporaryDirectory() as tmp:

        @contextmanager
        def sqlite_url(tag: str) -> Iterator[str]:
            yield f"sqlite:///{Path(tmp) / tag}.db"

        run("sqlite", sqlite_url, evs, args.batch, args.repeat)
    if not args.no_pg:

        @contextmanager
        def pg_url(tag: str) -> Iterator[str]:
            with pg_database() as url:
                yield url

        run("postgresql", pg_url, evs, args.batch, args.repeat)


if __name__ == "__main__":
    main()
