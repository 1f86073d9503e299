"""Retention on SQLite and PostgreSQL: old calls lose their transcripts (events, report,
search) and their recordings inside the audio folders, keep scores and alerts, and the
chain records each purge so ``verify`` stays intact; nothing outside the folders is
touched; ``callwatch retention`` prints what it deleted."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from assist.cli import main
from assist.retention import run_retention
from assist.store import Store
from tests.test_store_backends import BASE_T, fake_report

OpenStore = Callable[..., Store]
DAY = 86_400.0
NOW = BASE_T + 100 * DAY


def stored_calls(store: Store, tmp_path: Path) -> dict[str, Path]:
    """An old ended call with a recording inside the audio folder and one outside it, a
    recent call, an old call still active; returns the files."""
    root = tmp_path / "uploads"
    (root / "job1").mkdir(parents=True)
    inside = root / "job1" / "old.wav"
    inside.write_bytes(b"RIFF")
    outside = tmp_path / "elsewhere.wav"
    outside.write_bytes(b"RIFF")
    link = root / "link.wav"  # inside by name, outside in fact
    link.symlink_to(outside)
    sources = [str(inside), str(outside), str(link)]
    store.save_report(fake_report("old", started_at=NOW - 40 * DAY, sources=sources))
    store.save_report(fake_report("recent", started_at=NOW - 5 * DAY))
    store.start_call(
        "old-active",
        agent_id="ann",
        protocol="raw",
        language="en",
        started_at=NOW - 50 * DAY,
        instance_id="i1",
        channels=["agent", "customer"],
    )
    return {"root": root, "inside": inside, "outside": outside, "link": link}


def test_old_transcripts_and_audio_go_scores_and_alerts_stay(
    open_store: OpenStore, tmp_path: Path
) -> None:
    store = open_store()
    files = stored_calls(store, tmp_path)
    before = store.get_report("old")
    assert before is not None and store.search_transcripts("kettle")

    summary = run_retention(store, 30, audio_roots=[files["root"]], by="test", now=NOW)
    assert [c.call_id for c in summary.calls] == ["old"]
    (purge,) = summary.calls
    assert purge.transcript_events == 2 and purge.events_rewritten == 1  # the alert's evidence
    assert purge.audio == [str(files["inside"])]
    assert not files["inside"].exists() and not files["inside"].parent.exists()
    assert files["outside"].exists() and files["link"].is_symlink()
    assert any("outside the audio folders" in k for k in purge.audio_kept)
    assert "purged 1 call(s)" in str(summary) and "2 transcript event(s)" in str(summary)

    # what was said is gone: events, search, the report's transcript and quoted words
    types = [e["type"] for e in store.events_for("old")]
    assert not [t for t in types if t.startswith("transcript.")]
    assert "alert" in types and "scorecard" in types
    assert [h["call_id"] for h in store.search_transcripts("kettle")] == ["recent"]
    alert = next(e for e in store.events_for("old") if e["type"] == "alert")
    assert "utterance" not in alert["evidence"] and "words" not in alert["evidence"]
    after = store.get_report("old")
    assert after is not None and after["transcript"] == []
    assert after["scorecard"] == before["scorecard"]
    assert [(a["rule_id"], a["message"], a["t"]) for a in after["alerts"]] == [
        (a["rule_id"], a["message"], a["t"]) for a in before["alerts"]
    ]
    assert "utterance" not in after["alerts"][0]["evidence"]
    (row,) = [c for c in store.list_calls() if c["call_id"] == "old"]
    assert row["score"] == 50.0 and row["facts"]["failed_rules"] == ["refund_request"]

    # the chain shows the deletion, and stays intact
    record = store.chain_for_call("old")[-2]  # the purge, then the rewritten alert
    assert record["kind"] == "retention"
    assert record["detail"]["deleted"] == [2, 3] and record["detail"]["rewritten"] == [5]
    assert record["detail"]["by"] == "test" and record["detail"]["policy_days"] == 30
    assert record["detail"]["audio"] == [str(files["inside"])]
    result = store.verify()
    assert result.ok, result.first_broken

    # once: the next run finds nothing more to do
    assert run_retention(store, 30, audio_roots=[files["root"]], by="test", now=NOW).calls == []
    assert len(store.events_for("recent")) == len(fake_report("recent")["events"])


def test_dry_run_deletes_nothing(open_store: OpenStore, tmp_path: Path) -> None:
    store = open_store()
    files = stored_calls(store, tmp_path)
    head = store.chain_head()
    summary = run_retention(store, 30, audio_roots=[files["root"]], by="t", now=NOW, dry_run=True)
    assert [(c.call_id, c.transcript_events) for c in summary.calls] == [("old", 2)]
    assert "would purge 1 call(s)" in str(summary)
    assert files["inside"].exists() and store.chain_head() == head
    assert store.search_transcripts("kettle")
    with pytest.raises(ValueError, match="0 or more"):
        run_retention(store, -1, audio_roots=[], by="t")


def test_retention_cli_prints_what_it_deleted(
    open_store: OpenStore, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_store()
    now = time.time()  # the command runs "now"
    root = tmp_path / "audio"
    root.mkdir()
    old_wav = root / "old.wav"
    old_wav.write_bytes(b"RIFF")
    store.save_report(fake_report("old", started_at=now - 40 * DAY, sources=[str(old_wav)]))
    store.save_report(fake_report("recent", started_at=now - DAY))
    args = ["retention", "--days", "30", "--db", store_url, "--audio-dir", str(root)]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would purge 1 call(s)" in out and f"would delete {old_wav}" in out
    assert old_wav.exists()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "old (started" in out and "2 transcript event(s)" in out
    assert f"deleted {old_wav}" in out and "purged 1 call(s)" in out
    assert not old_wav.exists() and "recent" not in out
    assert main(["verify", "--db", store_url]) == 0
    assert main(["retention", "--days", "-2", "--db", store_url]) == 2


def test_audio_outside_every_folder_is_never_touched(tmp_path: Path, open_store: Any) -> None:
    store = open_store()
    victim = tmp_path / "keep" / "call.wav"
    victim.parent.mkdir()
    victim.write_bytes(b"RIFF")
    rel = os.path.relpath(victim)
    report = fake_report("x", started_at=NOW - 60 * DAY, sources=[str(victim), rel, "../x.wav"])
    store.save_report(report)
    summary = run_retention(store, 1, audio_roots=[tmp_path / "uploads"], by="t", now=NOW)
    assert victim.exists() and summary.calls[0].audio == []
