"""The board's Floor, Alerts and Call pages under Streamlit's own test harness (AppTest),
against a real server with the demo calls replayed into it and two calls held live: what a
supervisor sees (the angry call first, the alert text, the transcript, the scorecard), what
acknowledging does, and the messages for a server that is down, slow or has no calls.

Auto refresh (``st.fragment(run_every=...)``) does not tick under AppTest: each test checks
a first render (and the rerun after a click)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.client import CallwatchClient, alert_id
from dashboard.common import call_link, md_escape
from dashboard.pages.call import highlighted_index, live_partials
from dashboard.pages.floor import attention_key
from dashboard.timeline import timeline_chart, timeline_data, timeline_panels
from tests.board_server import closed_port_url, empty_server, sleepy_server
from tests.conftest import REPO

PAGES = REPO / "dashboard" / "pages"
SUPERVISOR = "sam (supervisor)"
slow = pytest.mark.slow


def page(name: str, **query: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=60)
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def shown(at: AppTest) -> str:
    """Everything written on the page, one element per line."""
    parts: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "error", "warning"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [str(e.value) for e in at.info] + [str(e.value) for e in at.success]
    parts += [f"{m.label}: {m.value}" for m in at.metric]
    return "\n".join(parts)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Point the pages at a URL: ``server(url)``."""

    def use(url: str, timeout_s: float | None = None) -> None:
        monkeypatch.setenv("CALLWATCH_SERVER", url)
        monkeypatch.setenv("CALLWATCH_USER", SUPERVISOR)
        if timeout_s is not None:
            monkeypatch.setenv("CALLWATCH_TIMEOUT_S", str(timeout_s))
        else:
            monkeypatch.delenv("CALLWATCH_TIMEOUT_S", raising=False)

    yield use


# -- pure parts (no server) --------------------------------------------------------------------
def test_floor_order_critical_then_angry_then_warnings_then_longest() -> None:
    def call(cid: str, dur: float, anger: float = 0.1, label: str = "neutral") -> dict[str, Any]:
        reading = {"label": label, "anger_index": anger, "escalated": label == "angry"}
        return {"call_id": cid, "duration_s": dur, "mood": {"customer": reading}}

    calls = [
        call("long", 600),
        call("warned", 30),
        call("angry-mild", 20, 0.6, "angry"),
        call("angry-hot", 10, 0.9, "angry"),
        call("critical", 5),
    ]
    open_by_call = {"warned": {"warning": 1}, "critical": {"critical": 1}}
    ordered = sorted(calls, key=lambda c: attention_key(c, open_by_call.get(c["call_id"], {})))
    assert [c["call_id"] for c in ordered] == [
        "critical",
        "angry-hot",
        "angry-mild",
        "warned",
        "long",
    ]


def test_partials_are_the_newest_per_speaker_after_the_last_final() -> None:
    finals = [{"speaker": "agent", "t": 1.0, "t_end": 3.0, "text": "hello"}]
    partials = [
        {"speaker": "agent", "t": 1.0, "seq": 2, "text": "hel"},  # became the final
        {"speaker": "customer", "t": 3.5, "seq": 5, "text": "I want"},
        {"speaker": "customer", "t": 3.5, "seq": 7, "text": "I want to cancel"},
        {"speaker": "agent", "t": 6.0, "seq": 8, "text": "Sure"},
    ]
    got = live_partials(finals, partials)
    assert [(p["speaker"], p["text"]) for p in got] == [
        ("customer", "I want to cancel"),
        ("agent", "Sure"),
    ]
    lines = [{"t": 0.0, "t_end": 2.0}, {"t": 3.0, "t_end": 5.0}, {"t": 8.0, "t_end": 9.0}]
    assert highlighted_index(lines, 4.0) == 1
    assert highlighted_index(lines, 6.5) == 1  # between lines: the one before
    assert highlighted_index(lines, None) is None


