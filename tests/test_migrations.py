"""Schema migrations on SQLite and PostgreSQL: an empty store gets exactly the schema the
code queries (``assist.store.metadata``); a store made by callwatch before migrations is
recognised, stamped and upgraded with its rows kept and chained; two instances starting
at once upgrade once; a newer store is refused clearly; ``callwatch db``."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, insert, text

from assist.cli import main
from assist.migrations import (
    HEAD,
    alembic_config,
    current_revision,
    head_revision,
    legacy_revision,
)
from assist.migrations.baseline import metadata as baseline
from assist.store import Store, StoreError, metadata, open_engine
from tests.test_store_backends import fake_report

OpenStore = Callable[..., Store]
OLD_REPORT = {
    "call_id": "c1",
    "agent_id": "ann",
    "started_at": 1_790_000_000.0,
    "protocol": "twilio",
    "channels": ["agent", "customer"],
    "scorecard": {"score": 50.0, "rules": [{"rule_id": "greeting", "status": "failed"}]},
    "alerts": [{"rule_id": "greeting", "severity": "warning"}],
}


def schema_diff(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def test_head_is_the_newest_script() -> None:
    assert head_revision() == HEAD


def test_an_empty_store_gets_the_schema_the_code_queries(open_store: OpenStore) -> None:
    store = open_store()
    with store.engine.connect() as conn:
        assert current_revision(conn) == HEAD
    assert schema_diff(store) == []
    assert store.chain_head()["records"] == 0


def fill_old_store(url: str, with_listing: bool) -> None:
    """A store as callwatch made it before migrations: 0.1 (no listing columns) or 0.2
    (listing columns added in place by the old ``_upgrade``, alert states)."""
    engine = create_engine(url)
    baseline.create_all(engine)
    tables = baseline.tables
    with engine.begin() as conn:
        if with_listing:
            for col in ("agent_id VARCHAR(128)", "started_at FLOAT", "language VARCHAR(16)"):
                conn.execute(text(f"ALTER TABLE calls ADD COLUMN {col}"))
            conn.execute(text("ALTER TABLE calls ADD COLUMN facts JSON"))
            conn.execute(
                text(
                    "CREATE TABLE alert_states (call_id VARCHAR(128) NOT NULL, seq INTEGER "
                    "NOT NULL, status VARCHAR(16) NOT NULL, assignee VARCHAR(256), acked_by "
                    "VARCHAR(256), acked_at VARCHAR(32), note TEXT, updated_by VARCHAR(256), "
                    "updated_at VARCHAR(32), PRIMARY KEY (call_id, seq))"
                )
            )
        row: dict[str, Any] = {
            "call_id": "c1",
            "mode": "audit",
            "sources": [],
            "duration_s": 60.0,
            "score": 50.0,
            "alerts": 1,
            "model": "tiny.en",
            "report": OLD_REPORT,
            "updated_at": "2026-01-01T00:00:00+00:00",
        }
        conn.execute(insert(tables["calls"]), row)
        if with_listing:
            conn.execute(
                text(
                    "UPDATE calls SET agent_id = 'ann', started_at = 1790000000.0, "
                    "facts = :f WHERE call_id = 'c1'"
                ),
                {"f": json.dumps({"failed_rules": ["greeting"], "fired_rules": {"greeting": 1}})},
            )
            conn.execute(
                text(
                    "INSERT INTO alert_states (call_id, seq, status, acked_by) "
                    "VALUES ('c1', 2, 'acknowledged', 'sam')"
                )
            )
        for seq, type_ in ((1, "call.started"), (2, "alert")):
            payload = {"type": type_, "call_id": "c1", "seq": seq, "t": float(seq)}
            conn.execute(
                insert(tables["events"]),
                {
                    "call_id": "c1",
                    "seq": seq,
                    "type": type_,
                    "t": float(seq),
                    "payload": json.dumps(payload),
                },
            )
        conn.execute(
            insert(tables["rule_versions"]),
            {
                "pack": "default",
                "version": 1,
                "text": "rules: []\n",
                "sha256": "s",
                "file": "/r.yaml",
                "author": "ann",
                "comment": "",
                "created_at": "2026-01-01",
                "summary": {},
            },
        )
        for sha, revoked in (("a" * 64, None), ("b" * 64, "2026-01-02")):
            conn.execute(
                insert(tables["tokens"]),
                {
                    "token_sha256": sha,
                    "role": "admin",
                    "label": "",
                    "created_at": "2026-01-01",
                    "revoked_at": revoked,
                },
            )
    engine.dispose()


@pytest.mark.parametrize("with_listing", [False, True], ids=["0.1-store", "0.2-store"])
def test_an_old_store_is_stamped_and_upgraded(
    open_store: OpenStore, store_url: str, with_listing: bool
) -> None:
    fill_old_store(store_url, with_listing)
    engine = open_engine(store_url)
    with engine.connect() as conn:
        assert legacy_revision(conn) == ("0002" if with_listing else "0001")
    engine.dispose()

    store = open_store()
    (row,) = store.list_calls()
    assert (row["agent_id"], row["started_at"], row["status"]) == ("ann", 1_790_000_000.0, "ended")
    assert row["facts"]["failed_rules"] == ["greeting"]
    assert row["facts"]["fired_rules"] == {"greeting": 1}
    if not with_listing:  # filled in from the report by 0003
        assert (row["protocol"], row["channels"]) == ("twilio", ["agent", "customer"])
    assert [e["seq"] for e in store.events_for("c1")] == [1, 2]
    assert store.rule_version("default", 1)["text"] == "rules: []\n"  # type: ignore[index]
    assert schema_diff(store) == []

    # every row stored before is on the chain now: 1 rule version, 2 + 1 token records,
    # 2 events (and the old alert state)
    result = store.verify()
    assert result.ok, result.first_broken
    assert result.records == 6 + (1 if with_listing else 0)
    # and the store works as a new one would
    store.save_report(fake_report("c2"))
    assert store.verify().ok
    assert Store(store_url).list_calls()  # opened again: nothing to do


def test_the_board_era_sqlite_file_upgrades_in_place(tmp_path: Path) -> None:
    """The shape the board's own upgrade test writes by hand (a calls table only)."""
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE calls (call_id VARCHAR(128) PRIMARY KEY, mode VARCHAR(16) NOT NULL, "
        "sources JSON NOT NULL, duration_s FLOAT, score FLOAT, alerts INTEGER NOT NULL, "
        "model VARCHAR(128), report JSON, updated_at VARCHAR(32) NOT NULL)"
    )
    con.execute(
        "INSERT INTO calls VALUES ('c1', 'audit', '[]', 60.0, 50.0, 1, 'tiny.en', ?, 'x')",
        (json.dumps(OLD_REPORT),),
    )
    con.commit()
    con.close()
    store = Store(f"sqlite:///{db}")
    (row,) = store.list_calls()
    assert row["agent_id"] == "ann" and row["status"] == "ended"
    assert store.verify().ok
    store.close()


