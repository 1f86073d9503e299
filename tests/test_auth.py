"""Access control on a running server with tokens: every role boundary over HTTP and over
WebSocket, token management, and the route table checked against the app itself (a route
added without an access rule fails here)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from assist.auth import (
    OPEN_ROUTES,
    PERMISSIONS,
    ROLES,
    ROUTES,
    WS,
    RedactTokens,
    matrix_markdown,
    route_problems,
    routes_markdown,
)
from assist.cli import main as cli_main
from assist.replay import replay
from assist.server import App, ServerConfig, create_app
from tests.conftest import DEMO, REPO
from tests.live_server import auth_header, make_state, make_tokens, running_server

pytestmark = pytest.mark.slow  # a real server with a loaded Whisper model

HOTFIX = """\
pack: authhotfix
version: 1
description: a QA edit
rules:
  - id: no_budget_plan
    kind: phrase
    mode: forbidden
    speaker: agent
    phrases: [budget plan]
    severity: warning
    message: "Agent said {matched}"
"""


@dataclass
class World:
    state: App
    ws: str
    http: str
    tokens: dict[str, str]
    alice_call: str
    bob_call: str

    def get(self, path: str, who: str | None, **kw: Any) -> httpx.Response:
        token = self.tokens.get(who) if who else None
        return httpx.get(f"{self.http}{path}", headers=auth_header(token), timeout=30, **kw)

    def send(self, method: str, path: str, who: str | None, **kw: Any) -> httpx.Response:
        token = self.tokens.get(who) if who else None
        headers = {**auth_header(token), **kw.pop("headers", {})}
        return httpx.request(method, f"{self.http}{path}", headers=headers, timeout=30, **kw)


@pytest.fixture(scope="module")
def world(asr, packs) -> Iterator[World]:  # type: ignore[no-untyped-def]
    """A server with auth on, one finished call by agent alice and one by agent bob."""
    state = make_state(asr, packs, auth=True, diarize=False, assist=False)
    tokens = make_tokens(state, "alice", "bob")
    try:
        with running_server(state) as ws:

            async def calls() -> list[Any]:
                return await asyncio.gather(
                    *(
                        replay(
                            ws,
                            str(DEMO / f"{name}.wav"),
                            protocol="raw",
                            speed=16.0,
                            agent_id=agent,
                            call_id=f"auth-{agent}",
                            token=tokens["ingest"],
                            events_token=tokens["supervisor"],
                        )
                        for name, agent in (("clean_call", "alice"), ("breach_call", "bob"))
                    )
                )

            results = asyncio.run(calls())
            assert all(r.events and r.events[-1]["type"] == "call.ended" for r in results)
            assert state.store is not None
            for r in results:  # stored once ended
                assert (
                    state.store.get_report(r.call_id) is not None or r.call_id in state.calls.calls
                )
            yield World(state, ws, ws.replace("ws://", "http://"), tokens, "auth-alice", "auth-bob")
    finally:
        state.close()


def ws_outcome(
    url: str, token: str | None = None, first: str | None = None, want: int = 0
) -> tuple[int | None, str, list[dict[str, Any]]]:
    """(close code, reason, messages) of a WebSocket: reads ``want`` messages then leaves
    (code None), or until the server closes it."""
    got: list[dict[str, Any]] = []
    with connect(url, additional_headers=auth_header(token), open_timeout=10) as ws:
        if first is not None:
            ws.send(first)
        try:
            while not want or len(got) < want:
                got.append(json.loads(ws.recv(timeout=20)))
        except ConnectionClosed as exc:
            return (exc.rcvd.code if exc.rcvd else None), (exc.rcvd.reason if exc.rcvd else ""), got
    return None, "", got


# -- the tables ------------------------------------------------------------------------------


def test_every_route_has_the_access_rule_the_table_gives() -> None:
    """Each route's guard checks exactly the permission auth.ROUTES names; a route in
    neither ROUTES nor OPEN_ROUTES (a new one, unprotected) is a failure."""
    app = create_app(ServerConfig(auth=True))
    assert route_problems(app) == []
    assert set(ROUTES.values()) <= set(PERMISSIONS)
    for perm in PERMISSIONS.values():
        assert set(perm.grants) <= set(ROLES)


def test_an_unlisted_route_is_reported() -> None:
    app = create_app(ServerConfig(auth=True))

    @app.get("/v1/new-and-unguarded")
    async def new() -> dict[str, Any]:
        return {}

    assert route_problems(app) == [
        "GET /v1/new-and-unguarded is not in auth.ROUTES (nor OPEN_ROUTES)"
    ]


def test_docs_show_the_same_role_matrix() -> None:
    text = (REPO / "docs" / "security.md").read_text()
    assert matrix_markdown() in text


def _fill(path: str) -> str:
    values = {
        "call_id": "nope",
        "seq": "1",
        "pack": "default",
        "n": "1",
        "rule_id": "x",
        "sid": "s1",
        "job_id": "j1",
        "agent_id": "alice",
        "token_id": "1",
        "protocol": "raw",
        "name": "agent.js",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def test_every_protected_route_refuses_a_request_without_a_token(world: World) -> None:
    """Walks the running app's own route list: HTTP 401, event streams 4401, ingest 1008."""
    app = create_app(ServerConfig(auth=True))
    checked = 0
    for route in app.routes:
        methods = sorted(getattr(route, "methods", None) or [WS])
        for method in methods:
            if method == "HEAD":
                continue
            key = (method, route.path)  # type: ignore[attr-defined]
            path = _fill(route.path)  # type: ignore[attr-defined]
            if key in OPEN_ROUTES:
                r = world.send(method, path, None, follow_redirects=True)
                assert r.status_code == 200, (key, r.status_code)
                continue
            if method != WS:
                r = world.send(method, path, None, json={})
                assert r.status_code == 401, (key, r.status_code, r.text)
                assert r.headers.get("www-authenticate") == "Bearer"
            elif ROUTES[key] == "ingest":
                start = json.dumps({"type": "start", "sample_rate": 16000})
                code, reason, _ = ws_outcome(f"{world.ws}{path}", first=start)
                assert (code, "token is needed" in reason) == (1008, True), (key, reason)
            else:
                code, reason, _ = ws_outcome(
                    f"{world.ws}{path}", first=json.dumps({"type": "auth", "token": ""})
                )
                assert code == 4401 and "token is needed" in reason, (key, code, reason)
            checked += 1
    assert checked == len(ROUTES)