def test_call_text_cannot_format_the_page() -> None:
    said = "[click](http://x) **now** :red[alert] <b>hi</b> $x$"
    safe = md_escape(said)
    for raw in ("[click]", "**now**", ":red[", "<b>", "$x$"):
        assert raw not in safe
    assert call_link("a b", 51.25) == "call?call=a+b&t=51.2"
    assert call_link("c1") == "call?call=c1"


def test_timeline_layers_from_a_call() -> None:
    detail = {
        "duration_s": 40.0,
        "transcript": [
            {"speaker": "agent", "t": 0.5, "t_end": 4.0, "text": "Hello"},
            {"speaker": "customer", "t": 5.0, "t_end": 9.0, "text": "I want to cancel"},
        ],
        "silences": [{"t": 10.0, "t_end": 24.0, "duration": 14.0}],
        "alerts": [
            {"t": 20.0, "rule_id": "dead_air", "severity": "warning", "message": "Dead air"},
        ],
    }
    events = [
        {"type": "emotion", "speaker": "customer", "t": 5.0, "t_end": 9.0, "anger_index": 0.7,
         "valence": -0.6, "label": "angry"},
        {"type": "emotion", "speaker": "agent", "t": 0.5, "t_end": 4.0, "anger_index": 0.1,
         "valence": 0.5, "label": "positive"},
    ]  # fmt: skip
    data = timeline_data(detail, events)
    assert list(data.talk["speaker"]) == ["agent", "customer"]
    assert data.silences.iloc[0].to_dict() == {"t": 10.0, "t_end": 24.0, "duration": 14.0}
    assert set(data.mood["series"]) == {"anger index", "valence"}
    assert sorted(data.mood["value"]) == [-0.6, 0.7]  # the customer's only
    assert data.hits.iloc[0]["rule_id"] == "dead_air" and data.duration == 40.0
    spec = timeline_chart(detail, events, t_mark=20.0).to_dict()
    assert len(spec["vconcat"]) == 2
    text = str(spec)
    assert "rule_id" in text and "message" in text  # the rule hits' tooltips
    lanes, _ = timeline_panels(detail, events)
    assert lanes.to_dict()["autosize"]["type"] == "fit-x"
    assert timeline_chart({}, []).to_dict()["vconcat"]  # nothing yet: still a chart


# -- against the board's real server -----------------------------------------------------------
@pytest.fixture(scope="module")
def live(board: Any) -> Iterator[dict[str, Any]]:
    """Two calls held live: the angry cancel call (Dana, held at 75 s, after its critical
    caller_angry alert) and the calm clean call (Omar, held later, at 85 s: the longer call)."""
    angry = board.start_live("cancel_call", hold_at_s=75.0, speed=4.0, agent_id="dana")
    calm = board.start_live("clean_call", hold_at_s=85.0, speed=4.0, agent_id="omar")
    try:
        angry.wait_for(
            lambda d: (
                d["duration_s"] >= 74 and any(a["rule_id"] == "caller_angry" for a in d["alerts"])
            ),
            timeout_s=240,
        )
        calm.wait_for(lambda d: d["duration_s"] >= 84, timeout_s=240)
        yield {"angry": angry, "calm": calm}
    finally:
        angry.finish()
        calm.finish()


@slow
def test_floor_puts_the_angry_live_call_first(
    board: Any, live: dict[str, Any], server: Any
) -> None:
    server(board.http)
    at = page("floor")
    assert not at.exception, at.exception
    table: pd.DataFrame = at.dataframe[0].value
    angry, calm = live["angry"], live["calm"]
    assert list(table["Agent"][:2]) == ["Dana", "Omar"]  # the shorter, angry call first
    first = table.iloc[0]
    assert "critical" in first["Needs"] and first["Critical"] >= 1
    assert "angry" in first["Caller mood"] and first["Anger"] > 0.5
    assert angry.call_id in first["Call"] and first["Call"] == call_link(angry.call_id)
    assert calm.call_id in table.iloc[1]["Call"]
    text = shown(at)
    assert "Caller is angry" in text  # the critical banner at the top
    assert "critical alert" in text and "open call at" in text
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Active calls"]) >= 2 and int(metrics["🔴 Critical"]) >= 1
    ended: pd.DataFrame = at.dataframe[1].value
    assert {call_link(c) for c in board.calls.values()} <= set(ended["Call"])
    assert not at.info  # there are active calls


