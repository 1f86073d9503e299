"""The supervisor board in a real browser: ``dashboard/launch.py`` starts Streamlit against
the board's test server (demo calls replayed, one angry call held live), and headless
Chromium opens the Floor and a Call page as a supervisor would.

Screenshots land in ``tests/artifacts/board_floor.png`` and ``board_call.png`` for a human to
look at."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assist.demo import free_port
from dashboard.launch import run_board, wait_ready
from tests.browser import ARTIFACTS, chromium, need_chromium

pytestmark = pytest.mark.slow

WIDTH = 1400

need_chromium()

from playwright.sync_api import Browser, Page, expect  # noqa: E402


@pytest.fixture(scope="module")
def angry(board: Any) -> Iterator[Any]:
    """The cancel call held live after its critical caller_angry alert (agent Dana)."""
    call = board.start_live("cancel_call", hold_at_s=75.0, speed=4.0, agent_id="dana")
    try:
        call.wait_for(lambda d: any(a["rule_id"] == "caller_angry" for a in d["alerts"]), 240)
        yield call
    finally:
        call.finish()


@pytest.fixture(scope="module")
def board_url(board: Any) -> Iterator[str]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = run_board(
        [board.http], port=port, user="sam (supervisor)", log_path=ARTIFACTS / "board.log"
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, timeout_s=90, proc=proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except Exception:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def tab(browser: Browser) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    try:
        yield page
    finally:
        page.close()


def screenshot(page: Page, name: str) -> Path:
    """The whole page: Streamlit scrolls inside its main area, so grow the window to fit."""
    height = page.evaluate(
        "() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
        " return m ? m.scrollHeight : document.body.scrollHeight }"
    )
    page.set_viewport_size({"width": WIDTH, "height": max(900, int(height) + 40)})
    page.wait_for_timeout(1500)  # charts and tables redraw at the new size
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_floor_in_a_browser(board_url: str, angry: Any, tab: Page) -> None:
    tab.goto(board_url)
    banner = tab.get_by_text("critical alert", exact=False).first
    expect(banner).to_be_visible(timeout=60_000)
    alert = tab.locator("[data-testid='stAlertContentError']").first
    expect(alert).to_contain_text("Dana")  # the live angry call, at the top
    expect(alert).to_contain_text("Caller is angry")
    expect(tab.get_by_text("Active calls", exact=True).first).to_be_visible()
    expect(tab.get_by_text("Recently ended", exact=True)).to_be_visible()
    expect(tab.locator("[data-testid='stDataFrame']").first).to_be_visible()
    path = screenshot(tab, "board_floor.png")
    assert path.stat().st_size > 10_000

    # one click from the alert to the call, at the moment it fired (in a new tab)
    with tab.context.expect_page(timeout=30_000) as opened:
        alert.get_by_role("link", name=re.compile("open call at")).first.click()
    call = opened.value
    try:
        expect(call.get_by_text("Dana's call")).to_be_visible(timeout=60_000)
        assert f"call={angry.call_id}" in call.url and "&t=" in call.url
        expect(call.get_by_text("No recording kept for live calls.")).to_be_visible()
    finally:
        call.close()


def test_call_page_in_a_browser(board: Any, board_url: str, tab: Page) -> None:
    call_id = board.calls["breach_call"]
    detail = board.replays["breach_call"]
    forbidden = next(
        e for e in detail.events if e["type"] == "alert" and e["rule_id"] == "forbidden_language"
    )
    tab.goto(f"{board_url}/call?call={call_id}&t={forbidden['t']}")
    expect(tab.get_by_text("Emma's call")).to_be_visible(timeout=60_000)
    greeting = tab.get_by_text("Thank you for calling Northwind", exact=False).first
    expect(greeting).to_be_visible(timeout=30_000)
    expect(tab.get_by_text("calm down", exact=False).first).to_be_visible()
    expect(tab.get_by_text("Scorecard", exact=True)).to_be_visible()
    expect(tab.locator("[data-testid='stVegaLiteChart']")).to_have_count(2)
    path = screenshot(tab, "board_call.png")
    assert path.stat().st_size > 10_000
