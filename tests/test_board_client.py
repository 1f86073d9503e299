"""The board's HTTP client (dashboard/client.py) against real servers: listings merged over
several servers without repeats, writes routed to the server that owns the call, and every
failure turned into ServerDown / ServerSlow / ServerError carrying the server's own words."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from dashboard.client import (
    CallwatchClient,
    ServerDown,
    ServerError,
    ServerSlow,
    alert_id,
    normalize_url,
)
from tests.board_server import closed_port_url, empty_server, sleepy_server

slow = pytest.mark.slow


# -- no server needed --------------------------------------------------------------------------
def test_server_urls_are_normalised() -> None:
    assert normalize_url("ws://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert normalize_url("wss://cw.example.com") == "https://cw.example.com"
    assert normalize_url("localhost:9000") == "http://localhost:9000"
    c = CallwatchClient(" http://a:1, ws://a:1 ,http://b:2/ ")
    assert c.servers == ["http://a:1", "http://b:2"]  # the same URL twice is asked once
    assert CallwatchClient("").servers == ["http://127.0.0.1:8080"]


def test_headers_carry_the_user_and_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "ok"})

    c = CallwatchClient("http://cw.test", token="T0K", user="sam (supervisor)")
    c._http = httpx.Client(
        transport=httpx.MockTransport(handler), headers=c._http.headers, timeout=1
    )
    assert c.health() == {"http://cw.test": "ok"}
    assert seen[0].headers["x-callwatch-user"] == "sam (supervisor)"
    assert seen[0].headers["authorization"] == "Bearer T0K"


def test_error_bodies_become_messages_and_issues() -> None:
    replies = {
        "/v1/calls/x": httpx.Response(404, json={"detail": "no call 'x'"}),
        "/v1/rules/validate": httpx.Response(
            422,
            json={
                "detail": {
                    "message": "invalid rules",
                    "issues": [{"file": "p.yaml", "line": 3, "field": "id", "message": "bad"}],
                }
            },
        ),
        "/v1/alerts/c/1/ack": httpx.Response(
            422, json={"detail": [{"loc": ["body", "note"], "msg": "not a string"}]}
        ),
        "/metrics": httpx.Response(500, text="Internal Server Error"),
    }
    c = CallwatchClient("http://cw.test")
    c._http = httpx.Client(transport=httpx.MockTransport(lambda r: replies[r.url.path]))
    with pytest.raises(ServerError) as e404:
        c.call("x")
    assert (e404.value.status, e404.value.message, e404.value.url) == (
        404,
        "no call 'x'",
        "http://cw.test",
    )
    with pytest.raises(ServerError) as e422:
        c.validate_pack("nope: [")
    assert e422.value.status == 422 and e422.value.issues[0]["field"] == "id"
    with pytest.raises(ServerError, match=r"body\.note: not a string"):
        c.ack_alert("c", 1, "n")
    with pytest.raises(ServerError, match="Internal Server Error") as e500:
        c.metrics()
    assert not isinstance(e500.value, ServerDown | ServerSlow)


def test_a_closed_port_is_server_down() -> None:
    url = closed_port_url()
    c = CallwatchClient(url, timeout_s=2)
    with pytest.raises(ServerDown) as exc:
        c.calls()
    assert exc.value.url == url and exc.value.status is None and exc.value.message
    assert c.health()[url].startswith("down: ")


def test_a_server_that_does_not_answer_in_time_is_server_slow() -> None:
    with sleepy_server(delay_s=3.0) as url:
        c = CallwatchClient(url, timeout_s=0.3)
        with pytest.raises(ServerSlow) as exc:
            c.calls()
        assert exc.value.url == url and "0.3 s" in exc.value.message
        assert c.health()[url].startswith("slow: ")


# -- against the board's real server -----------------------------------------------------------
@slow
def test_calls_call_and_events_from_the_board_server(board: Any) -> None:
    c = CallwatchClient(board.ws)  # the ws:// URL the server prints works too
    ids = {x["call_id"] for x in c.calls(scope="all")}
    assert set(board.calls.values()) <= ids
    stored = c.calls(scope="stored", agent="emma")
    assert [x["call_id"] for x in stored] == [board.calls["breach_call"]]
    detail = c.call(board.calls["cancel_call"])
    assert any("cancel" in line["text"].lower() for line in detail["transcript"])
    emotions = c.call_events(board.calls["cancel_call"], types=["emotion"])
    assert emotions and {e["type"] for e in emotions} == {"emotion"}
    why = c.explain(board.calls["breach_call"], "forbidden_language")
    assert why["rule_id"] == "forbidden_language" and why["verdict"]
    hits = c.search("Northwind")
    assert hits and {h["call_id"] for h in hits} <= ids
    exported = json.loads(c.export(board.calls["clean_call"], "json"))
    assert board.calls["clean_call"] in json.dumps(exported)
    assert c.audio(board.calls["clean_call"]) is None  # replayed live: no recording kept
    with pytest.raises(ServerError) as missing:
        c.call("no-such-call")
    assert missing.value.status == 404 and "no-such-call" in missing.value.message
    with pytest.raises(ServerError) as bad:
        c.validate_pack("pack: broken\nrules: [{id: x}]\n")
    assert bad.value.status == 422 and bad.value.issues
    assert c.rule_packs() and c.playbooks()["enabled"] in (True, False)


@slow
def test_the_same_server_twice_lists_each_call_and_alert_once(board: Any) -> None:
    one = CallwatchClient(board.http)
    twice = CallwatchClient([board.http, board.http.replace("127.0.0.1", "localhost")])
    assert len(twice.servers) == 2
    ids = [x["call_id"] for x in twice.calls(scope="all")]
    assert len(ids) == len(set(ids))
    assert set(ids) == {x["call_id"] for x in one.calls(scope="all")}
    single, merged = one.alerts(status="all"), twice.alerts(status="all")
    assert [alert_id(a) for a in merged["alerts"]] == [alert_id(a) for a in single["alerts"]]
    assert merged["total"] == single["total"] and merged["counts"] == single["counts"]


@slow
def test_two_servers_merge_and_writes_go_to_the_owner(board: Any, asr: Any, packs: Any) -> None:
    with empty_server(asr, packs) as other:
        c = CallwatchClient([other, board.http], user="sam (supervisor)")
        calls = c.calls(scope="all")
        assert set(board.calls.values()) <= {x["call_id"] for x in calls}
        assert {x["server"] for x in calls} == {board.http}
        # a fresh client knows no owners: it asks the empty server first, gets a 404, moves on
        fresh = CallwatchClient([other, board.http], user="sam (supervisor)")
        breach = fresh.call(board.calls["breach_call"])
        assert breach["agent_id"] == "emma"
        target = next(a for a in breach["alerts"] if a["rule_id"] == "closing")
        try:
            acked = fresh.ack_alert(target["call_id"], target["seq"], note="seen")
            assert acked["state"]["status"] == "acknowledged"
            assert acked["state"]["acked_by"] == "sam (supervisor)"
            assert acked["state"]["note"] == "seen"
            open_ids = {alert_id(a) for a in c.alerts(status="open", limit=2000)["alerts"]}
            assert acked["alert_id"] not in open_ids
            assigned = fresh.assign_alert(target["call_id"], target["seq"], "qa-lead")
            assert assigned["state"]["assignee"] == "qa-lead"
        finally:
            back = fresh.reopen_alert(target["call_id"], target["seq"])
            assert back["state"]["status"] == "open"
        # one server down: the other's calls still come back; all down: ServerDown
        half = CallwatchClient([closed_port_url(), board.http])
        assert set(board.calls.values()) <= {x["call_id"] for x in half.calls(scope="all")}
        health = half.health()
        assert health[board.http] == "ok"
        assert health[half.servers[0]].startswith("down: ")
