"""Chinese on screen (issue 10): a Mandarin call on the agent panel, on the supervisor board
and in its exports, on a real server, in headless Chromium with the system's own fonts.

The call is not transcribed here (ASR on Mandarin audio is tested in test_asr.py and
test_rules_on_audio.py); its events have the shapes the pipeline gives a Mandarin call:
simplified characters with their punctuation in ``text``, one word per Han character with
its own time, Chinese rule messages and evidence. The board's call goes into the store
through the Store API (as an ended live call); the panel's events go through the running
server's own bus to the agent's WebSocket, published on the server's event loop as a call's
session publishes them.

What "shows Chinese correctly" is checked as:

- the text is in the DOM exactly as sent (nothing escaped, cut or mangled on the way);
- it carries ``lang="zh-Hans"`` (panel) so browsers and screen readers treat it as Chinese;
- the glyphs come from a Simplified Chinese face: Chromium's DevTools protocol names the
  platform font each text node was drawn with (``CSS.getPlatformFontsForNode``); we ask for
  a "CJK SC" family, never JP/TC/KR/HK: these faces draw the same code points with other glyph
  forms (on Linux, Chromium's fallback for Han under ``lang="en"`` is Noto Sans CJK *JP*,
  which the board got before its font stack listed SC faces);
- the glyphs are real: each character drawn on a canvas in the element's font is compared
  with two code points no font has (U+0378, U+0379). Those two draw the same "tofu" box; every
  Chinese character must draw something different from it and from the others.

Without a Chinese font (Debian's fonts-noto-cjk, which .ci/run installs) the last two fail:
no "CJK SC" family draws anything (Chromium reports Liberation Sans or Source Sans drawing
.notdef), and every character is the same tofu box. A machine without one skips the browser
tests (like one without Chromium); CI fails them instead. The board's pages under AppTest,
search and the export contents need no font and always run.

Screenshots: tests/artifacts/cjk_*.png.
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from streamlit.testing.v1 import AppTest

from assist.demo import free_port
from assist.events import EventStamper
from assist.server import App, create_app
from assist.stored_call import report_from_events
from dashboard.client import CallwatchClient
from dashboard.common import md_escape
from dashboard.launch import run_board, wait_ready
from dashboard.pages.call import UTF8_BOM, _exporter, transcript_markdown
from tests.browser import ARTIFACTS, chromium, need_chromium
from tests.conftest import REPO
from tests.live_server import make_state, wait_until
from tests.test_board_pages import page as app_page
from tests.test_board_pages import shown

pytestmark = pytest.mark.slow


def _chinese_fonts() -> list[str]:
    try:
        out = subprocess.run(
            ["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted({f.strip() for line in out.splitlines() for f in line.split(",") if f.strip()})


def need_chinese_font() -> None:
    """Skip the browser tests without a Simplified Chinese font (fail them in CI: .ci/run
    installs one)."""
    if not any("CJK SC" in f for f in _chinese_fonts()):
        message = (
            "Chinese display tests need a Simplified Chinese font (apt install fonts-noto-cjk)"
        )
        if os.environ.get("CI"):
            raise RuntimeError(message)
        pytest.skip(message)


need_chromium()

from playwright.sync_api import Browser, Page, expect  # noqa: E402

PAGES = REPO / "dashboard" / "pages"
AGENT = "li_na"
STORED = "zh-stored-refund"
# a long id with characters outside the BMP: the panel shortens it without splitting one
LIVE = "zh-𠀋𠀋𠀋𠀋𠀋-来电-20261125-𠮷𠮷𠮷𠮷"

# (speaker, t, t_end, text): what the ASR gives a Mandarin call (simplified, punctuated)
LINES = (
    ("agent", 0.6, 4.2, "您好，很高兴为您服务，本次通话可能会被录音，请问有什么可以帮您？"),
    ("customer", 4.8, 9.6, "我上个月的话费被多扣了两百块钱，我要退款！"),
    ("agent", 10.1, 13.0, "你自己看着办吧，这个我们也没办法。"),
    ("customer", 13.6, 18.4, "你们每次都这样，太过分了，我要投诉你们。"),
)
FORBIDDEN = "你自己看着办"
CRITICAL_MESSAGE = f"坐席说了“{FORBIDDEN}”（服务禁语：“{FORBIDDEN}”）"
DEESCALATE_MESSAGE = "客户情绪激动：先共情、致歉一次，再说明接下来怎么处理。"
SUGGESTION = {
    "title": "客户要求退款",
    "script": [
        "非常抱歉给您带来不便，我马上为您核实这笔扣费。",
        "核实后多扣的费用会在三个工作日内退回。",
    ],
    "action": "在计费系统中提交退款申请",
    "reason": "意图：退款",
}
# a long line without spaces for the narrow panel: it must wrap between characters
LONG_LINE = (
    "我已经打了三次电话了，每次都说会有人回电话，可是到现在都没有任何人联系我，"
    "你们的服务到底怎么回事，今天必须给我一个明确的答复，否则我就去消费者协会投诉。"
)
CLOSING_PUNCTUATION = "，。、；：！？）」』”’》"
TOFU = ("\u0378", "\u0379")  # unassigned code points: no font has a glyph for them


def is_han(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\U00020000" <= ch <= "\U0003134f"


def cjk_count(text: str) -> int:
    """Han characters and full-width CJK punctuation (，。！？：（） ...): what only a CJK
    face draws (“quotes” are drawn by the Latin face in front of it)."""
    return sum(is_han(c) or "\u3000" <= c <= "\u303f" or "\uff00" <= c <= "\uffef" for c in text)


def words_of(text: str, t: float, t_end: float) -> list[dict[str, Any]]:
    """The ASR's words for a Mandarin line: one per Han character, the line's time shared
    out evenly, punctuation attached to the character before it."""
    chars = [c for c in text if is_han(c)]
    step = (t_end - t) / max(1, len(chars))
    words: list[dict[str, Any]] = []
    for c in text:
        if is_han(c):
            start = t + step * len(words)
            words.append({"w": c, "t": round(start, 3), "t_end": round(start + step, 3), "p": 0.9})
        elif words:
            words[-1]["w"] += c
    return words


def mandarin_call(call_id: str, agent_id: str) -> list[dict[str, Any]]:
    """A finished Mandarin call's events, in the pipeline's shapes."""
    stamp = EventStamper(call_id)
    evs = [
        stamp.make(
            "call.started",
            0.0,
            channels=["agent", "customer"],
            language="zh",
            language_source="config",
            model="base@test",
            mode="live",
            protocol="twilio",
            rule_packs=["zh@1"],
            agent_id=agent_id,
            started_at=1795576334.0,
        )
    ]
    for speaker, t, t_end, text in LINES:
        evs.append(
            stamp.make(
                "transcript.final",
                t,
                t_end=t_end,
                speaker=speaker,
                text=text,
                words=words_of(text, t, t_end),
                language="zh",
            )
        )
        if FORBIDDEN in text:
            at = text.index(FORBIDDEN)
            ws = words_of(text, t, t_end)[at : at + len(FORBIDDEN)]
            evs.append(
                stamp.make(
                    "alert",
                    ws[0]["t"],
                    rule_id="zh_forbidden_language",
                    kind="phrase",
                    severity="critical",
                    audience=["supervisor"],
                    message=CRITICAL_MESSAGE,
                    speaker="agent",
                    evidence={
                        "utterance": text,
                        "matched": FORBIDDEN,
                        "phrase": FORBIDDEN,
                        "speaker": "agent",
                        "t": ws[0]["t"],
                        "t_end": ws[-1]["t_end"],
                        "words": [w["w"] for w in ws],
                    },
                )
            )
    evs.append(
        stamp.make(
            "alert",
            LINES[3][1],
            rule_id="zh_deescalate",
            kind="emotion",
            severity="warning",
            audience=["agent"],
            message=DEESCALATE_MESSAGE,
            speaker="customer",
            evidence={"utterance": LINES[3][3], "label": "angry", "index": 0.81},
        )
    )
    evs.append(
        stamp.make(
            "scorecard",
            LINES[-1][2],
            score=62.5,
            rules=[
                {
                    "rule_id": "zh_forbidden_language",
                    "description": "坐席不得使用服务禁语",
                    "status": "failed",
                    "weight": 3.0,
                    "alerts": 1,
                },
                {
                    "rule_id": "zh_recording_disclosure",
                    "description": "坐席在通话开始 30 秒内告知客户本次通话会被录音",
                    "status": "passed",
                    "weight": 3.0,
                    "alerts": 0,
                },
            ],
        )
    )
    evs.append(stamp.make("call.ended", LINES[-1][2], reason="completed"))
    return evs


# -- the server ----------------------------------------------------------------------------------
@dataclass
class Server:
    state: App
    http: str
    loop: asyncio.AbstractEventLoop

    def publish(self, ev: dict[str, Any], agent_id: str) -> None:
        """Publish on the server's bus, on its event loop (as a call's session does)."""

        async def put() -> None:
            self.state.bus.publish(ev, agent_id)

        asyncio.run_coroutine_threadsafe(put(), self.loop).result(timeout=10)


@contextmanager
def serve(state: App) -> Iterator[Server]:
    """``assist.demo.running_server``, keeping hold of the server's event loop."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(state.config, state=state),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
        )
    )
    loops: list[asyncio.AbstractEventLoop] = []

    async def run() -> None:
        loops.append(asyncio.get_running_loop())
        await server.serve()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    http = f"http://127.0.0.1:{port}"
    wait_until(lambda: _healthy(http) or not thread.is_alive(), "the server to start", timeout_s=30)
    assert thread.is_alive() and loops, "the server did not start"
    try:
        yield Server(state, http, loops[0])
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _healthy(http: str) -> bool:
    try:
        return httpx.get(f"{http}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def server(asr, packs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    """A server without the heavy extras, its store holding the ended Mandarin call."""
    home = tmp_path_factory.mktemp("cjk")
    state = make_state(
        asr,
        packs,
        db_url=f"sqlite:///{home / 'cjk.db'}",
        assist=False,
        emotion=False,
        diarize=False,
    )
    assert state.store is not None
    evs = mandarin_call(STORED, AGENT)
    report = {**report_from_events(evs), "events": evs}
    report.pop("rebuilt_from_events", None)
    state.store.save_report(report, mode="live", status="ended")
    try:
        with serve(state) as s:
            yield s
    finally:
        state.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    need_chinese_font()  # the board's pages under AppTest and the search run without one
    with chromium() as b:
        yield b


@pytest.fixture
def tab(browser: Browser) -> Iterator[Page]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 820})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        ctx.close()
    assert not errors, f"the page threw: {errors}"


@pytest.fixture
def on_server(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """Board pages under AppTest read the server from the environment."""
    monkeypatch.setenv("CALLWATCH_SERVER", server.http)
    monkeypatch.setenv("CALLWATCH_USER", "wang (supervisor)")
    monkeypatch.delenv("CALLWATCH_TIMEOUT_S", raising=False)
    return server


def shot(page: Page, name: str, full: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), animations="disabled", full_page=full)
    return path


# -- how the browser drew it ---------------------------------------------------------------------
def platform_fonts(page: Page, selector: str) -> list[tuple[str, int]]:
    """(family, glyphs) of the platform fonts Chromium drew ``selector``'s own text with."""
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
        node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        assert node, f"no element {selector}"
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    finally:
        cdp.detach()
    return [(str(f["familyName"]), int(f["glyphCount"])) for f in fonts]


def assert_simplified_chinese_glyphs(page: Page, selector: str, text: str) -> None:
    """Every Han character and CJK punctuation mark of ``text`` in ``selector`` was drawn
    from a Simplified Chinese face, and none from a Japanese, Traditional or Korean one."""
    fonts = platform_fonts(page, selector)
    sc = sum(n for family, n in fonts if "CJK SC" in family or family.endswith(" SC"))
    other = [f for f, _ in fonts if any(k in f for k in ("CJK JP", "CJK TC", "CJK KR", "CJK HK"))]
    assert sc >= cjk_count(text) and not other, f"{selector} drawn with {fonts}"


_DRAW = """(el, chars) => {
  // draw each character alone, in the element's font and language, and keep its pixels
  const style = getComputedStyle(el);
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 64;
  canvas.lang = el.closest("[lang]") ? el.closest("[lang]").lang : "";
  document.body.append(canvas);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const out = chars.map((ch) => {
    ctx.clearRect(0, 0, 64, 64);
    ctx.font = `${style.fontWeight} 48px ${style.fontFamily}`;
    ctx.textBaseline = "top";
    ctx.fillText(ch, 4, 4);
    const px = ctx.getImageData(0, 0, 64, 64).data;
    let ink = 0, sig = "";
    for (let i = 3; i < px.length; i += 4) { ink += px[i] > 0 ? 1 : 0; sig += px[i] > 127 ? "1" : "0"; }
    return { ch, ink, sig };
  });
  canvas.remove();
  return out;
}"""


def assert_real_glyphs(page: Page, selector: str, text: str) -> None:
    """The element's font draws each distinct Han character of ``text`` as a glyph of its
    own, not the one tofu box every missing character gets."""
    han = sorted({c for c in text if is_han(c)})[:12]
    drawn = page.eval_on_selector(selector, _DRAW, [*han, *TOFU])
    tofu = {d["sig"] for d in drawn[len(han) :]}
    assert len(tofu) == 1, "the two missing code points should draw the same box"
    chars = drawn[: len(han)]
    missing = [d["ch"] for d in chars if d["sig"] in tofu or d["ink"] == 0]
    assert not missing, f"no glyph (tofu) for {''.join(missing)} in {selector}"
    assert len({d["sig"] for d in chars}) == len(chars), "distinct characters drew alike"


# -- the agent panel -----------------------------------------------------------------------------
def short_id(call_id: str) -> str:
    chars = list(call_id)  # code points, as the panel must count them
    return f"{''.join(chars[:8])}…{''.join(chars[-8:])}" if len(chars) > 22 else call_id


def test_agent_panel_shows_a_mandarin_call(server: Server, tab: Page) -> None:
    tab.goto(f"{server.http}/agent?agent={AGENT}")
    tab.wait_for_function("window.__callwatch && window.__callwatch.connection === 'live'")
    wait_until(lambda: server.state.bus.subscribers >= 1, "the panel's subscription", timeout_s=10)

    stamp = EventStamper(LIVE)
    template = {e["seq"]: e for e in mandarin_call(LIVE, AGENT)}
    sent: list[dict[str, Any]] = []

    def send(type_: str, t: float, **fields: Any) -> dict[str, Any]:
        ev = stamp.make(type_, t, **fields)
        server.publish(ev, AGENT)
        sent.append(ev)
        return ev

    started = template[1]
    send("call.started", 0.0, **{k: v for k, v in started.items() if k not in _ENVELOPE})
    first = LINES[1]
    send(
        "transcript.partial",
        first[1],
        t_end=first[2] - 1,
        speaker="customer",
        text=first[3][:10],
        words=[],
    )
    expect(tab.locator("#transcript .line.partial .say")).to_have_text(first[3][:10])
    for speaker, t, t_end, text in LINES:
        send(
            "transcript.final",
            t,
            t_end=t_end,
            speaker=speaker,
            text=text,
            words=words_of(text, t, t_end),
            language="zh",
        )
    send(
        "suggestion",
        first[2],
        suggestion_id="zh-退款-1",
        source="playbook",
        intent="refund",
        rule_id=None,
        severity="info",
        score=0.83,
        trigger={"t": first[1], "text": "我要退款"},
        kb=[],
        blocked_by=[],
        **SUGGESTION,
    )
    alerts = [e for e in template.values() if e["type"] == "alert"]
    for a in alerts:  # the supervisor-only one must not reach the agent's screen
        send("alert", a["t"], **{k: v for k, v in a.items() if k not in _ENVELOPE})

    # the text is there exactly as sent, once each, in order
    expect(tab.locator("#transcript .line:not(.partial)")).to_have_count(len(LINES))
    expect(tab.locator("#transcript .line.partial")).to_have_count(0)
    said = tab.eval_on_selector_all(
        "#transcript .line:not(.partial)",
        "els => els.map(e => [e.dataset.speaker, e.querySelector('.say').textContent,"
        " e.querySelector('.say').lang, e.querySelector('.who').lang])",
    )
    assert said == [[s, text, "zh-Hans", ""] for s, _, _, text in LINES]
    card = tab.locator(".card").first
    expect(card.locator(".card-title")).to_have_text(SUGGESTION["title"])
    assert card.locator(".line-text").all_text_contents() == SUGGESTION["script"]
    expect(card.locator(".reason")).to_contain_text("heard “我要退款”")
    assert card.locator(".reason span[lang='zh-Hans']").all_text_contents() == [
        SUGGESTION["reason"],
        "我要退款",
    ]
    # the card's id-safe element ids stay unique and point at the right title
    labelled = tab.eval_on_selector(
        ".card", "c => document.getElementById(c.getAttribute('aria-labelledby')).textContent"
    )
    assert labelled == SUGGESTION["title"]
    alert = tab.locator("#alerts .alert")
    expect(alert).to_have_count(1)
    expect(alert.locator(".alert-msg")).to_have_text(DEESCALATE_MESSAGE)
    assert alert.locator(".alert-msg").get_attribute("lang") == "zh-Hans"
    assert tab.locator(".alert-meta .sev").first.get_attribute("lang") is None  # "Warning"
    # screen readers hear the Chinese parts as Chinese
    heard = tab.locator("#announce-polite span[lang='zh-Hans'], #announce-assertive span[lang]")
    assert SUGGESTION["title"] in heard.all_text_contents()
    # the long id is shortened by characters, never inside a surrogate pair
    expect(tab.locator("#call-id")).to_have_text(short_id(LIVE))
    assert tab.locator("#call-id").get_attribute("title") == LIVE

    # fonts: Simplified Chinese faces from the stack, real glyphs
    family = tab.eval_on_selector(".line .say", "e => getComputedStyle(e).fontFamily")
    assert "Noto Sans CJK SC" in family and not family.startswith("system-ui"), family
    for sel, text in (
        ("#transcript .line:nth-child(2) .say", LINES[1][3]),
        (".card .card-title", SUGGESTION["title"]),
        (".card .line-text", SUGGESTION["script"][0]),
        ("#alerts .alert-msg", DEESCALATE_MESSAGE),
    ):
        assert_simplified_chinese_glyphs(tab, sel, text)
    assert_real_glyphs(tab, "#transcript .line:nth-child(2) .say", LINES[1][3])
    shot(tab, "cjk_agent_panel")

    # a long line without spaces wraps between characters, never before closing punctuation
    send(
        "transcript.final",
        20.0,
        t_end=30.0,
        speaker="customer",
        text=LONG_LINE,
        words=words_of(LONG_LINE, 20.0, 30.0),
        language="zh",
    )
    tab.set_viewport_size({"width": 760, "height": 1000})
    say = "#transcript .line:last-child .say"
    expect(tab.locator(say)).to_have_text(LONG_LINE)
    wrap = tab.eval_on_selector(say, _LINE_STARTS)
    assert wrap["lines"] >= 3 and not wrap["overflow"], wrap
    assert not set(wrap["starts"]) & set(CLOSING_PUNCTUATION), wrap
    tab.locator(say).scroll_into_view_if_needed()
    shot(tab, "cjk_agent_panel_narrow")


_ENVELOPE = ("type", "call_id", "seq", "t", "emitted_at")

_LINE_STARTS = """(el) => {
  // the first character of every visual line after the first, and whether the text overflows
  const node = el.firstChild, r = document.createRange(), starts = [];
  let top = null, i = 0;
  for (const ch of node.textContent) {
    r.setStart(node, i); r.setEnd(node, i + ch.length); i += ch.length;
    const rect = r.getClientRects()[0];
    if (!rect) continue;
    if (top !== null && rect.top > top + 4) starts.push(ch);
    top = rect.top;
  }
  return { starts, lines: starts.length + 1, overflow: el.scrollWidth > el.clientWidth + 1 };
}"""


# -- the board under Streamlit's test harness ------------------------------------------------------


def test_board_pages_show_the_mandarin_call(on_server: Server) -> None:
    detail = CallwatchClient(on_server.http).call(STORED)
    assert detail["language"] == "zh"
    assert [t["text"] for t in detail["transcript"]] == [text for *_, text in LINES]

    at = app_page("call", call=STORED)
    assert not at.exception, at.exception
    lines = [
        m.value for m in at.markdown if "[**Agent**]" in m.value or "[**Customer**]" in m.value
    ]
    assert lines == [transcript_markdown(t) for t in detail["transcript"]]
    for *_, text in LINES:
        assert any(text in line for line in lines), text  # unescaped, uncut
    text = shown(at)
    assert CRITICAL_MESSAGE in text and DEESCALATE_MESSAGE in text
    card = at.dataframe[0].value
    assert "坐席不得使用服务禁语" in set(card["What it checks"])

    # a live partial line in Chinese is grey but not slanted; an English one keeps its italics
    zh = transcript_markdown({"speaker": "customer", "t": 3.0, "text": "我要退"}, partial=True)
    en = transcript_markdown({"speaker": "customer", "t": 3.0, "text": "I want"}, partial=True)
    assert zh.endswith("· 我要退 …]") and en.endswith("· *I want …*]")

    alerts = app_page("alerts")
    assert not alerts.exception, alerts.exception
    text = shown(alerts)
    assert f"**{md_escape(CRITICAL_MESSAGE)}**" in text
    assert f"> {md_escape(LINES[2][3])}" in text  # the evidence: what the agent said

    floor = app_page("floor")
    assert not floor.exception, floor.exception
    banner = " ".join(e.value for e in floor.error)  # open critical alerts, ended calls too
    assert CRITICAL_MESSAGE in banner and "Li Na" in banner


def test_board_search_finds_chinese_phrases(on_server: Server) -> None:
    client = CallwatchClient(on_server.http)
    hits = client.search("退款")
    assert [(h["call_id"], h["speaker"], h["text"]) for h in hits] == [
        (STORED, "customer", LINES[1][3])
    ]
    assert [h["text"] for h in client.search("投诉")] == [LINES[3][3]]
    assert client.search("退货") == []  # a phrase not said finds nothing

    at = AppTest.from_file(str(PAGES / "audits.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    at.text_input(key="audit_q").input("退款").run()
    assert not at.exception, at.exception
    table = at.dataframe[-1].value
    assert list(table["call_id"]) == [STORED] and list(table["line"]) == [LINES[1][3]]


# -- exports -------------------------------------------------------------------------------------
def test_exports_keep_chinese(server: Server, tab: Page) -> None:
    base = f"{server.http}/v1/calls/{STORED}/export"
    raw = httpx.get(base, params={"format": "json"}, timeout=30)
    assert LINES[1][3].encode() in raw.content  # UTF-8 as is, not \\u escapes
    back = raw.json()
    assert [t["text"] for t in back["transcript"]] == [text for *_, text in LINES]
    assert back["alerts"][0]["message"] == CRITICAL_MESSAGE

    api_csv = httpx.get(base, params={"format": "csv"}, timeout=30)
    assert api_csv.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(api_csv.content.decode("utf-8"))))
    assert [r["text"] for r in rows if r["kind"] == "transcript"] == [t for *_, t in LINES]
    # the board's download is the same CSV with a byte-order mark, for Excel
    download = _exporter(CallwatchClient(server.http), STORED, "csv")()
    assert download.startswith(UTF8_BOM) and download[len(UTF8_BOM) :] == api_csv.content
    assert download.decode("utf-8-sig") == api_csv.content.decode("utf-8")
    assert _exporter(CallwatchClient(server.http), STORED, "json")() == raw.content

    doc = httpx.get(base, params={"format": "html"}, timeout=30).text
    for speaker, _, _, text in LINES:  # each line in its bubble, in the call's language
        who = f'<span class="who">{speaker}</span>'
        assert f'<div class="bubble" lang="zh">{who}{html.escape(text)}</div>' in doc
    assert f'<span lang="zh-Hans">{html.escape(CRITICAL_MESSAGE)}</span>' in doc
    assert "Characters/min" in doc and "Words/min" not in doc  # one word per character
    tab.set_content(doc)
    bubble = "table.transcript tr.line:nth-of-type(2) .bubble"
    assert tab.locator(bubble).inner_text().endswith(LINES[1][3])
    assert_simplified_chinese_glyphs(tab, bubble, LINES[1][3])
    assert_simplified_chinese_glyphs(tab, "table.alerts td span[lang]", CRITICAL_MESSAGE)
    assert_real_glyphs(tab, "table.alerts td span[lang]", CRITICAL_MESSAGE)
    shot(tab, "cjk_export", full=True)


# -- the board in a browser ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def board_url(server: Server) -> Iterator[str]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = run_board([server.http], port=port, log_path=ARTIFACTS / "cjk_board.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, timeout_s=90, proc=proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def test_board_call_page_draws_simplified_chinese(board_url: str, tab: Page) -> None:
    tab.set_viewport_size({"width": 1400, "height": 1400})
    tab.goto(f"{board_url}/call?call={STORED}")
    line = tab.get_by_text(LINES[1][3], exact=False).first
    expect(line).to_be_visible(timeout=60_000)
    alert = tab.get_by_text(CRITICAL_MESSAGE, exact=False).first
    expect(alert).to_be_visible()
    assert tab.evaluate("document.documentElement.lang") == "en"  # the page stays English
    line.evaluate("e => e.setAttribute('data-cjk-probe', 'line')")
    alert.evaluate("e => e.setAttribute('data-cjk-probe', 'alert')")
    assert_simplified_chinese_glyphs(tab, "[data-cjk-probe=line]", LINES[1][3])
    assert_simplified_chinese_glyphs(tab, "[data-cjk-probe=alert]", CRITICAL_MESSAGE)
    assert_real_glyphs(tab, "[data-cjk-probe=line]", LINES[1][3])
    family = line.evaluate("e => getComputedStyle(e).fontFamily")
    assert "Noto Sans CJK SC" in family, family
    # the whole page: Streamlit scrolls inside its main area, so grow the window to fit
    height = tab.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    tab.set_viewport_size({"width": 1400, "height": max(900, int(height) + 40)})
    tab.wait_for_timeout(1500)  # charts and tables redraw at the new size
    path = shot(tab, "cjk_board_call", full=True)
    assert path.stat().st_size > 10_000
