"""Test helpers around a real callwatch server (the same runner the demo uses)."""

from __future__ import annotations

from assist.demo import free_port, running_server
from assist.server import App, ServerConfig

__all__ = ["free_port", "make_state", "running_server"]


def make_state(asr, packs, **kw) -> App:  # type: ignore[no-untyped-def]
    """A server state on the shared model; agent routes open (``auth=True`` to test tokens)."""
    kw.setdefault("auth", False)
    return App(ServerConfig(store=kw.pop("store", True), **kw), asr=asr, packs=packs)
