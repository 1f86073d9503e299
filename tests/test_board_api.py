"""The board's API on a real server with the demo calls replayed into it: calls listed and
filtered (live and stored), one call's events, the alert feed and its triage, search."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from assist.facts import call_facts
from assist.store import CallQuery, Store

pytestmark = pytest.mark.slow


def get(board: Any, path: str, **params: Any) -> Any:
    r = httpx.get(f"{board.http}{path}", params=params, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_stored_calls_are_listed_with_facts_and_filtered(board: Any) -> None:
    stored = get(board, "/v1/calls", scope="stored")
    ids = {c["call_id"] for c in stored["calls"]}
    assert set(board.calls.values()) <= ids
    by_id = {c["call_id"]: c for c in stored["calls"]}
    breach = by_id[board.calls["breach_call"]]
    assert breach["agent_id"] == "emma" and breach["mode"] == "live"
    assert breach["started_at"] > 1.7e9  # a real wall-clock time, for date filters
    assert {"forbidden_language", "dead_air"} <= set(breach["facts"]["fired_rules"])
    assert breach["facts"]["failed_rules"], breach["facts"]
    assert breach["facts"]["silence_s"] > 10  # 14 s of dead air at 25-39 s
    assert set(breach["facts"]["talk_s"]) == {"agent", "customer"}
    cancel = by_id[board.calls["cancel_call"]]
    assert cancel["facts"]["intents"].get("cancel_service") == 1
    assert cancel["facts"]["peak_anger"]["customer"] > cancel["facts"]["peak_anger"]["agent"]

    emma = get(board, "/v1/calls", scope="stored", agent="emma")["calls"]
    assert [c["call_id"] for c in emma] == [board.calls["breach_call"]]
    failed = breach["facts"]["failed_rules"][0]
    only = get(board, "/v1/calls", scope="all", failed_rule=failed)["calls"]
    assert board.calls["breach_call"] in {c["call_id"] for c in only}
    assert board.calls["clean_call"] not in {c["call_id"] for c in only}
    fired = get(board, "/v1/calls", scope="stored", fired_rule="caller_angry")["calls"]
    assert [c["call_id"] for c in fired] == [board.calls["cancel_call"]]
    good = get(board, "/v1/calls", scope="stored", min_score=99.9)["calls"]
    assert board.calls["clean_call"] in {c["call_id"] for c in good}
    assert board.calls["breach_call"] not in {c["call_id"] for c in good}
    assert get(board, "/v1/calls", scope="stored", since="2999-01-01")["calls"] == []
    page = get(board, "/v1/calls", scope="stored", limit=1, offset=1)
    assert len(page["calls"]) == 1 and page["total"] >= 3

    # "all" takes a call in memory and in the store once, from memory
    merged = get(board, "/v1/calls", scope="all")["calls"]
    assert len([c for c in merged if c["call_id"] == board.calls["clean_call"]]) == 1


@pytest.mark.parametrize(
    "params",
    [{"scope": "everything"}, {"scope": "stored", "since": "last tuesday"}, {"limit": 0}],
)
def test_bad_call_filters_are_refused_clearly(board: Any, params: dict[str, Any]) -> None:
    r = httpx.get(f"{board.http}/v1/calls", params=params, timeout=10)
    assert r.status_code == 422
    assert isinstance(r.json()["detail"], str) and r.json()["detail"]


def test_one_calls_events_by_type(board: Any) -> None:
    cid = board.calls["cancel_call"]
    evs = get(board, f"/v1/calls/{cid}/events", types="emotion,alert")["events"]
    assert {e["type"] for e in evs} == {"emotion", "alert"}
    assert [e["seq"] for e in evs] == sorted(e["seq"] for e in evs)
    assert any(e["type"] == "emotion" and e["escalated"] for e in evs)
    everything = get(board, f"/v1/calls/{cid}/events")["events"]
    assert everything[0]["type"] == "call.started" and everything[-1]["type"] == "call.ended"
    assert httpx.get(f"{board.http}/v1/calls/nope/events", timeout=10).status_code == 404


def test_alert_feed_ack_assign_reopen(board: Any) -> None:
    feed = get(board, "/v1/alerts", status="all", call_id=board.calls["breach_call"])
    alerts = feed["alerts"]
    assert alerts and all(a["call_id"] == board.calls["breach_call"] for a in alerts)
    assert [a["emitted_at"] for a in alerts] == sorted(
        (a["emitted_at"] for a in alerts), reverse=True
    )
    target = next(a for a in alerts if a["rule_id"] == "dead_air")
    assert target["agent_id"] == "emma" and target["alert_id"].endswith(f":{target['seq']}")
    url = f"{board.http}/v1/alerts/{target['call_id']}/{target['seq']}"
    who = {"X-Callwatch-User": "sam (supervisor)"}
    was = target["state"]["status"]
    try:
        r = httpx.post(f"{url}/ack", json={"note": "coached"}, headers=who, timeout=10)
        assert r.status_code == 200, r.text
        st = r.json()["state"]
        assert (st["status"], st["acked_by"], st["note"]) == (
            "acknowledged",
            "sam (supervisor)",
            "coached",
        )
        open_ids = {a["alert_id"] for a in get(board, "/v1/alerts", limit=2000)["alerts"]}
        assert target["alert_id"] not in open_ids
        acked = get(board, "/v1/alerts", status="acknowledged", rule="dead_air")["alerts"]
        assert target["alert_id"] in {a["alert_id"] for a in acked}

        r = httpx.post(f"{url}/assign", json={"assignee": "qa-lead"}, headers=who, timeout=10)
        assert r.json()["state"]["assignee"] == "qa-lead"
        assert r.json()["state"]["status"] == "acknowledged"  # assigning keeps the status
        bad = httpx.post(f"{url}/assign", json={"assignee": " "}, timeout=10)
        assert bad.status_code == 422
        assert httpx.post(f"{url}/ack", content=b"[1]", timeout=10).status_code == 422
        missing = f"{board.http}/v1/alerts/{target['call_id']}/99999/ack"
        assert httpx.post(missing, timeout=10).status_code == 404
    finally:
        r = httpx.post(f"{url}/reopen", headers=who, timeout=10)
        assert r.status_code == 200 and r.json()["state"]["status"] == "open"
        assert was == "open"


def test_critical_alerts_filter_and_counts(board: Any) -> None:
    feed = get(board, "/v1/alerts", severity="critical", status="all")
    assert feed["alerts"] and all(a["severity"] == "critical" for a in feed["alerts"])
    angry = [a for a in feed["alerts"] if a["rule_id"] == "caller_angry"]
    assert angry and angry[0]["call_id"] == board.calls["cancel_call"]
    assert "supervisor" in angry[0]["audience"]
    assert feed["counts"]["open_critical"] >= 1
    agent_only = get(board, "/v1/alerts", status="all", audience="agent")["alerts"]
    assert all("agent" in a["audience"] for a in agent_only)
    assert not any(a["rule_id"] == "caller_angry" for a in agent_only)
    assert get(board, "/v1/alerts", status="all", since="2999-01-01")["alerts"] == []
    recent = get(board, "/v1/alerts", status="all", since="2020-01-01", severity="critical")
    assert [a["alert_id"] for a in recent["alerts"]] == [a["alert_id"] for a in feed["alerts"]]


def test_search_finds_the_line_and_where_it_was_said(board: Any) -> None:
    hits = get(board, "/v1/search", q="CANCEL my contract")["hits"]
    assert hits, "the cancel request was not found"
    hit = hits[0]
    assert hit["call_id"] == board.calls["cancel_call"] and hit["speaker"] == "customer"
    assert "cancel my contract" in hit["text"].lower()
    marks = json.loads(Path("demo/calls/cancel_call.timeline.json").read_text())["marks"]
    assert abs(hit["t"] - marks["cancel_request"]) < 2.0
    northwind = get(board, "/v1/search", q="northwind", agent="emma")["hits"]
    assert {h["call_id"] for h in northwind} == {board.calls["breach_call"]}
    assert get(board, "/v1/search", q="%")["hits"] == []  # a wildcard is a character
    assert get(board, "/v1/search", q="speaker")["hits"] == []  # not the JSON keys
    assert httpx.get(f"{board.http}/v1/search", params={"q": " "}, timeout=10).status_code == 422


def test_an_older_store_is_upgraded_in_place(tmp_path: Path) -> None:
    """A store made before the board existed gets the new columns, filled from its reports."""
    db = tmp_path / "old.db"
    report = {
        "call_id": "c1",
        "agent_id": "ann",
        "started_at": 1_790_000_000.0,
        "scorecard": {"score": 50.0, "rules": [{"rule_id": "greeting", "status": "failed"}]},
        "alerts": [{"rule_id": "greeting", "severity": "warning"}],
    }
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE calls (call_id VARCHAR(128) PRIMARY KEY, mode VARCHAR(16) NOT NULL, "
        "sources JSON NOT NULL, duration_s FLOAT, score FLOAT, alerts INTEGER NOT NULL, "
        "model VARCHAR(128), report JSON, updated_at VARCHAR(32) NOT NULL)"
    )
    con.execute(
        "INSERT INTO calls VALUES ('c1', 'audit', '[]', 60.0, 50.0, 1, 'tiny.en', ?, 'x')",
        (json.dumps(report),),
    )
    con.commit()
    con.close()
    store = Store(f"sqlite:///{db}")
    (row,) = store.list_calls()
    assert row["agent_id"] == "ann" and row["started_at"] == 1_790_000_000.0
    assert row["facts"]["failed_rules"] == ["greeting"]
    assert row["facts"]["fired_rules"] == {"greeting": 1}
    assert Store(f"sqlite:///{db}").list_calls(CallQuery(agent="ann"))  # opened again: no change


def test_call_facts_counts_what_the_board_needs() -> None:
    facts = call_facts(
        {
            "scorecard": {
                "rules": [
                    {"rule_id": "a", "status": "failed"},
                    {"rule_id": "b", "status": "passed"},
                    {"rule_id": "c", "status": "not_applicable"},
                ]
            },
            "alerts": [
                {"rule_id": "a", "severity": "warning"},
                {"rule_id": "a", "severity": "warning"},
                {"rule_id": "x", "severity": "critical"},
            ],
            "suggestions": [
                {"intent": "refund", "suggestion_id": "s1"},
                {"intent": "refund", "suggestion_id": "s2", "replaces": "s1"},
                {"rule_id": "dead_air", "suggestion_id": "s3"},
            ],
            "emotion": {"customer": {"peak_anger_index": 0.8, "escalations": 2}},
            "stats": {"talk_s": {"agent": 30.0}, "silence_s": 5.0},
        }
    )
    assert facts["failed_rules"] == ["a"]
    assert facts["fired_rules"] == {"a": 2, "x": 1}
    assert facts["critical_alerts"] == 1
    assert facts["intents"] == {"refund": 1}
    assert facts["peak_anger"] == {"customer": 0.8} and facts["escalations"] == 2
    assert facts["talk_s"] == {"agent": 30.0} and facts["silence_s"] == 5.0
