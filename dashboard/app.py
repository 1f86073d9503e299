"""The supervisor board's entry (``streamlit run dashboard/app.py``): the sidebar with the
server URLs, who is using the board and the servers' health, and the navigation over the six
pages in dashboard/pages/ (each page also runs on its own)."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

if __package__ in (None, ""):  # ``streamlit run dashboard/app.py`` from a source checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard.common import (
    SERVERS_KEY,
    TOKEN_KEY,
    USER_KEY,
    get_client,
    settings,
)

PAGES_DIR = Path(__file__).resolve().parent / "pages"
PAGES = {
    "Live": [
        ("floor.py", "Floor", ":material/support_agent:"),
        ("alerts.py", "Alerts", ":material/notifications_active:"),
        ("call.py", "Call", ":material/call:"),
    ],
    "Quality": [
        ("rules.py", "Rules", ":material/rule:"),
        ("audits.py", "Audits", ":material/fact_check:"),
        ("insights.py", "Insights", ":material/insights:"),
    ],
}


def sidebar() -> None:
    """Connection settings (kept in session_state; the environment gives the defaults)."""
    cfg = settings()
    with st.sidebar:
        st.markdown("### 🎧 callwatch board")
        if SERVERS_KEY not in st.session_state:
            st.session_state[SERVERS_KEY] = cfg["servers"]
        if USER_KEY not in st.session_state:
            st.session_state[USER_KEY] = cfg["user"] or ""
        if TOKEN_KEY not in st.session_state:
            st.session_state[TOKEN_KEY] = cfg["token"] or ""
        st.text_input("Servers", key=SERVERS_KEY, help="callwatch server URLs, comma-separated")
        st.text_input(
            "Your name",
            key=USER_KEY,
            help="who acts, on a --no-auth server; with tokens, the token's label names you",
        )
        st.text_input(
            "Token",
            key=TOKEN_KEY,
            type="password",
            help="your API token (callwatch tokens create); needed unless the server runs --no-auth",
        )
        health = get_client().health()
        for url, state in health.items():
            if state == "ok":
                st.caption(f"🟢 {url}")
            else:
                st.caption(f"🔴 {url}: {state}")


def main() -> None:
    st.set_page_config(page_title="callwatch board", page_icon="🎧", layout="wide")
    pages = {
        section: [
            st.Page(
                PAGES_DIR / file,
                title=title,
                icon=icon,
                url_path=file.removesuffix(".py"),
                default=file == "floor.py",
            )
            for file, title, icon in entries
            if (PAGES_DIR / file).exists()  # a page still being written is left out
        ]
        for section, entries in PAGES.items()
    }
    nav = st.navigation(pages)
    sidebar()
    nav.run()


if __name__ == "__main__":  # how Streamlit runs a page; importing it (tests) renders nothing
    main()
