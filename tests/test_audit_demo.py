"""End to end on the bundled demo calls: real audio, real Whisper, default rules.

Times come from the generator's timeline (demo/calls/*.timeline.json), not from tuning.
"""

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from assist.audit import AuditOptions, audit_file
from assist.cli import main
from assist.store import Store
from tests.conftest import DEMO

pytestmark = pytest.mark.slow


def timeline(name: str) -> dict[str, Any]:
    return json.loads((DEMO / f"{name}.timeline.json").read_text())


@pytest.fixture(scope="module")
def reports(asr, packs) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    return {
        n: audit_file(str(DEMO / f"{n}.wav"), packs, asr)
        for n in ("clean_call", "breach_call", "cancel_call")
    }


def alerts_by_rule(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for a in report["alerts"]:
        out.setdefault(a["rule_id"], []).append(a)
    return out


def test_clean_call_raises_nothing(reports) -> None:  # type: ignore[no-untyped-def]
    r = reports["clean_call"]
    assert r["alerts"] == [], [a["message"] for a in r["alerts"]]
    assert r["scorecard"]["score"] == 100.0
    assert all(line["status"] == "passed" for line in r["scorecard"]["rules"])


def test_breach_call_alerts_fire_at_the_right_times(reports) -> None:  # type: ignore[no-untyped-def]
    marks = timeline("breach_call")["marks"]
    got = alerts_by_rule(reports["breach_call"])
    assert [a["t"] for a in got["recording_disclosure"]] == [30.0]
    (dead,) = got["dead_air"]
    assert abs(dead["t"] - (marks["dead_air_start"] + 10.0)) < 1.0
    (forbidden,) = got["forbidden_language"]
    assert marks["forbidden"] - 0.5 <= forbidden["t"] <= marks["forbidden"] + 3.0
    assert forbidden["speaker"] == "agent"
    assert forbidden["evidence"]["words"], "evidence carries the words and their times"
    (fast,) = got["agent_speech_rate"]
    assert marks["fast_start"] < fast["t"] <= marks["fast_end"] + 1.0
    assert fast["evidence"]["wpm"] > 250
    assert "greeting" not in got


def test_cancel_call_disclosure_read_in_time(reports) -> None:  # type: ignore[no-untyped-def]
    got = alerts_by_rule(reports["cancel_call"])
    assert "recording_disclosure" not in got
    assert "dead_air" not in got and "forbidden_language" not in got


def test_transcript_follows_the_script(reports) -> None:  # type: ignore[no-untyped-def]
    r = reports["cancel_call"]
    customer = " ".join(s["text"] for s in r["transcript"] if s["speaker"] == "customer").lower()
    assert "cancel" in customer and "contract" in customer
    marks = timeline("cancel_call")["marks"]
    first = next(s for s in r["transcript"] if "cancel" in s["text"].lower())
    assert first["speaker"] == "customer" and abs(first["t"] - marks["cancel_request"]) < 1.5
    assert all(w["t"] <= w["t_end"] for s in r["transcript"] for w in s["words"])


def test_stats(reports) -> None:  # type: ignore[no-untyped-def]
    st = reports["breach_call"]["stats"]
    assert st["longest_silence_s"] >= 12.0
    assert set(st["talk_s"]) == {"agent", "customer"}


def test_feeding_20ms_frames_gives_the_same_result(asr, packs, reports) -> None:  # type: ignore[no-untyped-def]
    """Live calls arrive in small frames; the result must not depend on block size."""
    live_like = audit_file(
        str(DEMO / "breach_call.wav"), packs, asr, options=AuditOptions(block_s=0.02, batch_size=1)
    )
    ref = reports["breach_call"]
    strip = lambda alerts: [(a["rule_id"], a["t"]) for a in alerts]  # noqa: E731
    assert strip(live_like["alerts"]) == strip(ref["alerts"])
    assert [s["text"] for s in live_like["transcript"]] == [s["text"] for s in ref["transcript"]]


def test_cli_json_csv_and_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    assert (
        main(["audit", str(DEMO / "breach_call.wav"), "--format", "json", "--out", str(out), "-q"])
        == 0
    )
    (report,) = json.loads(out.read_text())
    assert {a["rule_id"] for a in report["alerts"]} >= {"dead_air", "forbidden_language"}
    stored = Store().get_report(report["call_id"])
    assert stored is not None and stored["alerts"] == report["alerts"]
    events = Store().events_for(report["call_id"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "call.started" and events[-1]["type"] == "call.ended"

    assert (
        main(["audit", str(DEMO / "breach_call.wav"), "--format", "csv", "-q", "--no-store"]) == 0
    )
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    failed = {r["rule_id"] for r in rows if r["status"] == "failed"}
    assert "forbidden_language" in failed and "greeting" not in failed


def test_cli_bad_file_does_not_stop_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    code = main(["audit", str(bad), str(DEMO / "clean_call.wav"), "--format", "json", "-q"])
    captured = capsys.readouterr()
    assert code == 1
    assert f"error: {bad}: not a readable audio file" in captured.err
    assert json.loads(captured.out)[0]["call_id"].startswith("audit-clean_call")


def test_cli_broken_rules_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "r.yaml").write_text("pack: x\nrules:\n  - id: a\n    kind: silence\n")
    assert main(["audit", str(DEMO / "clean_call.wav"), "--rules", str(tmp_path), "-q"]) == 2
    assert "r.yaml:3" in capsys.readouterr().err
