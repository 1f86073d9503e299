"""The board's Rules, Audits and Insights pages (AppTest) against real servers.

Reads go to the session's ``board`` server (tests/board_server.py: the three demo calls
stored, the built-in pack). What writes (a new rule pack, audits) goes to this module's own
``admin`` server, so the shared one stays as the other board tests expect. One folder audit
of one demo call plus an 8-second upload keep the model time down. Down, slow and empty
servers get a message, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from streamlit.testing.v1 import AppTest

from assist.demo import DEMO_CALLS, free_port
from dashboard import insights
from dashboard.client import CallwatchClient
from dashboard.common import duration
from tests.board_server import empty_server, sleepy_server
from tests.live_server import make_state, running_server

pytestmark = pytest.mark.slow

PAGES = Path(__file__).resolve().parents[1] / "dashboard" / "pages"
USER = "qa.lead"
NEW_PACK = "board_admin_qa"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("CALLWATCH_USER", USER)
    monkeypatch.delenv("CALLWATCH_TOKEN", raising=False)
    monkeypatch.delenv("CALLWATCH_TIMEOUT_S", raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def admin(asr: Any, packs: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server of this module's own for what writes (a new rule pack, audits), so the shared
    ``board`` keeps exactly its three demo calls and the built-in pack for the other tests."""
    home = tmp_path_factory.mktemp("board-admin")
    recordings = home / "recordings"
    recordings.mkdir()
    for name in ("breach_call", "clean_call"):
        shutil.copy(DEMO_CALLS / f"{name}.wav", recordings / f"{name}.wav")
    state = make_state(
        asr,
        packs,
        rules=str(home / "rules"),
        db_url=f"sqlite:///{home / 'admin.db'}",
        audit_dirs=[str(recordings)],
    )
    with running_server(state) as ws:
        yield ws.replace("ws://", "http://")


def page_at(name: str, server: str, env: pytest.MonkeyPatch) -> AppTest:
    env.setenv("CALLWATCH_SERVER", server)
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(getattr(e, "value", "")) for e in at.get(kind)]


def frames_with(at: AppTest, column: str) -> list[Any]:
    return [d.value for d in at.dataframe if column in d.value.columns]


# -- Rules --------------------------------------------------------------------------------------
def test_rules_lists_the_default_packs_rules(board: Any, env: pytest.MonkeyPatch) -> None:
    at = page_at("rules", board.http, env)
    expected = [
        r["id"] for r in CallwatchClient(board.http).rule_pack("default")["definition"]["rules"]
    ]
    [rules] = frames_with(at, "kind")
    assert list(rules["id"]) == expected
    assert {"greeting", "forbidden_language", "dead_air", "caller_angry"} <= set(expected)
    assert at.selectbox(key="rules_pack").value == "default"


def test_rules_broken_edit_shows_the_line_and_changes_nothing(
    board: Any, env: pytest.MonkeyPatch
) -> None:
    client = CallwatchClient(board.http)
    before = client.rule_pack("default")
    at = page_at("rules", board.http, env)
    text = str(at.text_area(key="rules_yaml").value)
    assert text == before["yaml"]
    bad = text.replace("severity: info", "severity: loud", 1)
    line = bad.splitlines().index("    severity: loud") + 1

    at.text_area(key="rules_yaml").input(bad)
    at.button(key="rules_validate").click().run()
    assert not at.exception
    assert "Not valid:" in texts(at, "error")
    issues = "\n".join(texts(at, "code"))
    assert f"default.yaml:{line} rules[0](id=greeting).severity:" in issues

    at.text_input(key="rules_comment").input("try a louder greeting")
    at.button(key="rules_save").click().run()
    assert not at.exception
    assert any("nothing was changed" in e for e in texts(at, "error"))
    assert f"default.yaml:{line}" in "\n".join(texts(at, "code"))
    # the user's text stays in the editor; the running pack is untouched
    assert at.text_area(key="rules_yaml").value == bad
    after = client.rule_pack("default")
    assert (after["version"], after["yaml"]) == (before["version"], before["yaml"])


