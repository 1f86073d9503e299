"""Agent assist on a running server: a replayed call, real Whisper, real sentence model, the
agent's own event stream with a token, and feedback stored for QA."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from assist.replay import replay
from assist.server import App
from tests.conftest import DEMO
from tests.live_server import make_state, running_server

pytestmark = pytest.mark.slow

CALL = "assist-cancel"
SMALL_TALK = {"okay", "the ninth of october", "no goodbye", "fine thank you i suppose"}


@pytest.fixture(scope="module")
def state(asr, packs) -> Iterator[App]:  # type: ignore[no-untyped-def]
    st = make_state(asr, packs, auth=True)
    yield st
    st.close()


@pytest.fixture(scope="module")
def url(state: App) -> Iterator[str]:
    with running_server(state) as u:
        yield u


@pytest.fixture(scope="module")
def tokens(state: App) -> dict[str, str]:
    assert state.store is not None
    return {
        "sarah": state.store.create_token("agent", "sarah", "test"),
        "emma": state.store.create_token("agent", "emma", "test"),
        "boss": state.store.create_token("supervisor", None, "test"),
        "ingest": state.store.create_token("ingest", None, "test"),
    }


def http(url: str) -> str:
    return url.replace("ws://", "http://")


def norm(text: str) -> str:
    return re.sub(r"[^a-z ]", "", text.lower()).strip()


async def _live_call(url: str, tokens: dict[str, str]) -> tuple[Any, list[dict[str, Any]]]:
    """Replay the cancel call as agent sarah; join sarah's stream mid-call."""
    token = tokens["sarah"]
    task = asyncio.create_task(
        replay(
            url,
            str(DEMO / "cancel_call.wav"),
            protocol="raw",
            speed=2.0,
            agent_id="sarah",
            call_id=CALL,
            token=tokens["ingest"],
            events_token=tokens["boss"],
        )
    )
    boss = {"Authorization": f"Bearer {tokens['boss']}"}
    async with httpx.AsyncClient(headers=boss) as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = await client.get(f"{http(url)}/v1/calls/{CALL}")
            if r.status_code == 200 and r.json()["duration_s"] > 12:
                break
            await asyncio.sleep(0.2)
    got: list[dict[str, Any]] = []
    async with websockets.connect(f"{url}/v1/agents/sarah/events") as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        while True:
            ev = json.loads(await asyncio.wait_for(ws.recv(), 60))
            got.append(ev)
            if ev["type"] == "call.ended":
                break
    return await task, got


