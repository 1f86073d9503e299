"""Exports of one call's report (JSON, CSV call timeline, printable HTML), from a real audit
of a demo call (real tiny.en Whisper, default rules) and through a running server."""

from __future__ import annotations

import asyncio
import copy
import csv
import html
import io
import json
import re
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from assist.audit import audit_file
from assist.export import safe_filename
from assist.replay import ReplayResult, replay
from assist.report import (
    TIMELINE_COLUMNS,
    call_to_csv,
    call_to_html,
    call_to_json,
    evidence_text,
    to_html,
)
from assist.server import App
from tests.conftest import DEMO
from tests.live_server import make_state, running_server

pytestmark = pytest.mark.slow

MANDARIN = "您好，请问有什么可以帮您"
# what the breach call gets wrong (demo/calls/breach_call.timeline.json "marks")
BREACHES = {"recording_disclosure", "dead_air", "forbidden_language", "agent_speech_rate"}


@pytest.fixture(scope="module")
def report(asr, packs) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return audit_file(str(DEMO / "breach_call.wav"), packs, asr)


def variant(report: dict[str, Any], **changes: Any) -> dict[str, Any]:
    r = copy.deepcopy(report)
    r.update(changes)
    return r


# -- HTML structure helpers -------------------------------------------------------------------
VOID = {"meta", "link", "br", "hr", "img", "input", "col", "wbr", "area", "base", "source"}


