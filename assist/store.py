"""The call store: SQLite by default (one file, WAL), any SQLAlchemy URL otherwise.

Keeps each call's summary row and every event it produced, so a report can be rebuilt
and compliance can see who said what, when, and which rule fired. Webhook deliveries that
failed for good are kept too (``webhook_dead_letters``), so no alert is lost when a
receiver is down: ``callwatch webhooks failed`` lists them, ``redeliver`` sends them again.
Enrolled agents' voiceprints (``callwatch agents enroll``) live here so diarization can tell
the agent from the customer on mono recordings after any restart. Every version of every QA
rule pack the server ran (``rule_versions``: who, when, the text, what changed) is kept for
the rules API's history, diffs and rollbacks (see assist/rules_registry.py). API tokens
(``tokens``: only a hash is kept) let agents open their panel, and agents' verdicts on
suggestions (``suggestion_feedback``) are kept for QA to tune the playbooks.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    Column,
    Float,
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
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from assist.facts import call_facts

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
    Column("report", JSON),
    Column("updated_at", String(32), nullable=False),
    # listed and filtered by the board without loading reports (added in 0.2; see _upgrade)
    Column("agent_id", String(128), index=True),
    Column("started_at", Float, index=True),  # epoch seconds, UTC
    Column("language", String(16)),
    Column("facts", JSON),  # assist.facts.call_facts(report)
)

events = Table(
    "events",
    metadata,
    Column("call_id", String(128), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("type", String(32), nullable=False, index=True),
    Column("t", Float, nullable=False),
    Column("payload", Text, nullable=False),
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
    Column("role", String(16), nullable=False),  # agent | supervisor | qa | admin
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

ALERT_STATUSES = ("open", "acknowledged")
ROLES = ("agent", "supervisor", "qa", "admin")
VERDICTS = ("helpful", "not_helpful", "dismissed", "copied")


@dataclass(frozen=True)
class CallQuery:
    """Which calls to list: every field given narrows, None means any. The same query
    filters stored calls in SQL (``where``) and live calls or facts in Python (``matches``)."""

    status: str | None = None  # active | ended
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


class Store:
    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_url()
        if self.url.startswith("sqlite:///"):
            Path(self.url.removeprefix("sqlite:///")).expanduser().parent.mkdir(
                parents=True, exist_ok=True
            )
        try:
            self.engine: Engine = create_engine(self.url, future=True)
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
            metadata.create_all(self.engine)
            self._upgrade()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open store {self.url}: {exc}") from exc

    def _upgrade(self) -> None:
        """Bring a store made by an older callwatch up to date: add the columns the board
        lists calls by, and fill them in from the stored reports."""
        have = {c["name"] for c in inspect(self.engine).get_columns("calls")}
        missing = [c for c in calls.columns if c.name not in have]
        if not missing:
            return
        with self.engine.begin() as conn:
            for col in missing:
                kind = col.type.compile(dialect=self.engine.dialect)
                conn.execute(text(f"ALTER TABLE calls ADD COLUMN {col.name} {kind}"))
            rows = conn.execute(select(calls.c.call_id, calls.c.report)).all()
            for call_id, report in rows:
                conn.execute(
                    calls.update()
                    .where(calls.c.call_id == call_id)
                    .values(**_listed(dict(report or {})))
                )

    def save_report(self, report: dict[str, Any], mode: str = "audit") -> None:
        """Replace the stored call with this report and its events (idempotent)."""
        body = {k: v for k, v in report.items() if k != "events"}
        row = {
            "call_id": report["call_id"],
            "mode": mode,
            "sources": report.get("sources", []),
            "duration_s": report.get("duration_s"),
            "score": report.get("scorecard", {}).get("score"),
            "alerts": len(report.get("alerts", [])),
            "model": report.get("model"),
            "report": body,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **_listed(body),
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(events).where(events.c.call_id == row["call_id"]))
                conn.execute(delete(calls).where(calls.c.call_id == row["call_id"]))
                conn.execute(calls.insert().values(**row))
                self._insert_events(conn, report.get("events", []))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot save call {row['call_id']} to {self.url}: {exc}") from exc

    @staticmethod
    def _insert_events(conn: Any, evs: Iterable[dict[str, Any]]) -> None:
        rows = [
            {
                "call_id": e["call_id"],
                "seq": e["seq"],
                "type": e["type"],
                "t": e["t"],
                "payload": json.dumps(e, ensure_ascii=False),
            }
            for e in evs
        ]
        if rows:
            conn.execute(events.insert(), rows)

    def get_report(self, call_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(calls.c.report).where(calls.c.call_id == call_id)).first()
        return dict(row[0]) if row else None

    def list_calls(
        self, query: CallQuery | None = None, limit: int | None = None, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Stored calls, newest first, without their reports (``facts`` instead). Only the
        query's SQL fields apply here; ``CallQuery.matches`` checks the rest."""
        q = select(
            calls.c.call_id,
            calls.c.mode,
            calls.c.sources,
            calls.c.duration_s,
            calls.c.score,
            calls.c.alerts,
            calls.c.updated_at,
            calls.c.agent_id,
            calls.c.started_at,
            calls.c.language,
            calls.c.facts,
        ).order_by(calls.c.started_at.desc(), calls.c.updated_at.desc())
        q = (query or CallQuery()).where(q)
        if limit is not None:
            q = q.limit(limit).offset(offset)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [dict(r) for r in rows]

    def count_calls(self, query: CallQuery | None = None) -> int:
        """How many stored calls ``list_calls`` would give without a limit."""
        q = (query or CallQuery()).where(select(func.count()).select_from(calls))
        with self.engine.connect() as conn:
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
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [(json.loads(r[0]), r[1]) for r in rows]

    def alert_states(
        self, call_ids: Iterable[str] | None = None
    ) -> dict[tuple[str, int], dict[str, Any]]:
        """What supervisors did with alerts: (call_id, seq) -> state row."""
        q = select(alert_states)
        if call_ids is not None:
            q = q.where(alert_states.c.call_id.in_(list(call_ids)))
        with self.engine.connect() as conn:
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
        """Acknowledge, reopen or assign one alert; returns its state row."""
        if status is not None and status not in ALERT_STATUSES:
            raise ValueError(f"status must be one of {ALERT_STATUSES}")
        key = (alert_states.c.call_id == call_id) & (alert_states.c.seq == seq)
        now = _now()
        try:
            with self.engine.begin() as conn:
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
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot update alert {call_id}:{seq} in {self.url}: {exc}") from exc
        return state

    def search_transcripts(
        self, q: str, agent: str | None = None, limit: int = 50, exclude: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        """Final transcript lines containing ``q`` (any case), newest calls first."""
        needle = q.strip().lower()
        if not needle:
            return []
        like = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        sel = (
            select(events.c.payload, calls.c.agent_id, calls.c.mode)
            .select_from(events.join(calls, events.c.call_id == calls.c.call_id))
            .where(events.c.type == "transcript.final")
            .where(func.lower(events.c.payload).like(like, escape="\\"))
            .order_by(calls.c.started_at.desc(), events.c.call_id, events.c.seq)
        )
        if agent:
            sel = sel.where(calls.c.agent_id == agent)
        skip = list(exclude)
        if skip:
            sel = sel.where(events.c.call_id.not_in(skip))
        hits: list[dict[str, Any]] = []
        with self.engine.connect() as conn:
            for payload, agent_id, mode in conn.execute(sel):
                ev = json.loads(payload)
                if needle in str(ev.get("text", "")).lower():  # not a key or a word list
                    hits.append(transcript_hit(ev, agent_id, mode))
                    if len(hits) >= limit:
                        break
        return hits

    def events_for(self, call_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(events.c.payload).where(events.c.call_id == call_id).order_by(events.c.seq)
            ).all()
        return [json.loads(r[0]) for r in rows]

    def add_dead_letter(
        self, url: str, delivery_id: str, event: dict[str, Any], attempts: int, last_error: str
    ) -> int:
        """Keep a webhook event no receiver accepted; returns the row id."""
        row = {
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "url": url,
            "delivery_id": delivery_id,
            "call_id": event.get("call_id"),
            "event_type": str(event.get("type", "")),
            "payload": json.dumps(event, ensure_ascii=False),
            "attempts": attempts,
            "last_error": last_error,
        }
        try:
            with self.engine.begin() as conn:
                result = conn.execute(webhook_dead_letters.insert().values(**row))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot save a dead letter for {url} to {self.url}: {exc}") from exc
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
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        out = []
        for r in rows:
            d = dict(r)
            d["event"] = json.loads(d.pop("payload"))
            out.append(d)
        return out

    def delete_dead_letter(self, id_: int) -> bool:
        """Forget a dead letter (it was redelivered); False if there was none."""
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    delete(webhook_dead_letters).where(webhook_dead_letters.c.id == id_)
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot delete dead letter {id_} from {self.url}: {exc}") from exc
        return bool(result.rowcount)

    # -- agents' voiceprints ---------------------------------------------------------------
    def save_agent(
        self, agent_id: str, voiceprint: list[float], speech_s: float, source: str
    ) -> None:
        """Enrol (or re-enrol) an agent: the newest voiceprint replaces the old one."""
        row = {
            "agent_id": agent_id,
            "voiceprint": [round(float(v), 6) for v in voiceprint],
            "speech_s": round(speech_s, 2),
            "source": source,
            "enrolled_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(agents).where(agents.c.agent_id == agent_id))
                conn.execute(agents.insert().values(**row))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot enrol agent {agent_id} in {self.url}: {exc}") from exc

    def list_agents(self) -> list[dict[str, Any]]:
        """Every enrolled agent with its voiceprint, by id."""
        with self.engine.connect() as conn:
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
        try:
            with self.engine.begin() as conn:
                result = conn.execute(delete(agents).where(agents.c.agent_id == agent_id))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot remove agent {agent_id} from {self.url}: {exc}") from exc
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
        """Record the next version of ``pack`` (numbered 1, 2, 3 ... per pack); returns the row."""
        try:
            with self.engine.begin() as conn:
                last = conn.execute(
                    select(rule_versions.c.version)
                    .where(rule_versions.c.pack == pack)
                    .order_by(rule_versions.c.version.desc())
                    .limit(1)
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
        except SQLAlchemyError as exc:
            raise StoreError(
                f"cannot save a version of rule pack {pack} to {self.url}: {exc}"
            ) from exc
        pk = result.inserted_primary_key
        assert pk is not None
        return {"id": int(pk[0]), **row}

    def rule_versions(self, pack: str) -> list[dict[str, Any]]:
        """Every version of ``pack``, oldest first, without their texts."""
        cols = [c for c in rule_versions.c if c.name != "text"]
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(*cols)
                    .where(rule_versions.c.pack == pack)
                    .order_by(rule_versions.c.version)
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    def rule_version(self, pack: str, version: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(rule_versions).where(
                        rule_versions.c.pack == pack, rule_versions.c.version == version
                    )
                )
                .mappings()
                .first()
            )
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
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return {r["pack"]: dict(r) for r in rows}

    # -- API tokens --------------------------------------------------------------------------
    def create_token(self, role: str, agent_id: str | None = None, label: str = "") -> str:
        """A new random token; only its hash is stored, so it is shown once."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; use one of: {', '.join(ROLES)}")
        if role == "agent" and not agent_id:
            raise ValueError("an agent token needs the agent's id")
        token = "cw_" + secrets.token_urlsafe(24)
        row = {
            "token_sha256": _sha256(token),
            "role": role,
            "agent_id": agent_id,
            "label": label,
            "created_at": _now(),
            "revoked_at": None,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(tokens.insert().values(**row))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot store a token in {self.url}: {exc}") from exc
        return token

    def check_token(self, token: str) -> dict[str, Any] | None:
        """The token's role and agent, or None if it is unknown or revoked."""
        if not token:
            return None
        q = select(tokens).where(
            tokens.c.token_sha256 == _sha256(token), tokens.c.revoked_at.is_(None)
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).mappings().first()
        return None if row is None else {k: row[k] for k in ("id", "role", "agent_id", "label")}

    def list_tokens(self) -> list[dict[str, Any]]:
        cols = [c for c in tokens.c if c.name != "token_sha256"]
        with self.engine.connect() as conn:
            rows = conn.execute(select(*cols).order_by(tokens.c.id)).mappings().all()
        return [dict(r) for r in rows]

    def revoke_token(self, id_: int) -> bool:
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    tokens.update()
                    .where(tokens.c.id == id_, tokens.c.revoked_at.is_(None))
                    .values(revoked_at=_now())
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot revoke token {id_} in {self.url}: {exc}") from exc
        return bool(result.rowcount)

    # -- suggestion feedback -------------------------------------------------------------------
    def add_feedback(self, **row: Any) -> dict[str, Any]:
        if row.get("verdict") not in VERDICTS:
            raise ValueError(f"verdict must be one of: {', '.join(VERDICTS)}")
        row = {**row, "at": _now()}
        try:
            with self.engine.begin() as conn:
                row["id"] = conn.execute(suggestion_feedback.insert().values(**row)).lastrowid
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot store feedback in {self.url}: {exc}") from exc
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
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [dict(r) for r in rows]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _listed(report: dict[str, Any]) -> dict[str, Any]:
    """The columns the board lists and filters calls by, from a report."""
    started = report.get("started_at")
    return {
        "agent_id": report.get("agent_id"),
        "started_at": float(started) if isinstance(started, int | float) else None,
        "language": report.get("language"),
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


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