# -- agents see their own calls only ----------------------------------------------------------


def test_agent_lists_only_its_own_calls_in_every_scope(world: World) -> None:
    for scope in ("live", "stored", "all"):
        mine = world.get("/v1/calls", "alice", params={"scope": scope}).json()
        assert {c["agent_id"] for c in mine["calls"]} <= {"alice"}, scope
        assert mine["total"] == len(mine["calls"])
        asked = world.get("/v1/calls", "alice", params={"scope": scope, "agent": "bob"}).json()
        assert asked == {"calls": [], "total": 0}
    stored = world.get("/v1/calls", "alice", params={"scope": "all"}).json()["calls"]
    assert world.alice_call in {c["call_id"] for c in stored}
    everyone = world.get("/v1/calls", "supervisor", params={"scope": "all"}).json()["calls"]
    assert {world.alice_call, world.bob_call} <= {c["call_id"] for c in everyone}


@pytest.mark.parametrize(
    "path",
    [
        "/v1/calls/{id}",
        "/v1/calls/{id}/events",
        "/v1/calls/{id}/export?format=csv",
        "/v1/calls/{id}/explain/greeting",
    ],
)
def test_another_agents_call_is_not_found_for_an_agent(world: World, path: str) -> None:
    theirs = world.get(path.format(id=world.bob_call), "alice")
    nowhere = world.get(path.format(id="no-such-call"), "alice")
    assert theirs.status_code == nowhere.status_code == 404  # the id does not leak
    assert theirs.json()["detail"] == f"no call {world.bob_call!r}"
    own = world.get(path.format(id=world.alice_call), "alice")
    assert own.status_code in (200, 404) and "no call" not in own.text
    boss = world.get(path.format(id=world.bob_call), "supervisor")
    assert boss.status_code in (200, 404) and "no call" not in boss.text


def test_agent_reads_its_own_call(world: World) -> None:
    detail = world.get(f"/v1/calls/{world.alice_call}", "alice").json()
    assert detail["agent_id"] == "alice" and detail["transcript"]
    csv = world.get(f"/v1/calls/{world.alice_call}/export", "alice", params={"format": "csv"})
    assert csv.status_code == 200 and "transcript" in csv.text.lower()


