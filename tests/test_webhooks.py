"""Webhook delivery over real HTTP: a receiver in a thread, a real SQLite store, no mocks."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from assist.cli import main
from assist.replay import replay
from assist.store import Store
from assist.webhooks import (
    Delivery,
    WebhookConfigError,
    WebhookDispatcher,
    WebhookTarget,
    deliver,
    encode,
    load_targets,
    retry_delay,
    sign,
    verify_signature,
)
from tests.conftest import DEMO
from tests.live_server import free_port, make_state, running_server

SECRET = "s3cret-for-tests"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook endpoint that answers ``statuses`` in turn (then 200) and records requests."""

    statuses: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length", "0")))
        with self.lock:
            self.requests.append(Received({k.lower(): v for k, v in h.headers.items()}, body))
            answer = self.statuses.pop(0) if self.statuses else 200
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", "0")
        h.end_headers()


@contextmanager
def receiving(
    statuses: list[int | tuple[int, dict[str, str]]] | None = None, port: int = 0
) -> Iterator[Receiver]:
    rec = Receiver(list(statuses or []))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            rec.handle(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def target(url: str, **kw: Any) -> WebhookTarget:
    """A target with tiny back-off so retry tests stay quick."""
    opts: dict[str, Any] = {"secret": SECRET, "backoff_base_s": 0.01, "backoff_cap_s": 0.05}
    return WebhookTarget(url=url, **{**opts, **kw})


def alert(
    seq: int = 3, severity: str = "critical", audience: list[str] | None = None
) -> dict[str, Any]:
    return {
        "type": "alert",
        "call_id": "call-1",
        "seq": seq,
        "t": 12.5,
        "rule_id": "no_card_numbers",
        "kind": "phrase",
        "severity": severity,
        "audience": audience or ["supervisor"],
        "message": "Card number read out — café",
        "speaker": "agent",
        "evidence": {},
        "emitted_at": "2025-01-01T00:00:00.000Z",
    }


async def until(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait (never assert on time) for ``cond``; the deadline only stops a hung test."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def dispatch(
    targets: list[WebhookTarget],
    store: Store | None,
    events: list[dict[str, Any]],
    done: Callable[[WebhookDispatcher], bool],
) -> WebhookDispatcher:
    async def run() -> WebhookDispatcher:
        d = WebhookDispatcher(targets, store)
        d.start()
        for ev in events:
            d.submit(ev)
        await until(lambda: done(d))
        await d.aclose()
        return d

    return asyncio.run(run())


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'cw.db'}")


# -- signatures ----------------------------------------------------------------------------
def test_signature_is_hmac_of_timestamp_dot_body_and_verifies() -> None:
    import hashlib
    import hmac

    body = encode(alert())
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    header = sign(SECRET, 1700000000, body)
    assert header == f"sha256={expected}"
    now = 1700000000 + 299
    assert verify_signature(SECRET, "1700000000", body, header, now=now)
    assert verify_signature(SECRET.encode(), "1700000000", body.decode(), header, now=now)
    assert not verify_signature(SECRET, "1700000000", body + b" ", header, now=now)  # tampered
    assert not verify_signature("wrong", "1700000000", body, header, now=now)
    assert not verify_signature(SECRET, "1700000001", body, header, now=now)  # other timestamp
    assert not verify_signature(SECRET, "1700000000", body, header, now=1700000000 + 301)
    assert not verify_signature(SECRET, "1700000000", body, header, now=1700000000 - 301)
    assert not verify_signature(SECRET, "soon", body, header, now=now)
    assert not verify_signature(SECRET, "1700000000", body, None, now=now)
    assert not verify_signature(SECRET, "1700000000", body, "sha256=ü", now=now)


# -- delivery ------------------------------------------------------------------------------
def test_503s_are_retried_with_one_delivery_id_and_signed(store: Store) -> None:
    ev = alert()
    with receiving([503, 503]) as rec:
        d = dispatch([target(rec.url)], store, [ev], lambda d: d.sent == 1)
    assert len(rec.requests) == 3
    assert len({r.headers["x-callwatch-delivery"] for r in rec.requests}) == 1
    for r in rec.requests:
        assert json.loads(r.body) == ev
        assert r.body == encode(ev)  # byte for byte what the WebSocket sends
        assert r.headers["x-callwatch-event"] == "alert"
        assert r.headers["content-type"] == "application/json"
        ts, sig = r.headers["x-callwatch-timestamp"], r.headers["x-callwatch-signature"]
        assert verify_signature(SECRET, ts, r.body, sig)
        assert not verify_signature(SECRET, ts, r.body.replace(b"critical", b"info"), sig)
        assert not verify_signature("not-the-secret", ts, r.body, sig)
        assert not verify_signature(SECRET, ts, r.body, sig, now=int(ts) + 3600)
    assert (d.sent, d.retried, d.dead_lettered, d.queued) == (1, 2, 0, 0)
    assert store.dead_letters() == []


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    slept: list[float] = []

    async def record(s: float) -> None:
        slept.append(s)

    async def run(url: str) -> bool:
        async with httpx.AsyncClient() as client:
            return await deliver(
                client, target(url, backoff_cap_s=30.0), Delivery(alert(), encode(alert())), record
            )

    with receiving([(429, {"Retry-After": "7"}), (503, {"Retry-After": "120"})]) as rec:
        assert asyncio.run(run(rec.url))
    assert slept == [7.0, 30.0]
    assert len(rec.requests) == 3