def test_rules_new_pack_save_versions_and_restore(admin: str, env: pytest.MonkeyPatch) -> None:
    client = CallwatchClient(admin)
    rule_id = f"{NEW_PACK}_no_guarantees"
    at = page_at("rules", admin, env)
    # an unsaved edit of another pack survives switching packs
    default_draft = str(at.text_area(key="rules_yaml").value) + "# a note, not saved yet\n"
    at.text_area(key="rules_yaml").input(default_draft).run()
    try:
        at.text_input(key="rules_new_name").input(NEW_PACK)
        at.button(key="rules_new").click().run()
        assert at.selectbox(key="rules_pack").value == NEW_PACK
        template = str(at.text_area(key="rules_yaml").value)
        assert f"pack: {NEW_PACK}" in template

        at.button(key="rules_validate").click().run()
        assert "valid: 1 rule" in texts(at, "success")

        at.button(key="rules_save").click().run()  # no comment: refused before any request
        assert any("comment" in w for w in texts(at, "warning"))
        assert NEW_PACK not in {p["pack"] for p in client.rule_packs()["packs"]}

        at.text_input(key="rules_comment").input("first cut")
        at.button(key="rules_save").click().run()
        assert not at.exception
        assert any(f"version 1 as {USER}" in s for s in texts(at, "success"))
        assert client.rule_pack(NEW_PACK)["yaml"] == template

        edited = template.replace("severity: warning", "severity: critical", 1)
        at.text_area(key="rules_yaml").input(edited)
        at.text_input(key="rules_comment").input("promises are critical")
        at.button(key="rules_save").click().run()
        assert any(f"version 2 as {USER}" in s for s in texts(at, "success"))
        assert at.text_input(key="rules_comment").value == ""

        [versions] = frames_with(at, "author")
        rows = {int(r["version"]): r for r in versions.to_dict("records")}
        assert set(rows) == {1, 2}
        assert rows[1]["author"] == rows[2]["author"] == USER
        assert rows[1]["comment"] == "first cut" and rule_id in rows[1]["added"]
        assert rows[2]["comment"] == "promises are critical" and rule_id in rows[2]["changed"]

        at.selectbox(key="rules_version").select(1).run()
        assert template.strip() in [c.strip() for c in texts(at, "code")]
        at.button(key="rules_restore").click().run()
        assert not at.exception
        assert any("Restored version 1" in s and "version 3" in s for s in texts(at, "success"))
        assert at.text_area(key="rules_yaml").value == template
        assert client.rule_pack(NEW_PACK)["yaml"] == template
        assert [v["author"] for v in client.pack_versions(NEW_PACK)] == [USER] * 3

        at.selectbox(key="rules_pack").select("default").run()
        assert at.text_area(key="rules_yaml").value == default_draft
        assert "✏️ Unsaved changes" in texts(at, "caption")
        assert "# a note, not saved yet" not in client.rule_pack("default")["yaml"]
    finally:
        if NEW_PACK in {p["pack"] for p in client.rule_packs()["packs"]}:
            client.delete_pack(NEW_PACK, "test cleanup")


CASES = """\
cases:
  - name: a polite call passes
    events:
      - {speaker: agent, t: 1, text: "Thank you for calling Acme, how can I help you?"}
    expect_no: [forbidden_language]
  - name: the draft's new phrase fires
    events:
      - {speaker: agent, t: 1, text: "Thank you for calling, that is a banana split."}
    expect:
      - {rule: forbidden_language}
  - name: this expectation is wrong on purpose
    events:
      - {speaker: agent, t: 1, text: "Thank you for calling Acme, how can I help you?"}
    expect:
      - {rule: dead_air}
"""


