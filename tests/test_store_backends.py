"""The store on SQLite and PostgreSQL alike (``store_url`` runs each test on both): calls and
events, listing filters and order, search, alert triage, rule versions, tokens, feedback,
dead letters, agents, and live calls written as they happen (start, events, heartbeat,
final report, interrupted by a restart)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from assist.store import CallQuery, Store, StoreError
from assist.stored_call import report_from_events

OpenStore = Callable[..., Store]
BASE_T = 1_790_000_000.0
LINES = (
    ("agent", "thank you for calling northwind this is ann"),
    ("customer", "I want a refund for my broken kettle"),
)


def fake_events(
    call_id: str,
    *,
    agent: str | None = "ann",
    started_at: float | None = BASE_T,
    lines: tuple[tuple[str, str], ...] = LINES,
    score: float = 50.0,
    mode: str = "live",
    sources: list[str] | None = None,
    ended: bool = True,
) -> list[dict[str, Any]]:
    """A call's events in the pipeline's shapes (no model needed)."""
    seq = itertools.count(1)

    def ev(type_: str, t: float, **fields: Any) -> dict[str, Any]:
        return {
            "type": type_,
            "call_id": call_id,
            "seq": next(seq),
            "t": round(t, 3),
            **fields,
            "emitted_at": "2026-01-01T00:00:00.000Z",
        }

    evs = [
        ev(
            "call.started",
            0.0,
            mode=mode,
            agent_id=agent,
            protocol="raw",
            language="en",
            started_at=started_at,
            channels=["agent", "customer"],
            sources=sources or [],
            model="tiny.en",
            rule_packs=["default@1"],
        )
    ]
    t = 1.0
    for spk, text in lines:
        words: list[dict[str, Any]] = [
            {"w": w, "t": round(t + i * 0.3, 3), "t_end": round(t + i * 0.3 + 0.25, 3)}
            for i, w in enumerate(text.split())
        ]
        evs.append(
            ev("transcript.final", t, t_end=words[-1]["t_end"], speaker=spk, text=text, words=words)
        )
        t = words[-1]["t_end"] + 0.5
    evs.append(ev("silence", t, t_end=t + 6.0, duration=6.0))
    evs.append(
        ev(
            "alert",
            t + 1.0,
            rule_id="refund_request",
            kind="phrase",
            severity="critical",
            audience=["agent", "supervisor"],
            message='Forbidden phrase said by customer: "refund"',
            speaker="customer",
            evidence={
                "matched": "refund",
                "utterance": lines[-1][1],
                "words": [{"w": "refund", "t": 2.0, "t_end": 2.3}],
            },
        )
    )
    if ended:
        evs.append(
            ev(
                "scorecard",
                t + 8.0,
                score=score,
                rules=[
                    {"rule_id": "greeting", "status": "passed"},
                    {"rule_id": "refund_request", "status": "failed"},
                ],
            )
        )
        evs.append(ev("call.ended", t + 8.0, reason="hangup"))
    return evs


def fake_report(call_id: str, **kw: Any) -> dict[str, Any]:
    evs = fake_events(call_id, **kw)
    report = report_from_events(evs)
    for k in ("status", "ended_reason", "instance_id", "rebuilt_from_events", "silences"):
        report.pop(k)
    return {**report, "events": evs}


def test_call_and_events_round_trip(open_store: OpenStore) -> None:
    store = open_store()
    report = fake_report("c1")
    store.save_report(report, "audit")
    got = store.get_report("c1")
    assert got is not None
    assert got["transcript"] == report["transcript"] and got["alerts"] == report["alerts"]
    assert (got["status"], got["ended_reason"]) == ("ended", "hangup")
    assert store.events_for("c1") == report["events"]
    (row,) = store.list_calls()
    assert (row["call_id"], row["mode"], row["agent_id"], row["status"]) == (
        "c1",
        "audit",
        "ann",
        "ended",
    )
    assert row["score"] == 50.0 and row["alerts"] == 1 and row["started_at"] == BASE_T
    assert row["protocol"] == "raw" and row["channels"] == ["agent", "customer"]
    assert row["facts"]["failed_rules"] == ["refund_request"]
    assert row["facts"]["fired_rules"] == {"refund_request": 1}
    assert store.get_report("nope") is None and store.events_for("nope") == []


def test_listing_filters_order_and_paging(open_store: OpenStore) -> None:
    store = open_store()
    store.save_report(fake_report("old", agent="bob", started_at=BASE_T - 86400, score=90.0))
    store.save_report(fake_report("new", agent="ann", started_at=BASE_T, score=40.0), "live")
    store.save_report(fake_report("undated", agent="ann", started_at=None, score=70.0))
    # newest first, a call with no start time last (NULLs sort differently per backend)
    assert [c["call_id"] for c in store.list_calls()] == ["new", "old", "undated"]
    assert [c["call_id"] for c in store.list_calls(CallQuery(agent="ann"))] == ["new", "undated"]
    assert [c["call_id"] for c in store.list_calls(CallQuery(mode="live"))] == ["new"]
    assert [c["call_id"] for c in store.list_calls(CallQuery(since=BASE_T - 10))] == ["new"]
    assert [c["call_id"] for c in store.list_calls(CallQuery(until=BASE_T - 10))] == ["old"]
    assert [c["call_id"] for c in store.list_calls(CallQuery(min_score=60))] == [
        "old",
        "undated",
    ]
    assert [c["call_id"] for c in store.list_calls(CallQuery(max_score=50))] == ["new"]
    assert store.list_calls(CallQuery(status="active")) == []
    assert store.count_calls(CallQuery(status="ended")) == 3
    assert [c["call_id"] for c in store.list_calls(limit=1, offset=1)] == ["old"]
    assert store.count_calls(CallQuery(agent="ann", exclude=("new",))) == 1


def test_search_alerts_and_triage(open_store: OpenStore) -> None:
    store = open_store()
    store.save_report(fake_report("c1", agent="ann"))
    store.save_report(fake_report("c2", agent="bob", lines=(("agent", "hello there"),)))
    hits = store.search_transcripts("REFUND for")
    assert [(h["call_id"], h["speaker"], h["agent_id"]) for h in hits] == [
        ("c1", "customer", "ann")
    ]
    assert store.search_transcripts("refund", agent="bob") == []
    assert store.search_transcripts("%") == [] and store.search_transcripts("speaker") == []
    rows = store.alert_rows()
    assert [(e["call_id"], e["rule_id"], agent) for e, agent in rows] == [
        ("c1", "refund_request", "ann"),
        ("c2", "refund_request", "bob"),
    ]
    assert [e["call_id"] for e, _ in store.alert_rows(agent="bob")] == ["c2"]
    seq = rows[0][0]["seq"]
    st = store.set_alert_state("c1", seq, "sam", status="acknowledged", note="coached")
    assert (st["status"], st["acked_by"], st["note"]) == ("acknowledged", "sam", "coached")
    st = store.set_alert_state("c1", seq, "sam", assignee="qa-lead")
    assert (st["status"], st["assignee"]) == ("acknowledged", "qa-lead")
    st = store.set_alert_state("c1", seq, "kim", status="open")
    assert (st["status"], st["acked_by"], st["updated_by"]) == ("open", None, "kim")
    states = store.alert_states(["c1", "c2"])
    assert list(states) == [("c1", seq)] and states[("c1", seq)]["assignee"] == "qa-lead"
    with pytest.raises(ValueError, match="status must be one of"):
        store.set_alert_state("c1", seq, "sam", status="closed")


def test_rule_versions_tokens_feedback_dead_letters_agents(open_store: OpenStore) -> None:
    store = open_store()
    v1 = store.add_rule_version("default", "a: 1\n", "s1", "/r/default.yaml", "ann", "first", {})
    v2 = store.add_rule_version("default", "a: 2\n", "s2", "/r/default.yaml", "bob", "fix", {})
    assert (v1["version"], v2["version"]) == (1, 2) and v2["id"] > v1["id"]
    listed = store.rule_versions("default")
    assert [(r["version"], r["author"]) for r in listed] == [(1, "ann"), (2, "bob")]
    assert "text" not in listed[0]
    assert store.rule_version("default", 1)["text"] == "a: 1\n"  # type: ignore[index]
    assert store.rule_version("default", 3) is None
    assert store.latest_rule_versions()["default"]["text"] == "a: 2\n"

    admin = store.create_token("admin", label="ops")
    agent = store.create_token("agent", agent_id="ann")
    ingest = store.create_token("ingest", label="twilio")
    assert store.check_token(admin) == {"id": 1, "role": "admin", "agent_id": None, "label": "ops"}
    assert store.check_token(agent)["agent_id"] == "ann"  # type: ignore[index]
    assert store.check_token(ingest)["role"] == "ingest"  # type: ignore[index]
    assert store.revoke_token(1) and not store.revoke_token(1)
    assert store.check_token(admin) is None and store.check_token("cw_nope") is None
    assert [t["revoked_at"] is not None for t in store.list_tokens()] == [True, False, False]
    with pytest.raises(ValueError, match="unknown role"):
        store.create_token("root")
    with pytest.raises(ValueError, match="agent's id"):
        store.create_token("agent")

    f1 = store.add_feedback(call_id="c1", suggestion_id="s1", verdict="helpful", intent="refund")
    f2 = store.add_feedback(call_id="c1", suggestion_id="s2", verdict="dismissed", agent_id="ann")
    assert isinstance(f1["id"], int) and f2["id"] == f1["id"] + 1
    assert [f["suggestion_id"] for f in store.feedback(call_id="c1")] == ["s1", "s2"]
    assert [f["suggestion_id"] for f in store.feedback(intent="refund")] == ["s1"]
    assert [f["verdict"] for f in store.feedback(agent_id="ann")] == ["dismissed"]
    with pytest.raises(ValueError, match="verdict"):
        store.add_feedback(call_id="c1", suggestion_id="s3", verdict="meh")

    ev = {"type": "alert", "call_id": "c1", "seq": 4, "t": 1.0, "message": "déjà vu"}
    d1 = store.add_dead_letter("http://hook", "d-1", ev, 5, "HTTP 500")
    d2 = store.add_dead_letter("http://hook", "d-2", ev, 5, "timeout")
    assert d2 == d1 + 1
    letters = store.dead_letters()
    assert [(d["id"], d["event"]["message"]) for d in letters] == [(d1, "déjà vu"), (d2, "déjà vu")]
    assert [d["delivery_id"] for d in store.dead_letters(ids=[d2])] == ["d-2"]
    assert store.delete_dead_letter(d1) and not store.delete_dead_letter(d1)

    store.save_agent("ann", [0.6, 0.8], 31.2, "ann.wav")
    store.save_agent("ann", [1.0, 0.0], 40.0, "ann2.wav")  # re-enrolled: replaced
    assert [(a["agent_id"], a["source"]) for a in store.list_agents()] == [("ann", "ann2.wav")]
    np.testing.assert_allclose(store.voiceprints(["ann"])["ann"], [1.0, 0.0])
    assert store.delete_agent("ann") and store.list_agents() == []


def test_live_call_lifecycle(open_store: OpenStore) -> None:
    store = open_store()
    evs = fake_events("live-1")
    store.start_call(
        "live-1",
        agent_id="ann",
        protocol="twilio",
        language="en",
        started_at=BASE_T,
        instance_id="i1",
        channels=["agent", "customer"],
    )
    (row,) = store.list_calls()
    assert (row["status"], row["mode"], row["instance_id"], row["protocol"]) == (
        "active",
        "live",
        "i1",
        "twilio",
    )
    assert row["live_at"] is not None
    assert store.get_report("live-1") is None  # not ended: rebuilt from events instead

    store.append_events(evs[:3])
    store.append_events(evs[:3])  # the same again (a retry): nothing changes
    store.append_events(evs[2:5])  # overlapping batch
    assert [e["seq"] for e in store.events_for("live-1")] == [1, 2, 3, 4, 5]
    assert len(store.chain_for_call("live-1")) == 5  # one record per event, none twice

    live = store.report_from_events("live-1")
    assert live is not None and live["status"] == "active"
    assert [t["text"] for t in live["transcript"]] == [text for _, text in LINES]
    assert live["agent_id"] == "ann" and live["started_at"] == BASE_T

    store.update_live("live-1", duration_s=9.5, score=80.0, alerts=1, facts={"critical_alerts": 1})
    (active,) = store.active_calls()
    assert (active["call_id"], active["duration_s"], active["score"]) == ("live-1", 9.5, 80.0)
    assert active["facts"] == {"critical_alerts": 1}
    assert store.active_calls(exclude_instance="i1") == []
    assert [c["call_id"] for c in store.active_calls(exclude_instance="i2")] == ["live-1"]
    with pytest.raises(ValueError, match="no call"):
        store.update_live("ghost", duration_s=1, score=None, alerts=0, facts={})

    report = {**report_from_events(evs), "events": evs}
    store.save_report(report, "live")
    (row,) = store.list_calls()
    assert (row["status"], row["ended_reason"], row["instance_id"]) == ("ended", "hangup", "i1")
    assert store.active_calls() == []
    assert len(store.chain_for_call("live-1")) == len(evs)  # stored ones kept, not re-chained
    assert store.verify().ok


def test_restart_marks_that_instances_calls_interrupted(open_store: OpenStore) -> None:
    store = open_store()
    for call_id, instance in (("a", "i1"), ("b", "i1"), ("c", "i2")):
        store.start_call(
            call_id,
            agent_id="ann",
            protocol="raw",
            language="en",
            started_at=BASE_T,
            instance_id=instance,
            channels=["agent", "customer"],
        )
        store.append_events(fake_events(call_id, ended=False))
    assert sorted(store.mark_interrupted("i1")) == ["a", "b"]
    assert store.mark_interrupted("i1") == []  # once
    status = {c["call_id"]: (c["status"], c["ended_reason"]) for c in store.list_calls()}
    assert status == {
        "a": ("interrupted", "instance_restart"),
        "b": ("interrupted", "instance_restart"),
        "c": ("active", None),
    }
    report = store.get_report("a")
    assert report is not None and report["status"] == "interrupted"
    assert [t["text"] for t in report["transcript"]] == [text for _, text in LINES]
    assert report["alerts"][0]["rule_id"] == "refund_request"
    assert [c["call_id"] for c in store.active_calls()] == ["c"]
    assert store.verify().ok


def test_resaving_keeps_equal_events_and_chains_changed_ones(open_store: OpenStore) -> None:
    store = open_store()
    report = fake_report("c1")
    store.save_report(report)
    store.save_report(report)  # identical: no new records
    first = store.chain_for_call("c1")
    assert [r["kind"] for r in first] == ["event"] * len(report["events"])

    evs = [dict(e) for e in report["events"][:-1]]  # the last one dropped
    evs[2]["text"] = "I want a [card] for my broken kettle"  # masked late
    store.save_report({**report, "events": evs})
    added = store.chain_for_call("c1")[len(first) :]
    assert [(r["kind"], r["ref"]) for r in added] == [("call.replaced", "c1"), ("event", "c1#3")]
    assert added[0]["detail"] == {
        "call_id": "c1",
        "reason": "re-saved",
        "removed": [len(report["events"])],
        "changed": [3],
    }
    assert store.events_for("c1")[2]["text"].startswith("I want a [card]")
    assert len(store.events_for("c1")) == len(report["events"]) - 1
    result = store.verify()
    assert result.ok, result.first_broken


def test_bad_input_is_refused_before_the_database(open_store: OpenStore) -> None:
    store = open_store()
    with pytest.raises(ValueError, match="needs call_id"):
        store.append_events([{"call_id": "c1", "type": "alert", "t": 1.0}])
    with pytest.raises(ValueError, match="call id is longer than 128"):
        store.append_events([{"call_id": "x" * 129, "seq": 1, "type": "alert", "t": 1.0}])
    with pytest.raises(ValueError, match="not of call"):
        store.save_report({"call_id": "c1", "events": fake_events("c2")})
    with pytest.raises(ValueError, match="status must be one of"):
        store.save_report(fake_report("c1"), status="paused")
    assert store.list_calls() == [] and store.verify().records == 0


def test_an_unreachable_database_is_a_clear_store_error() -> None:
    with pytest.raises(StoreError, match="cannot open store postgresql"):
        Store("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")


def test_a_report_rebuilt_from_events_has_the_audit_reports_shape() -> None:
    evs = fake_events("c1", ended=False)
    report = report_from_events(evs, {"call_id": "c1", "status": "active", "instance_id": "i2"})
    build_report_keys = {
        "call_id",
        "mode",
        "agent_id",
        "protocol",
        "language",
        "started_at",
        "sources",
        "duration_s",
        "model",
        "rule_packs",
        "channels",
        "diarization",
        "transcript",
        "alerts",
        "scorecard",
        "suggestions",
        "emotion",
        "stats",
    }
    assert build_report_keys <= set(report)
    assert (report["status"], report["instance_id"], report["protocol"]) == ("active", "i2", "raw")
    assert report["scorecard"] == {"score": None, "rules": []}  # no scorecard yet
    assert report["duration_s"] == max(e.get("t_end", e["t"]) for e in evs)
    assert set(report["transcript"][0]) == {"speaker", "t", "t_end", "text", "words"}
    assert report["stats"]["silence_s"] == 6.0 and set(report["stats"]["talk_s"]) == {
        "agent",
        "customer",
    }
    assert report["alerts"][0]["evidence"]["matched"] == "refund"
