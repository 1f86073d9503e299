"""A real callwatch server on a free localhost port, in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from assist.server import MAX_FRAME_BYTES, App, ServerConfig, create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(state: App) -> Iterator[str]:
    """Yield ``ws://127.0.0.1:PORT`` while a uvicorn server runs ``state``."""
    port = free_port()
    config = uvicorn.Config(create_app(state.config, state=state), host="127.0.0.1", port=port,
                            log_level="warning", ws_max_size=MAX_FRAME_BYTES, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    else:
        raise RuntimeError("server did not start")
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def make_state(asr, packs, **kw) -> App:  # type: ignore[no-untyped-def]
    return App(ServerConfig(store=kw.pop("store", True), **kw), asr=asr, packs=packs)