def test_agent_gets_no_recordings(world: World) -> None:
    r = world.get(f"/v1/calls/{world.alice_call}/audio", "alice")
    assert r.status_code == 403 and "recordings" in r.json()["detail"]


def test_search_and_alerts_are_cut_to_the_agents_calls(world: World) -> None:
    boss_alerts = world.get("/v1/alerts", "supervisor", params={"status": "all"}).json()["alerts"]
    bobs = [a for a in boss_alerts if a["call_id"] == world.bob_call]
    assert bobs, "the breach call raises alerts"
    for params in ({}, {"agent": "bob"}, {"call_id": world.bob_call}):
        mine = world.get("/v1/alerts", "alice", params={"status": "all", **params}).json()
        assert all(a["call_id"] == world.alice_call for a in mine["alerts"]), params
        assert all(a["agent_id"] == "alice" for a in mine["alerts"])
    # a word bob's call says: found for the supervisor, not for alice
    words = world.get(f"/v1/calls/{world.bob_call}", "supervisor").json()["transcript"]
    word = max((w for line in words for w in line["text"].split()), key=len).strip(".,?!")
    boss_hits = world.get("/v1/search", "supervisor", params={"q": word}).json()["hits"]
    assert world.bob_call in {h["call_id"] for h in boss_hits}
    for params in ({"q": word}, {"q": word, "agent": "bob"}):
        hits = world.get("/v1/search", "alice", params=params).json()["hits"]
        assert world.bob_call not in {h["call_id"] for h in hits}


def test_feedback_only_on_the_agents_own_calls(world: World) -> None:
    theirs = world.send(
        "POST", f"/v1/calls/{world.bob_call}/suggestions/s1/feedback", "alice", json={}
    )
    assert theirs.status_code == 404 and theirs.json()["detail"] == f"no call {world.bob_call!r}"
    own = world.send(
        "POST", f"/v1/calls/{world.alice_call}/suggestions/s1/feedback", "alice", json={}
    )
    assert own.status_code == 422  # past the guard: the body is checked


def test_agent_event_streams_over_websocket(world: World) -> None:
    """A live call of alice's: she and the supervisor follow it; bob gets "no call" (4404),
    and bob's token cannot open alice's panel stream."""
    call_id = f"auth-live-{uuid.uuid4().hex[:6]}"
    start = {"type": "start", "call_id": call_id, "agent_id": "alice", "sample_rate": 16000}
    with connect(
        f"{world.ws}/v1/ingest/raw", additional_headers=auth_header(world.tokens["ingest"])
    ) as ingest:
        ingest.send(json.dumps(start))
        assert json.loads(ingest.recv(timeout=10))["type"] == "started"
        ingest.send(bytes(6400))  # 0.1 s of silence
        url = f"{world.ws}/v1/calls/{call_id}/events"
        for who in ("alice", "supervisor"):
            code, _, got = ws_outcome(url, world.tokens[who], want=1)
            assert code is None and got[0]["type"] == "call.started", who
            assert got[0]["call_id"] == call_id
        # the browser way: the token as the first frame
        auth = json.dumps({"type": "auth", "token": world.tokens["alice"]})
        code, _, got = ws_outcome(url, first=auth, want=1)
        assert code is None and got[0]["call_id"] == call_id
        code, reason, got = ws_outcome(url, world.tokens["bob"])
        assert (code, reason, got) == (4404, f"no call {call_id!r}", [])
        code, reason, _ = ws_outcome(
            f"{world.ws}/v1/calls/{world.bob_call}/events", world.tokens["alice"]
        )
        assert code == 4404
        panel = f"{world.ws}/v1/agents/alice/events"
        code, _, got = ws_outcome(panel, world.tokens["alice"], want=1)
        assert code is None and got[0]["call_id"] == call_id
        code, reason, _ = ws_outcome(panel, world.tokens["bob"])
        assert code == 4401 and "belongs to agent 'bob'" in reason
        for who in ("ingest",):  # a connector token reads nothing
            code, reason, _ = ws_outcome(url, world.tokens[who])
            assert code == 4403 and "ingest token may not read calls" in reason
        ingest.send(json.dumps({"type": "stop"}))


