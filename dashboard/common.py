"""What every board page shares: the client (from the sidebar or the environment), error
messages a supervisor can act on, and small formatting helpers.

Pages call ``setup_page`` first so each one also runs on its own (``streamlit run
dashboard/pages/floor.py``, AppTest), not only under ``dashboard/app.py``'s navigation.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlencode

import streamlit as st

from dashboard.client import DEFAULT_SERVER, CallwatchClient, ServerDown, ServerError, ServerSlow

T = TypeVar("T")

# session_state keys the sidebar (dashboard/app.py) writes; the environment is the fallback
SERVERS_KEY = "cw_servers"
TOKEN_KEY = "cw_token"
USER_KEY = "cw_user"
TIMEOUT_KEY = "cw_timeout_s"
_CLIENT_KEY = "_cw_client"

SEVERITY_ICON = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
SEVERITY_COLOR = {"critical": "red", "warning": "orange", "info": "blue"}
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
SPEAKER_COLOR = {"agent": "#1f77b4", "customer": "#d62728"}  # the board's two sides
MOOD_FACE = {"angry": "😡", "frustrated": "😠", "neutral": "😐", "positive": "🙂"}
SPEAKER_LABEL = {"agent": "Agent", "customer": "Customer"}


# -- settings and client -----------------------------------------------------------------------
def _setting(key: str, env: str, default: str = "") -> str:
    value = st.session_state.get(key)
    if isinstance(value, str | int | float) and str(value).strip():
        return str(value).strip()
    return os.environ.get(env, default).strip()


def settings() -> dict[str, Any]:
    """The board's connection settings: sidebar values, else CALLWATCH_* environment."""
    try:
        timeout = float(_setting(TIMEOUT_KEY, "CALLWATCH_TIMEOUT_S", "5"))
    except ValueError:
        timeout = 5.0
    return {
        "servers": _setting(SERVERS_KEY, "CALLWATCH_SERVER", DEFAULT_SERVER) or DEFAULT_SERVER,
        "token": _setting(TOKEN_KEY, "CALLWATCH_TOKEN") or None,
        "user": _setting(USER_KEY, "CALLWATCH_USER") or None,
        "timeout_s": timeout if timeout > 0 else 5.0,
    }


def get_client() -> CallwatchClient:
    """This session's client; a new one when the settings change (it remembers which server
    owns which call, so it is kept across reruns)."""
    cfg = settings()
    key = (cfg["servers"], cfg["token"], cfg["user"], cfg["timeout_s"])
    held = st.session_state.get(_CLIENT_KEY)
    if isinstance(held, tuple) and held[0] == key:
        client: CallwatchClient = held[1]
        return client
    if isinstance(held, tuple):
        held[1].close()
    client = CallwatchClient(
        cfg["servers"], token=cfg["token"], user=cfg["user"], timeout_s=cfg["timeout_s"]
    )
    st.session_state[_CLIENT_KEY] = (key, client)
    return client


# -- errors ------------------------------------------------------------------------------------
def error_text(exc: ServerError) -> str:
    """One sentence a supervisor can act on."""
    url = exc.url or settings()["servers"]
    if isinstance(exc, ServerDown):
        return (
            f"Cannot reach the callwatch server at {url}: {exc.message}. "
            "Start it with `callwatch serve` (or check the server URL in the sidebar)."
        )
    if isinstance(exc, ServerSlow):
        timeout = settings()["timeout_s"]
        return f"The server at {url} did not answer within {timeout:g} s; retrying."
    status = f" (HTTP {exc.status})" if exc.status else ""
    return f"The server at {url} answered with an error{status}: {exc.message}"


def show_error(exc: ServerError) -> None:
    """Render a server problem as a message, never a traceback."""
    if isinstance(exc, ServerSlow):
        st.warning(error_text(exc), icon="⏳")
        return
    st.error(error_text(exc), icon="🔌" if isinstance(exc, ServerDown) else "⚠️")
    for issue in exc.issues:
        where = ":".join(str(issue[k]) for k in ("file", "line") if issue.get(k) is not None)
        field = f" `{issue['field']}`" if issue.get("field") else ""
        st.markdown(f"- {where}{field}: {issue.get('message', '')}")


