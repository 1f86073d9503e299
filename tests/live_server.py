"""Test helpers around a real callwatch server (the same runner the demo uses)."""

from __future__ import annotations

import itertools
import time
from typing import Any

from assist.demo import free_port, running_server
from assist.server import App, ServerConfig

__all__ = [
    "auth_header",
    "free_port",
    "make_state",
    "make_tokens",
    "running_server",
    "wait_until",
]

STAFF_ROLES = ("admin", "supervisor", "qa", "ingest")
_instances = itertools.count(1)


def make_state(asr, packs, **kw) -> App:  # type: ignore[no-untyped-def]
    """A server state on the shared model; every route open (``auth=True`` to test tokens,
    see ``make_tokens``). ``models``: more loaded models by language (e.g. ``{"zh": base}``)."""
    kw.setdefault("auth", False)
    # Servers of one test run share the session's store: each is its own instance, so one
    # starting never marks another's live calls interrupted.
    kw.setdefault("instance_id", f"test-{next(_instances)}")
    models = kw.pop("models", None)
    return App(ServerConfig(store=kw.pop("store", True), **kw), asr=asr, packs=packs, models=models)


def make_tokens(state: App, *agents: str) -> dict[str, str]:
    """One token per staff role (keys ``admin``, ``supervisor``, ``qa``, ``ingest``) and one
    agent token per agent id given (keyed by the agent id), in ``state``'s store. Labels are
    ``test <role>`` (the name rule edits and acknowledgements are recorded under)."""
    assert state.store is not None, "tokens need the store"
    out = {role: state.store.create_token(role, None, f"test {role}") for role in STAFF_ROLES}
    for agent in agents:
        out[agent] = state.store.create_token("agent", agent, f"test agent {agent}")
    return out


def auth_header(token: str | None) -> dict[str, str]:
    """``Authorization: Bearer TOKEN`` (nothing for None)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def wait_until(check: Any, what: str, timeout_s: float = 120.0, every_s: float = 0.2) -> Any:
    """Poll ``check()`` until it gives something true, and return that (a hang guard, not a
    timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every_s)
    raise TimeoutError(f"not within {timeout_s} s: {what}")
