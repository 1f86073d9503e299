"""Start the board as its own process (``streamlit run dashboard/app.py``) against one or more
servers: used by ``callwatch dashboard``, ``callwatch demo`` and the browser tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

APP = Path(__file__).resolve().parent / "app.py"
REPO = APP.parent.parent

# Chinese on the board (Mandarin calls). Streamlit's own "Source Sans" has no Chinese, so a
# browser picks a fallback for those characters from the page's language (English) and the
# system: on Linux that is Noto Sans CJK *JP*, with Japanese glyph forms and punctuation
# placement. Listing Simplified Chinese faces right after Source Sans makes every Chinese
# character on the board (text, tables, charts) use them; the first one installed wins.
CJK_SC_FONTS = (
    '"PingFang SC", "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", '
    '"Source Han Sans CN", "Hiragino Sans GB", "Microsoft YaHei", "WenQuanYi Micro Hei"'
)
BOARD_FONT = f'"Source Sans", {CJK_SC_FONTS}, sans-serif'
BOARD_CODE_FONT = f'"Source Code Pro", "Noto Sans Mono CJK SC", {CJK_SC_FONTS}, monospace'


def board_env(
    servers: str | list[str], token: str | None = None, user: str | None = None
) -> dict[str, str]:
    """The environment the board reads its settings from (dashboard/common.py)."""
    env = dict(os.environ)
    env["CALLWATCH_SERVER"] = servers if isinstance(servers, str) else ",".join(servers)
    if token:
        env["CALLWATCH_TOKEN"] = token
    if user:
        env["CALLWATCH_USER"] = user
    # the pages import ``dashboard.*``: make that work from a source checkout too
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    return env


def board_command(port: int, host: str, headless: bool) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true" if headless else "false",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "minimal",
        "--theme.primaryColor",
        "#1f6feb",  # blue: red stays the colour of critical alerts
        "--theme.font",
        BOARD_FONT,
        "--theme.codeFont",
        BOARD_CODE_FONT,
    ]


def run_board(
    servers: str | list[str],
    port: int = 8501,
    host: str = "127.0.0.1",
    token: str | None = None,
    user: str | None = None,
    headless: bool = True,
    log_path: str | Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start the board in the background; stop it with ``proc.terminate()``. Its output goes
    to ``log_path`` when given (else stdout is dropped and errors go to our stderr)."""
    log = open(log_path, "ab") if log_path is not None else None  # noqa: SIM115 (child keeps it)
    try:
        return subprocess.Popen(
            board_command(port, host, headless),
            env=board_env(servers, token, user),
            cwd=str(REPO),
            stdout=log if log is not None else subprocess.DEVNULL,
            stderr=log if log is not None else None,
        )
    finally:
        if log is not None:
            log.close()  # the child holds its own descriptor


def wait_ready(
    url: str, timeout_s: float = 60.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until the board at ``url`` answers its health check; RuntimeError if it does
    not within ``timeout_s`` (or its process exits)."""
    deadline = time.monotonic() + timeout_s
    health = f"{url.rstrip('/')}/_stcore/health"
    while True:
        try:
            if httpx.get(health, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the board exited with code {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the board at {url} was not ready within {timeout_s:g} s")
        time.sleep(0.2)