class Checker(HTMLParser):
    """Balanced tags, plus what the transcript table says, row by row."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []
        self.lines: list[tuple[str, str]] = []  # (td class, text) of transcript rows
        self._in_transcript = False
        self._side: str | None = None
        self._who = False
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)
        cls = (a.get("class") or "").split()
        if tag == "table" and "transcript" in cls:
            self._in_transcript = True
        if self._in_transcript and tag == "td" and {"agent", "customer", "other"} & set(cls):
            self._side = cls[0]
            self._text = []
        if self._side and tag == "span" and "who" in cls:
            self._who = True

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()
        if tag == "span" and self._who:
            self._who = False
        if tag == "td" and self._side:
            self.lines.append((self._side, "".join(self._text).strip()))
            self._side = None
        if tag == "table":
            self._in_transcript = False

    def handle_data(self, data: str) -> None:
        if self._side and not self._who:
            self._text.append(data)


def check_html(doc: str) -> Checker:
    p = Checker()
    p.feed(doc)
    p.close()
    assert not p.errors, p.errors[:5]
    assert p.stack == [], f"unclosed tags: {p.stack}"
    return p


# -- the renderers on a real audit ------------------------------------------------------------
def test_the_audit_found_what_the_demo_call_gets_wrong(report: dict[str, Any]) -> None:
    fired = {a["rule_id"] for a in report["alerts"]}
    assert fired >= BREACHES, fired
    assert report["transcript"], "the demo call was transcribed"


def test_html_holds_the_whole_report(report: dict[str, Any]) -> None:
    doc = call_to_html(report)
    assert doc.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in doc and '<html lang="en">' in doc
    assert html.escape(report["call_id"]) in doc
    for tr in report["transcript"]:
        assert html.escape(tr["text"]) in doc, tr["text"]
    for a in report["alerts"]:
        assert html.escape(a["message"]) in doc, a["message"]
    fired = {a["rule_id"] for a in report["alerts"]}
    for rule in report["scorecard"]["rules"]:
        assert f"<code>{rule['rule_id']}</code>" in doc
    score = report["scorecard"]["score"]
    assert re.search(rf'class="score [^"]+"><span class="num">{score:.0f}</span>', doc)
    assert f"{len([r for r in report['scorecard']['rules'] if r['status'] == 'failed'])} of" in doc
    assert len(fired) >= 4
    # the forbidden phrase's evidence: the utterance it was said in
    forbidden = next(a for a in report["alerts"] if a["rule_id"] == "forbidden_language")
    assert html.escape(forbidden["evidence"]["utterance"]) in doc
    # stats, speakers, header facts
    assert "Talk statistics" in doc and "Words/min" in doc
    assert "channel" in doc and "default@1" in doc and html.escape(report["model"]) in doc
    assert "Generated " in doc and "by callwatch 0.1.0" in doc
    # no script, no external resource of any kind
    assert "<script" not in doc.lower()
    assert not re.search(r"(src|href)=\"(?!#)", doc), "only in-page links"
    assert "@media print" in doc


def test_html_transcript_is_two_sided_and_in_call_order(report: dict[str, Any]) -> None:
    p = check_html(call_to_html(report))
    got = [(side, text) for side, text in p.lines]
    want = [(tr["speaker"], tr["text"]) for tr in report["transcript"]]
    assert got == want
    assert {side for side, _ in got} == {"agent", "customer"}


def test_html_parses_with_balanced_tags(report: dict[str, Any]) -> None:
    p = check_html(call_to_html(report))
    assert p.tags[0] == "html" and "style" in p.tags
    assert p.tags.count("section") >= 1


def test_html_escapes_untrusted_text(report: dict[str, Any]) -> None:
    evil = "<script>alert(1)</script>"
    r = variant(report, call_id='x"><b>id</b>', agent_id="<i>emma</i>")
    r["transcript"][0]["text"] = evil
    r["transcript"][1]["speaker"] = "<img src=x onerror=alert(2)>"
    r["alerts"][0]["message"] = 'said "<u>hi</u>" & left'
    r["alerts"][0]["evidence"] = {"utterance": "</td></tr></table><h1>owned</h1>"}
    r["alerts"][0]["severity"] = '"><script>alert(3)</script>'
    r["suggestions"] = [{"t": 1.0, "source": "<s>", "title": "<marquee>", "reason": "x"}]
    r["emotion"] = {"<c>": {"labels": {"<angry>": 2}, "peak_anger_index": 0.5}}
    doc = call_to_html(r)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    assert "<script" not in doc.lower()
    for raw in ("<img", "<b>id", "<i>emma", "<u>", "<h1>owned", "<marquee", "<s>", "<c>"):
        assert raw not in doc, raw
    assert "said &quot;&lt;u&gt;hi&lt;/u&gt;&quot; &amp; left" in doc
    assert "x&quot;&gt;&lt;b&gt;id&lt;/b&gt;" in doc
    check_html(doc)  # the injected markup did not break the structure either


def test_missing_sections_say_so_in_words(report: dict[str, Any]) -> None:
    r = variant(report, alerts=[], emotion={}, suggestions=[], diarization=None)
    doc = call_to_html(r)
    assert "No alerts were raised on this call." in doc
    assert "No emotion readings for this call" in doc
    assert "No suggestions were made to the agent" in doc
    assert "No speaker separation details" in doc
    check_html(doc)
    # a bare report (old store rows, a call that just started) still renders
    bare = call_to_html({"call_id": "bare"})
    assert "Nothing was transcribed on this call." in bare
    assert "No QA rules were scored" in bare and ">n/a<" in bare
    check_html(bare)


def test_emotion_summary_per_speaker(report: dict[str, Any]) -> None:
    emo = {
        "customer": {
            "labels": {"neutral": 3, "angry": 5},
            "peak_anger_index": 0.82,
            "escalations": 1,
            "last": {"label": "angry", "anger_index": 0.7, "escalated": True, "t": 61.0},
        }
    }
    doc = call_to_html(variant(report, emotion=emo))
    assert "angry 5, neutral 3" in doc and "0.82" in doc and "angry at 01:01" in doc


def test_mandarin_survives_every_format(report: dict[str, Any]) -> None:
    r = variant(report, language="zh")
    r["transcript"][1]["text"] = MANDARIN
    doc = call_to_html(r)
    assert MANDARIN in doc and 'lang="zh"' in doc
    assert MANDARIN in call_to_json(r)  # as is, not \\u escapes
    assert json.loads(call_to_json(r))["transcript"][1]["text"] == MANDARIN
    rows = list(csv.DictReader(io.StringIO(call_to_csv(r))))
    assert MANDARIN in [row["text"] for row in rows]


def test_json_is_the_report_with_its_events(report: dict[str, Any]) -> None:
    text = call_to_json(report)
    back = json.loads(text)
    assert back == json.loads(json.dumps(report))
    assert back["events"] and back["events"][0]["type"] == "call.started"
    assert "\n  " in text, "pretty-printed"


def test_csv_is_the_call_timeline(report: dict[str, Any]) -> None:
    text = call_to_csv(report)
    assert text.startswith("kind,t,t_end,")  # the header comes first, nothing before it
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == TIMELINE_COLUMNS
    rows = list(reader)
    kinds = [r["kind"] for r in rows]
    assert kinds.count("transcript") == len(report["transcript"])
    assert kinds.count("alert") == len(report["alerts"])
    assert kinds.count("suggestion") == len(report["suggestions"])
    times = [float(r["t"]) for r in rows]
    assert times == sorted(times)
    alerts = [r for r in rows if r["kind"] == "alert"]
    assert {r["rule_id"] for r in alerts} >= BREACHES
    forbidden = next(r for r in alerts if r["rule_id"] == "forbidden_language")
    assert forbidden["severity"] == "critical" and forbidden["speaker"] == "agent"
    assert "calm down" in forbidden["text"].lower() and "calm down" in forbidden["detail"].lower()
    lines = [r for r in rows if r["kind"] == "transcript"]
    assert [(r["speaker"], r["text"]) for r in lines] == [
        (t["speaker"], t["text"]) for t in report["transcript"]
    ]


def test_csv_quotes_awkward_text_and_defuses_formulas(report: dict[str, Any]) -> None:
    r = variant(report)
    r["transcript"][0]["text"] = 'one, "two"\nthree'
    r["transcript"][1]["text"] = '=HYPERLINK("http://x","y")'
    rows = [x for x in csv.DictReader(io.StringIO(call_to_csv(r))) if x["kind"] == "transcript"]
    texts = [x["text"] for x in rows]
    assert 'one, "two"\nthree' in texts
    assert '\'=HYPERLINK("http://x","y")' in texts  # shown as text, never run


def test_evidence_in_words() -> None:
    assert evidence_text({"utterance": "Please calm down.", "matched": "calm down"}).startswith(
        "“Please calm down.” (matched “calm down”)"
    )
    assert evidence_text({"duration": 10.0, "min_s": 10.0, "t": 5}) == "duration: 10; min: 10 s"
    assert evidence_text(None) == "" and evidence_text({}) == ""


def test_several_calls_in_one_document(report: dict[str, Any]) -> None:
    other = variant(report, call_id="second-call")
    doc = to_html([report, other])
    check_html(doc)
    assert 'id="call-0"' in doc and 'id="call-1"' in doc
    assert "Call QA reports" in doc and 'href="#call-1"' in doc
    assert doc.index(report["call_id"]) < doc.index("second-call")


def test_safe_filename() -> None:
    assert safe_filename("audit-breach_call-8b2b611d", "csv") == "audit-breach_call-8b2b611d.csv"
    assert safe_filename('a/b "c"\r\nX-Evil: 1', "json") == "a_b_c_X-Evil_1.json"
    assert safe_filename("../..", "html") == "call.html"
    assert safe_filename("通话", "html") == "call.html"


# -- the route ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def state(asr, packs) -> Iterator[App]:  # type: ignore[no-untyped-def]
    st = make_state(asr, packs)
    yield st
    st.close()


@pytest.fixture(scope="module")
def ws_url(state: App) -> Iterator[str]:
    with running_server(state) as u:
        yield u


@pytest.fixture(scope="module")
def http(ws_url: str) -> str:
    return ws_url.replace("ws://", "http://")


MEDIA = {"json": "application/json", "csv": "text/csv", "html": "text/html"}


def test_route_exports_a_stored_call(state: App, http: str, report: dict[str, Any]) -> None:
    assert state.store is not None
    state.store.save_report(report)
    cid = report["call_id"]
    for fmt, media in MEDIA.items():
        r = httpx.get(f"{http}/v1/calls/{cid}/export", params={"format": fmt}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == f"{media}; charset=utf-8"
        assert r.headers["content-disposition"] == f'attachment; filename="{cid}.{fmt}"'
        assert r.headers["x-content-type-options"] == "nosniff"
    default = httpx.get(f"{http}/v1/calls/{cid}/export", timeout=30)
    assert default.headers["content-type"].startswith("application/json")
    body = default.json()
    assert body["call_id"] == cid and body["status"] == "ended"
    assert len(body["events"]) == len(report["events"]), "the stored events come along"
    assert body["transcript"] == report["transcript"]
    doc = httpx.get(f"{http}/v1/calls/{cid}/export?format=HTML", timeout=30).text
    check_html(doc)
    assert all(html.escape(a["message"]) in doc for a in report["alerts"])
    rows = list(
        csv.DictReader(io.StringIO(httpx.get(f"{http}/v1/calls/{cid}/export?format=csv").text))
    )
    assert sum(r["kind"] == "alert" for r in rows) == len(report["alerts"])


def test_route_sanitises_the_file_name(state: App, http: str, report: dict[str, Any]) -> None:
    assert state.store is not None
    cid = 'odd "id" ü'
    state.store.save_report(variant(report, call_id=cid, events=[]))
    r = httpx.get(f"{http}/v1/calls/{cid}/export", params={"format": "csv"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"] == 'attachment; filename="odd_id.csv"'


def test_route_errors(http: str, state: App, report: dict[str, Any]) -> None:
    assert state.store is not None
    state.store.save_report(report)
    r = httpx.get(f"{http}/v1/calls/no-such-call/export", params={"format": "html"}, timeout=30)
    assert r.status_code == 404
    assert r.json()["detail"] == "no call 'no-such-call'"
    r = httpx.get(f"{http}/v1/calls/{report['call_id']}/export?format=pdf", timeout=30)
    assert r.status_code == 422
    assert "'pdf'" in r.json()["detail"] and "json, csv, html" in r.json()["detail"]


def test_route_exports_a_live_call_then_its_end(ws_url: str, http: str) -> None:
    """A call still on the line exports what it has so far; once over, all of it."""
    cid = "export-live-breach"
    release = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = asyncio.run(
                replay(
                    ws_url,
                    str(DEMO / "breach_call.wav"),
                    speed=8.0,
                    call_id=cid,
                    agent_id="emma",
                    hold_at_s=24.0,
                    release=release,
                )
            )
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        live: dict[str, Any] = {}
        while time.monotonic() < deadline and "error" not in box:
            r = httpx.get(f"{http}/v1/calls/{cid}/export", timeout=30)
            if r.status_code == 200 and len(r.json()["transcript"]) >= 4:
                live = r.json()
                break
            time.sleep(0.2)
        assert "error" not in box, box.get("error")
        assert live, "the live call never had four transcript lines"
        assert live["status"] == "active" and live["agent_id"] == "emma"
        assert live["scorecard"]["rules"], "the running scorecard"
        doc = httpx.get(f"{http}/v1/calls/{cid}/export?format=html", timeout=30).text
        assert "still in progress" in doc
        assert html.escape(live["transcript"][0]["text"]) in doc
        check_html(doc)
    finally:
        release.set()
        thread.join(120)
    assert "error" not in box, box.get("error")
    result: ReplayResult = box["result"]
    assert any(e["type"] == "call.ended" for e in result.events)
    done = httpx.get(f"{http}/v1/calls/{cid}/export", timeout=30).json()
    assert done["status"] == "ended"
    assert {a["rule_id"] for a in done["alerts"]} >= {"forbidden_language", "dead_air"}
    assert any(e["type"] == "call.ended" for e in done["events"])
    doc = httpx.get(f"{http}/v1/calls/{cid}/export?format=html", timeout=30).text
    assert "still in progress" not in doc and "agent emma" in doc