def test_rules_test_runs_cases_on_the_draft(board: Any, env: pytest.MonkeyPatch) -> None:
    client = CallwatchClient(board.http)
    before = client.rule_pack("default")
    at = page_at("rules", board.http, env)
    draft = before["yaml"].replace(
        "      - calm down\n", "      - calm down\n      - banana split\n"
    )
    assert draft != before["yaml"]
    at.text_area(key="rules_yaml").input(draft)  # not saved: Test runs the draft
    at.text_area(key="rules_cases").input(CASES)
    at.button(key="rules_test").click().run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Cases"], metrics["Passed"], metrics["Failed"]) == ("3", "2", "1")
    labels = [e.label for e in at.expander]
    assert "✅ PASS: a polite call passes (line 2)" in labels
    assert "✅ PASS: the draft's new phrase fires (line 6)" in labels
    assert "❌ FAIL: this expectation is wrong on purpose (line 11)" in labels
    assert any("dead_air" in t and "got none" in t for t in texts(at, "text"))
    assert client.rule_pack("default")["yaml"] == before["yaml"]


# -- Audits -------------------------------------------------------------------------------------
def short_clip(seconds: float = 8.0) -> bytes:
    """The opening of the clean demo call as a WAV file (the greeting only)."""
    data, rate = sf.read(DEMO_CALLS / "clean_call.wav")
    buf = io.BytesIO()
    sf.write(buf, data[: int(rate * seconds)], rate, format="WAV")
    return buf.getvalue()


