"""The QA rules workflow on a running server: CRUD with versions, hot reload into live calls,
invalid rules refused with file/line/field while the previous rules keep running."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from assist.replay import replay
from assist.server import App
from assist.store import callwatch_home
from tests.conftest import DEMO
from tests.live_server import make_state, running_server

pytestmark = pytest.mark.slow  # a real server with a loaded Whisper model

YAML = {"Content-Type": "application/yaml"}

HOTFIX = """\
# Added while calls are live: the agent must not push budget plans.
pack: hotfix
version: 1
description: Rules added during the day
rules:
  - id: no_budget_plan
    kind: phrase
    mode: forbidden
    speaker: agent
    phrases:
      - budget plan
      - confirmation email
    severity: critical
    cooldown_s: 0
    message: "Agent said {matched}"
"""

# Broken: it would drop no_budget_plan, but line 9 has a field no rule kind has.
HOTFIX_BROKEN = """\
pack: hotfix
version: 2
description: Rules added during the day
rules:
  - id: gentle_close
    kind: phrase
    mode: required
    phrases: [have a lovely day]
    colour: blue
"""


@contextmanager
def server(asr: Any, packs: Any, **kw: Any) -> Iterator[tuple[str, App]]:
    """A real server (uvicorn + a real SQLite store in this test's CALLWATCH_HOME)."""
    kw.setdefault("emotion", False)
    kw.setdefault("diarize", False)
    state = make_state(asr, packs, **kw)
    try:
        with running_server(state) as url:
            yield url.replace("ws://", "http://"), state
    finally:
        state.close()


def rules_dir() -> Path:
    return callwatch_home() / "rules"


def wait_for(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def versions(base: str, pack: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{base}/v1/rules/{pack}/versions")
    assert r.status_code == 200, r.text
    return list(r.json()["versions"])


def test_put_pack_versions_diff_and_file(asr, packs) -> None:  # type: ignore[no-untyped-def]
    with server(asr, packs) as (base, _):
        listing = httpx.get(f"{base}/v1/rules").json()
        assert listing["last_error"] is None
        packs_listed = {p["pack"]: p for p in listing["packs"]}
        assert set(packs_listed) == {"default", "zh"}  # the built-in packs, one per language
        default = packs_listed["default"]
        assert default["version"] == 1
        assert Path(default["file"]) == rules_dir() / "default.yaml"

        r = httpx.put(
            f"{base}/v1/rules/hotfix",
            content=HOTFIX,
            headers={**YAML, "X-Callwatch-User": "qa.lead@example.com"},
        )
        assert r.status_code == 201, r.text
        assert r.json()["version"] == 1 and r.json()["author"] == "qa.lead@example.com"
        assert (rules_dir() / "hotfix.yaml").read_text() == HOTFIX  # verbatim, comment kept

        got = httpx.get(f"{base}/v1/rules/hotfix").json()
        assert got["yaml"] == HOTFIX and got["version"] == 1 and got["yaml_version"] == 1
        (rule,) = got["definition"]["rules"]
        assert rule["id"] == "no_budget_plan" and rule["phrases"][0] == "budget plan"

        # v2 (JSON body with a comment): one rule changed, one added, none removed
        v2 = HOTFIX.replace("cooldown_s: 0", "cooldown_s: 5") + (
            "  - id: long_pause\n    kind: silence\n    min_s: 20\n"
        )
        r = httpx.put(
            f"{base}/v1/rules/hotfix",
            json={"yaml": v2, "comment": "slower repeats, add long pause"},
            headers={"X-Callwatch-User": "bob"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["summary"] == {
            "added": ["long_pause"],
            "changed": ["no_budget_plan"],
            "removed": [],
        }
        # v3: a rule removed through the single-rule route
        r = httpx.delete(
            f"{base}/v1/rules/hotfix/rules/long_pause", headers={"X-Callwatch-User": "carol"}
        )
        assert r.status_code == 200 and r.json()["summary"]["removed"] == ["long_pause"]

        vs = versions(base, "hotfix")
        assert [(v["version"], v["author"]) for v in vs] == [
            (1, "qa.lead@example.com"),
            (2, "bob"),
            (3, "carol"),
        ]
        assert vs[1]["comment"] == "slower repeats, add long pause"
        assert all(v["created_at"].endswith("+00:00") for v in vs)

        v = httpx.get(f"{base}/v1/rules/hotfix/versions/2").json()
        assert v["text"] == v2
        assert "-    cooldown_s: 0\n" in v["diff"] and "+    cooldown_s: 5\n" in v["diff"]
        assert "+  - id: long_pause\n" in v["diff"]
        assert "min_s: 20" not in (rules_dir() / "hotfix.yaml").read_text()

        # the same text again is no new version
        r = httpx.put(f"{base}/v1/rules/hotfix", content=v2, headers=YAML)
        r = httpx.put(f"{base}/v1/rules/hotfix", content=v2, headers=YAML)
        assert r.status_code == 200 and r.json()["changed"] is False
        assert len(versions(base, "hotfix")) == 4

        # the listing shows who changed it last
        hot = next(
            p for p in httpx.get(f"{base}/v1/rules").json()["packs"] if p["pack"] == "hotfix"
        )
        assert (hot["version"], hot["rules"], hot["updated_by"]) == (4, 2, "anonymous")

        assert httpx.get(f"{base}/v1/rules/nope").status_code == 404
        assert httpx.get(f"{base}/v1/rules/hotfix/versions/99").status_code == 404
        assert httpx.get(f"{base}/v1/rules/hotfix/rules/nope").status_code == 404


def test_invalid_put_is_refused_and_nothing_changes(asr, packs) -> None:  # type: ignore[no-untyped-def]
    with server(asr, packs) as (base, state):
        assert httpx.put(f"{base}/v1/rules/hotfix", content=HOTFIX, headers=YAML).status_code == 201
        file = rules_dir() / "hotfix.yaml"
        before = (file.read_text(), len(versions(base, "hotfix")), list(state.rules.packs))

        # an unknown field: file, line and field named
        r = httpx.put(f"{base}/v1/rules/hotfix", content=HOTFIX_BROKEN, headers=YAML)
        assert r.status_code == 422
        (issue,) = r.json()["detail"]["issues"]
        assert issue["file"] == str(file)
        assert issue["line"] == 9
        assert issue["field"] == "rules[0](id=gentle_close).colour"

        # broken YAML
        r = httpx.put(
            f"{base}/v1/rules/hotfix", content="pack: hotfix\nrules: [\n  - id: x\n", headers=YAML
        )
        assert r.status_code == 422
        (issue,) = r.json()["detail"]["issues"]
        assert issue["file"] == str(file) and issue["line"] and "invalid YAML" in issue["message"]

        # a rule id another pack already has: refused as a set
        dup = HOTFIX.replace("id: no_budget_plan", "id: dead_air")
        r = httpx.put(f"{base}/v1/rules/hotfix", content=dup, headers=YAML)
        assert r.status_code == 422 and "dead_air" in r.json()["detail"]["issues"][0]["field"]

        # the name in the YAML must be the one in the URL
        r = httpx.put(f"{base}/v1/rules/other", content=HOTFIX, headers=YAML)
        assert r.status_code == 422
        assert r.json()["detail"]["issues"][0]["field"] == "pack"
        assert not (rules_dir() / "other.yaml").exists()

        # one rule, bad: the line counts from the rule's own text
        r = httpx.put(
            f"{base}/v1/rules/hotfix/rules/pause",
            content="kind: silence\nmin_s: -3\n",
            headers=YAML,
        )
        assert r.status_code == 422
        (issue,) = r.json()["detail"]["issues"]
        assert (issue["line"], issue["field"]) == (2, "rules[1](id=pause).min_s")

        assert (file.read_text(), len(versions(base, "hotfix")), list(state.rules.packs)) == before

        # validate without saving: the good text passes, the broken one gets its issues
        ok = httpx.post(f"{base}/v1/rules/validate", content=HOTFIX, headers=YAML)
        assert ok.status_code == 200 and ok.json() == {"ok": True, "pack": "hotfix", "rules": 1}
        bad = httpx.post(f"{base}/v1/rules/validate", json={"yaml": HOTFIX_BROKEN})
        assert bad.status_code == 422 and bad.json()["detail"]["issues"][0]["line"] == 9
        assert file.read_text() == before[0]


def test_single_rule_put_get_and_delete_pack(asr, packs) -> None:  # type: ignore[no-untyped-def]
    with server(asr, packs) as (base, state):
        httpx.put(f"{base}/v1/rules/hotfix", content=HOTFIX, headers=YAML)
        r = httpx.put(
            f"{base}/v1/rules/hotfix/rules/long_pause",
            json={"rule": {"kind": "silence", "min_s": 25}, "comment": "add a pause rule"},
            headers={"X-Callwatch-User": "dana"},
        )
        assert r.status_code == 201, r.text
        assert r.json()["summary"]["added"] == ["long_pause"]
        got = httpx.get(f"{base}/v1/rules/hotfix/rules/long_pause").json()
        assert got["rule"]["min_s"] == 25 and got["version"] == 2
        on_disk = yaml.safe_load((rules_dir() / "hotfix.yaml").read_text())
        assert on_disk["rules"][1] == {"id": "long_pause", "kind": "silence", "min_s": 25}

        r = httpx.put(
            f"{base}/v1/rules/hotfix/rules/long_pause",
            content="id: long_pause\nkind: silence\nmin_s: 40\n",
            headers=YAML,
        )
        assert r.status_code == 200 and r.json()["summary"]["changed"] == ["long_pause"]

        r = httpx.delete(f"{base}/v1/rules/hotfix", headers={"X-Callwatch-User": "dana"})
        assert r.status_code == 200 and r.json()["deleted"] is True
        assert not (rules_dir() / "hotfix.yaml").exists()
        assert [p.pack for p in state.rules.packs] == ["default", "zh"]
        assert httpx.get(f"{base}/v1/rules/hotfix").status_code == 404
        last = versions(base, "hotfix")[-1]
        assert last["summary"]["deleted"] is True and last["author"] == "dana"


def test_restore_an_old_version(asr, packs) -> None:  # type: ignore[no-untyped-def]
    with server(asr, packs) as (base, state):
        httpx.put(f"{base}/v1/rules/hotfix", content=HOTFIX, headers=YAML)
        r = httpx.put(
            f"{base}/v1/rules/hotfix",
            content=HOTFIX.replace("      - confirmation email\n", ""),
            headers=YAML,
        )
        assert r.status_code == 200 and r.json()["version"] == 2, r.text
        r = httpx.post(
            f"{base}/v1/rules/hotfix/versions/1/restore", headers={"X-Callwatch-User": "erin"}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["version"], body["author"], body["comment"]) == (
            3,
            "erin",
            "restore of version 1",
        )
        assert body["summary"]["changed"] == ["no_budget_plan"]
        assert (rules_dir() / "hotfix.yaml").read_text() == HOTFIX
        (hot,) = [p for p in state.rules.packs if p.pack == "hotfix"]
        assert "confirmation email" in hot.rules[0].phrases  # type: ignore[union-attr]
        # after a deletion, a restore brings the pack back
        httpx.delete(f"{base}/v1/rules/hotfix")
        r = httpx.post(f"{base}/v1/rules/hotfix/versions/1/restore")
        assert r.status_code == 200 and r.json()["version"] == 5
        assert "hotfix" in {p.pack for p in state.rules.packs}
        assert httpx.post(f"{base}/v1/rules/hotfix/versions/4/restore").status_code == 422
        assert httpx.post(f"{base}/v1/rules/hotfix/versions/9/restore").status_code == 404


def test_files_edited_on_disk_are_picked_up(asr, packs) -> None:  # type: ignore[no-untyped-def]
    with server(asr, packs, rules_poll_s=0.1) as (base, state):
        file = rules_dir() / "hotfix.yaml"
        file.write_text(HOTFIX)  # a new file, dropped in by a QA lead
        wait_for(lambda: "hotfix" in {p.pack for p in state.rules.packs}, what="new file")
        (v1,) = versions(base, "hotfix")
        assert v1["author"] == f"file:{file}" and v1["summary"]["added"] == ["no_budget_plan"]

        file.write_text(HOTFIX.replace("severity: critical", "severity: warning"))
        wait_for(lambda: len(versions(base, "hotfix")) == 2, what="edited file")
        (hot,) = [p for p in state.rules.packs if p.pack == "hotfix"]
        assert hot.rules[0].severity == "warning"

        # a broken edit: the running set stays, the problem is shown
        running = list(state.rules.packs)
        file.write_text(HOTFIX_BROKEN)
        err = wait_for(lambda: httpx.get(f"{base}/v1/rules").json()["last_error"], what="error")
        (issue,) = err["issues"]
        assert (issue["file"], issue["line"], issue["field"]) == (
            str(file),
            9,
            "rules[0](id=gentle_close).colour",
        )
        assert state.rules.packs == running and len(versions(base, "hotfix")) == 2
        assert httpx.get(f"{base}/v1/rules/hotfix").json()["yaml"] != HOTFIX_BROKEN

        # fixed: loads, the error clears
        file.write_text(HOTFIX)
        wait_for(lambda: httpx.get(f"{base}/v1/rules").json()["last_error"] is None, what="fix")
        assert len(versions(base, "hotfix")) == 3


def test_restart_runs_the_latest_versions(asr, packs) -> None:  # type: ignore[no-untyped-def]
    with server(asr, packs) as (base, _):
        httpx.put(f"{base}/v1/rules/hotfix", content=HOTFIX, headers=YAML)
        r = httpx.put(
            f"{base}/v1/rules/default/rules/dead_air",
            json={"kind": "silence", "min_s": 15},
            headers={"X-Callwatch-User": "fay"},
        )
        assert r.status_code == 200 and r.json()["version"] == 2
    # same CALLWATCH_HOME: the edited folder wins over the packs passed in
    with server(asr, packs) as (base, state):
        assert {p.pack for p in state.rules.packs} == {"default", "hotfix", "zh"}
        (dead_air,) = [r for p in state.rules.packs for r in p.rules if r.id == "dead_air"]
        assert dead_air.min_s == 15  # type: ignore[union-attr]
        listing = {p["pack"]: p for p in httpx.get(f"{base}/v1/rules").json()["packs"]}
        assert (listing["default"]["version"], listing["default"]["updated_by"]) == (2, "fay")
        assert listing["hotfix"]["version"] == 1  # unchanged on disk: no new version
    # the folder broken while the server was down: the last stored versions run
    (rules_dir() / "hotfix.yaml").write_text(HOTFIX_BROKEN)
    with server(asr, packs) as (base, state):
        assert {p.pack for p in state.rules.packs} == {"default", "hotfix", "zh"}
        (hot,) = [p for p in state.rules.packs if p.pack == "hotfix"]
        assert hot.rules[0].id == "no_budget_plan"
        err = httpx.get(f"{base}/v1/rules").json()["last_error"]
        assert err["issues"][0]["line"] == 9
        # fixing it over the API clears the error
        r = httpx.put(f"{base}/v1/rules/hotfix", content=HOTFIX, headers=YAML)
        assert r.status_code == 200
        assert httpx.get(f"{base}/v1/rules").json()["last_error"] is None


def test_hot_reload_into_a_live_call(asr, packs) -> None:  # type: ignore[no-untyped-def]
    """Mid-call, a new forbidden phrase rule starts firing on what the agent says next; a
    broken PUT a moment later changes nothing."""
    with server(asr, packs) as (base, _):
        url = base.replace("http://", "ws://")
        asked_dob = asyncio.Event()
        replies: dict[str, httpx.Response] = {}

        def on_event(ev: dict[str, Any], _lat: float) -> None:
            if ev["type"] == "transcript.final" and "date of birth" in ev["text"].lower():
                asked_dob.set()

        async def edit_rules() -> None:
            await asked_dob.wait()  # ~23 s into the call; "budget plan" comes at ~52 s
            async with httpx.AsyncClient(base_url=base) as client:
                replies["good"] = await client.put(
                    "/v1/rules/hotfix",
                    content=HOTFIX,
                    headers={**YAML, "X-Callwatch-User": "supervisor-1"},
                )
                replies["broken"] = await client.put(
                    "/v1/rules/hotfix", content=HOTFIX_BROKEN, headers=YAML
                )

        async def run() -> Any:
            res, _ = await asyncio.gather(
                replay(
                    url,
                    str(DEMO / "clean_call.wav"),
                    protocol="raw",
                    speed=4.0,
                    call_id="hot-reload-1",
                    on_event=on_event,
                ),
                edit_rules(),
            )
            return res

        res = asyncio.run(run())
        assert replies["good"].status_code == 201, replies["good"].text
        assert replies["broken"].status_code == 422
        events = res.events
        changed = [e for e in events if e["type"] == "rules.changed"]
        assert len(changed) == 1, "the broken PUT must not reach the call"
        assert changed[0]["added"] == ["no_budget_plan"]
        assert "hotfix@1" in changed[0]["packs"]
        dob = next(e for e in events if "date of birth" in e.get("text", "").lower())
        assert changed[0]["seq"] > dob["seq"]

        alerts = [e for e in events if e["type"] == "alert" and e["rule_id"] == "no_budget_plan"]
        said = [a["evidence"]["phrase"] for a in alerts]
        assert said == ["budget plan", "confirmation email"], alerts
        assert all(a["seq"] > changed[0]["seq"] for a in alerts)
        assert 50 < alerts[0]["t"] < 60 and 64 < alerts[1]["t"] < 70
        assert [e["type"] for e in events][-1] == "call.ended"

        # QA asks why, on the stored call, and tests a draft before it goes live
        why = httpx.get(f"{base}/v1/calls/hot-reload-1/explain/no_budget_plan").json()
        assert why["verdict"] == "FIRED 2 time(s)"
        assert [a["t"] for a in why["stored_alerts"]] == [a["t"] for a in alerts]
        why = httpx.get(f"{base}/v1/calls/hot-reload-1/explain/recording_disclosure").json()
        assert why["verdict"].startswith("did not fire")
        assert any("this call may be recorded" in f and "counts" in f for f in why["findings"])
        assert httpx.get(f"{base}/v1/calls/hot-reload-1/explain/nope").status_code == 404
        cases = (
            "cases:\n"
            "  - name: budget plan is refused\n"
            "    events: [{speaker: agent, t: 5, text: 'we can set up a budget plan'}]\n"
            "    expect: [no_budget_plan]\n"
        )
        run = httpx.post(f"{base}/v1/rules/test", json={"cases": cases}).json()
        assert run["passed"] is True and run["summary"]["failed"] == 0, run
        draft = HOTFIX.replace("      - budget plan\n", "")
        run = httpx.post(f"{base}/v1/rules/test", json={"cases": cases, "yaml": draft}).json()
        assert run["summary"]["failed"] == 1 and "no_budget_plan" in run["cases"][0]["failures"][0]
        bad = httpx.post(
            f"{base}/v1/rules/test", json={"cases": cases.replace("no_budget_plan", "no_budget")}
        )
        assert bad.status_code == 422 and "did you mean 'no_budget_plan'" in bad.text


def test_names_conflicts_and_single_file_mode(asr, packs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with server(asr, packs, rules_poll_s=0) as (base, _):
        r = httpx.put(f"{base}/v1/rules/..hidden", content="pack: ..hidden\n", headers=YAML)
        assert r.status_code == 422 and "pack name" in r.json()["detail"]["message"]
        # a file in the folder that is not a running pack is never overwritten
        (rules_dir() / "draft.yaml").write_text("pack: draft\nrules: [\n")
        draft = "pack: draft\nrules: []\n"
        r = httpx.put(f"{base}/v1/rules/draft", content=draft, headers=YAML)
        assert r.status_code == 409
        assert (rules_dir() / "draft.yaml").read_text() == "pack: draft\nrules: [\n"
    one = tmp_path / "only.yaml"
    one.write_text(HOTFIX)
    with server(asr, packs, rules=str(one)) as (base, state):
        assert [p.pack for p in state.rules.packs] == ["hotfix"]
        r = httpx.put(f"{base}/v1/rules/other", content="pack: other\n", headers=YAML)
        assert r.status_code == 409
        r = httpx.put(
            f"{base}/v1/rules/hotfix",
            content=HOTFIX.replace("severity: critical", "severity: info"),
            headers=YAML,
        )
        assert r.status_code == 200 and "severity: info" in one.read_text()
        assert httpx.delete(f"{base}/v1/rules/hotfix").status_code == 409
