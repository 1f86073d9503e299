"""A real callwatch server with real data for the board's tests (one per test session).

``tests/conftest.py`` gives it as the session fixture ``board``:

- the three demo calls replayed into it (real tiny.en Whisper, speed 8) and ended, so they are
  in the store and in ``GET /v1/calls``: ``board.calls`` maps the demo name to its call id
  (``clean_call`` passes; ``breach_call`` fails the forbidden-phrase, dead-air and fast-speech
  rules; ``cancel_call`` has the angry caller: a critical ``caller_angry`` supervisor alert
  after its complaint at ~58.6 s, and a ``deescalate`` agent alert);
- ``board.recordings``: the folder the server may audit (``audit_dirs``), holding copies of
  ``clean_call.wav`` and ``breach_call.wav``;
- ``board.start_live(...)``: a call that stays *live*: its audio is streamed up to
  ``hold_at_s`` and the connection is then held open until ``.finish()``.

Agents: clean and cancel calls are ``sarah``'s, the breach call is ``emma``'s (as in the demo).
"""

from __future__ import annotations

import asyncio
import http.server
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from assist.demo import DEMO_CALLS, PLAN, free_port
from assist.replay import ReplayResult, replay
from assist.server import App
from tests.live_server import make_state, running_server


@dataclass
class LiveCall:
    """A replay running in its own thread; the call stays open at ``hold_at_s``."""

    call_id: str
    http: str
    release: threading.Event = field(default_factory=threading.Event)
    result: ReplayResult | None = None
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def detail(self) -> dict[str, Any] | None:
        r = httpx.get(f"{self.http}/v1/calls/{self.call_id}", timeout=10)
        return r.json() if r.status_code == 200 else None

    def wait_for(
        self, check: Callable[[dict[str, Any]], bool], timeout_s: float = 120.0
    ) -> dict[str, Any]:
        """Poll the call's detail until ``check`` holds (e.g. an alert has fired)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            d = self.detail()
            if d is not None and check(d):
                return d
            if self.error is not None:
                raise self.error
            time.sleep(0.2)
        raise TimeoutError(f"call {self.call_id}: condition not met in {timeout_s} s")

    def finish(self, timeout_s: float = 120.0) -> ReplayResult | None:
        """Send the rest of the call and wait for it to end."""
        self.release.set()
        if self.thread is not None:
            self.thread.join(timeout_s)
        return self.result


@dataclass
class Board:
    state: App
    ws: str
    http: str
    recordings: Path
    calls: dict[str, str] = field(default_factory=dict)
    replays: dict[str, ReplayResult] = field(default_factory=dict)

    def start_live(
        self,
        name: str = "cancel_call",
        hold_at_s: float = 75.0,
        speed: float = 4.0,
        call_id: str | None = None,
        agent_id: str = "dana",
        protocol: str = "twilio",
    ) -> LiveCall:
        """Replay a demo call live and keep it open from ``hold_at_s`` (audio seconds)."""
        return start_held_call(
            self.ws, self.http, name, hold_at_s, speed, call_id, agent_id, protocol
        )


def start_held_call(
    ws: str,
    http: str,
    name: str = "cancel_call",
    hold_at_s: float = 75.0,
    speed: float = 4.0,
    call_id: str | None = None,
    agent_id: str = "dana",
    protocol: str = "twilio",
) -> LiveCall:
    """Replay a demo call into the server at ``ws`` in a thread, holding it open from
    ``hold_at_s`` (audio seconds) until ``LiveCall.finish()``."""
    live = LiveCall(call_id or f"live-{name}-{time.monotonic_ns() % 10**8}", http)

    def run() -> None:
        try:
            live.result = asyncio.run(
                replay(
                    ws,
                    str(DEMO_CALLS / f"{name}.wav"),
                    protocol=protocol,
                    speed=speed,
                    call_id=live.call_id,
                    agent_id=agent_id,
                    hold_at_s=hold_at_s,
                    release=live.release,
                )
            )
        except BaseException as exc:  # surfaced by wait_for / the test
            live.error = exc

    live.thread = threading.Thread(target=run, daemon=True, name=f"live-{name}")
    live.thread.start()
    return live


@contextmanager
def board_server(asr: Any, packs: Any, home: Path) -> Iterator[Board]:
    """Start the server, replay the demo calls to their end, yield the Board."""
    recordings = home / "recordings"
    recordings.mkdir(parents=True, exist_ok=True)
    for name in ("clean_call", "breach_call"):
        shutil.copy(DEMO_CALLS / f"{name}.wav", recordings / f"{name}.wav")
    state = make_state(
        asr, packs, audit_dirs=[str(recordings)], db_url=f"sqlite:///{home / 'board.db'}"
    )
    with running_server(state) as ws:
        board = Board(state, ws, ws.replace("ws://", "http://"), recordings)

        async def all_calls() -> list[ReplayResult]:
            return await asyncio.gather(
                *(
                    replay(
                        ws,
                        str(DEMO_CALLS / f"{name}.wav"),
                        protocol=proto,
                        speed=8.0,
                        call_id=f"board-{name}",
                        agent_id=agent,
                    )
                    for name, proto, agent in PLAN
                )
            )

        for (name, _, _), res in zip(PLAN, asyncio.run(all_calls()), strict=True):
            board.calls[name] = res.call_id
            board.replays[name] = res
        # the calls are stored when they end; wait until all three are
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if state.store is None or all(
                state.store.get_report(c) is not None for c in board.calls.values()
            ):
                break
            time.sleep(0.1)
        yield board


# -- a server that is down, slow or empty (each board page must say so) ---------------------
@contextmanager
def sleepy_server(delay_s: float = 3.0) -> Iterator[str]:
    """An HTTP server that answers every request only after ``delay_s``: a server too slow
    for the board's timeout."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(delay_s)
            body = json.dumps({"calls": [], "total": 0}).encode()
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up long ago

        do_POST = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def empty_server(asr: Any, packs: Any) -> Iterator[str]:
    """A real server with no calls at all; yields its http:// URL."""
    state = make_state(asr, packs, assist=False)
    try:
        with running_server(state) as ws:
            yield ws.replace("ws://", "http://")
    finally:
        state.close()


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"