@slow
def test_call_page_of_a_live_call(board: Any, live: dict[str, Any], server: Any) -> None:
    server(board.http)
    angry = live["angry"]
    at = page("call", call=angry.call_id)
    assert not at.exception, at.exception
    text = shown(at)
    assert "Dana's call" in text and "live" in text
    assert "No recording kept for live calls." in text
    assert "cancel" in text.lower() and ":violet[**Customer**]" in text
    client = CallwatchClient(board.http)
    detail = client.call(angry.call_id)
    partials = live_partials(
        detail["transcript"], client.call_events(angry.call_id, ["transcript.partial"])
    )
    for p in partials:  # what is being said right now, in italics
        assert f"*{md_escape(p['text'])} …*" in text


@slow
def test_alerts_feed_shows_and_acknowledges(board: Any, live: dict[str, Any], server: Any) -> None:
    server(board.http)
    call_id = live["angry"].call_id
    client = CallwatchClient(board.http)
    angry = next(
        a for a in client.alerts(call_id=call_id)["alerts"] if a["rule_id"] == "caller_angry"
    )
    at = page("alerts")
    assert not at.exception, at.exception
    assert md_escape(angry["message"]) in shown(at)  # the alert text
    assert call_link(call_id, angry["t"]) in shown(at)  # links to the moment it fired

    at = page("alerts", call=call_id)  # the call filter, preset from ?call=
    assert {a.key for a in at.button} >= {f"ack-{alert_id(angry)}", f"assign-{alert_id(angry)}"}
    at.text_input(key=f"note-{alert_id(angry)}").input("listening in").run()
    at.button(key=f"ack-{alert_id(angry)}").click().run()
    assert not at.exception, at.exception
    assert "acknowledged" in " ".join(s.value for s in at.success)
    assert f"ack-{alert_id(angry)}" not in {b.key for b in at.button}
    still_open = {alert_id(a) for a in client.alerts(status="open", call_id=call_id)["alerts"]}
    assert alert_id(angry) not in still_open
    acked = next(
        a
        for a in client.alerts(status="acknowledged", call_id=call_id)["alerts"]
        if alert_id(a) == alert_id(angry)
    )
    assert acked["state"]["acked_by"] == SUPERVISOR and acked["state"]["note"] == "listening in"

    at.segmented_control(key="alerts_status").set_value("acknowledged").run()
    assert "listening in" in shown(at)
    at.text_input(key=f"assignee-{alert_id(angry)}").input("qa-lead").run()
    at.button(key=f"assign-{alert_id(angry)}").click().run()
    assert "assigned to qa-lead" in " ".join(s.value for s in at.success)
    at.button(key=f"reopen-{alert_id(angry)}").click().run()
    assert not at.exception, at.exception
    reopened = {alert_id(a) for a in client.alerts(status="open", call_id=call_id)["alerts"]}
    assert alert_id(angry) in reopened

    at = page("alerts")
    at.multiselect(key="alerts_severity").select("critical").run()
    assert not at.exception, at.exception
    badges = [m.value for m in at.markdown if "-badge[" in m.value]
    assert badges and all(":red-badge[" in b for b in badges)