def wait_jobs_done(at: AppTest, client: CallwatchClient, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while any(j["status"] in ("queued", "running") for j in client.audit_jobs()):
        assert time.monotonic() < deadline, "audit jobs did not finish"
        time.sleep(0.5)
    at.run()


@pytest.fixture(scope="module")
def audited(admin: str) -> Iterator[dict[str, Any]]:
    """Drive the Audits page: a folder audit of the breach call (agent emma), then an upload of
    an 8 s clip (no agent); record what the page showed along the way."""
    seen: dict[str, Any] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CALLWATCH_SERVER", admin)
        mp.setenv("CALLWATCH_USER", USER)
        client = CallwatchClient(admin, user=USER)
        at = AppTest.from_file(str(PAGES / "audits.py"), default_timeout=60)
        at.run()
        assert not at.exception
        seen["files_offered"] = list(at.multiselect(key="audit_files").options)

        at.text_input(key="audit_agent").input("emma")
        at.multiselect(key="audit_files").select("breach_call.wav")
        at.run()
        at.button(key="audit_folder_start").click().run()
        assert not at.exception
        seen["started"] = texts(at, "success")
        seen["progress"] = [p.proto.text for p in at.get("progress")]
        seen["job_files"] = [list(f["file"]) for f in frames_with(at, "progress")]

        at.text_input(key="audit_agent").input("")
        at.file_uploader[0].set_value(("greeting_clip.wav", short_clip(), "audio/wav"))
        at.run()
        at.button(key="audit_upload_start").click().run()
        assert not at.exception
        seen["uploaded"] = texts(at, "success")

        wait_jobs_done(at, client)
        assert not at.exception
        seen["jobs"] = client.audit_jobs()
        seen["final_progress"] = [p.proto.text for p in at.get("progress")]
        [results] = frames_with(at, "failed rules")
        seen["results"] = results
        seen["at"] = at
        seen["client"] = client
        yield seen


def test_folder_audit_shows_progress_then_its_result(audited: dict[str, Any]) -> None:
    assert audited["files_offered"] == ["breach_call.wav", "clean_call.wav"]
    assert any(s.startswith("Audit started: job") and "(1 file)" in s for s in audited["started"])
    # right after the start the job is on the page with a progress bar and its file
    assert any("of 1 done" in p for p in audited["progress"])
    assert ["breach_call.wav"] in audited["job_files"]

    jobs = {j["files"][0]["name"]: j for j in audited["jobs"]}
    breach = jobs["breach_call.wav"]
    assert breach["status"] == "done" and breach["created_by"] == USER
    assert breach["agent_id"] == "emma"
    assert all(p.startswith("1 of 1 done") for p in audited["final_progress"])

    rows = {r["call_id"]: r for r in audited["results"].to_dict("records")}
    call_id = breach["files"][0]["call_id"]
    assert call_id in rows
    row = rows[call_id]
    assert row["score"] == pytest.approx(breach["files"][0]["score"])
    assert row["agent"] == "emma" and row["recording"] == "breach_call.wav"
    assert row["call"] == f"call?call={call_id}"
    assert "forbidden_language" in row["failed rules"]


def test_uploaded_recording_is_audited(audited: dict[str, Any]) -> None:
    assert any("(1 file)" in s for s in audited["uploaded"])
    jobs = {j["files"][0]["name"]: j for j in audited["jobs"]}
    clip = jobs["greeting_clip.wav"]
    assert clip["status"] == "done"
    rows = {r["call_id"]: r for r in audited["results"].to_dict("records")}
    row = rows[clip["files"][0]["call_id"]]
    assert row["recording"] == "greeting_clip.wav" and row["agent"] == ""
    assert row["score"] == pytest.approx(clip["files"][0]["score"])


def test_audit_filters_narrow_the_table(audited: dict[str, Any]) -> None:
    at: AppTest = audited["at"]
    client: CallwatchClient = audited["client"]
    ids = lambda: [list(f["call_id"]) for f in frames_with(at, "failed rules")]  # noqa: E731
    everything = client.calls(scope="stored", mode="audit", limit=2000)
    assert sorted(ids()[0]) == sorted(c["call_id"] for c in everything)
    assert len(everything) >= 2

    # the breach call said a forbidden phrase; the greeting clip did not
    at.selectbox(key="audit_failed_rule").select("forbidden_language").run()
    assert not at.exception
    want = [
        c["call_id"]
        for c in client.calls(scope="stored", mode="audit", failed_rule="forbidden_language")
    ]
    assert ids() == [want] and len(want) < len(everything)
    assert all("breach" in cid for cid in want)

    at.selectbox(key="audit_failed_rule").select("(any)")
    at.selectbox(key="audit_agent_filter").select("emma").run()
    assert ids() == [[c["call_id"] for c in everything if c.get("agent_id") == "emma"]]

    at.selectbox(key="audit_agent_filter").select("(any)")
    # a score band around the breach audit's score only
    score = next(c["score"] for c in everything if c["call_id"] == want[0])
    lo, hi = math.floor(score), math.ceil(score)
    at.slider(key="audit_scores").set_range(lo, hi).run()
    assert not at.exception
    banded = [c["call_id"] for c in everything if c["score"] is not None and lo <= c["score"] <= hi]
    assert ids() == [banded] and want[0] in banded and len(banded) < len(everything)

    at.slider(key="audit_scores").set_range(0, 100)
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    at.date_input(key="audit_dates").set_value((tomorrow, tomorrow)).run()
    assert "No audited calls match these filters." in texts(at, "info")
    at.date_input(key="audit_dates").set_value(()).run()


def test_search_finds_a_word_in_a_demo_call(board: Any, env: pytest.MonkeyPatch) -> None:
    at = page_at("audits", board.http, env)
    at.text_input(key="audit_q").input("loyalty").run()
    assert not at.exception
    [hits] = frames_with(at, "line")
    assert board.calls["cancel_call"] in list(hits["call_id"])
    assert all("loyalty" in line.lower() for line in hits["line"])
    row = hits[hits["call_id"] == board.calls["cancel_call"]].iloc[0]
    assert row["call"].startswith(f"call?call={board.calls['cancel_call']}&t=")
    assert row["speaker"] == "agent"

    at.text_input(key="audit_q").input("zebra crossing umbrella").run()
    assert "No line says “zebra crossing umbrella”." in texts(at, "info")


# -- Insights -----------------------------------------------------------------------------------
def test_insights_match_the_servers_calls(board: Any, env: pytest.MonkeyPatch) -> None:
    at = page_at("insights", board.http, env)
    today = dt.datetime.now(dt.UTC).date()
    start = today - dt.timedelta(days=29)
    client = CallwatchClient(board.http)
    calls = insights.filter_calls(
        client.calls(
            scope="all",
            since=start.isoformat(),
            until=(today + dt.timedelta(days=1)).isoformat(),
            limit=2000,
        ),
        start,
        today,
    )
    assert set(board.calls.values()) <= {c["call_id"] for c in calls}
    k = insights.kpis(calls)
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["Calls"] == str(k.calls)
    assert tiles["Average handle time"] == duration(k.aht_s)
    assert tiles["Mean score"] == insights.score_text(k.mean_score)
    assert tiles["Calls with a critical alert"] == insights.percent(k.critical_share)
    assert tiles["Escalation rate"] == insights.percent(k.escalation_share)

    breach = client.call(board.calls["breach_call"])
    failed = {r["rule_id"] for r in breach["scorecard"]["rules"] if r.get("status") == "failed"}
    assert {"forbidden_language", "dead_air", "agent_speech_rate"} <= failed
    [hits] = frames_with(at, "failed_share")
    assert failed <= set(hits["rule_id"])
    assert hits.to_dict("records") == insights.rule_hits(calls).to_dict("records")

    [agents] = frames_with(at, "escalation_rate")
    assert {"sarah", "emma"} <= set(agents["agent_id"])

    # one agent only: the tiles follow
    at.multiselect(key="ins_agents").select("emma").run()
    assert not at.exception
    emma = insights.kpis([c for c in calls if c.get("agent_id") == "emma"])
    assert {m.label: m.value for m in at.metric}["Calls"] == str(emma.calls)

    # a range with no calls
    long_ago = today - dt.timedelta(days=400)
    at.date_input(key="ins_dates").set_value((long_ago, long_ago)).run()
    assert not at.exception
    assert "No calls in this range." in texts(at, "info")


# -- down, slow, empty ---------------------------------------------------------------------------
PAGE_NAMES = ["rules", "audits", "insights"]


@pytest.mark.parametrize("name", PAGE_NAMES)
def test_pages_say_when_the_server_is_down(name: str, env: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    at = page_at(name, url, env)
    errors = texts(at, "error")
    assert any("Cannot reach the callwatch server" in e and url in e for e in errors), errors


@pytest.fixture(scope="module")
def slow_server() -> Iterator[str]:
    with sleepy_server(delay_s=2.0) as url:
        yield url


@pytest.mark.parametrize("name", PAGE_NAMES)
def test_pages_say_when_the_server_is_slow(
    name: str, slow_server: str, env: pytest.MonkeyPatch
) -> None:
    env.setenv("CALLWATCH_TIMEOUT_S", "0.5")
    at = page_at(name, slow_server, env)
    warnings = texts(at, "warning")
    assert any("did not answer within 0.5 s" in w for w in warnings), warnings


@pytest.fixture
def empty(asr: Any, packs: Any) -> Iterator[str]:
    with empty_server(asr, packs) as url:
        yield url


def test_pages_on_an_empty_server(empty: str, env: pytest.MonkeyPatch) -> None:
    audits = page_at("audits", empty, env)
    assert "No audits yet: upload recordings or pick a folder." in texts(audits, "info")
    assert "No audited calls yet: upload recordings or pick a folder." in texts(audits, "info")

    ins = page_at("insights", empty, env)
    assert "No calls in this range." in texts(ins, "info")
    assert not ins.metric

    rules = page_at("rules", empty, env)
    [table] = frames_with(rules, "kind")
    assert "greeting" in set(table["id"])
    assert "No versions" not in " ".join(texts(rules, "info"))
