"""Live capacity: N concurrent stereo calls replayed in real time against a running server.

    python -m bench.live [--calls 1,4,8,10,12] [--data ../shared/data/stereo/aws_lca_auto_repairs_40]
                         [--seconds 120] [--protocol twilio] [--model tiny.en] [--url ws://...]

Without ``--url`` it starts ``callwatch serve`` in a separate process on a free port (CPU
and peak RSS are that process's). Per N it prints percentiles of: partial latency (end of the partial's last word
in call time -> event received), final latency (end of the utterance -> final received),
silence-alert latency (threshold crossing -> alert received, from one extra demo call with
14 s of dead air replayed alongside), ASR lag (server metric,
sampled every second), process CPU and peak RSS; and the largest N whose p95 final latency
stays within 1.5 s. Clients and server share the machine, so the figures include the
clients' own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf

from assist.replay import replay

SILENCE_PROBE = Path(__file__).resolve().parents[1] / "demo" / "calls" / "breach_call.wav"
DEFAULT_DATA = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "stereo"
    / "aws_lca_auto_repairs_40"
)


def pct(xs: list[float], q: float) -> float:
    xs = [x for x in xs if x == x]
    return float(np.percentile(xs, q)) if xs else float("nan")


def _clip(data: Path, seconds: float, out: Path) -> tuple[str, str]:
    """First ``seconds`` of the call as two files (the replay sends the whole file)."""
    paths = []
    for leg in ("agent", "caller"):
        x, rate = sf.read(str(data / f"{leg}.wav"), dtype="int16")
        p = out / f"{leg}_{int(seconds)}s.wav"
        sf.write(str(p), x[: int(seconds * rate)], rate, subtype="PCM_16")
        paths.append(str(p))
    return paths[0], paths[1]


async def run_level(url: str, n: int, agent: str, caller: str, protocol: str) -> dict[str, Any]:
    http = url.replace("ws://", "http://")
    lags: list[float] = []
    stop = asyncio.Event()

    async def sample() -> None:
        async with httpx.AsyncClient() as client:
            while not stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    lags.append((await client.get(f"{http}/metrics")).json()["asr_lag_s"])
                await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample())
    t0 = time.monotonic()
    calls = [
        replay(
            url,
            agent,
            customer=caller,
            protocol=protocol,
            speed=1.0,
            call_id=f"bench-{n}-{i}",
            agent_id=f"agent-{i}",
            settle_s=60,
        )
        for i in range(n)
    ]
    if SILENCE_PROBE.exists():
        # one extra call with 14 s of dead air: how late is the dead-air alert under load
        calls.append(
            replay(
                url,
                str(SILENCE_PROBE),
                protocol=protocol,
                speed=1.0,
                call_id=f"bench-{n}-probe",
                agent_id="probe",
                settle_s=60,
                drop_at_s=45.0,
            )
        )
    results = await asyncio.gather(*calls)
    wall = time.monotonic() - t0
    stop.set()
    await sampler
    cpu = float("nan")
    finals: list[float] = []
    partials: list[float] = []
    silences: list[float] = []
    for r in results:
        alerts = [e for e in r.events if e["type"] == "alert"]
        silences += [
            lat
            for ev, lat in zip(alerts, r.latency.get("alert", []), strict=False)
            if ev.get("rule_id") == "dead_air"
        ]
        if not r.call_id.endswith("-probe"):
            finals += r.latency.get("transcript.final", [])
            partials += r.latency.get("transcript.partial", [])
    return {
        "n": n,
        "finals": len(finals),
        "partials": len(partials),
        "final_p50": pct(finals, 50),
        "final_p95": pct(finals, 95),
        "partial_p50": pct(partials, 50),
        "partial_p95": pct(partials, 95),
        "silence_p95": pct(silences, 95),
        "silence_n": len(silences),
        "lag_max": max(lags) if lags else float("nan"),
        "cpu_cores": cpu,
        "wall": wall,
    }


@contextlib.contextmanager
def server_process(
    model: str, workers: int, home: str, extra: tuple[str, ...] = ()
) -> Iterator[tuple[str, int]]:
    """``callwatch serve`` in its own process (as deployed), on a free port; ``extra``: more
    serve flags."""
    from assist.demo import free_port

    port = free_port()
    env = {**os.environ, "CALLWATCH_HOME": home}
    proc = subprocess.Popen(
        [
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
            "--no-store",
            "--no-auth",  # capacity, not access control: the replay clients hold no token
            *extra,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        yield f"ws://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", default="1,4,8,10,12")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seconds", type=float, default=120.0, help="replay this much of the call")
    ap.add_argument("--protocol", default="twilio")
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--url")
    args = ap.parse_args()
    import tempfile

    levels = [int(x) for x in args.calls.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        agent, caller = _clip(args.data, args.seconds, Path(tmp))
        if args.url:
            rows = [
                asyncio.run(run_level(args.url, n, agent, caller, args.protocol)) for n in levels
            ]
            server_rss = float("nan")
        else:
            with server_process(args.model, args.workers, tmp) as (url, pid):
                rows = []
                for n in levels:
                    cpu0 = _cpu_s(pid)
                    row = asyncio.run(run_level(url, n, agent, caller, args.protocol))
                    row["cpu_cores"] = (_cpu_s(pid) - cpu0) / row["wall"]
                    rows.append(row)
                server_rss = _peak_rss_mb(pid)
    print(
        f"# {platform.machine()} {os.cpu_count()} cores, model {args.model}, {args.workers} ASR worker(s), "
        f"protocol {args.protocol}, {args.seconds:.0f} s of {args.data.name} per call, real-time pace"
    )
    print(
        "calls finals final_p50 final_p95 partial_p50 partial_p95 silence_p95 asr_lag_max cpu_cores"
    )
    for r in rows:
        print(
            f"{r['n']:5d} {r['finals']:6d} {r['final_p50']:9.2f} {r['final_p95']:9.2f} {r['partial_p50']:11.2f} "
            f"{r['partial_p95']:11.2f} {r['silence_p95']:11.2f} {r['lag_max']:11.2f} {r['cpu_cores']:9.2f}"
        )
    ok = [r["n"] for r in rows if r["final_p95"] <= 1.5]
    print(f"server_peak_rss_mb: {server_rss:.0f}")
    for r in rows:
        print(f"final_p95_at_{r['n']}: {r['final_p95']:.2f}")
        print(f"partial_p95_at_{r['n']}: {r['partial_p95']:.2f}")
    print(f"max_calls_p95_final_le_1.5s: {max(ok) if ok else 0}")


if __name__ == "__main__":
    main()