@slow
def test_call_page_of_the_breach_call(board: Any, server: Any) -> None:
    server(board.http)
    call_id = board.calls["breach_call"]
    client = CallwatchClient(board.http)
    detail = client.call(call_id)
    forbidden = next(a for a in detail["alerts"] if a["rule_id"] == "forbidden_language")
    at = page("call", call=call_id, t=str(forbidden["t"]))
    assert not at.exception, at.exception
    text = shown(at)
    assert "Emma's call" in text
    lines = [
        m.value for m in at.markdown if "[**Agent**]" in m.value or "[**Customer**]" in m.value
    ]
    assert len(lines) == len(detail["transcript"])
    assert any("Northwind" in line and "[**Agent**]" in line for line in lines)
    marked = [line for line in lines if line.startswith("👉")]
    assert len(marked) == 1 and "calm down" in marked[0].lower()  # the line at &t=
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Score"] == f"{detail['scorecard']['score']:.0f}"
    card: pd.DataFrame = at.dataframe[0].value
    row = card[card["Rule"] == "forbidden_language"].iloc[0]
    assert row["Result"] == "❌ failed"
    assert "failed" in text and "Dead air" in text
    assert len(at.get("vega_lite_chart")) == 2  # talk/silence and mood/rule hits
    assert {b.key for b in at.get("download_button")} == {
        "export-json",
        "export-csv",
        "export-html",
    }
    assert "No recording kept for this call." in text

    at.button(key=f"why-{call_id}-{forbidden['seq']}").click().run()
    assert not at.exception, at.exception
    why = client.explain(call_id, "forbidden_language")
    assert md_escape(why["verdict"]) in shown(at)


@slow
def test_call_page_of_the_cancel_call_and_the_picker(board: Any, server: Any) -> None:
    server(board.http)
    call_id = board.calls["cancel_call"]
    at = page("call", call=call_id)
    assert not at.exception, at.exception
    text = shown(at)
    assert "Sarah's call" in text and "ended" in text
    assert "cancel my contract" in text.lower() and "Northwind" in text
    assert "`caller_angry`" in text and "`deescalate`" in text

    at = page("call")  # no call chosen: pick one
    assert not at.exception, at.exception
    pick = at.selectbox(key="call_pick")
    assert all(any(c in o for o in pick.options) for c in board.calls.values())
    pick.set_value(board.calls["clean_call"]).run()
    assert not at.exception, at.exception
    assert "Sarah's call" in shown(at)

    at = page("call", call="no-such-call")
    assert not at.exception, at.exception
    assert any("No call no-such-call" in w.value for w in at.warning)


@slow
@pytest.mark.parametrize("name", ["floor", "alerts", "call"])
def test_a_server_that_is_down(name: str, server: Any) -> None:
    url = closed_port_url()
    server(url)
    for query in ({}, {"call": "some-call"}) if name == "call" else ({},):
        at = page(name, **query)
        assert not at.exception, at.exception
        errors = [e.value for e in at.error]
        assert any(f"Cannot reach the callwatch server at {url}" in e for e in errors), errors
        assert any("callwatch serve" in e for e in errors)


@slow
@pytest.mark.parametrize("name", ["floor", "alerts", "call"])
def test_a_server_that_is_slow(name: str, server: Any) -> None:
    with sleepy_server(delay_s=3.0) as url:
        server(url, timeout_s=0.5)
        at = page(name)
        assert not at.exception, at.exception
        warnings = [w.value for w in at.warning]
        assert any(f"{url} did not answer within 0.5 s" in w for w in warnings), warnings


@slow
def test_a_server_with_no_calls(asr: Any, packs: Any, server: Any) -> None:
    with empty_server(asr, packs) as url:
        server(url)
        floor = page("floor")
        assert not floor.exception, floor.exception
        assert "No active calls right now." in [i.value for i in floor.info]
        assert "No call has ended yet." in shown(floor)
        alerts = page("alerts")
        assert not alerts.exception, alerts.exception
        assert any("No open alerts" in i.value for i in alerts.info)
        call = page("call")
        assert not call.exception, call.exception
        assert any("No calls yet" in i.value for i in call.info)
