"""The agent panel (``/agent``) in a real browser: a running server with tokens, a replayed
demo call, real Whisper, and headless Chromium driving the page as an agent would.

Screenshots land in ``tests/artifacts/agent_panel*.png`` for a human to look at.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from assist.replay import ReplayResult, replay
from assist.server import App
from tests.browser import ARTIFACTS, chromium, need_chromium
from tests.conftest import DEMO, REPO
from tests.live_server import make_state, running_server, wait_until

pytestmark = pytest.mark.slow


need_chromium()

from playwright.sync_api import Browser, Page, expect  # noqa: E402


def _playbook_title(intent: str) -> str:
    book = yaml.safe_load((REPO / "assist" / "playbooks" / "default.yaml").read_text())
    return str(next(i["title"] for i in book["intents"] if i["id"] == intent))


def _rule(rule_id: str) -> dict[str, Any]:
    pack = yaml.safe_load((REPO / "qa_rules" / "packs" / "default.yaml").read_text())
    return dict(next(r for r in pack["rules"] if r["id"] == rule_id))


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def state(asr, packs) -> Iterator[App]:  # type: ignore[no-untyped-def]
    st = make_state(asr, packs, auth=True)  # its store is in the session's throwaway home
    yield st
    st.close()


@pytest.fixture(scope="module")
def url(state: App) -> Iterator[str]:
    with running_server(state) as u:
        yield u


@pytest.fixture(scope="module")
def base(url: str) -> str:
    return url.replace("ws://", "http://")


@pytest.fixture(scope="module")
def token(state: App) -> str:
    assert state.store is not None
    return state.store.create_token(role="agent", agent_id="sarah", label="panel test")


@pytest.fixture(scope="module")
def staff(state: App) -> dict[str, str]:
    """The replays' ingest token, and a supervisor token to follow calls and read feedback."""
    assert state.store is not None
    return {
        role: state.store.create_token(role, None, f"panel test {role}")
        for role in ("ingest", "supervisor")
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Browser, base: str) -> Iterator[Page]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    ctx.close()
    assert not errors, f"the page threw: {errors}"


class Replay:
    """A demo call replayed into the server from a thread (the browser owns the main one)."""

    def __init__(
        self, url: str, name: str, call_id: str, speed: float, staff: dict[str, str]
    ) -> None:
        self.call_id = call_id
        self.result: ReplayResult | None = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = asyncio.run(
                    replay(
                        url,
                        str(DEMO / f"{name}.wav"),
                        protocol="raw",
                        speed=speed,
                        agent_id="sarah",
                        call_id=call_id,
                        token=staff["ingest"],
                        events_token=staff["supervisor"],
                    )
                )
            except BaseException as exc:  # reported by join()
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 90) -> ReplayResult:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the replay did not finish"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def open_panel(page: Page, base: str, token: str, agent: str = "sarah") -> None:
    page.goto(f"{base}/agent?agent={agent}&token={token}")
    page.wait_for_function("window.__callwatch && window.__callwatch.connection === 'live'")


def final_lines(page: Page) -> list[tuple[str, str]]:
    rows = page.eval_on_selector_all(
        "#transcript .line:not(.partial)",
        "els => els.map(e => [e.dataset.speaker, e.querySelector('.say').textContent])",
    )
    return [(str(s), str(t)) for s, t in rows]


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), animations="disabled")


# -- tests ---------------------------------------------------------------------------------------


