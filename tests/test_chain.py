"""The tamper-evident audit chain on SQLite and PostgreSQL: an untouched store verifies, and
each kind of tampering done behind the store's back (raw SQL) is caught, naming the first
broken record; an exported head catches a chain recomputed from scratch; appends from
several threads and engines keep one valid chain; ``callwatch verify`` exit codes."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from assist import chain
from assist.cli import main
from assist.store import Store, audit_chain
from tests.test_store_backends import fake_report

OpenStore = Callable[..., Store]


def netstring(s: str) -> bytes:
    b = s.encode()
    return f"{len(b)}:".encode() + b + b","


def test_record_hash_is_the_documented_byte_layout() -> None:
    """Re-implemented from the module docstring alone, as an auditor would."""
    fields = ["callwatch-chain/1", "0" * 64, "1", "event", "c1#1", "ab" * 32, "2026-01-01"]
    want = hashlib.sha256(b"".join(netstring(f) for f in fields)).hexdigest()
    assert chain.record_hash("0" * 64, 1, "event", "c1#1", "ab" * 32, "2026-01-01") == want
    assert chain.ns(None) == b"0:," and chain.ns("é") == b"2:\xc3\xa9,"
    (r1, r2) = chain.link(0, chain.GENESIS, [chain.Pending("event", "c#1", "ab" * 32)] * 2, "t")
    assert (r1.id, r2.id, r2.prev_hash) == (1, 2, r1.hash)


def populate(store: Store) -> dict[str, Any]:
    """One of everything the chain records; returns what the tests refer to."""
    store.add_rule_version("default", "rules: []\n", "s1", "/r/d.yaml", "ann", "first", {})
    store.save_report(fake_report("c1"))
    admin = store.create_token("admin", label="ops")
    store.create_token("supervisor", label="sam")
    store.revoke_token(2)
    alert = next(e for e in store.events_for("c1") if e["type"] == "alert")
    store.set_alert_state("c1", alert["seq"], "sam", status="acknowledged")
    store.save_report(fake_report("c2", agent="bob"))
    short = fake_report("c2", agent="bob", lines=(("agent", "hello"),))
    store.save_report(short)  # re-audited: fewer events, call.replaced
    return {"admin": admin, "alert_seq": alert["seq"]}


def record_id(store: Store, kind: str, ref: str) -> int:
    with store.engine.connect() as conn:
        ids = conn.execute(
            select(audit_chain.c.id)
            .where(audit_chain.c.kind == kind, audit_chain.c.ref == ref)
            .order_by(audit_chain.c.id.desc())
        ).scalars()
        return int(next(iter(ids)))


def sql(store: Store, statement: str, **params: Any) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def test_an_untouched_store_verifies(open_store: OpenStore) -> None:
    store = open_store()
    populate(store)
    result = store.verify()
    assert result.ok and result.first_broken is None and result.problems == 0, result
    kinds = [r["kind"] for r in store.chain_for_call("c2")]
    assert kinds.count("call.replaced") == 1
    head = store.chain_head()
    assert result.records == head["records"] == head["id"]
    assert result.head == {"id": head["id"], "hash": head["hash"]}
    assert store.verify(head=head["hash"]).head_found is True


# each: (what it does to the store, (kind, ref) of the record named first, words in the reason)
TAMPERS: dict[str, tuple[Callable[[Store, dict[str, Any]], None], tuple[str, str], str]] = {
    "event payload edited": (
        lambda s, _: sql(
            s,
            "UPDATE events SET payload = replace(payload, 'refund', 'rebate') "
            "WHERE call_id = 'c1' AND seq = 3",
        ),
        ("event", "c1#3"),
        "changed since it was chained",
    ),
    "event deleted": (
        lambda s, _: sql(s, "DELETE FROM events WHERE call_id = 'c1' AND seq = 2"),
        ("event", "c1#2"),
        "missing",
    ),
    "event type column changed": (
        lambda s, _: sql(
            s, "UPDATE events SET type = 'emotion' WHERE call_id = 'c1' AND type = 'alert'"
        ),
        ("event", "c1#5"),
        "differ from its payload",
    ),
    "rule version text edited": (
        lambda s, _: sql(s, "UPDATE rule_versions SET text = 'rules: [evil]' WHERE version = 1"),
        ("rule_version", "default@1"),
        "changed since it was chained",
    ),
    "revoked token revived": (
        lambda s, _: sql(s, "UPDATE tokens SET revoked_at = NULL WHERE id = 2"),
        ("token.revoked", "token#2"),
        "missing",
    ),
    "alert acknowledgement rewritten": (
        lambda s, ctx: sql(
            s,
            "UPDATE alert_states SET acked_by = 'nobody' WHERE call_id = 'c1' AND seq = :seq",
            seq=ctx["alert_seq"],
        ),
        ("alert_state", "c1#5"),
        "changed since it was chained",
    ),
    "call.replaced detail edited": (
        lambda s, _: sql(
            s,
            "UPDATE audit_chain SET detail = replace(detail, '\"removed\":[', '\"removed\":[1,') "
            "WHERE kind = 'call.replaced'",
        ),
        ("call.replaced", "c2"),
        "detail does not match",
    ),
}


@pytest.mark.parametrize("name", list(TAMPERS))
def test_each_tampering_is_caught_at_its_record(open_store: OpenStore, name: str) -> None:
    store = open_store()
    ctx = populate(store)
    tamper, (kind, ref), reason = TAMPERS[name]
    want = record_id(store, kind, ref)
    tamper(store, ctx)
    result = store.verify()
    assert not result.ok
    broken = result.first_broken
    assert broken is not None
    assert (broken.id, broken.kind, broken.ref) == (want, kind, ref), broken
    assert reason in broken.reason


def test_a_deleted_chain_record_is_named(open_store: OpenStore) -> None:
    store = open_store()
    populate(store)
    victim = record_id(store, "event", "c1#4")
    sql(store, "DELETE FROM audit_chain WHERE id = :id", id=victim)
    broken = store.verify().first_broken
    assert broken is not None and broken.id == victim and "missing" in broken.reason


def test_the_last_chain_record_deleted_is_named(open_store: OpenStore) -> None:
    store = open_store()
    populate(store)
    last = store.chain_head()["id"]
    sql(store, "DELETE FROM audit_chain WHERE id = :id", id=last)
    broken = store.verify().first_broken
    assert broken is not None and broken.id == last and "head says" in broken.reason


def test_a_changed_chain_hash_is_named(open_store: OpenStore) -> None:
    store = open_store()
    populate(store)
    victim = record_id(store, "rule_version", "default@1")
    sql(store, "UPDATE audit_chain SET hash = :h WHERE id = :id", h="f" * 64, id=victim)
    result = store.verify()
    assert result.first_broken is not None and result.first_broken.id == victim
    assert "hash does not match" in result.first_broken.reason


def test_rows_inserted_behind_the_stores_back_are_caught(open_store: OpenStore) -> None:
    store = open_store()
    populate(store)
    payload = json.dumps({"type": "alert", "call_id": "c1", "seq": 99, "t": 1.0})
    sql(
        store,
        "INSERT INTO events (call_id, seq, type, t, payload) VALUES ('c1', 99, 'alert', 1.0, :p)",
        p=payload,
    )
    broken = store.verify().first_broken
    assert broken is not None
    assert (broken.id, broken.kind, broken.ref) == (None, "event", "c1#99")
    assert "no chain record" in broken.reason

    sql(store, "DELETE FROM events WHERE seq = 99")
    sql(
        store,
        "INSERT INTO tokens (token_sha256, role, label, created_at) "
        "VALUES (:h, 'admin', 'backdoor', '2026-01-01')",
        h="0" * 64,
    )
    broken = store.verify().first_broken
    assert broken is not None and (broken.kind, broken.id) == ("token.created", None)


def recompute_chain(store: Store) -> None:
    """What a careful attacker does after editing rows: rehash every record."""
    with store.engine.begin() as conn:
        rows = conn.execute(select(audit_chain).order_by(audit_chain.c.id)).mappings().all()
        prev = chain.GENESIS
        for r in rows:
            content = r["content_sha256"]
            if r["kind"] == "event":
                call_id, seq = r["ref"].rsplit("#", 1)
                payload = conn.execute(
                    text("SELECT payload FROM events WHERE call_id = :c AND seq = :s"),
                    {"c": call_id, "s": int(seq)},
                ).scalar()
                if payload is not None:
                    content = chain.event_content(payload)
            h = chain.record_hash(prev, r["id"], r["kind"], r["ref"], content, r["created_at"])
            conn.execute(
                audit_chain.update()
                .where(audit_chain.c.id == r["id"])
                .values(content_sha256=content, prev_hash=prev, hash=h)
            )
            prev = h
        conn.execute(text("UPDATE chain_head SET last_hash = :h"), {"h": prev})


def test_an_exported_head_catches_a_recomputed_chain(open_store: OpenStore) -> None:
    store = open_store()
    populate(store)
    exported = store.chain_head()["hash"]
    sql(
        store,
        "UPDATE events SET payload = replace(payload, 'refund', 'rebate') "
        "WHERE call_id = 'c1' AND seq = 3",
    )
    recompute_chain(store)
    assert store.verify().ok  # consistent in itself: only the exported head can tell
    result = store.verify(head=exported)
    assert not result.ok and result.head_found is False
    assert result.first_broken is not None and result.first_broken.kind == "head"
    assert "rewritten" in result.first_broken.reason


def test_concurrent_appends_keep_one_valid_chain(open_store: OpenStore) -> None:
    """Two engines (two instances) and four threads append at once."""
    stores = [open_store(), open_store()]
    errors: list[BaseException] = []

    def writer(store: Store, name: str) -> None:
        try:
            for i in range(15):
                evs = fake_report(f"{name}-{i}")["events"]
                store.append_events(evs[:4])
                store.append_events(evs[4:])
                if i % 5 == 0:
                    store.add_rule_version(name, f"v: {i}\n", "s", "/r.yaml", name, "", {})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(stores[k % 2], f"w{k}")) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    result = stores[0].verify()
    n_events = 4 * 15 * len(fake_report("x")["events"])
    assert result.ok, result.first_broken
    assert result.records == n_events + 4 * 3
    assert [r["version"] for r in stores[1].rule_versions("w0")] == [1, 2, 3]


def test_verify_reads_one_snapshot_while_others_write(open_store: OpenStore) -> None:
    """Events appended after the chain was walked are not taken for unchained rows."""
    store, writer = open_store(), open_store()
    populate(store)
    before = store.chain_head()["records"]
    late = fake_report("late")["events"]

    def progress(done: int, total: int) -> None:
        if done == total:  # the chain is walked; the rows are read next
            writer.append_events(late)

    result = store.verify(progress=progress)
    assert result.ok, result.first_broken
    assert result.records == before
    assert store.verify().records == before + len(late)


def test_verify_cli_exit_codes_and_output(
    open_store: OpenStore, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_store()
    populate(store)
    head = store.chain_head()
    assert main(["verify", "--db", store_url]) == 0
    out = capsys.readouterr().out
    assert "audit chain intact" in out and head["hash"] in out
    assert main(["verify", "--db", store_url, "--head", head["hash"]]) == 0
    assert "exported head is in it" in capsys.readouterr().out
    assert main(["verify", "--db", store_url, "--head", "ab" * 32]) == 1
    assert "not in the chain" in capsys.readouterr().out

    victim = record_id(store, "event", "c1#3")
    sql(store, "UPDATE events SET payload = replace(payload, 'kettle', 'toaster')")
    assert main(["verify", "--db", store_url]) == 1
    out = capsys.readouterr().out
    assert f"first broken: record {victim} (event c1#3)" in out
    assert main(["verify", "--db", store_url, "--json"]) == 1
    got = json.loads(capsys.readouterr().out)
    assert got["ok"] is False and got["first_broken"]["id"] == victim


def test_verify_cli_refuses_a_store_not_upgraded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "old.db"
    url = f"sqlite:///{db}"
    assert main(["verify", "--db", url]) == 1
    assert "no store at" in capsys.readouterr().err and not db.exists()
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE calls (call_id TEXT PRIMARY KEY)")
    con.close()
    assert main(["verify", "--db", url]) == 1
    assert "revision none, not 0003: run 'callwatch db upgrade'" in capsys.readouterr().err


def test_verify_cli_shows_progress_on_long_chains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'long.db'}"
    store = Store(url)
    line = {"type": "transcript.partial", "call_id": "long", "t": 1.0, "text": "hello"}
    store.append_events([{**line, "seq": i} for i in range(1, 10_002)])
    store.close()
    assert main(["verify", "--db", url]) == 0
    out, err = capsys.readouterr()
    assert "10,000 / 10,001 records checked" in err and "10,001 / 10,001" in err
    assert "intact: 10,001 records" in out
