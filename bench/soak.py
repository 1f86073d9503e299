"""Soak: N live calls kept going for M minutes against one server; event loss, latency drift
and memory growth over time.

    python -m bench.soak [--calls 4] [--minutes 30] [--server ws://HOST:PORT [--pid PID]
                         [--token T]]
                         [--db URL] [--data demo/calls] [--protocols raw,twilio]
                         [--model tiny.en] [--window-min 5]

Without ``--server`` it starts ``callwatch serve`` in its own process (temporary
``CALLWATCH_HOME``, SQLite store, ``--no-auth``, a free port). ``--calls`` lanes each replay
the recordings of ``--data`` back to back at real-time speed, with fresh call ids, the
protocols taking turns. Every call has a supervisor WebSocket (``/v1/calls/{id}/events``)
open before its audio starts; it records every event it receives. New calls stop at the
deadline; calls under way then finish.

Measured (``name: value`` lines last, as every bench script):
- event loss: events the store holds for each finished call that its subscriber did not
  receive, events received but not stored, and gaps or repeats in the received ``seq``
  (target 0 for all). The store is read directly (the started server's SQLite file, or
  ``--db``); with ``--server`` and no ``--db``, the server's ``GET /v1/calls/{id}/events``.
- final latency: arrival of a ``transcript.final`` minus the moment the frame holding its
  utterance's end (``t_end``) was sent; p50/p95 per ``--window-min`` window and the drift
  (last window p95 - first window p95).
- server RSS (``VmRSS``, sampled every 10 s): idle, after warm-up, max, end; growth in MB
  and MB/hour after warm-up. ASR lag from ``/metrics`` (sampled with it).

Progress goes to stderr every minute; Ctrl-C stops the calls and prints what was measured.
Clients and server share the machine, so latency includes the clients' own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets

from assist.replay import FRAME_S, _resample, _Sender, load_legs
from audio.resample import streamable

DEMO_CALLS = Path(__file__).resolve().parents[1] / "demo" / "calls"
SAMPLE_S = 10.0  # RSS and /metrics sampling period
SETTLE_S = 60.0  # longest wait for call.ended after the last frame
STORE_WAIT_S = 30.0  # longest wait for a finished call's events to reach the store


# -- what is recorded ----------------------------------------------------------------------
@dataclass
class CallRecord:
    call_id: str
    lane: int
    file: str
    protocol: str
    frames_sent: list[float] = field(default_factory=list)  # monotonic time of frame k
    events: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # monotonic, one per event
    ended_reason: str | None = None
    status: str = "running"  # running | completed | failed | aborted
    error: str | None = None
    stored_seqs: list[int] | None = None

    def final_latencies(self) -> list[tuple[float, float]]:
        """(arrival, latency) per transcript.final: arrival minus the send time of the frame
        that holds the utterance's end."""
        out: list[tuple[float, float]] = []
        if not self.frames_sent:
            return out
        for ev, at in zip(self.events, self.arrivals, strict=True):
            if ev.get("type") != "transcript.final":
                continue
            k = max(0, math.ceil(float(ev["t_end"]) / FRAME_S) - 1)
            if k >= len(self.frames_sent):
                k = len(self.frames_sent) - 1  # finalised at hang-up: the last frame
            out.append((at, at - self.frames_sent[k]))
        return out


@dataclass
class Sample:
    at: float  # monotonic
    rss_mb: float
    asr_lag_s: float
    metrics: dict[str, Any]