def test_two_instances_starting_at_once_upgrade_once(store_url: str) -> None:
    opened: list[Store] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            opened.append(Store(store_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors, errors
        with opened[0].engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [(HEAD,)]
            assert conn.execute(text("SELECT count(*) FROM chain_head")).scalar() == 1
    finally:
        for s in opened:
            s.close()


def test_downgrade_and_upgrade_again(open_store: OpenStore) -> None:
    store = open_store()
    store.save_report(fake_report("c1"))
    with store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0001")
        assert current_revision(conn) == "0001"
    store.close()
    again = open_store()
    assert [c["call_id"] for c in again.list_calls()] == ["c1"]
    assert schema_diff(again) == [] and again.verify().ok


def test_a_store_from_a_newer_callwatch_is_refused_clearly(open_store: OpenStore) -> None:
    store = open_store()
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    with pytest.raises(StoreError, match="newer callwatch"):
        open_store()


def test_db_commands(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "current", "--db", store_url]) == 0
    assert "empty; run 'callwatch db upgrade'" in capsys.readouterr().out
    assert main(["db", "upgrade", "--db", store_url]) == 0
    assert f"upgraded from an empty store to revision {HEAD}" in capsys.readouterr().out
    assert main(["db", "upgrade", "--db", store_url]) == 0
    assert f"already at revision {HEAD}" in capsys.readouterr().out
    assert main(["db", "current", "--db", store_url]) == 0
    assert f"revision {HEAD} (up to date)" in capsys.readouterr().out
    # the engine of the commands is closed: the throwaway database can be dropped
    engine = open_engine(store_url)
    with engine.connect() as conn:
        assert current_revision(conn) == HEAD
    engine.dispose()
