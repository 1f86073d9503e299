"""``callwatch demo``: a live server and the supervisor board on localhost, with the bundled
demo calls replayed into the server (one per protocol, again and again until Ctrl-C),
printing the events agents and supervisors would see.

The server runs with access control on, as in production: the demo makes the tokens it
needs (an ingest token for its replays, a supervisor token for the board and for following
the calls, a QA token for editing rules, one agent token per panel link), prints how to sign
in with them, and revokes them when it stops."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from assist.replay import replay
from assist.server import App, ServerConfig, create_app
from assist.store import callwatch_home

DEMO_CALLS = Path(__file__).resolve().parents[1] / "demo" / "calls"
PLAN = [
    ("clean_call", "twilio", "sarah"),
    ("breach_call", "audiohook", "emma"),
    ("cancel_call", "raw", "sarah"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(state: App, port: int | None = None) -> Iterator[str]:
    """Run ``state`` behind uvicorn in a thread; yield its ``ws://127.0.0.1:PORT``."""
    port = port or free_port()
    config = uvicorn.Config(
        create_app(state.config, state=state),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws_max_size=state.config.max_frame_bytes,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"server did not start on port {port}")
        time.sleep(0.05)
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def agent_panel_tokens(state: App) -> dict[str, str]:
    """A fresh agent token per demo agent, so the printed panel links sign straight in."""
    if state.store is None or not state.config.auth:
        return {agent: "" for agent in sorted({a for _, _, a in PLAN})}
    return {
        agent: state.store.create_token("agent", agent, "callwatch demo")
        for agent in sorted({a for _, _, a in PLAN})
    }


def staff_tokens(state: App) -> dict[str, str]:
    """The demo's own tokens: ``ingest`` (its replays), ``supervisor`` (the board, and
    following the calls), ``qa`` (rule editing); empty with auth off."""
    if state.store is None or not state.config.auth:
        return {"ingest": "", "supervisor": "", "qa": ""}
    return {
        role: state.store.create_token(role, None, f"callwatch demo {role}")
        for role in ("ingest", "supervisor", "qa")
    }


def revoke_all(state: App, tokens: list[str]) -> None:
    """Revoke the demo's tokens: the printed links and tokens die with the demo."""
    if state.store is None:
        return
    for token in tokens:
        info = state.store.check_token(token) if token else None
        if info is not None:
            state.store.revoke_token(info["id"])