@dataclass
class Soak:
    args: argparse.Namespace
    url: str  # ws://host:port
    pid: int | None
    db_url: str | None
    t0: float = 0.0
    deadline: float = 0.0
    calls: list[CallRecord] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    idle: Sample | None = None
    checks: list[asyncio.Task[None]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    audio: dict[tuple[str, str], tuple[int, np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def http(self) -> str:
        return self.url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)

    @property
    def headers(self) -> dict[str, str]:
        token = self.args.token if self.args.server else None  # ours runs with --no-auth
        return {"Authorization": f"Bearer {token}"} if token else {}


# -- the calls -----------------------------------------------------------------------------
def prepare_audio(path: Path, protocol: str) -> tuple[int, np.ndarray, np.ndarray]:
    """(send rate, agent, customer) as the protocol carries them (Twilio 8 kHz µ-law)."""
    rate, agent, cust = load_legs(str(path), None)
    send_rate = (rate if streamable(rate) else 16000) if protocol == "raw" else 8000
    return send_rate, _resample(agent, rate, send_rate), _resample(cust, rate, send_rate)


async def play_call(soak: Soak, rec: CallRecord, path: Path, agent_id: str) -> None:
    """One call at real-time pace, its subscriber open before the first frame."""
    rate, agent, cust = soak.audio[(path.name, rec.protocol)]
    frame = int(rate * FRAME_S)
    n_frames = -(-len(agent) // frame)
    ended = asyncio.Event()

    async def listen(ws: Any) -> None:
        async for raw in ws:
            ev = json.loads(raw)
            rec.arrivals.append(time.monotonic())
            rec.events.append(ev)
            if ev.get("type") == "call.ended":
                rec.ended_reason = ev.get("reason")
                ended.set()
                return

    async with websockets.connect(
        f"{soak.url}/v1/calls/{rec.call_id}/events",
        max_size=None,
        additional_headers=soak.headers,
    ) as ev_ws:
        listener = asyncio.create_task(listen(ev_ws))
        try:
            async with websockets.connect(
                f"{soak.url}/v1/ingest/{rec.protocol}", additional_headers=soak.headers
            ) as ws:
                sender = _Sender(
                    rec.protocol, ws, rec.call_id, str(uuid.uuid4()), agent_id, None, rate
                )
                await sender.begin()
                t0 = time.monotonic()
                for k in range(n_frames):
                    if soak.stop.is_set():
                        rec.status = "aborted"
                        return
                    delay = t0 + k * FRAME_S - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    a = agent[k * frame : (k + 1) * frame]
                    c = cust[k * frame : (k + 1) * frame]
                    if len(c) < len(a):
                        c = np.pad(c, (0, len(a) - len(c)))
                    await sender.frame(k, a, c)
                    rec.frames_sent.append(time.monotonic())
                await sender.end()
            try:
                await asyncio.wait_for(ended.wait(), SETTLE_S)
            except TimeoutError:
                rec.status, rec.error = "failed", f"no call.ended within {SETTLE_S:.0f} s"
                return
            rec.status = "completed"
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener


async def lane(soak: Soak, i: int, files: list[Path], run_id: str) -> None:
    """Calls back to back until the deadline (or Ctrl-C)."""
    protocols = soak.args.protocol_list
    await asyncio.sleep(i * 2.0)  # stagger, so calls do not all start and end together
    k = 0
    while not soak.stop.is_set() and time.monotonic() < soak.deadline:
        path = files[(i + k) % len(files)]
        rec = CallRecord(
            f"soak-{run_id}-{i}-{k}", i, path.name, protocols[(i + k) % len(protocols)]
        )
        soak.calls.append(rec)
        try:
            await play_call(soak, rec, path, f"soak-agent-{i}")
        except Exception as exc:  # a broken call is counted, the lane goes on
            rec.status, rec.error = "failed", f"{type(exc).__name__}: {exc}"
        if rec.status == "completed":
            soak.checks.append(asyncio.create_task(check_store(soak, rec)))
        elif rec.status == "failed":
            print(f"call {rec.call_id} failed: {rec.error}", file=sys.stderr)
        k += 1


# -- the store -----------------------------------------------------------------------------
class StoreReader:
    """The events a call has in the store: the database itself, or the server's API."""

    def __init__(self, db_url: str | None, http: str, headers: dict[str, str]) -> None:
        self.http = http
        self.headers = headers
        self.engine: Any = None
        if db_url:
            from sqlalchemy import create_engine

            self.engine = create_engine(db_url)

    @property
    def source(self) -> str:
        if self.engine is not None:
            return str(self.engine.url.render_as_string(hide_password=True))
        return f"{self.http}/v1/calls/{{id}}/events"

    def seqs(self, call_id: str) -> tuple[list[int], bool]:
        """(stored seqs, call.ended stored)."""
        if self.engine is not None:
            from sqlalchemy import text

            with self.engine.connect() as conn:
                rows = conn.execute(
                    text("SELECT seq, type FROM events WHERE call_id = :c ORDER BY seq"),
                    {"c": call_id},
                ).all()
            return [int(r[0]) for r in rows], any(r[1] == "call.ended" for r in rows)
        r = httpx.get(f"{self.http}/v1/calls/{call_id}/events", headers=self.headers, timeout=30)
        if r.status_code == 404:
            return [], False
        r.raise_for_status()
        evs = r.json()["events"]
        return [int(e["seq"]) for e in evs], any(e["type"] == "call.ended" for e in evs)


async def check_store(soak: Soak, rec: CallRecord) -> None:
    """Wait (bounded) until the store has the call's end, then keep its seqs."""
    reader: StoreReader = soak.args.reader
    deadline = time.monotonic() + STORE_WAIT_S
    seqs: list[int] = []
    while True:
        try:
            seqs, done = await asyncio.to_thread(reader.seqs, rec.call_id)
        except Exception as exc:
            rec.error = f"store read failed: {exc}"
            done = False
        if done or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    rec.stored_seqs = seqs


# -- sampling and progress -----------------------------------------------------------------
def rss_mb(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


async def take_sample(soak: Soak, client: httpx.AsyncClient) -> Sample:
    metrics: dict[str, Any] = {}
    with contextlib.suppress(httpx.HTTPError, ValueError):
        metrics = (await client.get(f"{soak.http}/metrics")).json()
    return Sample(
        time.monotonic(),
        rss_mb(soak.pid),
        float(metrics.get("asr_lag_s", float("nan"))),
        metrics,
    )


async def sampler(soak: Soak) -> None:
    async with httpx.AsyncClient(timeout=10, headers=soak.headers) as client:
        next_progress = soak.t0 + 60.0
        while True:
            soak.samples.append(await take_sample(soak, client))
            if time.monotonic() >= next_progress:
                print(progress_line(soak), file=sys.stderr, flush=True)
                next_progress += 60.0
            await asyncio.sleep(SAMPLE_S)


def progress_line(soak: Soak) -> str:
    now = time.monotonic()
    done = [c for c in soak.calls if c.status == "completed"]
    running = sum(c.status == "running" for c in soak.calls)
    recent = [lat for c in soak.calls for at, lat in c.final_latencies() if at >= now - 60.0]
    loss = sum(event_counts(c)["lost"] for c in done if c.stored_seqs is not None)
    s = soak.samples[-1] if soak.samples else None
    return (
        f"[{(now - soak.t0) / 60:5.1f} min] calls done {len(done)}, live {running}, "
        f"finals in the last minute {len(recent)} (p95 {pct(recent, 95):.2f} s), "
        f"event loss so far {loss}, rss {s.rss_mb if s else float('nan'):.0f} MB, "
        f"asr lag {s.asr_lag_s if s else float('nan'):.2f} s"
    )


# -- figures -------------------------------------------------------------------------------
def pct(xs: list[float], q: float) -> float:
    xs = [x for x in xs if x == x]
    return float(np.percentile(xs, q)) if xs else float("nan")


def event_counts(rec: CallRecord) -> dict[str, int]:
    got = [int(e["seq"]) for e in rec.events]
    have = set(got)
    stored = set(rec.stored_seqs or [])
    top = max(got) if got else 0
    return {
        "received": len(got),
        "stored": len(stored),
        "lost": len(stored - have),  # in the store, never reached the subscriber
        "unstored": len(have - stored),  # reached the subscriber, not in the store
        "gaps": len(set(range(1, top + 1)) - have),
        "dupes": len(got) - len(have),
    }


def report(soak: Soak) -> list[tuple[str, Any]]:
    """The figures, in print order."""
    a = soak.args
    end = time.monotonic()
    out: list[tuple[str, Any]] = []
    by_status = {s: sum(c.status == s for c in soak.calls) for s in ("completed", "failed")}
    aborted = sum(c.status in ("aborted", "running") for c in soak.calls)
    reasons: dict[str, int] = {}
    for c in soak.calls:
        if c.status == "completed":
            reasons[str(c.ended_reason)] = reasons.get(str(c.ended_reason), 0) + 1
    out += [
        ("wall_min", round((end - soak.t0) / 60, 2)),
        ("calls_started", len(soak.calls)),
        ("calls_completed", by_status["completed"]),
        ("calls_failed", by_status["failed"]),
        ("calls_aborted", aborted),
        ("call_end_reasons", ", ".join(f"{k}={v}" for k, v in sorted(reasons.items())) or "-"),
    ]
    checked = [c for c in soak.calls if c.status == "completed" and c.stored_seqs is not None]
    totals = {"received": 0, "stored": 0, "lost": 0, "unstored": 0, "gaps": 0, "dupes": 0}
    worst: list[str] = []
    for c in checked:
        counts = event_counts(c)
        for k, v in counts.items():
            totals[k] += v
        if counts["lost"] or counts["unstored"] or counts["gaps"] or counts["dupes"]:
            worst.append(f"{c.call_id} {counts}")
    for line in worst[:10]:
        print(f"event mismatch: {line}", file=sys.stderr)
    out += [
        ("store_checked", f"{len(checked)} calls via {a.reader.source}"),
        ("events_received", totals["received"]),
        ("events_stored", totals["stored"]),
        ("event_loss", totals["lost"]),
        ("events_unstored", totals["unstored"]),
        ("seq_gaps", totals["gaps"]),
        ("seq_dupes", totals["dupes"]),
    ]
    # latency per window of arrival time; what arrives after the last window's end (calls
    # finishing after the deadline) counts in the last window
    width = a.window_min * 60.0
    n_windows = max(1, math.ceil(a.minutes / a.window_min))
    windows: list[list[float]] = [[] for _ in range(n_windows)]
    every: list[float] = []
    for c in soak.calls:
        for at, lat in c.final_latencies():
            w = min(int((at - soak.t0) // width), n_windows - 1)
            windows[max(w, 0)].append(lat)
            every.append(lat)
    out += [
        ("finals", len(every)),
        ("final_p50_s", round(pct(every, 50), 3)),
        ("final_p95_s", round(pct(every, 95), 3)),
    ]
    for i, w in enumerate(windows, 1):
        span = f"{(i - 1) * a.window_min:g}-{i * a.window_min:g}min"
        out += [
            (f"final_p50_s_{span}", round(pct(w, 50), 3)),
            (f"final_p95_s_{span}", round(pct(w, 95), 3)),
            (f"finals_{span}", len(w)),
        ]
    filled = [w for w in windows if w]
    drift = pct(filled[-1], 95) - pct(filled[0], 95) if len(filled) >= 2 else float("nan")
    out.append(("final_p95_drift_s", round(drift, 3)))
    # memory: the first sample after warm-up is the baseline
    warm = soak.t0 + a.warmup_s
    after = [s for s in soak.samples if s.at >= warm and s.rss_mb == s.rss_mb]
    rss_all = [s.rss_mb for s in soak.samples if s.rss_mb == s.rss_mb]
    if soak.idle is not None:
        out.append(("rss_idle_mb", round(soak.idle.rss_mb, 1)))
    if len(after) >= 2:
        start, last = after[0], after[-1]
        growth = last.rss_mb - start.rss_mb
        hours = (last.at - start.at) / 3600
        out += [
            ("rss_start_mb", round(start.rss_mb, 1)),
            ("rss_max_mb", round(max(rss_all), 1)),
            ("rss_end_mb", round(last.rss_mb, 1)),
            ("rss_growth_mb", round(growth, 1)),
            ("rss_growth_mb_per_hour", round(growth / hours, 1) if hours > 0 else float("nan")),
        ]
    else:
        out.append(("rss", "n/a (no server pid, or shorter than the warm-up)"))
    lags = [s.asr_lag_s for s in soak.samples]
    out += [
        ("asr_lag_p95_s", round(pct(lags, 95), 3)),
        ("asr_lag_max_s", round(max((x for x in lags if x == x), default=float("nan")), 3)),
        ("asr_lag_end_s", round(lags[-1], 3) if lags else float("nan")),
    ]
    first = soak.idle.metrics if soak.idle else {}
    last_m = soak.samples[-1].metrics if soak.samples else {}
    for key in ("bus_cut_off", "protocol_errors", "asr_partials_dropped"):
        if key in last_m:
            out.append((key, int(last_m[key]) - int(first.get(key, 0))))
    return out


# -- the server ----------------------------------------------------------------------------
@contextlib.contextmanager
def server_process(model: str, workers: int, home: Path) -> Iterator[tuple[str, int, str]]:
    """``callwatch serve`` in its own process and session (Ctrl-C here does not reach it):
    SQLite store in ``home``, no sign-in, a free port. Yields (url, pid, db url)."""
    from assist.demo import free_port

    port = free_port()
    db_url = f"sqlite:///{home / 'callwatch.db'}"
    env = {**os.environ, "CALLWATCH_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("CALLWATCH_DB_URL", None)
    env.pop("CALLWATCH_BUS_URL", None)
    cmd = [
        sys.executable,
        "-m",
        "assist.cli",
        "serve",
        "--port",
        str(port),
        "--model",
        model,
        "--workers",
        str(workers),
        "--db",
        db_url,
        "--no-auth",
    ]
    log_path = home / "serve.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=Path(__file__).resolve().parents[1],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the server did not start; its log ({log_path}):\n{tail}")
            time.sleep(0.25)
        yield f"ws://127.0.0.1:{port}", proc.pid, db_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- main ----------------------------------------------------------------------------------
async def run(soak: Soak) -> None:
    a = soak.args
    files = sorted(Path(a.data).glob("*.wav"))
    if not files:
        raise SystemExit(f"error: no .wav recordings in {a.data}")
    for f in files:
        for p in a.protocol_list:
            soak.audio[(f.name, p)] = prepare_audio(f, p)
    loop = asyncio.get_running_loop()

    def on_sigint() -> None:
        print("\nCtrl-C: stopping the calls, then printing what was measured", file=sys.stderr)
        soak.stop.set()
        loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C stops at once

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    async with httpx.AsyncClient(timeout=10, headers=soak.headers) as client:
        soak.idle = await take_sample(soak, client)
    soak.t0 = time.monotonic()
    soak.deadline = soak.t0 + a.minutes * 60.0
    sample_task = asyncio.create_task(sampler(soak))
    run_id = uuid.uuid4().hex[:6]
    lanes = [asyncio.create_task(lane(soak, i, files, run_id)) for i in range(a.calls)]
    await asyncio.gather(*lanes)
    if soak.checks:
        await asyncio.gather(*soak.checks)
    async with httpx.AsyncClient(timeout=10, headers=soak.headers) as client:
        soak.samples.append(await take_sample(soak, client))
    sample_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sample_task
    with contextlib.suppress(NotImplementedError, ValueError):
        loop.remove_signal_handler(signal.SIGINT)


def machine() -> str:
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.machine()}, {os.cpu_count()} cpus, {name}, Python "
        f"{platform.python_version()}, load average {load:.2f} at start"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="N live calls for M minutes: event loss, latency drift, RSS growth."
    )
    ap.add_argument("--calls", type=int, default=4, help="concurrent live calls (default 4)")
    ap.add_argument("--minutes", type=float, default=30.0, help="new calls start until then")
    ap.add_argument("--server", metavar="URL", help="ws://host:port of a running server")
    ap.add_argument("--pid", type=int, help="that server's process id, for its RSS")
    ap.add_argument(
        "--token",
        default=os.environ.get("CALLWATCH_TOKEN"),
        help="with --server and auth on: an admin token (ingest and reading calls); "
        "default $CALLWATCH_TOKEN",
    )
    ap.add_argument(
        "--db", metavar="URL", help="the server's store, to count stored events (see above)"
    )
    ap.add_argument("--data", type=Path, default=DEMO_CALLS, help="folder of .wav calls")
    ap.add_argument("--protocols", default="raw,twilio", help="comma list, taking turns")
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--workers", type=int, default=2, help="ASR workers of the started server")
    ap.add_argument("--window-min", type=float, default=5.0, help="latency window (minutes)")
    ap.add_argument(
        "--warmup-s", type=float, default=60.0, help="RSS baseline: first sample after this"
    )
    args = ap.parse_args(argv)
    args.protocol_list = [p.strip() for p in args.protocols.split(",") if p.strip()]
    bad = [p for p in args.protocol_list if p not in ("raw", "twilio", "audiohook")]
    if bad or not args.protocol_list:
        ap.error(f"--protocols: unknown {bad}; use raw, twilio, audiohook")
    if args.calls < 1 or args.minutes <= 0 or args.window_min <= 0:
        ap.error("--calls, --minutes and --window-min must be positive")

    print(f"command: {shlex.join([sys.executable, '-m', 'bench.soak', *sys.argv[1:]])}")
    print(f"machine: {machine()}")
    home: Path | None = None
    try:
        with contextlib.ExitStack() as stack:
            if args.server:
                url, pid, db_url = args.server.rstrip("/"), args.pid, args.db
                print(f"server: {url} (given)")
            else:
                home = Path(tempfile.mkdtemp(prefix="callwatch-soak-"))
                print(f"starting callwatch serve ({args.model}) in {home} ...", file=sys.stderr)
                url, pid, db_url = stack.enter_context(
                    server_process(args.model, args.workers, home)
                )
                db_url = args.db or db_url
                print(f"server: {url} pid {pid}, model {args.model}, {args.workers} ASR workers")
            soak = Soak(args, url, pid, db_url)
            args.reader = StoreReader(db_url, soak.http, soak.headers)
            print(
                f"load: {args.calls} concurrent calls for {args.minutes:g} min, "
                f"{args.data} at real time, protocols {','.join(args.protocol_list)}"
            )
            sys.stdout.flush()
            try:
                asyncio.run(run(soak))
            except KeyboardInterrupt:  # the second Ctrl-C
                print("stopped", file=sys.stderr)
            for name, value in report(soak):
                print(f"{name}: {value}")
    finally:
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