def test_backoff_is_exponential_jittered_and_capped() -> None:
    t = WebhookTarget(
        url="http://x.invalid/", secret=SecretStr("k"), backoff_base_s=0.5, backoff_cap_s=30
    )
    assert [retry_delay(t, n, rand=lambda: 1.0) for n in range(1, 9)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
        30.0,
    ]
    assert retry_delay(t, 3, rand=lambda: 0.0) == 1.0  # never below half the step


def test_dead_target_becomes_exactly_one_dead_letter(store: Store) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    ev = alert()
    d = dispatch([target(url, max_attempts=4)], store, [ev], lambda d: d.dead_lettered == 1)
    assert (d.sent, d.retried, d.dead_lettered) == (0, 3, 1)
    [row] = store.dead_letters()
    assert (row["url"], row["call_id"], row["event_type"], row["attempts"]) == (
        url,
        "call-1",
        "alert",
        4,
    )
    assert row["event"] == ev
    assert "Connect" in row["last_error"]
    uuid.UUID(row["delivery_id"])


def test_400_is_final(store: Store) -> None:
    with receiving([400]) as rec:
        d = dispatch([target(rec.url)], store, [alert()], lambda d: d.dead_lettered == 1)
    assert len(rec.requests) == 1
    assert (d.sent, d.retried) == (0, 0)
    [row] = store.dead_letters()
    assert row["attempts"] == 1 and row["last_error"].startswith("HTTP 400")


def test_full_queue_dead_letters_instead_of_dropping(store: Store) -> None:
    with receiving() as rec:
        # both submits happen before the worker runs: the second finds the queue full
        d = dispatch(
            [target(rec.url, queue_size=1)],
            store,
            [alert(seq=3), alert(seq=4)],
            lambda d: d.sent == 1,
        )
    assert (d.sent, d.dead_lettered) == (1, 1)
    assert [json.loads(r.body)["seq"] for r in rec.requests] == [3]
    [row] = store.dead_letters()
    assert (row["event"]["seq"], row["last_error"], row["attempts"]) == (4, "queue full", 0)


def test_shutdown_dead_letters_what_it_could_not_send(store: Store) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    slow = target(url, backoff_base_s=60, backoff_cap_s=60)

    async def run() -> WebhookDispatcher:
        d = WebhookDispatcher([slow], store)
        d.start()
        d.submit(alert(seq=3))
        d.submit(alert(seq=4))
        await until(lambda: d.retried == 1)  # the first one is now waiting to retry
        await d.aclose(timeout_s=0.1)
        return d

    d = asyncio.run(run())
    rows = store.dead_letters()
    assert [r["event"]["seq"] for r in rows] == [3, 4]
    assert rows[0]["last_error"].startswith("shutdown before delivery (last error: Connect")
    assert (rows[1]["last_error"], rows[1]["attempts"]) == ("shutdown before delivery", 0)
    assert d.dead_lettered == 2 and d.queued == 0


def test_filters_by_type_severity_and_audience() -> None:
    t = WebhookTarget(
        url="https://hooks.example.com/x",
        secret=SecretStr("k"),
        events=["alert", "call.ended"],
        audience="supervisor",
    )
    assert t.wants(alert(severity="warning"))
    assert t.wants(alert(severity="critical", audience=["agent", "supervisor"]))
    assert not t.wants(alert(severity="info"))  # below the default min_severity (warning)
    assert not t.wants(alert(audience=["agent"]))
    assert t.wants({"type": "call.ended", "call_id": "c", "seq": 9, "t": 1.0})
    assert not t.wants({"type": "transcript.final", "call_id": "c", "seq": 2, "t": 1.0})


def test_without_targets_the_bus_is_untouched() -> None:
    d = WebhookDispatcher([], None)
    d.submit(alert())  # not started, no targets: nothing to do, no error
    assert d.stats() == {"sent": 0, "retried": 0, "dead_lettered": 0, "queued": 0}