# -- what each staff role may change ------------------------------------------------------------


def _an_alert(world: World) -> dict[str, Any]:
    alerts = world.get("/v1/alerts", "supervisor", params={"status": "all", "agent": "bob"})
    return dict(alerts.json()["alerts"][0])


def test_agent_cannot_triage_edit_rules_or_manage_tokens(world: World) -> None:
    own = world.get("/v1/alerts", "alice", params={"status": "all"}).json()["alerts"]
    target = own[0] if own else _an_alert(world)
    for verb in ("ack", "assign", "reopen"):
        r = world.send(
            "POST", f"/v1/alerts/{target['call_id']}/{target['seq']}/{verb}", "alice", json={}
        )
        assert r.status_code == 403 and "agent token may not" in r.json()["detail"]
    assert world.get("/v1/rules", "alice").status_code == 403
    put = world.send("PUT", "/v1/rules/authhotfix", "alice", content=HOTFIX)
    assert put.status_code == 403
    for path in ("/v1/tokens", "/metrics", "/v1/audits", "/v1/suggestions/feedback"):
        assert world.get(path, "alice").status_code == 403, path
    assert world.get("/v1/playbooks", "alice").status_code == 200


def test_supervisor_triages_but_cannot_edit_rules_or_manage_tokens(world: World) -> None:
    alert = _an_alert(world)
    acked = world.send(
        "POST",
        f"/v1/alerts/{alert['call_id']}/{alert['seq']}/ack",
        "supervisor",
        json={"note": "seen"},
        headers={"X-Callwatch-User": "mallory"},  # ignored with auth on
    )
    assert acked.status_code == 200
    assert acked.json()["state"]["acked_by"] == "test supervisor"
    assert world.get("/v1/rules", "supervisor").status_code == 200
    put = world.send("PUT", "/v1/rules/authhotfix", "supervisor", content=HOTFIX)
    assert put.status_code == 403 and "supervisor token may not edit" in put.json()["detail"]
    assert world.send("POST", "/v1/rules/validate", "supervisor", json={}).status_code == 403
    assert world.get("/v1/tokens", "supervisor").status_code == 403
    assert world.send("POST", "/v1/tokens", "supervisor", json={"role": "admin"}).status_code == 403
    assert world.get("/v1/audits", "supervisor").status_code == 200
    assert world.get(f"/v1/calls/{world.bob_call}/audio", "supervisor").status_code == 404


def test_qa_edits_rules_but_cannot_triage_or_manage_tokens(world: World) -> None:
    put = world.send(
        "PUT",
        "/v1/rules/authhotfix",
        "qa",
        content=HOTFIX,
        headers={"Content-Type": "application/yaml", "X-Callwatch-User": "mallory"},
    )
    assert put.status_code == 201, put.text
    assert put.json()["author"] == "test qa"
    versions = world.get("/v1/rules/authhotfix/versions", "qa").json()["versions"]
    assert [v["author"] for v in versions] == ["test qa"]
    alert = _an_alert(world)
    ack = world.send("POST", f"/v1/alerts/{alert['call_id']}/{alert['seq']}/ack", "qa", json={})
    assert ack.status_code == 403
    assert world.get("/v1/tokens", "qa").status_code == 403
    assert world.send("DELETE", "/v1/rules/authhotfix", "qa").status_code == 200


def test_ingest_token_only_streams_calls_in(world: World) -> None:
    for path in ("/v1/calls", f"/v1/calls/{world.bob_call}", "/v1/alerts", "/v1/rules"):
        r = world.get(path, "ingest")
        assert r.status_code == 403 and "ingest token may not" in r.json()["detail"], path


