"""The README's main command: `callwatch demo` brings up the server, the supervisor board and
the replayed demo calls, and takes all of it down again."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from assist.demo import free_port, port_free

pytestmark = pytest.mark.slow


def test_demo_brings_up_server_board_and_live_calls(tmp_path: Path) -> None:
    port, board_port = free_port(), free_port()
    env = {**os.environ, "CALLWATCH_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "assist.cli", "demo", "--rounds", "1", "--speed", "6"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--board-port", str(board_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    seen_live: list[dict[str, object]] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        board_url = None
        while time.monotonic() < deadline and proc.poll() is None:
            found = [m for ln in lines if (m := re.search(r"supervisor board: (\S+)", ln))]
            if found:
                board_url = found[0].group(1)
                break
            time.sleep(0.2)
        assert board_url == f"http://127.0.0.1:{board_port}", lines
        assert httpx.get(f"{board_url}/_stcore/health", timeout=10).text == "ok"
        # access control is on: the demo prints the supervisor token the board uses
        token = None
        while time.monotonic() < deadline and proc.poll() is None and token is None:
            found = [m for ln in lines if (m := re.search(r"supervisor token: (\S+)", ln))]
            token = found[0].group(1) if found else None
            time.sleep(0.1)
        assert token, lines
        boss = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"http://127.0.0.1:{port}/v1/calls", timeout=5).status_code == 401
        # while the calls play, the server the board reads has them live
        while time.monotonic() < deadline and proc.poll() is None and not seen_live:
            try:
                calls = httpx.get(
                    f"http://127.0.0.1:{port}/v1/calls", timeout=5, headers=boss
                ).json()["calls"]
                seen_live = [c for c in calls if c["status"] == "active"]
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert {c["agent_id"] for c in seen_live} <= {"sarah", "emma"} and seen_live
        assert proc.wait(timeout=240) == 0, "\n".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=5)
    text = "\n".join(lines)
    scores = dict(re.findall(r"(\w+_call)\s+via \w+\s+score\s+([\d.]+)", text))
    assert set(scores) == {"clean_call", "breach_call", "cancel_call"}, text
    assert float(scores["breach_call"]) < float(scores["clean_call"])
    assert re.search(r"agent panel for sarah: http://127\.0\.0\.1:\d+/agent\?agent=sarah", text)
    assert port_free(board_port), "the board was left running"


def test_dashboard_command_starts_the_board_and_stops_with_it(tmp_path: Path) -> None:
    """`callwatch dashboard` for a server that is not up yet: it says so, the board starts
    anyway (its pages say so too), and a SIGTERM takes the board down with it."""
    down, board_port = free_port(), free_port()
    env = {**os.environ, "CALLWATCH_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "assist.cli", "dashboard", "--server", f"127.0.0.1:{down}"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(board_port), "--user", "sam"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line.rstrip())
            if "supervisor board:" in line:
                break
        assert any(f"server 127.0.0.1:{down} does not answer yet" in ln for ln in lines), lines
        assert lines[-1].startswith(f"supervisor board: http://127.0.0.1:{board_port}")
        assert httpx.get(f"http://127.0.0.1:{board_port}/_stcore/health", timeout=10).text == "ok"
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while not port_free(board_port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert port_free(board_port), "the board outlived the command"
