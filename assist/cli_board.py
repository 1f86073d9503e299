"""``callwatch dashboard``: the supervisor board (Streamlit) against one or more servers."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

import httpx


def add_board_commands(sub: Any) -> None:
    db = sub.add_parser(
        "dashboard", help="the supervisor board (Streamlit) for one or more running servers"
    )
    db.add_argument(
        "--server",
        metavar="URL",
        action="append",
        help="a callwatch server (repeatable: the board shows the calls of all of them; "
        "default: $CALLWATCH_SERVER or http://127.0.0.1:8080)",
    )
    db.add_argument("--host", default="127.0.0.1", help="where the board listens")
    db.add_argument("--port", type=int, default=8501)
    db.add_argument(
        "--token",
        default=os.environ.get("CALLWATCH_TOKEN"),
        help="API token sent on every request (default $CALLWATCH_TOKEN): a supervisor token "
        "reads and triages, a qa token edits rules (callwatch tokens create --role ROLE)",
    )
    db.add_argument(
        "--user",
        default=os.environ.get("CALLWATCH_USER") or os.environ.get("USER"),
        help="your name on acknowledgements and rule changes on a --no-auth server (with "
        "tokens, the token's label is recorded)",
    )
    db.set_defaults(func=_cmd_dashboard)


def _servers(args: argparse.Namespace) -> list[str]:
    given = args.server or [os.environ.get("CALLWATCH_SERVER") or "http://127.0.0.1:8080"]
    out: list[str] = []
    for item in given:
        out += [u.strip() for u in item.split(",") if u.strip()]
    return out


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from assist.demo import stop_on_sigterm
    from dashboard.launch import run_board, wait_ready

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    servers = _servers(args)
    for url in servers:
        base = url.replace("ws://", "http://").replace("wss://", "https://").rstrip("/")
        try:
            httpx.get(f"{base}/healthz", timeout=3).raise_for_status()
        except httpx.HTTPError as exc:
            # the board still starts: it says so on every page and recovers when it is up
            print(f"warning: server {url} does not answer yet ({exc})", file=sys.stderr)
    proc = run_board(servers, port=args.port, host=args.host, token=args.token, user=args.user)
    url = f"http://{args.host}:{args.port}"
    try:
        wait_ready(url, timeout_s=60, proc=proc)
        print(f"supervisor board: {url} (servers: {', '.join(servers)})", file=sys.stderr)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:
        print(f"error: the board did not start: {exc}", file=sys.stderr)
        return 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except Exception:
                proc.kill()
