"""Audits on request through a running server: real Whisper on demo calls, a real store, the
board's routes (folders, JSON and upload jobs, progress, cancel, audio back) and path safety."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import soundfile as sf

from assist.server import App
from assist.store import StoreError
from tests.conftest import DEMO
from tests.live_server import make_state, running_server

pytestmark = pytest.mark.slow

ENDED = ("done", "failed", "cancelled")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An audit folder ("calls") with two demo calls, two short clips, a garbage .wav, a
    text file and a symbolic link to a recording in a folder outside it."""
    base = tmp_path_factory.mktemp("audits")
    calls, outside = base / "calls", base / "outside"
    (calls / "sub").mkdir(parents=True)
    outside.mkdir()
    shutil.copy(DEMO / "clean_call.wav", calls / "clean.wav")
    shutil.copy(DEMO / "cancel_call.wav", calls / "cancel.wav")
    for src, dst in (("clean_call", "short.wav"), ("cancel_call", "short2.wav")):
        # the first two turns: greeting + the customer's request, ~13 s
        data, rate = sf.read(DEMO / f"{src}.wav", dtype="int16")
        sf.write(calls / "sub" / dst, data[: int(13.2 * rate)], rate, subtype="ULAW")
    (calls / "x.wav").write_bytes(b"this is not audio at all " * 40)
    (calls / "notes.txt").write_text("not a recording\n")
    shutil.copy(calls / "sub" / "short.wav", outside / "secret.wav")
    os.symlink(outside / "secret.wav", calls / "escape.wav")
    return {"calls": calls, "outside": outside}


@pytest.fixture(scope="module")
def state(asr: Any, packs: Any, folders: dict[str, Path]) -> Iterator[App]:
    st = make_state(asr, packs, audit_dirs=[str(folders["calls"])], max_upload_mb=1, diarize=False)
    yield st
    st.close()


@pytest.fixture(scope="module")
def client(state: App) -> Iterator[httpx.Client]:
    with (
        running_server(state) as url,
        httpx.Client(base_url=url.replace("ws://", "http://"), timeout=60) as c,
    ):
        yield c


def start(client: httpx.Client, body: dict[str, Any], user: str = "qa-lead") -> dict[str, Any]:
    r = client.post("/v1/audits", json=body, headers={"X-Callwatch-User": user})
    assert r.status_code == 202, r.text
    return r.json()