def test_agent_follows_a_live_call(
    page: Page, url: str, base: str, token: str, staff: dict[str, str]
) -> None:
    open_panel(page, base, token)
    # the token left the address bar (it lives in sessionStorage for this tab only)
    assert "token" not in page.url and "agent=sarah" in page.url
    assert page.evaluate("sessionStorage.getItem('callwatch.token')") == token
    expect(page.locator("#call-status")).to_have_text("Waiting for a call")

    call = Replay(url, "cancel_call", "panel-cancel", speed=2.0, staff=staff)
    boss = {"Authorization": f"Bearer {staff['supervisor']}"}

    # the call shows up by itself, and the customer's cancel request is on the customer side
    expect(page.locator("#call-id")).to_have_text("panel-cancel", timeout=20_000)
    customer_cancel = page.locator(".line-customer:not(.partial) .say", has_text="cancel")
    expect(customer_cancel.first).to_be_visible(timeout=30_000)
    expect(page.locator(".line-agent:not(.partial) .say").first).to_contain_text("Northwind")

    # the playbook's retention card, with its script lines as copy buttons
    card = page.locator(".card[data-intent='cancel_service']").first
    expect(card).to_be_visible(timeout=20_000)
    expect(card.locator(".card-title")).to_have_text(_playbook_title("cancel_service"))
    assert card.locator(".script-line").count() >= 2
    expect(card.get_by_role("button", name="Helpful", exact=True)).to_be_visible()
    expect(card.get_by_role("button", name=re.compile("^Dismiss"))).to_be_visible()

    # the call timer runs on its own between events
    first = page.locator("#timer").inner_text()
    page.wait_for_timeout(2100)
    second = page.locator("#timer").inner_text()
    assert first != second and second != "0:00", (first, second)
    expect(page.locator("#call-status")).to_have_text("On call")

    # Helpful is recorded by the server (and the button shows it)
    sid = card.get_attribute("data-id")
    card.get_by_role("button", name="Helpful", exact=True).click()
    expect(card.locator(".fb-status")).to_have_text("Feedback recorded")
    expect(card.get_by_role("button", name="Helpful", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    rows = httpx.get(
        f"{base}/v1/suggestions/feedback", params={"call_id": "panel-cancel"}, headers=boss
    ).json()
    helpful = [r for r in rows["feedback"] if r["verdict"] == "helpful"]
    assert [(r["suggestion_id"], r["agent_id"], r["intent"]) for r in helpful] == [
        (sid, "sarah", "cancel_service")
    ]
    assert helpful[0]["call_id"] == "panel-cancel" and helpful[0]["at"]

    # keyboard: j focuses the newest card, 1 copies its first script line
    page.locator("#transcript-h").click()
    page.keyboard.press("j")
    focused = page.locator(".card:focus")
    expect(focused).to_have_count(1)
    focused_id = focused.get_attribute("data-id")
    line_one = focused.locator(".script-line .line-text").first.inner_text()
    page.keyboard.press("1")
    expect(focused.locator(".script-line").first).to_have_class(re.compile("did-copy"))
    assert page.evaluate("navigator.clipboard.readText()") == line_one
    wait_until(
        lambda: [
            r
            for r in httpx.get(
                f"{base}/v1/suggestions/feedback", params={"call_id": "panel-cancel"}, headers=boss
            ).json()["feedback"]
            if r["verdict"] == "copied" and r["suggestion_id"] == focused_id and r["line"] == 0
        ],
        "the copied line's feedback",
        timeout_s=10,
    )
    page.keyboard.press("Escape")

    # the angry complaint: the agent's de-escalation alert, and the caller's mood escalates
    deescalate = _rule("deescalate")
    alert = page.locator("#alerts .alert[data-rule='deescalate']")
    expect(alert).to_be_visible(timeout=60_000)
    expect(alert.locator(".alert-msg")).to_have_text(deescalate["message"])
    expect(alert).to_have_class(re.compile("sev-warning"))
    expect(page.locator("#mood")).to_have_attribute("data-level", "escalated")
    expect(page.locator("#mood-label")).not_to_have_text("—")
    expect(page.locator("#mood-index")).to_contain_text("anger")
    # the supervisor-only alert about the same moment stays off the agent's screen
    expect(page.locator("#alerts .alert[data-rule='caller_angry']")).to_have_count(0)
    # screen readers hear the alert
    heard = " ".join(
        page.locator(sel).text_content() or ""
        for sel in ("#announce-polite", "#announce-assertive")
    )
    assert "apologise" in heard
    shot(page, "agent_panel")

    # the call ends: the timer stops and the panel says so
    result = call.join()
    expect(page.locator("#call-status")).to_contain_text("Ended", timeout=30_000)
    stopped = page.locator("#timer").inner_text()
    page.wait_for_timeout(1200)
    assert page.locator("#timer").inner_text() == stopped
    # what the agent read is what the server transcribed, once each, in order
    finals = sorted(
        (e for e in result.events if e["type"] == "transcript.final"),
        key=lambda e: (e["t"], e["seq"]),
    )
    assert final_lines(page) == [(e["speaker"], e["text"]) for e in finals]
    assert page.locator("#transcript .line.partial:not(.stale)").count() == 0
    shot(page, "agent_panel_ended")
    page.set_viewport_size({"width": 760, "height": 1000})
    shot(page, "agent_panel_narrow")


def test_bad_token_shows_the_sign_in_form(page: Page, base: str, token: str) -> None:
    refused = httpx.get(
        f"{base}/v1/agents/sarah/session", headers={"Authorization": "Bearer wrong"}
    )
    assert refused.status_code == 401
    message = refused.json()["detail"]
    page.goto(f"{base}/agent?agent=sarah&token=wrong")
    form = page.locator("#login")
    expect(form).to_be_visible()
    expect(page.locator("#login-error")).to_contain_text(message)
    assert "token" not in page.url
    expect(page.locator("#login-agent")).to_have_value("sarah")
    shot(page, "agent_panel_login")
    # signing in with the right token opens the panel
    page.locator("#login-token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(form).to_be_hidden()
    page.wait_for_function("window.__callwatch.connection === 'live'")
    # a token refused on the event stream (close 4401) brings the form back, and no retries
    page.evaluate("window.__callwatch.state.token = 'revoked'; window.__callwatch.socket.close()")
    expect(form).to_be_visible(timeout=10_000)
    expect(page.locator("#login-error")).to_contain_text("token")
    reconnects = page.evaluate("window.__callwatch.reconnects")
    page.wait_for_timeout(1500)
    assert page.evaluate("window.__callwatch.reconnects") == reconnects
    assert page.evaluate("window.__callwatch.connection") == "signed-out"


def test_reconnects_without_repeating_lines(
    page: Page, url: str, base: str, token: str, staff: dict[str, str]
) -> None:
    open_panel(page, base, token)
    call = Replay(url, "clean_call", "panel-reconnect", speed=4.0, staff=staff)
    expect(page.locator("#call-id")).to_have_text("panel-reconnect", timeout=20_000)
    expect(page.locator(".line:not(.partial)")).not_to_have_count(0, timeout=20_000)
    page.wait_for_function("document.querySelectorAll('.line:not(.partial)').length >= 3")
    before = len(final_lines(page))

    page.evaluate("window.__callwatch.socket.close()")
    expect(page.locator("#banner")).to_contain_text("reconnecting", timeout=5_000)
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    shot(page, "agent_panel_reconnecting")
    page.wait_for_function("window.__callwatch.connection === 'live'", timeout=15_000)
    expect(page.locator("#banner")).to_be_hidden()
    assert page.evaluate("window.__callwatch.state.connLog").count("live") >= 2

    result = call.join()
    expect(page.locator("#call-status")).to_contain_text("Ended", timeout=30_000)
    lines = final_lines(page)
    finals = [(e["speaker"], e["text"]) for e in result.events if e["type"] == "transcript.final"]
    assert len(lines) > before
    assert len(lines) == len(finals) and sorted(lines) == sorted(finals)