def run_demo(
    speed: float = 1.0,
    model: str = "tiny.en",
    partials: bool = False,
    port: int | None = None,
    board: bool = True,
    board_port: int | None = None,
    rounds: int = 0,
) -> int:
    """Server + supervisor board + the demo calls, replayed ``rounds`` times (0: until
    Ctrl-C), so the board always has live calls on its floor."""
    from assist.cli import _print_event

    missing = [n for n, _, _ in PLAN if not (DEMO_CALLS / f"{n}.wav").exists()]
    if missing:
        print(f"error: demo calls missing: {missing} (run `make demo-calls`)", file=sys.stderr)
        return 1
    print(f"loading {model} and starting the server ...", file=sys.stderr)
    state = App(ServerConfig(model=model))
    panels = agent_panel_tokens(state)
    staff = staff_tokens(state)
    board_proc: subprocess.Popen[bytes] | None = None
    signal.signal(signal.SIGTERM, stop_on_sigterm)  # `kill` stops it as cleanly as Ctrl-C

    def on_event(ev: dict[str, Any], lat: float) -> None:
        if ev["type"] == "transcript.partial" and not partials:
            return
        _print_event(ev, lat)

    async def all_calls(url: str, round_: int) -> list[Any]:
        tag = "" if round_ == 1 else f"-{round_}"
        return await asyncio.gather(
            *(
                replay(
                    url,
                    str(DEMO_CALLS / f"{name}.wav"),
                    protocol=proto,
                    speed=speed,
                    call_id=f"demo-{name}{tag}",
                    agent_id=agent,
                    on_event=on_event,
                    token=staff["ingest"] or None,
                    events_token=staff["supervisor"] or None,
                )
                for name, proto, agent in PLAN
            )
        )

    try:
        with running_server(state, port) as url:
            http = url.replace("ws://", "http://")
            if board:
                try:
                    board_proc, board_url = start_board(
                        http, board_port, token=staff["supervisor"] or None
                    )
                    print(f"supervisor board: {board_url}", file=sys.stderr)
                except RuntimeError as exc:  # the calls and agent panels still work
                    print(f"warning: the supervisor board did not start: {exc}", file=sys.stderr)
                    board = False
            print(
                f"server on {http} - replaying {len(PLAN)} demo calls "
                f"at {speed:g}x (twilio, audiohook, raw)",
                file=sys.stderr,
            )
            for agent, token in panels.items():
                print(
                    f"  agent panel for {agent}: {http}/agent?agent={agent}&token={token}",
                    file=sys.stderr,
                )
            print_sign_in(http, staff, board)
            print(file=sys.stderr)
            round_ = 0
            while rounds == 0 or round_ < rounds:
                round_ += 1
                results = asyncio.run(all_calls(url, round_))
                print_summary(results, round_)
                if rounds == 0 or round_ < rounds:
                    print(
                        "the calls are replayed again in 10 s; Ctrl-C stops the demo"
                        + (f" (the board stays at {board_url} until then)" if board else ""),
                        file=sys.stderr,
                    )
                    time.sleep(10)
    except KeyboardInterrupt:
        print("\nstopping the demo", file=sys.stderr)
    finally:
        if board_proc is not None:
            stop_board(board_proc)
        revoke_all(state, [*panels.values(), *staff.values()])
        state.close()
    return 0


def print_sign_in(http: str, staff: dict[str, str], board: bool) -> None:
    """How to sign in with the demo's tokens (revoked when the demo stops)."""
    if not staff["supervisor"]:
        return
    print(
        "  access control is on; these tokens work until the demo stops:\n"
        + (
            "    the board is signed in as a supervisor (read, triage alerts, audits)\n"
            if board
            else ""
        )
        + f"  supervisor token: {staff['supervisor']}\n"
        + f"  qa token (edit rules: paste it in the board's sidebar): {staff['qa']}\n"
        + f"    e.g. curl -H 'Authorization: Bearer {staff['supervisor']}' {http}/v1/calls",
        file=sys.stderr,
    )


def stop_on_sigterm(signum: int, frame: Any) -> None:
    """A SIGTERM handler: stop like Ctrl-C, so children (the board) are stopped too."""
    raise KeyboardInterrupt


def start_board(
    server: str, port: int | None, token: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """The Streamlit board on ``port`` (default 8501, else a free one), ready to open, using
    ``token`` on every request; its own log goes to ``$CALLWATCH_HOME/board.log``."""
    from dashboard.launch import run_board, wait_ready

    port = port or (8501 if port_free(8501) else free_port())
    log = callwatch_home() / "board.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = run_board([server], port=port, token=token, log_path=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, timeout_s=60, proc=proc)
    except RuntimeError as exc:
        stop_board(proc)
        raise RuntimeError(f"{exc} (its log: {log})") from exc
    return proc, url


def stop_board(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def print_summary(results: list[Any], round_: int) -> None:
    print(f"\nsummary (round {round_})", file=sys.stderr)
    for (name, proto, _), res in zip(PLAN, results, strict=True):
        alerts = [e for e in res.events if e["type"] == "alert"]
        card = next((e for e in res.events if e["type"] == "scorecard"), {"score": float("nan")})
        finals = sorted(x for x in res.latency.get("transcript.final", []) if x == x)
        p50 = finals[len(finals) // 2] if finals else float("nan")
        print(
            f"  {name:<12} via {proto:<9} score {card['score']:5.1f}  alerts {len(alerts):2d}  "
            f"final latency p50 {p50:.2f} s",
            file=sys.stderr,
        )