def test_admin_manages_tokens_over_http(world: World) -> None:
    made = world.send(
        "POST", "/v1/tokens", "admin", json={"role": "agent", "agent_id": "carol", "label": "Carol"}
    )
    assert made.status_code == 201
    body = made.json()
    secret, token_id = body["token"], body["id"]
    assert (body["role"], body["agent_id"]) == ("agent", "carol")
    listed = world.get("/v1/tokens", "admin").json()["tokens"]
    row = next(t for t in listed if t["id"] == token_id)
    assert row["label"] == "Carol" and row["revoked_at"] is None
    assert secret not in json.dumps(listed) and "token_sha256" not in row
    carol = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(f"{world.http}/v1/agents/carol/session", headers=carol).status_code == 200
    bad = [
        {"role": "boss"},
        {"role": "agent"},
        {"role": "qa", "agent_id": "carol"},
        {"role": "qa", "label": 7},
    ]
    for req in bad:
        assert world.send("POST", "/v1/tokens", "admin", json=req).status_code == 422, req
    assert world.send("DELETE", f"/v1/tokens/{token_id}", "admin").json()["revoked"] is True
    assert world.send("DELETE", f"/v1/tokens/{token_id}", "admin").status_code == 404
    # revoked: refused over HTTP and over WebSocket
    refused = httpx.get(f"{world.http}/v1/agents/carol/session", headers=carol)
    assert refused.status_code == 401 and "unknown or revoked" in refused.json()["detail"]
    code, reason, _ = ws_outcome(f"{world.ws}/v1/agents/carol/events", secret)
    assert code == 4401 and "unknown or revoked" in reason


def test_refusals_are_counted(world: World) -> None:
    before = world.get("/metrics", "admin").json()["auth_refused"]
    assert world.get("/v1/calls", None).status_code == 401
    assert world.get("/v1/tokens", "qa").status_code == 403
    assert world.get("/metrics", "admin").json()["auth_refused"] == before + 2


# -- the CLI ---------------------------------------------------------------------------------


def test_tokens_cli_creates_an_ingest_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["tokens", "create", "--role", "ingest", "--label", "twilio bridge"]) == 0
    out = capsys.readouterr()
    assert out.out.strip().startswith("cw_") and "/v1/ingest" in out.err
    assert cli_main(["tokens", "create", "--role", "agent", "--label", "x"]) == 2
    assert "--agent" in capsys.readouterr().err
    assert cli_main(["tokens", "create", "--role", "root"]) == 2
    assert "'role' must be one of" in capsys.readouterr().err


def test_board_client_sends_its_token_on_every_request(world: World) -> None:
    from dashboard.client import CallwatchClient, ServerError

    with CallwatchClient(world.http, token=world.tokens["supervisor"], user="mallory") as board:
        assert {world.alice_call, world.bob_call} <= {c["call_id"] for c in board.calls("all")}
        assert board.call(world.bob_call)["agent_id"] == "bob"
        assert board.call_events(world.bob_call, ["call.started"])
        assert board.export(world.bob_call, "json")
        assert board.alerts(status="all")["alerts"]
        assert board.rule_packs()
        assert world.http in board.metrics()
    with CallwatchClient(world.http, token=world.tokens["alice"]) as agent_board:
        assert {c["agent_id"] for c in agent_board.calls("all")} == {"alice"}
    with CallwatchClient(world.http) as anonymous:
        with pytest.raises(ServerError) as refused:
            anonymous.calls("all")
        assert refused.value.status == 401 and "token is needed" in refused.value.message
        assert anonymous.health() == {world.http: "ok"}  # liveness stays open


def test_docs_show_the_same_route_table() -> None:
    text = (REPO / "docs" / "security.md").read_text()
    assert routes_markdown() in text


def test_access_log_blanks_sign_in_tokens() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/agent?agent=sarah&token=cw_s3cret-XY_z", "1.1", 200),
        None,
    )
    assert RedactTokens().filter(record)
    assert record.getMessage() == (
        '127.0.0.1:5000 - "GET /agent?agent=sarah&token=[redacted] HTTP/1.1" 200'
    )


def test_the_panels_static_files_stay_in_their_folder(world: World) -> None:
    assert world.get("/agent/static/agent.js", None).status_code == 200
    for name in ("..%2Fauth.py", ".hidden.js", "agent.py", "%2E%2E%2Fweb%2Fagent.js"):
        assert world.get(f"/agent/static/{name}", None).status_code == 404, name


def test_row_numbers_past_what_a_database_holds_are_client_errors(world: World) -> None:
    huge = 2**63
    assert world.send("DELETE", f"/v1/tokens/{huge}", "admin").status_code == 422
    assert world.send("DELETE", "/v1/tokens/0", "admin").status_code == 422
    assert world.get(f"/v1/rules/default/versions/{huge}", "qa").status_code == 422
    restore = world.send("POST", f"/v1/rules/default/versions/{huge}/restore", "qa")
    assert restore.status_code == 422
