"""How fast the board's API answers as the store fills up.

Audits the three demo calls once (real tiny.en), clones their reports and events into a
throwaway store as N calls (10 agents, started over the last 30 days), starts a real server
on that store and times the requests the board makes on every refresh: the floor's call list,
the audits table with a rule filter, the alert feed, a transcript search, one call's detail
and its events. Prints p50 / p95 per request.

    python -m bench.board --calls 300 3000
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
DAY = 86_400.0


def demo_reports() -> list[dict[str, Any]]:
    from assist.audit import audit_file
    from models.asr import WhisperAsr
    from qa_rules.loader import load_packs

    asr, packs = WhisperAsr(), load_packs()
    out = []
    for name in ("clean_call", "breach_call", "cancel_call"):
        report = audit_file(str(REPO / "demo" / "calls" / f"{name}.wav"), packs, asr)
        out.append(report)
    return out


def fill(store: Any, reports: list[dict[str, Any]], n: int) -> None:
    now = time.time()
    for i in range(n):
        r = copy.deepcopy(reports[i % len(reports)])
        cid = f"bench-{i:06d}"
        r["call_id"] = cid
        r["agent_id"] = f"agent-{i % 10}"
        r["started_at"] = now - (i * 30 * DAY / max(1, n))
        for ev in r["events"]:
            ev["call_id"] = cid
        for a in r["alerts"]:
            a["call_id"] = cid
        store.save_report(r, "audit")


def timed(client: httpx.Client, path: str, params: dict[str, Any], k: int) -> tuple[float, float]:
    ms = []
    for _ in range(k):
        t0 = time.perf_counter()
        r = client.get(path, params=params)
        ms.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    ms.sort()
    return statistics.median(ms), ms[min(len(ms) - 1, int(0.95 * len(ms)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, nargs="+", default=[300, 3000])
    ap.add_argument("--repeat", type=int, default=30, help="requests per measurement")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from assist.demo import running_server
    from assist.server import App, ServerConfig
    from assist.store import Store

    print("auditing the demo calls once ...", file=sys.stderr)
    reports = demo_reports()
    print(
        f"# bench.board: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, SQLite; {args.repeat} requests each; "
        f"command: python -m bench.board --calls {' '.join(map(str, args.calls))}"
    )
    print(f"{'calls':>6}  {'request':<44} {'p50 ms':>8} {'p95 ms':>8}")
    figures: list[str] = []
    for n in args.calls:
        with tempfile.TemporaryDirectory() as home:
            url = f"sqlite:///{home}/bench.db"
            t0 = time.perf_counter()
            fill(Store(url), reports, n)
            fill_s = time.perf_counter() - t0
            state = App(ServerConfig(db_url=url, auth=False, assist=False, diarize=False))
            with (
                running_server(state) as ws,
                httpx.Client(base_url=ws.replace("ws://", "http://"), timeout=120) as c,
            ):
                failed = reports[1]["scorecard"]["rules"]
                rule = next(x["rule_id"] for x in failed if x["status"] == "failed")
                probes = [
                    ("floor: GET /v1/calls", "/v1/calls", {}),
                    ("audits: GET /v1/calls?scope=stored (200)", "/v1/calls", {"scope": "stored"}),
                    (
                        f"audits: failed_rule={rule}",
                        "/v1/calls",
                        {"scope": "stored", "failed_rule": rule},
                    ),
                    (
                        "insights: scope=all limit=2000",
                        "/v1/calls",
                        {"scope": "all", "limit": 2000},
                    ),
                    ("alerts: GET /v1/alerts (open)", "/v1/alerts", {}),
                    ("search: q=cancel", "/v1/search", {"q": "cancel"}),
                    ("call: GET /v1/calls/{id}", "/v1/calls/bench-000001", {}),
                    ("call: GET /v1/calls/{id}/events", "/v1/calls/bench-000001/events", {}),
                ]
                for label, path, params in probes:
                    p50, p95 = timed(c, path, params, args.repeat)
                    print(f"{n:>6}  {label:<44} {p50:8.1f} {p95:8.1f}")
                    key = label.split(":")[0]
                    if key in ("floor", "alerts", "search") or "limit=2000" in label:
                        figures.append(f"{key}_p95_ms@{n}: {p95:.1f}")
            state.close()
            print(f"{n:>6}  (filling the store took {fill_s:.1f} s)")
    print("\n".join(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