def follow(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    """Every snapshot of the job until it ends (the deadline only guards against a hang)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        job = client.get(f"/v1/audits/{job_id}").json()
        seen.append(job)
        if job["status"] in ENDED:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never ended: {seen[-1]}")


def follow_until(client: httpx.Client, job_id: str, cond: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        job = client.get(f"/v1/audits/{job_id}").json()
        seen.append(job)
        if cond(job):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id}: condition never met: {seen[-1]}")


def text_of(call: dict[str, Any]) -> str:
    return " ".join(line["text"] for line in call["transcript"]).lower()


def job_count(client: httpx.Client) -> int:
    return len(client.get("/v1/audits").json()["jobs"])


def test_folders_list_audio_inside_the_folder_only(
    client: httpx.Client, folders: dict[str, Path]
) -> None:
    (folder,) = client.get("/v1/audits/folders").json()["folders"]
    assert folder["name"] == "calls"
    files = {f["path"]: f for f in folder["files"]}
    # no text file, no link leading out of the folder
    assert set(files) == {"clean.wav", "cancel.wav", "sub/short.wav", "sub/short2.wav", "x.wav"}
    assert files["clean.wav"]["size"] == (folders["calls"] / "clean.wav").stat().st_size
    assert files["clean.wav"]["mtime"].endswith("Z")


def test_folder_job_audits_both_files(client: httpx.Client, state: App) -> None:
    job = start(
        client, {"folder": "calls", "files": ["clean.wav", "cancel.wav"], "agent_id": "sarah"}
    )
    assert job["status"] in ("queued", "running")
    assert job["created_by"] == "qa-lead" and job["agent_id"] == "sarah"
    assert job["total"] == 2 and job["folder"] == "calls"
    assert [f["name"] for f in job["files"]] == ["clean.wav", "cancel.wav"]

    seen = [job, *follow(client, job["job_id"])]
    end = seen[-1]
    assert end["status"] == "done", end
    assert (end["done"], end["failed"], end["progress"]) == (2, 0, 1.0)
    assert end["eta_s"] is None and end["current"] is None
    progress = [s["progress"] for s in seen]
    assert progress[0] < 1.0
    assert progress == sorted(progress), progress  # never goes back
    assert any(0 < p < 1 for p in progress), progress  # moved in between
    running = [s for s in seen if s["status"] == "running"]
    assert any(s["eta_s"] is not None and s["eta_s"] >= 0 for s in running)
    assert any(s["current"] == "cancel.wav" for s in running)

    clean, cancel = end["files"]
    for f in (clean, cancel):
        assert f["status"] == "done" and f["error"] is None and f["progress"] == 1.0
        assert f["call_id"] and f["score"] is not None and isinstance(f["alerts"], int)

    stored = client.get(f"/v1/calls/{clean['call_id']}").json()
    assert stored["mode"] == "audit" and stored["agent_id"] == "sarah"
    assert stored["scorecard"]["score"] == clean["score"]
    said = text_of(stored)
    assert "northwind" in said and "bill" in said and "higher than usual" in said
    said = text_of(client.get(f"/v1/calls/{cancel['call_id']}").json())
    assert "cancel my contract" in said and "price went up" in said
    assert state.store is not None and state.store.get_report(cancel["call_id"]) is not None

    assert client.get("/v1/audits").json()["jobs"][0]["job_id"] == job["job_id"]


def test_broken_file_fails_alone(client: httpx.Client, folders: dict[str, Path]) -> None:
    job = start(client, {"folder": "calls", "files": ["x.wav", "sub/short.wav"]})
    end = follow(client, job["job_id"])[-1]
    assert end["status"] == "done" and (end["done"], end["failed"]) == (1, 1)
    broken, good = end["files"]
    assert broken["status"] == "failed" and broken["call_id"] is None
    assert broken["error"].startswith("x.wav: ") and "audio" in broken["error"]
    assert str(folders["calls"]) not in broken["error"]  # no server paths in messages
    assert good["status"] == "done" and good["call_id"]
    assert "northwind" in text_of(client.get(f"/v1/calls/{good['call_id']}").json())


def test_store_error_fails_the_file_and_the_job_goes_on(
    client: httpx.Client, state: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert state.store is not None
    real_save = state.store.save_report
    calls: list[str] = []

    def full_disk_once(report: dict[str, Any], mode: str = "audit") -> None:
        calls.append(report["call_id"])
        if len(calls) == 1:
            raise StoreError("cannot save call: database or disk is full")
        real_save(report, mode)

    monkeypatch.setattr(state.store, "save_report", full_disk_once)
    job = start(client, {"folder": "calls", "files": ["sub/short.wav", "sub/short2.wav"]})
    end = follow(client, job["job_id"])[-1]
    first, second = end["files"]
    assert first["status"] == "failed" and first["call_id"] is None
    assert first["error"].startswith("audited but not stored") and "disk is full" in first["error"]
    assert first["score"] is not None  # what was worked out is still shown
    assert second["status"] == "done" and second["call_id"] == calls[1]
    assert end["status"] == "done" and (end["done"], end["failed"]) == (1, 1)


def test_upload_job_and_its_audio_served_back(
    client: httpx.Client, state: App, folders: dict[str, Path]
) -> None:
    data = (folders["calls"] / "sub" / "short2.wav").read_bytes()
    r = client.post(
        "/v1/audits",
        files=[("files", ("../my call!.wav", data, "audio/wav"))],
        data={"agent_id": "emma", "agent_channel": "left"},
        headers={"X-Callwatch-User": "dana"},
    )
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["folder"] is None and job["created_by"] == "dana" and job["agent_id"] == "emma"
    assert [f["name"] for f in job["files"]] == ["my_call_.wav"]  # a safe name only
    end = follow(client, job["job_id"])[-1]
    assert end["status"] == "done", end
    call_id = end["files"][0]["call_id"]

    stored = client.get(f"/v1/calls/{call_id}").json()
    assert stored["agent_id"] == "emma" and "cancel my contract" in text_of(stored)
    source = Path(stored["sources"][0])
    assert source == state.audits.uploads / job["job_id"] / "my_call_.wav"

    audio = client.get(f"/v1/calls/{call_id}/audio")
    assert audio.status_code == 200
    assert audio.headers["content-type"] == "audio/wav"
    assert audio.content == data


def test_oversize_upload_is_refused_and_nothing_kept(client: httpx.Client, state: App) -> None:
    before_jobs = job_count(client)
    uploads = state.audits.uploads
    before = set(uploads.iterdir()) if uploads.exists() else set()
    r = client.post(
        "/v1/audits", files=[("files", ("big.wav", b"\0" * (3 * 1024 * 1024), "audio/wav"))]
    )
    assert r.status_code == 413
    assert "big.wav" in r.json()["detail"] and "1 MB" in r.json()["detail"]
    assert (set(uploads.iterdir()) if uploads.exists() else set()) == before
    assert job_count(client) == before_jobs


FIELD_ONLY = b'--XyZ\r\nContent-Disposition: form-data; name="agent_id"\r\n\r\nemma\r\n--XyZ--\r\n'


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([("files", ("notes.txt", b"hello", "text/plain"))], "not an audio file"),
        ([("other", ("a.wav", b"RIFF", "audio/wav"))], "send recordings as 'files'"),
        (None, "no recordings matched"),  # a form with fields but no file
    ],
)
def test_bad_uploads_are_refused(
    client: httpx.Client, state: App, files: list[Any] | None, message: str
) -> None:
    before = set(state.audits.uploads.iterdir()) if state.audits.uploads.exists() else set()
    if files is None:
        r = client.post(
            "/v1/audits",
            content=FIELD_ONLY,
            headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
        )
    else:
        r = client.post("/v1/audits", files=files, data={"agent_id": "emma"})
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]
    after = set(state.audits.uploads.iterdir()) if state.audits.uploads.exists() else set()
    assert after == before


@pytest.mark.parametrize(
    "rel",
    ["../outside/secret.wav", "sub/../../outside/secret.wav", "ABSOLUTE", "escape.wav"],
)
def test_paths_outside_the_folder_are_refused(
    client: httpx.Client, folders: dict[str, Path], rel: str
) -> None:
    if rel == "ABSOLUTE":
        rel = str(folders["outside"] / "secret.wav")
    before = job_count(client)
    r = client.post("/v1/audits", json={"folder": "calls", "files": [rel]})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert rel in detail and ("not allowed" in detail or "outside" in detail), detail
    assert job_count(client) == before  # no job: nothing was read


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"folder": "calls", "pattern": "*.flac"}, "no recordings matched"),
        ({"folder": "calls", "files": []}, "no recordings matched"),
        ({"folder": "calls", "files": ["notes.txt"]}, "not an audio file"),
        ({"folder": "calls", "files": ["missing.wav"]}, "no such recording"),
        ({"folder": "../outside"}, "no audit folder named"),
        ({"files": ["clean.wav"]}, "'folder'"),
        ({"folder": "calls", "agent_channel": "middle"}, "agent_channel"),
    ],
)
def test_bad_selections_are_refused(
    client: httpx.Client, body: dict[str, Any], message: str
) -> None:
    before = job_count(client)
    r = client.post("/v1/audits", json=body)
    assert r.status_code == 422
    assert message in r.json()["detail"]
    assert job_count(client) == before


def test_pattern_selects_from_the_folder(client: httpx.Client, state: App) -> None:
    """A pattern alone picks matching recordings (checked on a job cancelled at once)."""
    slots = state.asr._slots  # hold the model: the long call waits at its first batch
    with slots:
        blocker = start(client, {"folder": "calls", "files": ["clean.wav"]})
        job = start(client, {"folder": "calls", "pattern": "short*.wav"})
        assert [f["name"] for f in job["files"]] == ["sub/short.wav", "sub/short2.wav"]
        for j in (job, blocker):
            client.post(f"/v1/audits/{j['job_id']}/cancel")
    assert follow(client, blocker["job_id"])[-1]["status"] == "cancelled"


def test_cancel_stops_running_and_queued_jobs(client: httpx.Client, state: App) -> None:
    slots = state.asr._slots  # the model's only slot: the audit waits at its first batch
    slots.acquire()
    try:
        running = start(client, {"folder": "calls", "files": ["clean.wav", "cancel.wav"]})
        queued = start(client, {"folder": "calls", "files": ["sub/short.wav"]})
        for snap in follow_until(client, running["job_id"], lambda j: j["progress"] > 0):
            assert snap["status"] in ("queued", "running")

        r = client.post(f"/v1/audits/{queued['job_id']}/cancel")
        assert r.status_code == 200
        gone = r.json()
        assert gone["status"] == "cancelled" and gone["progress"] == 0
        assert [f["status"] for f in gone["files"]] == ["skipped"]

        r = client.post(f"/v1/audits/{running['job_id']}/cancel")
        assert r.status_code == 200
        asked = r.json()
        # stopped at its next block, or (if that block waits for the model) about to
        assert asked["status"] == "cancelled" or asked["cancel_requested"], asked
        assert asked["files"][1]["status"] == "skipped"
    finally:
        slots.release()
    end = follow(client, running["job_id"])[-1]
    assert end["status"] == "cancelled"
    assert [f["status"] for f in end["files"]] == ["skipped", "skipped"]
    assert all(f["call_id"] is None for f in end["files"])
    assert 0 < end["progress"] < 1 and end["eta_s"] is None
    # cancelling an ended job changes nothing
    again = client.post(f"/v1/audits/{running['job_id']}/cancel").json()
    assert again["status"] == "cancelled"
    # the queue goes on afterwards
    after = follow(client, start(client, {"folder": "calls", "files": ["sub/short.wav"]})["job_id"])
    assert after[-1]["status"] == "done"


def test_unknown_job_is_404(client: httpx.Client) -> None:
    assert client.get("/v1/audits/nope").status_code == 404
    r = client.post("/v1/audits/nope/cancel")
    assert r.status_code == 404 and "nope" in r.json()["detail"]


def test_audio_only_from_the_audit_folders(
    client: httpx.Client, state: App, folders: dict[str, Path]
) -> None:
    assert state.store is not None
    calls, outside = folders["calls"], folders["outside"]
    cases = {
        "t-live": [],  # a live call: no recording
        "t-outside": [str(outside / "secret.wav")],
        "t-link-out": [str(calls / "escape.wav")],
        "t-dotdot": [str(calls / ".." / "outside" / "secret.wav")],
        "t-not-audio": [str(calls / "notes.txt")],
        "t-inside": [str(calls / "sub" / "short.wav")],
    }
    for call_id, sources in cases.items():
        mode = "live" if call_id == "t-live" else "audit"
        state.store.save_report({"call_id": call_id, "sources": sources, "events": []}, mode)
    for call_id in cases:
        r = client.get(f"/v1/calls/{call_id}/audio")
        if call_id == "t-inside":
            assert r.status_code == 200
            assert r.content == (calls / "sub" / "short.wav").read_bytes()
        else:
            assert r.status_code == 404, call_id
            assert str(outside) not in r.text
    assert client.get("/v1/calls/no-such-call/audio").status_code == 404


def test_close_cancels_the_running_job_and_stops_the_worker(
    asr: Any, packs: Any, folders: dict[str, Path]
) -> None:
    st = make_state(
        asr,
        packs,
        audit_dirs=[str(folders["calls"])],
        diarize=False,
        emotion=False,
        assist=False,
    )
    calls = folders["calls"]
    job = st.audits.submit(
        [("clean.wav", calls / "clean.wav"), ("cancel.wav", calls / "cancel.wav")], "test"
    )
    deadline = time.monotonic() + 600  # a hang guard only
    while (st.audits.get(job["job_id"]) or {}).get("progress", 0) == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    st.close()
    end = st.audits.get(job["job_id"])
    assert end is not None and end["status"] == "cancelled"
    assert [f["status"] for f in end["files"]] == ["skipped", "skipped"]
    assert st.audits._thread is not None and not st.audits._thread.is_alive()
