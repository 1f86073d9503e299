"""The call store: SQLite by default (one file, WAL), PostgreSQL (or any SQLAlchemy URL) for
several instances sharing one store.

Keeps each call's summary row and every event it produced, so a report can be rebuilt
and compliance can see who said what, when, and which rule fired. Live calls are written
as they happen (``start_call``, ``append_events``, ``update_live``), so a server that dies
mid-call leaves everything it had heard; on restart its calls are ``interrupted``. Webhook
deliveries that failed for good are kept too (``webhook_dead_letters``), so no alert is lost
when a receiver is down. Enrolled agents' voiceprints (``callwatch agents enroll``) live here
so diarization can tell the agent from the customer on mono recordings after any restart.
Every version of every QA rule pack the server ran (``rule_versions``) is kept for the rules
API's history, diffs and rollbacks (see assist/rules_registry.py). API tokens (``tokens``:
only a hash is kept) and agents' verdicts on suggestions (``suggestion_feedback``) are kept.

Tamper evidence: every stored event, rule version, token change and alert triage change is
recorded in ``audit_chain`` in the same transaction as the row (assist/chain.py says how it
is hashed and checked). Appending takes the one-row ``chain_head`` first, so appends from
several threads, processes and instances serialize on SQLite and PostgreSQL alike.

The schema is made and upgraded by Alembic migrations (assist/migrations) when a store is
opened; the ``Table`` objects below are what the code queries and must match them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from assist import chain
from assist.chain import Pending, VerifyResult
from assist.facts import call_facts
from qa_rules.text import to_simplified

metadata = MetaData()

calls = Table(
    "calls",
    metadata,
    Column("call_id", String(128), primary_key=True),
    Column("mode", String(16), nullable=False),  # audit | live
    Column("sources", JSON, nullable=False),
    Column("duration_s", Float),
    Column("score", Float),
    Column("alerts", Integer, nullable=False, default=0),
    Column("model", String(128)),
    Column("report", JSON),  # None while a live call is active (see report_from_events)
    Column("updated_at", String(32), nullable=False),
    # listed and filtered by the board without loading reports (migration 0002)
    Column("agent_id", String(128), index=True),
    Column("started_at", Float, index=True),  # epoch seconds, UTC
    Column("language", String(16)),
    Column("facts", JSON),  # assist.facts.call_facts(report)
    # live calls written as they happen, several instances (migration 0003)
    Column("status", String(16), nullable=False, server_default="ended"),  # see CALL_STATUSES
    Column("ended_reason", String(64)),
    Column("instance_id", String(128)),  # the instance that took the live call
    Column("live_at", Float),  # epoch s of the last live update
    Column("protocol", String(32)),  # how a live call arrived (twilio, audiohook, raw ...)
    Column("channels", JSON),  # speaker per channel (["agent", "customer"], ["mixed"])
    Column("purged_at", String(32)),  # when retention deleted its transcripts and audio
    Index("ix_calls_status", "status"),
    Index("ix_calls_agent_id_started_at", "agent_id", "started_at"),
)

events = Table(
    "events",
    metadata,
    Column("call_id", String(128), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("type", String(32), nullable=False, index=True),
    Column("t", Float, nullable=False),
    Column("payload", Text, nullable=False),
    Index("ix_events_call_id_type", "call_id", "type"),
)

webhook_dead_letters = Table(
    "webhook_dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", String(32), nullable=False),
    Column("url", Text, nullable=False),
    Column("delivery_id", String(64), nullable=False),  # kept so a redelivery can be de-duplicated
    Column("call_id", String(128), index=True),
    Column("event_type", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=False),
)


agents = Table(
    "agents",
    metadata,
    Column("agent_id", String(128), primary_key=True),
    Column("voiceprint", JSON, nullable=False),  # unit 256-d speaker embedding
    Column("speech_s", Float, nullable=False),  # how much speech it was built from
    Column("source", Text, nullable=False),  # the recording it was enrolled from
    Column("enrolled_at", String(32), nullable=False),
)


rule_versions = Table(
    "rule_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pack", String(128), nullable=False, index=True),
    Column("version", Integer, nullable=False),  # 1, 2, 3 ... per pack (not the YAML's own)
    Column("text", Text, nullable=False),  # the pack's YAML exactly as run ("" = deleted)
    Column("sha256", String(64), nullable=False),
    Column("file", Text, nullable=False),  # where the pack lived
    Column("author", String(256), nullable=False),  # X-Callwatch-User, or file:<path>
    Column("comment", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("summary", JSON, nullable=False),  # {"added": [ids], "changed": [...], "removed": [...]}
    UniqueConstraint("pack", "version", name="uq_rule_versions_pack_version"),
)


tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),  # see ROLES
    Column("agent_id", String(128)),  # the agent an agent token belongs to
    Column("label", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("revoked_at", String(32)),
)


suggestion_feedback = Table(
    "suggestion_feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_id", String(128), nullable=False, index=True),
    Column("suggestion_id", String(32), nullable=False),
    Column("agent_id", String(128)),
    Column("verdict", String(16), nullable=False),  # helpful | not_helpful | dismissed | copied
    Column("intent", String(128), index=True),  # playbook intent, or None for a rule prompt
    Column("rule_id", String(128)),
    Column("line", Integer),  # the script line copied
    Column("comment", Text),
    Column("at", String(32), nullable=False),
)

alert_states = Table(
    "alert_states",
    metadata,
    Column("call_id", String(128), primary_key=True),
    Column("seq", Integer, primary_key=True),  # the alert event's seq in its call
    Column("status", String(16), nullable=False),  # open | acknowledged
    Column("assignee", String(256)),
    Column("acked_by", String(256)),
    Column("acked_at", String(32)),
    Column("note", Text),
    Column("updated_by", String(256)),
    Column("updated_at", String(32)),
)

# The tamper-evident trail (assist/chain.py): one record per chained row, in order.
audit_chain = Table(
    "audit_chain",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),  # 1, 2, 3 ... no gaps
    Column("kind", String(32), nullable=False),
    Column("ref", String(300), nullable=False),
    Column("content_sha256", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("detail", Text),  # call.replaced / retention: what was removed (JSON)
    Column("call_id", String(128), index=True),  # the call a record is about (not hashed)
)

# One row (id 1): the last record. Updated first in every appending transaction, so the
# appends of every process queue on its row lock.
chain_head = Table(
    "chain_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_id", BigInteger, nullable=False),
    Column("last_hash", String(64), nullable=False),
    Column("updated_at", String(32), nullable=False),
)

ALERT_STATUSES = ("open", "acknowledged")
ROLES = ("agent", "supervisor", "qa", "admin", "ingest")
VERDICTS = ("helpful", "not_helpful", "dismissed", "copied")
CALL_STATUSES = ("active", "ended", "interrupted")
INTERRUPTED_REASON = "instance_restart"

# what list_calls and active_calls give per call
LISTED = (
    "call_id",
    "mode",
    "sources",
    "duration_s",
    "score",
    "alerts",
    "updated_at",
    "agent_id",
    "started_at",
    "language",
    "facts",
    "status",
    "ended_reason",
    "instance_id",
    "live_at",
    "protocol",
    "channels",
)


@dataclass(frozen=True)
class CallQuery:
    """Which calls to list: every field given narrows, None means any. The same query
    filters stored calls in SQL (``where``) and live calls or facts in Python (``matches``)."""

    status: str | None = None  # active | ended | interrupted
    finished: bool = False  # leave out calls still live (on any instance)
    agent: str | None = None
    mode: str | None = None  # live | audit
    since: float | None = None  # started at or after (epoch s)
    until: float | None = None  # started before
    min_score: float | None = None
    max_score: float | None = None
    failed_rule: str | None = None  # failed on the scorecard (in facts)
    fired_rule: str | None = None  # raised an alert (in facts)
    exclude: tuple[str, ...] = ()  # call ids to leave out (live calls already listed)

    @property
    def all_in_sql(self) -> bool:
        """True when ``where`` alone decides, so SQL can page and count."""
        return not self.failed_rule and not self.fired_rule

    def where(self, q: Any) -> Any:
        """Add the SQL-able conditions to a select over ``calls``."""
        c = calls.c
        if self.status:
            q = q.where(c.status == self.status)
        elif self.finished:
            q = q.where(c.status != "active")
        if self.agent:
            q = q.where(c.agent_id == self.agent)
        if self.mode:
            q = q.where(c.mode == self.mode)
        if self.since is not None:
            q = q.where(c.started_at >= self.since)
        if self.until is not None:
            q = q.where(c.started_at < self.until)
        if self.min_score is not None:
            q = q.where(c.score >= self.min_score)
        if self.max_score is not None:
            q = q.where(c.score <= self.max_score)
        if self.exclude:
            q = q.where(c.call_id.not_in(list(self.exclude)))
        return q

    def matches(self, call: dict[str, Any]) -> bool:
        """Whether a call summary (live listing or stored row) passes every field."""
        facts = call.get("facts") or {}
        started = call.get("started_at")
        score = call.get("score")
        return not (
            (self.status and call.get("status") != self.status)
            or (self.finished and not self.status and call.get("status") == "active")
            or (self.agent and call.get("agent_id") != self.agent)
            or (self.mode and call.get("mode") != self.mode)
            or (self.since is not None and (started is None or started < self.since))
            or (self.until is not None and (started is None or started >= self.until))
            or (self.min_score is not None and (score is None or score < self.min_score))
            or (self.max_score is not None and (score is None or score > self.max_score))
            or (self.failed_rule and self.failed_rule not in facts.get("failed_rules", []))
            or (self.fired_rule and self.fired_rule not in facts.get("fired_rules", {}))
            or call.get("call_id") in self.exclude
        )


class StoreError(RuntimeError):
    """The store cannot be opened or written; the message says where and why."""


def callwatch_home() -> Path:
    """``$CALLWATCH_HOME``, else ``$XDG_DATA_HOME/callwatch`` (``~/.local/share/callwatch``)."""
    home = os.environ.get("CALLWATCH_HOME") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "callwatch"
    )
    return Path(home)


def default_url() -> str:
    url = os.environ.get("CALLWATCH_DB_URL")
    if url:
        return url
    return f"sqlite:///{callwatch_home() / 'callwatch.db'}"


def open_engine(url: str) -> Engine:
    """An engine for ``url``: SQLite gets WAL and a busy timeout, servers a pre-ping (a
    PostgreSQL restart costs one reconnect, not an error)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # hide_parameters: a failed INSERT must not put transcripts (PII) into logs and errors
    engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"), hide_parameters=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _reason(exc: BaseException) -> str:
    """The database's own one-line reason, without the SQL, its parameters (event payloads,
    transcripts) or SQLAlchemy's help link."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Store:
    def __init__(self, url: str | None = None, *, upgrade: bool = True) -> None:
        """Open (and unless ``upgrade`` is False, create or upgrade) the store at ``url``."""
        from assist.migrations import MigrationError, upgrade_schema

        self.url = url or default_url()
        self._where = _masked(self.url)  # what error messages and logs show
        try:
            self.engine: Engine = open_engine(self.url)
            if upgrade:
                upgrade_schema(self.engine)
        except (SQLAlchemyError, MigrationError, ImportError) as exc:
            # ImportError: e.g. a postgresql+psycopg URL without psycopg installed
            raise StoreError(f"cannot open store {self._where}: {_reason(exc)}") from exc

    def close(self) -> None:
        """Close the pooled connections (a test dropping its database needs them gone)."""
        self.engine.dispose()

    # -- transactions ------------------------------------------------------------------------
    @contextmanager
    def _read(self, what: str) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot {what} from {self._where}: {_reason(exc)}") from exc

    @contextmanager
    def _snapshot(self, what: str) -> Iterator[Connection]:
        """Reads that all see the store as it was at the first one, while others write
        (verify walks the chain, then the rows: a row added in between is not "unchained")."""
        try:
            with self.engine.connect() as conn:
                if conn.dialect.name == "sqlite":
                    conn.exec_driver_sql("BEGIN")  # WAL: one snapshot until the end
                else:
                    conn.execution_options(isolation_level="REPEATABLE READ")
                try:
                    yield conn
                finally:
                    conn.rollback()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot {what} from {self._where}: {_reason(exc)}") from exc

    @contextmanager
    def _write(self, what: str) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot {what} in {self._where}: {_reason(exc)}") from exc

    @contextmanager
    def _chained(self, what: str) -> Iterator[tuple[Connection, list[Pending]]]:
        """A write transaction that takes the chain head FIRST (before any read, so SQLite
        waits for the write lock instead of failing on a stale snapshot, and PostgreSQL
        queues on the head's row lock), then appends the records the body collected."""
        try:
            with self.engine.begin() as conn:
                head = conn.execute(  # a no-op update: it takes the row lock, then reads
                    chain_head.update()
                    .where(chain_head.c.id == 1)
                    .values(last_id=chain_head.c.last_id)
                    .returning(chain_head.c.last_id, chain_head.c.last_hash)
                ).first()
                if head is None:
                    raise StoreError(
                        f"the audit chain head of {self._where} is missing; "
                        "run 'callwatch verify' and restore the store"
                    )
                pending: list[Pending] = []
                yield conn, pending
                if pending:
                    records = chain.link(int(head[0]), str(head[1]), pending, _stamp())
                    conn.execute(
                        audit_chain.insert(),
                        [
                            {
                                "id": r.id,
                                "kind": r.kind,
                                "ref": r.ref,
                                "content_sha256": r.content_sha256,
                                "prev_hash": r.prev_hash,
                                "hash": r.hash,
                                "created_at": r.created_at,
                                "detail": r.detail,
                                "call_id": r.call_id,
                            }
                            for r in records
                        ],
                    )
                    conn.execute(
                        chain_head.update()
                        .where(chain_head.c.id == 1)
                        .values(
                            last_id=records[-1].id,
                            last_hash=records[-1].hash,
                            updated_at=records[-1].created_at,
                        )
                    )
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot {what} in {self._where}: {_reason(exc)}") from exc

    # -- calls and their events --------------------------------------------------------------
    def start_call(
        self,
        call_id: str,
        *,
        agent_id: str | None,
        protocol: str | None,
        language: str | None,
        started_at: float,
        instance_id: str | None,
        channels: list[str],
    ) -> None:
        """A live call begins on ``instance_id`` (mode live, status active). A call of the
        same id stored before is replaced; its events are removed, on the chain."""
        _fits(call_id, 128, "call id")
        now = _epoch()
        row = {
            "call_id": call_id,
            "mode": "live",
            "sources": [],
            "duration_s": 0.0,
            "score": None,
            "alerts": 0,
            "model": None,
            "report": None,
            "updated_at": _now(),
            "agent_id": _fits(agent_id, 128, "agent id"),
            "started_at": float(started_at),
            "language": _fits(language, 16, "language"),
            "facts": call_facts({}),
            "status": "active",
            "ended_reason": None,
            "instance_id": _fits(instance_id, 128, "instance id"),
            "live_at": now,
            "purged_at": None,
            "protocol": _fits(protocol, 32, "protocol"),
            "channels": list(channels),
        }
        with self._chained(f"start call {call_id}") as (conn, records):
            old = self._payloads(conn, call_id)
            if old:
                detail = {"call_id": call_id, "reason": "restarted", "removed": sorted(old)}
                records.append(_detail_record(chain.CALL_REPLACED, call_id, detail))
                conn.execute(delete(events).where(events.c.call_id == call_id))
            conn.execute(delete(calls).where(calls.c.call_id == call_id))
            conn.execute(calls.insert().values(**row))

    def append_events(self, evs: list[dict[str, Any]]) -> None:
        """Store events as they happen, each chained in the same transaction. Idempotent on
        (call_id, seq): the same payload again is a no-op; a different one replaces the
        stored event and is chained again (the newest record is the one checked)."""
        if not evs:
            return
        by_call: dict[str, dict[int, dict[str, Any]]] = {}
        for e in evs:
            _check_event(e)
            by_call.setdefault(e["call_id"], {})[int(e["seq"])] = e
        n = len(evs)
        with self._chained(f"store {n} event(s)") as (conn, records):
            for call_id, batch in by_call.items():
                old = self._payloads(conn, call_id, list(batch))
                self._put_events(conn, records, batch.values(), old)

    def update_live(
        self,
        call_id: str,
        *,
        duration_s: float,
        score: float | None,
        alerts: int,
        facts: dict[str, Any],
        language: str | None = None,
    ) -> None:
        """Refresh a live call's listing (other instances' boards read it); sets live_at.
        ``language``: set once detection has decided it (None leaves it)."""
        now = _epoch()
        values: dict[str, Any] = {
            "duration_s": duration_s,
            "score": score,
            "alerts": int(alerts),
            "facts": {**(facts or {})},
            "live_at": now,
            "updated_at": _now(),
        }
        if language is not None:
            values["language"] = _fits(language, 16, "language")
        with self._write(f"update live call {call_id}") as conn:
            result = conn.execute(calls.update().where(calls.c.call_id == call_id).values(**values))
        if not result.rowcount:
            raise ValueError(f"no call {call_id!r} in the store (start_call first)")

    def save_report(
        self,
        report: dict[str, Any],
        mode: str = "audit",
        status: str = "ended",
        ended_reason: str | None = None,
    ) -> None:
        """Store a call's report and its events. Events already stored with the same payload
        are kept; new or changed ones are written and chained; stored ones the report no
        longer has are removed. Changing or removing any is recorded as ``call.replaced``."""
        if status not in CALL_STATUSES:
            raise ValueError(f"status must be one of: {', '.join(CALL_STATUSES)}")
        call_id = report["call_id"]
        _fits(call_id, 128, "call id")
        evs = report.get("events") or []
        for e in evs:
            _check_event(e)
            if e["call_id"] != call_id:
                raise ValueError(f"event {e['call_id']}#{e['seq']} is not of call {call_id}")
        if ended_reason is None:
            ended = [e for e in evs if e["type"] == "call.ended"]
            ended_reason = ended[-1].get("reason") if ended else report.get("ended_reason")
        body = {k: v for k, v in report.items() if k != "events"}
        body.update(status=status, ended_reason=ended_reason)
        row = {
            "mode": mode,
            "sources": report.get("sources", []),
            "duration_s": report.get("duration_s"),
            "score": (report.get("scorecard") or {}).get("score"),
            "alerts": len(report.get("alerts") or []),
            "model": _fits(report.get("model"), 128, "model"),
            "report": body,
            "updated_at": _now(),
            "status": status,
            "ended_reason": _fits(ended_reason, 64, "ended reason"),
            **_listed(body),
        }
        with self._chained(f"save call {call_id}") as (conn, records):
            old = self._payloads(conn, call_id)
            new = {int(e["seq"]): e for e in evs}
            removed = sorted(set(old) - set(new))
            changed = sorted(s for s in set(old) & set(new) if old[s] != _payload(new[s]))
            if removed or changed:
                detail = {
                    "call_id": call_id,
                    "reason": "re-saved",
                    "removed": removed,
                    "changed": changed,
                }
                records.append(_detail_record(chain.CALL_REPLACED, call_id, detail))
            if removed:
                conn.execute(
                    delete(events).where(events.c.call_id == call_id, events.c.seq.in_(removed))
                )
            self._put_events(conn, records, new.values(), old)
            exists = conn.execute(select(calls.c.call_id).where(calls.c.call_id == call_id)).first()
            if exists:
                conn.execute(calls.update().where(calls.c.call_id == call_id).values(**row))
            else:
                conn.execute(calls.insert().values(call_id=call_id, **row))

    @staticmethod
    def _payloads(conn: Connection, call_id: str, seqs: list[int] | None = None) -> dict[int, str]:
        q = select(events.c.seq, events.c.payload).where(events.c.call_id == call_id)
        if seqs is not None:
            q = q.where(events.c.seq.in_(seqs))
        return {int(s): p for s, p in conn.execute(q).all()}

    @staticmethod
    def _put_events(
        conn: Connection,
        records: list[Pending],
        evs: Iterable[dict[str, Any]],
        old: dict[int, str],
    ) -> None:
        """Insert new events, rewrite changed ones, chain both; equal ones stay as they are."""
        inserts = []
        for e in evs:
            payload = _payload(e)
            seq = int(e["seq"])
            was = old.get(seq)
            if was == payload:
                continue
            row = {"type": e["type"], "t": float(e["t"]), "payload": payload}
            if was is None:
                inserts.append({"call_id": e["call_id"], "seq": seq, **row})
            else:
                conn.execute(
                    events.update()
                    .where(events.c.call_id == e["call_id"], events.c.seq == seq)
                    .values(**row)
                )
            records.append(
                Pending(
                    chain.EVENT, chain.event_ref(e["call_id"], seq), chain.event_content(payload)
                )
            )
        if inserts:
            conn.execute(events.insert(), inserts)

    def mark_interrupted(self, instance_id: str) -> list[str]:
        """That instance's active calls (it died or restarted) become ``interrupted``, with a
        report rebuilt from the events they had stored. Returns their ids."""
        with self._read("list active calls") as conn:
            ids = list(
                conn.execute(
                    select(calls.c.call_id).where(
                        calls.c.status == "active", calls.c.instance_id == instance_id
                    )
                ).scalars()
            )
        for call_id in ids:
            report = self.report_from_events(call_id) or {"call_id": call_id}
            report.update(status="interrupted", ended_reason=INTERRUPTED_REASON)
            with self._write(f"mark call {call_id} interrupted") as conn:
                conn.execute(
                    calls.update()
                    .where(calls.c.call_id == call_id, calls.c.status == "active")
                    .values(
                        status="interrupted",
                        ended_reason=INTERRUPTED_REASON,
                        report=report,
                        duration_s=report.get("duration_s"),
                        score=(report.get("scorecard") or {}).get("score"),
                        alerts=len(report.get("alerts") or []),
                        updated_at=_now(),
                        **_listed(report),
                    )
                )
        return ids

    def active_calls(self, exclude_instance: str | None = None) -> list[dict[str, Any]]:
        """Listing rows of calls live right now (on any instance but ``exclude_instance``)."""
        q = select(*(calls.c[k] for k in LISTED)).where(calls.c.status == "active")
        if exclude_instance is not None:
            q = q.where(or_(calls.c.instance_id.is_(None), calls.c.instance_id != exclude_instance))
        q = q.order_by(calls.c.started_at.desc().nulls_last(), calls.c.call_id)
        with self._read("list active calls") as conn:
            return [dict(r) for r in conn.execute(q).mappings().all()]

    def report_from_events(self, call_id: str) -> dict[str, Any] | None:
        """A report rebuilt from the call's stored events (a call live on another instance,
        or interrupted); None if the store has neither the call nor any event of it."""
        from assist.stored_call import report_from_events

        with self._read(f"read call {call_id}") as conn:
            row = conn.execute(select(calls).where(calls.c.call_id == call_id)).mappings().first()
        evs = self.events_for(call_id)
        if row is None and not evs:
            return None
        return report_from_events(evs, dict(row) if row else None)

    def get_report(self, call_id: str) -> dict[str, Any] | None:
        """The stored report; None for an unknown call or a live one not ended yet."""
        with self._read(f"read call {call_id}") as conn:
            row = conn.execute(select(calls.c.report).where(calls.c.call_id == call_id)).first()
        return dict(row[0]) if row and row[0] is not None else None

    def list_calls(
        self, query: CallQuery | None = None, limit: int | None = None, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Stored calls, newest first, without their reports (``facts`` instead). Only the
        query's SQL fields apply here; ``CallQuery.matches`` checks the rest."""
        q = select(*(calls.c[k] for k in LISTED)).order_by(
            calls.c.started_at.desc().nulls_last(),
            calls.c.updated_at.desc(),
            calls.c.call_id,
        )
        q = (query or CallQuery()).where(q)
        if limit is not None:
            q = q.limit(limit).offset(offset)
        with self._read("list calls") as conn:
            rows = conn.execute(q).mappings().all()
        return [dict(r) for r in rows]

    def count_calls(self, query: CallQuery | None = None) -> int:
        """How many stored calls ``list_calls`` would give without a limit."""
        q = (query or CallQuery()).where(select(func.count()).select_from(calls))
        with self._read("count calls") as conn:
            return int(conn.execute(q).scalar_one())

    def alert_rows(
        self,
        call_id: str | None = None,
        agent: str | None = None,
        exclude: Iterable[str] = (),
        since: float | None = None,
    ) -> list[tuple[dict[str, Any], str | None]]:
        """Stored alert events with their call's agent, oldest first; ``since``: only calls
        stored since then (a call stored earlier raised all its alerts before that)."""
        q = (
            select(events.c.payload, calls.c.agent_id)
            .select_from(events.join(calls, events.c.call_id == calls.c.call_id))
            .where(events.c.type == "alert")
            .order_by(events.c.call_id, events.c.seq)
        )
        if call_id:
            q = q.where(events.c.call_id == call_id)
        if agent:
            q = q.where(calls.c.agent_id == agent)
        if since is not None:
            stamp = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds")
            q = q.where(calls.c.updated_at >= stamp)
        skip = list(exclude)
        if skip:
            q = q.where(events.c.call_id.not_in(skip))
        with self._read("read alerts") as conn:
            rows = conn.execute(q).all()
        return [(json.loads(r[0]), r[1]) for r in rows]

    def alert_states(
        self, call_ids: Iterable[str] | None = None
    ) -> dict[tuple[str, int], dict[str, Any]]:
        """What supervisors did with alerts: (call_id, seq) -> state row."""
        q = select(alert_states)
        if call_ids is not None:
            q = q.where(alert_states.c.call_id.in_(list(call_ids)))
        with self._read("read alert states") as conn:
            rows = conn.execute(q).mappings().all()
        return {(r["call_id"], r["seq"]): dict(r) for r in rows}

    def set_alert_state(
        self,
        call_id: str,
        seq: int,
        by: str,
        status: str | None = None,
        assignee: str | None = None,
        note: str | None = None,
    ) -> dict[str, Any]:
        """Acknowledge, reopen or assign one alert (chained); returns its state row."""
        if status is not None and status not in ALERT_STATUSES:
            raise ValueError(f"status must be one of {ALERT_STATUSES}")
        _fits(by, 256, "user name")
        _fits(assignee, 256, "assignee")
        key = (alert_states.c.call_id == call_id) & (alert_states.c.seq == seq)
        now = _now()
        with self._chained(f"update alert {call_id}:{seq}") as (conn, records):
            row = conn.execute(select(alert_states).where(key)).mappings().first()
            state = dict(row) if row else {"call_id": call_id, "seq": seq, "status": "open"}
            if status == "acknowledged":
                state.update(status=status, acked_by=by, acked_at=now)
            elif status == "open":
                state.update(status=status, acked_by=None, acked_at=None)
            if assignee is not None:
                state["assignee"] = assignee.strip() or None
            if note is not None:
                state["note"] = note
            state.update(updated_by=by, updated_at=now)
            if row:
                conn.execute(alert_states.update().where(key).values(**state))
            else:
                conn.execute(alert_states.insert().values(**state))
            records.append(
                Pending(
                    chain.ALERT_STATE,
                    chain.event_ref(call_id, seq),
                    chain.alert_state_content(state),
                )
            )
        return state

    def search_transcripts(
        self, q: str, agent: str | None = None, limit: int = 50, exclude: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        """Final transcript lines containing ``q`` (any case), newest calls first."""
        needle = search_needle(q)
        if not needle:
            return []
        like = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        sel = (
            select(events.c.payload, calls.c.agent_id, calls.c.mode)
            .select_from(events.join(calls, events.c.call_id == calls.c.call_id))
            .where(events.c.type == "transcript.final")
            .where(func.lower(events.c.payload).like(like, escape="\\"))
            .order_by(calls.c.started_at.desc().nulls_last(), events.c.call_id, events.c.seq)
        )
        if agent:
            sel = sel.where(calls.c.agent_id == agent)
        skip = list(exclude)
        if skip:
            sel = sel.where(events.c.call_id.not_in(skip))
        hits: list[dict[str, Any]] = []
        with self._read("search transcripts") as conn:
            for payload, agent_id, mode in conn.execute(sel):
                ev = json.loads(payload)
                if needle in str(ev.get("text", "")).lower():  # not a key or a word list
                    hits.append(transcript_hit(ev, agent_id, mode))
                    if len(hits) >= limit:
                        break
        return hits

    def events_for(self, call_id: str) -> list[dict[str, Any]]:
        with self._read(f"read the events of {call_id}") as conn:
            rows = conn.execute(
                select(events.c.payload).where(events.c.call_id == call_id).order_by(events.c.seq)
            ).all()
        return [json.loads(r[0]) for r in rows]

    # -- retention (assist/retention.py decides what; this does it on the chain) --------------
    def retention_candidates(self, started_before: float) -> list[dict[str, Any]]:
        """Ended or interrupted calls that started before then and were not purged yet."""
        q = (
            select(calls.c.call_id, calls.c.started_at, calls.c.sources, calls.c.status)
            .where(
                calls.c.started_at < started_before,
                calls.c.status != "active",
                calls.c.purged_at.is_(None),
            )
            .order_by(calls.c.started_at, calls.c.call_id)
        )
        with self._read("list calls for retention") as conn:
            return [dict(r) for r in conn.execute(q).mappings().all()]

    def count_events(self, call_id: str, types: Iterable[str]) -> int:
        q = select(func.count()).where(events.c.call_id == call_id, events.c.type.in_(list(types)))
        with self._read(f"count the events of {call_id}") as conn:
            return int(conn.execute(q.select_from(events)).scalar_one())

    def purge_call(
        self,
        call_id: str,
        rewrite: Callable[[dict[str, Any]], dict[str, Any] | None],
        rewrite_report: Callable[[dict[str, Any]], dict[str, Any]],
        detail: dict[str, Any],
    ) -> tuple[list[int], list[int]]:
        """Apply a retention decision to one call in one transaction: each event becomes
        ``rewrite(event)`` (None: deleted; changed: rewritten and chained again), the report
        ``rewrite_report(report)``, and one ``retention`` record says what went (``detail``
        plus the deleted and rewritten seqs). Returns (deleted seqs, rewritten seqs)."""
        with self._chained(f"purge call {call_id}") as (conn, records):
            old = self._payloads(conn, call_id)
            deleted: list[int] = []
            kept: dict[int, dict[str, Any]] = {}
            for seq, payload in sorted(old.items()):
                new = rewrite(json.loads(payload))
                if new is None:
                    deleted.append(seq)
                elif _payload(new) != payload:
                    kept[seq] = new
            rewritten = sorted(kept)
            full = {**detail, "call_id": call_id, "deleted": deleted, "rewritten": rewritten}
            records.append(_detail_record(chain.RETENTION, call_id, full))
            if deleted:
                conn.execute(
                    delete(events).where(events.c.call_id == call_id, events.c.seq.in_(deleted))
                )
            self._put_events(conn, records, kept.values(), old)
            report = conn.execute(select(calls.c.report).where(calls.c.call_id == call_id)).first()
            values: dict[str, Any] = {"purged_at": _now(), "updated_at": _now()}
            if report is not None and report[0] is not None:
                values["report"] = rewrite_report(dict(report[0]))
            conn.execute(calls.update().where(calls.c.call_id == call_id).values(**values))
        return deleted, rewritten

    # -- the audit chain -----------------------------------------------------------------------
    def chain_head(self) -> dict[str, Any]:
        """The newest record: {"id", "hash", "records", "at"} (for auditors' exports)."""
        with self._read("read the audit chain head") as conn:
            row = conn.execute(
                select(chain_head.c.last_id, chain_head.c.last_hash, chain_head.c.updated_at)
            ).first()
        if row is None:
            raise StoreError(f"the audit chain head of {self._where} is missing")
        return {"id": int(row[0]), "hash": row[1], "records": int(row[0]), "at": row[2]}

    def chain_for_call(self, call_id: str) -> list[dict[str, Any]]:
        """Every chain record about one call (its events, alert states, replacements,
        purges), oldest first (``detail`` decoded)."""
        q = select(audit_chain).where(audit_chain.c.call_id == call_id).order_by(audit_chain.c.id)
        with self._read(f"read the audit chain of {call_id}") as conn:
            rows = conn.execute(q).mappings().all()
        return [_record(r).to_dict() for r in rows]

    def verify(
        self, head: str | None = None, progress: Callable[[int, int], None] | None = None
    ) -> VerifyResult:
        """Walk the chain and check every chained row (see assist/chain.py); ``head``: an
        exported head hash that must still be in the chain. ``progress(done, total)`` is
        called every 10,000 records."""
        v = chain.Verifier(head)
        with self._snapshot("verify the audit chain") as conn:
            total = int(conn.execute(select(func.count()).select_from(audit_chain)).scalar_one())
            q = select(audit_chain).order_by(audit_chain.c.id)
            for r in conn.execution_options(yield_per=5000).execute(q).mappings():
                v.record(_record(r))
                if progress is not None and v.records % 10_000 == 0:
                    progress(v.records, total)
            if progress is not None:
                progress(v.records, total)
            self._verify_rows(conn, v)
            stored = conn.execute(select(chain_head.c.last_id, chain_head.c.last_hash)).first()
        return v.finish((int(stored[0]), str(stored[1])) if stored else None)

    @staticmethod
    def _verify_rows(conn: Connection, v: chain.Verifier) -> None:
        q = select(events).order_by(events.c.call_id, events.c.seq)
        for call_id, seq, type_, t, payload in conn.execution_options(yield_per=5000).execute(q):
            v.row(
                chain.EVENT,
                chain.event_ref(call_id, seq),
                chain.event_content(payload),
                _event_mismatch(call_id, seq, type_, t, payload),
            )
        for r in conn.execute(select(rule_versions)).mappings():
            v.row(
                chain.RULE_VERSION,
                chain.rule_version_ref(r["pack"], r["version"]),
                chain.rule_version_content(dict(r)),
            )
        for r in conn.execute(select(tokens)).mappings():
            ref = chain.token_ref(r["id"])
            v.row(chain.TOKEN_CREATED, ref, chain.token_created_content(dict(r)))
            if r["revoked_at"] is not None:
                v.row(chain.TOKEN_REVOKED, ref, chain.token_revoked_content(dict(r)))
        for r in conn.execute(select(alert_states)).mappings():
            v.row(
                chain.ALERT_STATE,
                chain.event_ref(r["call_id"], r["seq"]),
                chain.alert_state_content(dict(r)),
            )

    # -- webhook dead letters --------------------------------------------------------------------
    def add_dead_letter(
        self, url: str, delivery_id: str, event: dict[str, Any], attempts: int, last_error: str
    ) -> int:
        """Keep a webhook event no receiver accepted; returns the row id."""
        row = {
            "created_at": _now(),
            "url": url,
            "delivery_id": delivery_id,
            "call_id": event.get("call_id"),
            "event_type": str(event.get("type", ""))[:32],
            "payload": json.dumps(event, ensure_ascii=False),
            "attempts": attempts,
            "last_error": last_error,
        }
        with self._write(f"save a dead letter for {url}") as conn:
            result = conn.execute(webhook_dead_letters.insert().values(**row))
        pk = result.inserted_primary_key
        assert pk is not None  # an autoincrement insert always has one
        return int(pk[0])

    def dead_letters(
        self, limit: int | None = 100, ids: Iterable[int] | None = None
    ) -> list[dict[str, Any]]:
        """Oldest first, with the event decoded under ``event``; only ``ids`` if given."""
        q = select(webhook_dead_letters).order_by(webhook_dead_letters.c.id)
        if ids is not None:
            q = q.where(webhook_dead_letters.c.id.in_(list(ids)))
        if limit is not None:
            q = q.limit(limit)
        with self._read("read dead letters") as conn:
            rows = conn.execute(q).mappings().all()
        out = []
        for r in rows:
            d = dict(r)
            d["event"] = json.loads(d.pop("payload"))
            out.append(d)
        return out

    def delete_dead_letter(self, id_: int) -> bool:
        """Forget a dead letter (it was redelivered); False if there was none."""
        with self._write(f"delete dead letter {id_}") as conn:
            result = conn.execute(
                delete(webhook_dead_letters).where(webhook_dead_letters.c.id == id_)
            )
        return bool(result.rowcount)

    # -- agents' voiceprints ---------------------------------------------------------------
    def save_agent(
        self, agent_id: str, voiceprint: list[float], speech_s: float, source: str
    ) -> None:
        """Enrol (or re-enrol) an agent: the newest voiceprint replaces the old one."""
        row = {
            "agent_id": _fits(agent_id, 128, "agent id"),
            "voiceprint": [round(float(v), 6) for v in voiceprint],
            "speech_s": round(speech_s, 2),
            "source": source,
            "enrolled_at": _now(),
        }
        with self._write(f"enrol agent {agent_id}") as conn:
            conn.execute(delete(agents).where(agents.c.agent_id == agent_id))
            conn.execute(agents.insert().values(**row))

    def list_agents(self) -> list[dict[str, Any]]:
        """Every enrolled agent with its voiceprint, by id."""
        with self._read("list agents") as conn:
            rows = conn.execute(select(agents).order_by(agents.c.agent_id)).mappings().all()
        return [dict(r) for r in rows]

    def voiceprints(self, agent_ids: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Enrolled agents' voiceprints as float32 vectors (all, or only ``agent_ids``)."""
        wanted = set(agent_ids) if agent_ids is not None else None
        return {
            a["agent_id"]: np.asarray(a["voiceprint"], dtype=np.float32)
            for a in self.list_agents()
            if wanted is None or a["agent_id"] in wanted
        }

    def delete_agent(self, agent_id: str) -> bool:
        with self._write(f"remove agent {agent_id}") as conn:
            result = conn.execute(delete(agents).where(agents.c.agent_id == agent_id))
        return bool(result.rowcount)

    # -- rule pack versions ----------------------------------------------------------------
    def add_rule_version(
        self,
        pack: str,
        text: str,
        sha256: str,
        file: str,
        author: str,
        comment: str,
        summary: dict[str, Any],
    ) -> dict[str, Any]:
        """Record (and chain) the next version of ``pack`` (numbered 1, 2, 3 ... per pack);
        returns the row. Two writers never get the same number: the chain head serializes."""
        _fits(pack, 128, "pack name")
        _fits(author, 256, "author")
        with self._chained(f"save a version of rule pack {pack}") as (conn, records):
            last = conn.execute(
                select(func.max(rule_versions.c.version)).where(rule_versions.c.pack == pack)
            ).scalar()
            row = {
                "pack": pack,
                "version": int(last or 0) + 1,
                "text": text,
                "sha256": sha256,
                "file": file,
                "author": author,
                "comment": comment,
                "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "summary": summary,
            }
            result = conn.execute(rule_versions.insert().values(**row))
            records.append(
                Pending(
                    chain.RULE_VERSION,
                    chain.rule_version_ref(pack, int(last or 0) + 1),
                    chain.rule_version_content(row),
                )
            )
        pk = result.inserted_primary_key
        assert pk is not None
        return {"id": int(pk[0]), **row}

    def rule_versions(self, pack: str) -> list[dict[str, Any]]:
        """Every version of ``pack``, oldest first, without their texts."""
        cols = [c for c in rule_versions.c if c.name != "text"]
        q = select(*cols).where(rule_versions.c.pack == pack).order_by(rule_versions.c.version)
        with self._read(f"read the versions of {pack}") as conn:
            rows = conn.execute(q).mappings().all()
        return [dict(r) for r in rows]

    def rule_version(self, pack: str, version: int) -> dict[str, Any] | None:
        q = select(rule_versions).where(
            rule_versions.c.pack == pack, rule_versions.c.version == version
        )
        with self._read(f"read {pack} version {version}") as conn:
            row = conn.execute(q).mappings().first()
        return dict(row) if row else None

    def latest_rule_versions(self) -> dict[str, dict[str, Any]]:
        """The newest version of each pack ever stored (deletions included), by pack."""
        newest = (
            select(rule_versions.c.pack, func.max(rule_versions.c.version).label("v"))
            .group_by(rule_versions.c.pack)
            .subquery()
        )
        q = select(rule_versions).join(
            newest,
            (rule_versions.c.pack == newest.c.pack) & (rule_versions.c.version == newest.c.v),
        )
        with self._read("read rule versions") as conn:
            rows = conn.execute(q).mappings().all()
        return {r["pack"]: dict(r) for r in rows}

    # -- API tokens --------------------------------------------------------------------------
    def create_token(self, role: str, agent_id: str | None = None, label: str = "") -> str:
        """A new random token (chained); only its hash is stored, so it is shown once."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; use one of: {', '.join(ROLES)}")
        if role == "agent" and not agent_id:
            raise ValueError("an agent token needs the agent's id")
        token = "cw_" + secrets.token_urlsafe(24)
        row = {
            "token_sha256": _sha256(token),
            "role": role,
            "agent_id": _fits(agent_id, 128, "agent id"),
            "label": label,
            "created_at": _now(),
            "revoked_at": None,
        }
        with self._chained("store a token") as (conn, records):
            pk = conn.execute(tokens.insert().values(**row)).inserted_primary_key
            assert pk is not None
            records.append(
                Pending(
                    chain.TOKEN_CREATED,
                    chain.token_ref(int(pk[0])),
                    chain.token_created_content(row),
                )
            )
        return token

    def check_token(self, token: str) -> dict[str, Any] | None:
        """The token's role and agent, or None if it is unknown or revoked."""
        if not token:
            return None
        q = select(tokens).where(
            tokens.c.token_sha256 == _sha256(token), tokens.c.revoked_at.is_(None)
        )
        with self._read("check a token") as conn:
            row = conn.execute(q).mappings().first()
        return None if row is None else {k: row[k] for k in ("id", "role", "agent_id", "label")}

    def list_tokens(self) -> list[dict[str, Any]]:
        cols = [c for c in tokens.c if c.name != "token_sha256"]
        with self._read("list tokens") as conn:
            rows = conn.execute(select(*cols).order_by(tokens.c.id)).mappings().all()
        return [dict(r) for r in rows]

    def revoke_token(self, id_: int) -> bool:
        with self._chained(f"revoke token {id_}") as (conn, records):
            result = conn.execute(
                tokens.update()
                .where(tokens.c.id == id_, tokens.c.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
            if result.rowcount:
                row = conn.execute(select(tokens).where(tokens.c.id == id_)).mappings().one()
                records.append(
                    Pending(
                        chain.TOKEN_REVOKED,
                        chain.token_ref(id_),
                        chain.token_revoked_content(dict(row)),
                    )
                )
        return bool(result.rowcount)

    # -- suggestion feedback -------------------------------------------------------------------
    def add_feedback(self, **row: Any) -> dict[str, Any]:
        if row.get("verdict") not in VERDICTS:
            raise ValueError(f"verdict must be one of: {', '.join(VERDICTS)}")
        _fits(row.get("call_id"), 128, "call id")
        _fits(row.get("suggestion_id"), 32, "suggestion id")
        row = {**row, "at": _now()}
        with self._write("store feedback") as conn:
            pk = conn.execute(suggestion_feedback.insert().values(**row)).inserted_primary_key
        assert pk is not None
        row["id"] = int(pk[0])
        return row

    def feedback(
        self, call_id: str | None = None, intent: str | None = None, agent_id: str | None = None
    ) -> list[dict[str, Any]]:
        q = select(suggestion_feedback).order_by(suggestion_feedback.c.id)
        if call_id is not None:
            q = q.where(suggestion_feedback.c.call_id == call_id)
        if intent is not None:
            q = q.where(suggestion_feedback.c.intent == intent)
        if agent_id is not None:
            q = q.where(suggestion_feedback.c.agent_id == agent_id)
        with self._read("read feedback") as conn:
            rows = conn.execute(q).mappings().all()
        return [dict(r) for r in rows]


def _record(r: Any) -> chain.Record:
    return chain.Record(
        id=int(r["id"]),
        kind=r["kind"],
        ref=r["ref"],
        content_sha256=r["content_sha256"],
        prev_hash=r["prev_hash"],
        hash=r["hash"],
        created_at=r["created_at"],
        detail=r["detail"],
        call_id=r["call_id"],
    )


def _detail_record(kind: str, call_id: str, detail: dict[str, Any]) -> Pending:
    text = chain.detail_text(detail)
    return Pending(kind, call_id, chain.sha256_hex(text), text)


def _event_mismatch(call_id: str, seq: int, type_: str, t: float, payload: str) -> str | None:
    """Why an event row's own columns disagree with its (chained) payload, if they do."""
    try:
        ev = json.loads(payload)
    except ValueError:
        return "payload is not JSON"
    if not isinstance(ev, dict):
        return "payload is not an event"
    if (ev.get("call_id"), ev.get("seq"), ev.get("type")) != (call_id, seq, type_):
        return "the row's call_id, seq or type differ from its payload"
    if ev.get("t") is None or float(ev["t"]) != float(t):
        return "the row's t differs from its payload"
    return None


def _check_event(e: Any) -> None:
    if not (
        isinstance(e, dict)
        and isinstance(e.get("call_id"), str)
        and isinstance(e.get("seq"), int)
        and isinstance(e.get("type"), str)
        and isinstance(e.get("t"), int | float)
    ):
        shown = {k: e.get(k) for k in ("call_id", "seq", "type", "t")} if isinstance(e, dict) else e
        raise ValueError(f"an event needs call_id (text), seq (int), type and t: got {shown!r}")
    _fits(e["call_id"], 128, "call id")
    _fits(e["type"], 32, "event type")


_CJK_GAP = re.compile(r"(?<=[\u3400-\u9fff])\s+(?=[\u3400-\u9fff])")


def search_needle(q: str) -> str:
    """A transcript search as stored text reads: trimmed, lower case, traditional Chinese as
    simplified (transcripts are), no spaces between Chinese characters ("多 扣 了")."""
    return _CJK_GAP.sub("", to_simplified(q.strip())).lower()


def _fits(value: str | None, n: int, what: str) -> Any:
    """``value`` if it fits its column (PostgreSQL enforces lengths; SQLite does not)."""
    if value is not None and len(value) > n:
        raise ValueError(f"{what} is longer than {n} characters: {value[:40]!r}...")
    return value


def _payload(e: dict[str, Any]) -> str:
    return json.dumps(e, ensure_ascii=False)


def _masked(url: str) -> str:
    """The URL without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return "(an unreadable store URL)"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _listed(report: dict[str, Any]) -> dict[str, Any]:
    """The columns the board lists and filters calls by, from a report."""
    started = report.get("started_at")
    channels = report.get("channels")
    return {
        "protocol": _fits(report.get("protocol"), 32, "protocol"),
        "channels": list(channels) if isinstance(channels, list | tuple) else None,
        "agent_id": _fits(report.get("agent_id"), 128, "agent id"),
        "started_at": float(started) if isinstance(started, int | float) else None,
        "language": _fits(report.get("language"), 16, "language"),
        "facts": call_facts(report),
    }


def transcript_hit(ev: dict[str, Any], agent_id: str | None, mode: str | None) -> dict[str, Any]:
    """One search hit: where a line was said."""
    return {
        "call_id": ev["call_id"],
        "agent_id": agent_id,
        "mode": mode,
        "speaker": ev.get("speaker"),
        "t": ev.get("t"),
        "t_end": ev.get("t_end"),
        "text": ev.get("text", ""),
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _stamp() -> str:
    """A chain record's time (32 characters, microseconds)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _epoch() -> float:
    return datetime.now(UTC).timestamp()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