@pytest.fixture(scope="module")
def live(url: str, tokens: dict[str, str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    res, agent_stream = asyncio.run(_live_call(url, tokens))
    return res.events, agent_stream


def test_cancel_request_gets_the_retention_suggestion_within_its_final(live: Any) -> None:
    events, _ = live
    finals = [e for e in events if e["type"] == "transcript.final"]
    cancel = next(e for e in finals if e["speaker"] == "customer" and "cancel" in e["text"].lower())
    assert abs(cancel["t"] - 6.86) < 1.0  # the scripted request (timeline mark)
    retention = [e for e in events if e["type"] == "suggestion" and e["intent"] == "cancel_service"]
    assert len(retention) == 1, retention  # once, never repeated by later lines
    s = retention[0]
    assert abs(s["trigger"]["t"] - cancel["t"]) < 1.0 and s["trigger"]["speaker"] == "customer"
    next_final = next(e for e in finals if e["seq"] > cancel["seq"])
    assert s["seq"] < next_final["seq"]  # by the request's own final at the latest
    assert s["title"].startswith("Wants to cancel") and s["script"] and s["reason"]


def test_nothing_is_suggested_on_small_talk_or_agent_lines(live: Any) -> None:
    events, _ = live
    cards = [e for e in events if e["type"] == "suggestion" and e["source"] == "playbook"]
    assert cards
    for c in cards:
        if c.get("trigger") is None:
            continue  # a held suggestion released by a context
        assert c["trigger"]["speaker"] != "agent"
        assert norm(c["trigger"]["text"]) not in SMALL_TALK, c


def test_rule_prompt_card_follows_the_deescalation_alert(live: Any) -> None:
    events, _ = live
    alert = next(e for e in events if e["type"] == "alert" and e["rule_id"] == "deescalate")
    card = next(e for e in events if e["type"] == "suggestion" and e["rule_id"] == "deescalate")
    assert card["seq"] == alert["seq"] + 1 and card["source"] == "rule"
    assert "frustrating" in card["script"][0]


def test_agent_stream_joined_mid_call_gets_the_backlog_then_live_events(live: Any) -> None:
    events, agent_stream = live
    assert agent_stream[0]["type"] == "call.started" and agent_stream[0]["seq"] == 1
    seqs = [e["seq"] for e in agent_stream]
    assert seqs == list(range(1, len(seqs) + 1))  # nothing missed, nothing repeated
    assert seqs == sorted(e["seq"] for e in events)


def test_agent_stream_refuses_wrong_tokens(url: str, tokens: dict[str, str]) -> None:
    async def close_code(agent: str, token: str) -> tuple[int | None, str]:
        async with websockets.connect(f"{url}/v1/agents/{agent}/events") as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            return ws.close_code, ws.close_reason or ""

    code, reason = asyncio.run(close_code("sarah", "cw_not-a-token"))
    assert code == 4401 and "unknown or revoked" in reason
    code, reason = asyncio.run(close_code("sarah", tokens["emma"]))
    assert code == 4401 and "belongs to agent 'emma'" in reason


def test_session_endpoint_checks_the_token(url: str, tokens: dict[str, str]) -> None:
    base = f"{http(url)}/v1/agents/sarah/session"
    assert httpx.get(base).status_code == 401
    bad = httpx.get(base, headers={"Authorization": f"Bearer {tokens['emma']}"})
    assert bad.status_code == 403 and "emma" in bad.json()["detail"]
    for who in ("sarah", "boss"):
        ok = httpx.get(base, headers={"Authorization": f"Bearer {tokens[who]}"})
        assert ok.status_code == 200 and ok.json()["auth"] is True


def test_feedback_is_stored_for_qa(url: str, tokens: dict[str, str], live: Any) -> None:
    events, _ = live
    card = next(e for e in events if e["type"] == "suggestion" and e["intent"] == "cancel_service")
    post = f"{http(url)}/v1/calls/{CALL}/suggestions/{card['suggestion_id']}/feedback"
    auth = {"Authorization": f"Bearer {tokens['sarah']}"}
    assert httpx.post(post, json={"verdict": "helpful"}).status_code == 401
    # another agent's call: "no call", as for one that does not exist (ids do not leak)
    assert (
        httpx.post(
            post, json={"verdict": "helpful"}, headers={"Authorization": f"Bearer {tokens['emma']}"}
        ).status_code
        == 404
    )
    assert httpx.post(post, json={"verdict": "great"}, headers=auth).status_code == 422
    missing = f"{http(url)}/v1/calls/{CALL}/suggestions/s999/feedback"
    assert httpx.post(missing, json={"verdict": "helpful"}, headers=auth).status_code == 404
    ok = httpx.post(post, json={"verdict": "helpful", "agent_id": "sarah"}, headers=auth)
    assert ok.status_code == 200 and ok.json()["ok"] is True
    copied = httpx.post(post, json={"verdict": "copied", "line": 1}, headers=auth)
    assert copied.status_code == 200
    boss = {"Authorization": f"Bearer {tokens['boss']}"}
    listed = httpx.get(
        f"{http(url)}/v1/suggestions/feedback", params={"call_id": CALL}, headers=boss
    ).json()
    rows = [(r["suggestion_id"], r["verdict"], r["intent"], r["line"]) for r in listed["feedback"]]
    assert rows == [
        (card["suggestion_id"], "helpful", "cancel_service", None),
        (card["suggestion_id"], "copied", "cancel_service", 1),
    ]
    assert listed["by_intent"]["cancel_service"]["helpful"] == 1


def test_playbooks_endpoint_describes_what_is_loaded(url: str, tokens: dict[str, str]) -> None:
    sarah = {"Authorization": f"Bearer {tokens['sarah']}"}
    books = httpx.get(f"{http(url)}/v1/playbooks", headers=sarah).json()
    assert books["enabled"] is True
    by_language = {b["language"]: b for b in books["playbooks"]}
    assert set(by_language) == {"en", "zh"}  # one per language, chosen per call
    book = by_language["en"]
    assert book["playbook"] == "contact_center" and book["embedder"]
    assert "cancel_service" in {i["id"] for i in book["intents"]}