def fetch(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``fn(*args)``; on a server problem show it and return None."""
    try:
        return fn(*args, **kwargs)
    except ServerError as exc:
        show_error(exc)
        return None


def setup_page(title: str, icon: str) -> None:
    """Page title and wide layout (calls add up, so this also works under navigation)."""
    st.set_page_config(page_title=f"{title} · callwatch", page_icon=icon, layout="wide")


# -- formatting --------------------------------------------------------------------------------
def clock(seconds: float | None) -> str:
    """Call time as m:ss (h:mm:ss past an hour)."""
    if seconds is None:
        return "-"
    s = max(0, round(float(seconds)))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def duration(seconds: float | None) -> str:
    """A human duration: 45 s, 3 min 05 s, 1 h 02 min."""
    if seconds is None:
        return "-"
    s = max(0, round(float(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def wall_time(epoch: float | None) -> str:
    """A started_at epoch as local HH:MM:SS (with the date when not today)."""
    if not isinstance(epoch, int | float):
        return "-"
    when = dt.datetime.fromtimestamp(float(epoch))
    if when.date() == dt.date.today():
        return when.strftime("%H:%M:%S")
    return when.strftime("%Y-%m-%d %H:%M")


def iso_time(iso: str | None) -> str:
    """An emitted_at ISO string as local HH:MM:SS."""
    if not iso:
        return "-"
    try:
        when = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return when.astimezone().strftime("%H:%M:%S")


def severity_badge(severity: str | None) -> str:
    """'🔴 critical' etc., for tables and captions."""
    sev = (severity or "info").lower()
    return f"{SEVERITY_ICON.get(sev, '⚪')} {sev}"


def severity_markdown(severity: str | None) -> str:
    """A coloured markdown badge (``:red-badge[...]``) for headlines."""
    sev = (severity or "info").lower()
    return f":{SEVERITY_COLOR.get(sev, 'gray')}-badge[{SEVERITY_ICON.get(sev, '⚪')} {sev}]"


def agent_name(agent_id: str | None) -> str:
    """How the board names an agent: 'sarah' -> 'Sarah', 'j.doe' -> 'J. Doe'."""
    if not agent_id:
        return "(unknown agent)"
    parts = agent_id.replace("_", " ").replace(".", ". ").split()
    return " ".join(p[:1].upper() + p[1:] for p in parts)


def speaker_label(speaker: str | None) -> str:
    return SPEAKER_LABEL.get(speaker or "", (speaker or "?").capitalize())


def mood_of(summary: Mapping[str, Any], speaker: str = "customer") -> dict[str, Any] | None:
    """A call's latest emotion reading for ``speaker`` (the caller by default)."""
    mood = summary.get("mood") or {}
    reading = mood.get(speaker) if isinstance(mood, dict) else None
    return reading if isinstance(reading, dict) else None


def mood_text(reading: Mapping[str, Any] | None) -> str:
    """'😡 angry 0.82 (escalated)' for a mood reading."""
    if not reading:
        return "-"
    label = str(reading.get("label") or "neutral")
    anger = reading.get("anger_index")
    face = MOOD_FACE.get(label, "😐")
    if reading.get("escalated"):
        face = "😡"
    text = f"{face} {label}"
    if isinstance(anger, int | float):
        text += f" {float(anger):.2f}"
    if reading.get("escalated"):
        text += " (escalated)"
    return text


def call_link(call_id: str, t: float | None = None) -> str:
    """The Call page's URL for ``call_id`` (at ``t`` seconds into the call), relative to the
    board so it works behind any host or port."""
    params: dict[str, str] = {"call": call_id}
    if t is not None:
        params["t"] = f"{max(0.0, float(t)):.1f}".rstrip("0").rstrip(".")
    return f"call?{urlencode(params)}"


def refresh_s() -> float:
    """How often live views refresh themselves (CALLWATCH_REFRESH_S, default 2 s)."""
    try:
        value = float(os.environ.get("CALLWATCH_REFRESH_S", "2"))
    except ValueError:
        return 2.0
    return value if value > 0 else 2.0


def has_cjk(text: Any) -> bool:
    """Whether ``text`` has Chinese (or Japanese/Korean) characters: such text is not set in
    italics (CJK faces have none; slanted characters are hard to read)."""
    return any(
        "\u3040" <= ch <= "\u30ff"  # kana
        or "\u3400" <= ch <= "\u9fff"  # CJK ideographs (extension A and the main block)
        or "\uac00" <= ch <= "\ud7af"  # hangul
        or "\uf900" <= ch <= "\ufaff"  # compatibility ideographs
        or "\U00020000" <= ch <= "\U0003134f"  # extensions B-H
        for ch in str(text)
    )


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>$~|#"})


def md_escape(text: Any) -> str:
    """Call text (transcripts, alert messages, evidence) made inert for ``st.markdown``: no
    links, emphasis, colour directives, headings, lists or LaTeX can come from what a caller
    said."""
    out = " ".join(str(text).split()).translate(_MD_SPECIAL)
    if out[:1] in ("-", "+") or (out[:1].isdigit() and "." in out[:10]):
        out = "\\" + out if out[:1] in ("-", "+") else out.replace(".", "\\.", 1)
    return out