# -- configuration ---------------------------------------------------------------------------
def test_targets_file_errors_name_file_line_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "from-env")
    monkeypatch.delenv("MISSING_SECRET", raising=False)
    good = tmp_path / "good.yaml"
    good.write_text(
        "- url: https://hooks.example.com/a\n"
        "  secret_env: HOOK_SECRET\n"
        "  min_severity: critical\n"
        "  audience: supervisor\n"
    )
    [t] = load_targets(good)
    assert t.key == b"from-env" and t.min_severity == "critical" and "from-env" not in repr(t)

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "- url: https://hooks.example.com/a\n"
        "  secret: k\n"
        "- url: ftp://files.example.com/\n"  # line 3
        "  secret: k\n"
        "  events: [alert, alarm]\n"  # line 5
        "  min_severity: loud\n"  # line 6
        "- url: https://hooks.example.com/b\n"  # line 7
        "  secret_env: MISSING_SECRET\n"
        "  colour: red\n"  # line 9
    )
    with pytest.raises(WebhookConfigError) as err:
        load_targets(bad)
    issues = "\n".join(err.value.issues)
    assert f"{bad}:3: [1].url: must be an http:// or https:// URL" in issues
    assert f"{bad}:5: [1].events: unknown event type(s) ['alarm']" in issues
    assert f"{bad}:6: [1].min_severity:" in issues
    assert f"{bad}:9: [2].colour: Extra inputs are not permitted" in issues

    assert main(["serve", "--webhooks", str(bad)]) == 2
    assert f"error: {bad}:3: [1].url" in capsys.readouterr().err

    missing = tmp_path / "missing.yaml"
    missing.write_text("- url: https://hooks.example.com/b\n  secret_env: MISSING_SECRET\n")
    with pytest.raises(
        WebhookConfigError,
        match=r"missing.yaml:1: \[0\]: environment variable MISSING_SECRET is not set",
    ):
        load_targets(missing)

    notalist = tmp_path / "map.yaml"
    notalist.write_text("url: https://hooks.example.com/b\n")
    with pytest.raises(WebhookConfigError, match="expected a list of targets"):
        load_targets(notalist)


def test_serve_webhook_needs_the_secret_env(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CALLWATCH_WEBHOOK_SECRET", raising=False)
    assert main(["serve", "--webhook", "https://hooks.example.com/a"]) == 2
    assert "CALLWATCH_WEBHOOK_SECRET is not set" in capsys.readouterr().err


# -- CLI: failed / redeliver -----------------------------------------------------------------
def test_cli_lists_and_redelivers_dead_letters(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    ev = alert()
    dispatch([target(url, max_attempts=2)], store, [ev], lambda d: d.dead_lettered == 1)
    [row] = store.dead_letters()

    assert main(["webhooks", "failed", "--db", store.url]) == 0
    out = capsys.readouterr().out
    assert f"{row['id']:>5}" in out and url in out and "2 attempt(s)" in out

    monkeypatch.delenv("CALLWATCH_WEBHOOK_SECRET", raising=False)
    assert main(["webhooks", "redeliver", "--db", store.url]) == 1  # no secret to sign with
    assert "no secret for" in capsys.readouterr().err

    monkeypatch.setenv("CALLWATCH_WEBHOOK_SECRET", SECRET)
    with receiving(port=port) as rec:  # the receiver is back
        assert main(["webhooks", "redeliver", "--db", store.url, str(row["id"]), "999"]) == 1
    captured = capsys.readouterr()
    assert f"{row['id']}: delivered" in captured.out
    assert "999: failed: no such dead letter" in captured.err
    [got] = rec.requests
    assert got.body == encode(ev)
    assert got.headers["x-callwatch-delivery"] == row["delivery_id"]  # receivers can de-duplicate
    assert verify_signature(
        SECRET, got.headers["x-callwatch-timestamp"], got.body, got.headers["x-callwatch-signature"]
    )
    assert store.dead_letters() == []


# -- end to end ------------------------------------------------------------------------------
@pytest.mark.slow
def test_live_call_alerts_reach_the_webhook_signed(asr, packs) -> None:  # type: ignore[no-untyped-def]
    with receiving([503]) as rec:  # one hiccup on the way, too
        state = make_state(asr, packs, webhooks=[target(rec.url, min_severity="info")])
        try:
            with running_server(state) as url:
                res = asyncio.run(
                    replay(url, str(DEMO / "breach_call.wav"), protocol="raw", speed=8.0)
                )
                ws_alerts = [e for e in res.events if e["type"] == "alert"]
                assert ws_alerts, "the breach call raises alerts"

                def hooked() -> list[dict[str, Any]]:
                    with rec.lock:
                        bodies = [json.loads(r.body) for r in rec.requests]
                    seen = {e["seq"]: e for e in bodies}  # the retried one arrives twice
                    return [seen[s] for s in sorted(seen)]

                asyncio.run(until(lambda: len(hooked()) >= len(ws_alerts), timeout=60))
                metrics = httpx.get(f"{url.replace('ws://', 'http://')}/metrics").json()
        finally:
            state.close()
    got = hooked()
    assert [(e["rule_id"], e["seq"]) for e in got] == [(e["rule_id"], e["seq"]) for e in ws_alerts]
    assert got == ws_alerts
    for r in rec.requests:
        assert r.headers["x-callwatch-event"] == "alert"
        assert verify_signature(
            SECRET, r.headers["x-callwatch-timestamp"], r.body, r.headers["x-callwatch-signature"]
        )
    assert metrics["webhook_sent"] == len(ws_alerts)
    assert metrics["webhook_retried"] == 1 and metrics["webhook_dead_lettered"] == 0
