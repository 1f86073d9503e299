"""The audit chain: how each record is hashed and how a chain is checked, with no database.

Every stored event, rule version, token change, alert triage change, call replacement and
retention purge gets one record in ``audit_chain``. A record links to the one before it, so
editing, deleting or inserting anything afterwards shows up when the chain is checked
(``callwatch verify``); the newest record's hash (the *head*) goes into auditors' exports, so
a chain recomputed from scratch is caught too (``callwatch verify --head HASH``).

Byte layout (what an auditor re-implements)
-------------------------------------------
``ns(x)`` is a netstring of the UTF-8 bytes of the text ``x``: its byte length in ASCII
decimal, ``:``, the bytes, ``,`` (``ns("abc") = b"3:abc,"``). NULL is encoded as the empty
text (``b"0:,"``); integers as their decimal text.

A record's ``hash`` is the lowercase hex SHA-256 of::

    ns("callwatch-chain/1") ns(prev_hash) ns(id) ns(kind) ns(ref) ns(content_sha256) ns(created_at)

``prev_hash`` is the previous record's ``hash`` (64 zeros before the first record), ``id``
counts 1, 2, 3 ... with no gap, ``created_at`` is the text stored in the record.

``content_sha256`` (lowercase hex SHA-256) by ``kind``; ``ref`` names the row it covers:

=================  ===================  =====================================================
kind               ref                  content_sha256 over
=================  ===================  =====================================================
event              ``call_id#seq``      the ``events.payload`` text exactly as stored
rule_version       ``pack@version``     ns(text) ns(sha256) ns(author) ns(comment)
                                        ns(created_at) ns(file) of the ``rule_versions`` row
token.created      ``token#id``         ns(token_sha256) ns(role) ns(agent_id) ns(label)
                                        ns(created_at) of the ``tokens`` row
token.revoked      ``token#id``         ns(token_sha256) ns(revoked_at)
alert_state        ``call_id#seq``      ns(status) ns(assignee) ns(acked_by) ns(acked_at)
                                        ns(note) ns(updated_by) ns(updated_at)
call.replaced      ``call_id``          the record's own ``detail`` text (JSON: ``removed``
                                        and ``changed`` event seqs, ``reason``)
retention          ``call_id``          the record's ``detail`` text (JSON: ``deleted`` and
                                        ``rewritten`` event seqs, ``audio`` files, ``by``)
=================  ===================  =====================================================

How a chain is checked (``Verifier``)
-------------------------------------
1. Links: ids run 1, 2, 3 ... with no gap, each ``prev_hash`` is the previous ``hash``, each
   ``hash`` is recomputed, each ``detail`` matches its ``content_sha256``; the one-row
   ``chain_head`` table agrees with the last record.
2. Rows: for every (kind, ref) the *latest* record wins (an event re-saved with its PII
   masked late, an alert acknowledged then reopened). The current row must hash to it. A
   row with no record is broken (inserted behind the store's back). A record whose row is
   gone is broken, except an event listed as removed by a later ``call.replaced`` or
   deleted by a later ``retention`` record of its call.
   Only an event's payload is hashed, so its row's ``call_id``, ``seq``, ``type`` and ``t``
   columns must agree with it; a record's ``call_id`` column (an index, not hashed) must
   agree with its ref.
3. The first broken record is reported: the chain's own first (a record edited, deleted or
   out of place makes "the latest record of a row" unreliable after it), then rows by
   record id, then rows that have no record at all.

Not chained: a call's report and listing columns (derived from its events, which are),
voiceprints, webhook dead letters and suggestion feedback.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

GENESIS = "0" * 64
DOMAIN = "callwatch-chain/1"

EVENT = "event"
RULE_VERSION = "rule_version"
TOKEN_CREATED = "token.created"
TOKEN_REVOKED = "token.revoked"
ALERT_STATE = "alert_state"
CALL_REPLACED = "call.replaced"
RETENTION = "retention"
KINDS = (EVENT, RULE_VERSION, TOKEN_CREATED, TOKEN_REVOKED, ALERT_STATE, CALL_REPLACED, RETENTION)
# kinds whose content is their own ``detail``: they describe a deletion, not a row
DETAIL_KINDS = (CALL_REPLACED, RETENTION)


def ns(value: Any) -> bytes:
    """A netstring of ``value`` as UTF-8 text (None = empty)."""
    b = b"" if value is None else str(value).encode("utf-8")
    return b"%d:%s," % (len(b), b)


def sha256_hex(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


_DOMAIN_NS = ns(DOMAIN)


def fields_sha256(*values: Any) -> str:
    return sha256_hex(b"".join(ns(v) for v in values))


def record_hash(
    prev_hash: str, id_: int, kind: str, ref: str, content_sha256: str, created_at: str
) -> str:
    h = hashlib.sha256(_DOMAIN_NS)
    for value in (prev_hash, str(id_), kind, ref, content_sha256, created_at):
        b = value.encode("utf-8")
        h.update(b"%d:%s," % (len(b), b))
    return h.hexdigest()


# -- what each kind hashes ---------------------------------------------------------------------
def event_ref(call_id: str, seq: int) -> str:
    return f"{call_id}#{seq}"


def split_event_ref(ref: str) -> tuple[str, int] | None:
    call_id, _, seq = ref.rpartition("#")
    return (call_id, int(seq)) if call_id and seq.isdigit() else None


def call_of(kind: str, ref: str) -> str | None:
    """The call a record is about (kept beside it, indexed, for per-call exports)."""
    if kind in DETAIL_KINDS:
        return ref
    if kind in (EVENT, ALERT_STATE):
        key = split_event_ref(ref)
        return key[0] if key else None
    return None


def event_content(payload: str) -> str:
    return sha256_hex(payload)


def rule_version_ref(pack: str, version: int) -> str:
    return f"{pack}@{version}"


def rule_version_content(row: Mapping[str, Any]) -> str:
    return fields_sha256(
        row["text"], row["sha256"], row["author"], row["comment"], row["created_at"], row["file"]
    )


def token_ref(id_: int) -> str:
    return f"token#{id_}"


def token_created_content(row: Mapping[str, Any]) -> str:
    return fields_sha256(
        row["token_sha256"], row["role"], row["agent_id"], row["label"], row["created_at"]
    )


def token_revoked_content(row: Mapping[str, Any]) -> str:
    return fields_sha256(row["token_sha256"], row["revoked_at"])


ALERT_STATE_FIELDS = (
    "status",
    "assignee",
    "acked_by",
    "acked_at",
    "note",
    "updated_by",
    "updated_at",
)


def alert_state_content(row: Mapping[str, Any]) -> str:
    return fields_sha256(*(row.get(k) for k in ALERT_STATE_FIELDS))


def detail_text(detail: dict[str, Any]) -> str:
    """The canonical JSON of a call.replaced / retention record's detail."""
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# -- records and results ------------------------------------------------------------------------
@dataclass(frozen=True)
class Pending:
    """A record to append: the store gives it its id, prev_hash, hash and time."""

    kind: str
    ref: str
    content_sha256: str
    detail: str | None = None


@dataclass(frozen=True)
class Record:
    id: int
    kind: str
    ref: str
    content_sha256: str
    prev_hash: str
    hash: str
    created_at: str
    detail: str | None = None
    call_id: str | None = None  # not hashed: derived from ref, checked against it

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["detail"] = json.loads(self.detail) if self.detail else None
        return d


def link(prev_id: int, prev_hash: str, pending: Iterable[Pending], created_at: str) -> list[Record]:
    """Chain ``pending`` after the record (``prev_id``, ``prev_hash``)."""
    out: list[Record] = []
    for p in pending:
        prev_id += 1
        h = record_hash(prev_hash, prev_id, p.kind, p.ref, p.content_sha256, created_at)
        out.append(
            Record(
                prev_id,
                p.kind,
                p.ref,
                p.content_sha256,
                prev_hash,
                h,
                created_at,
                p.detail,
                call_of(p.kind, p.ref),
            )
        )
        prev_hash = h
    return out


@dataclass(frozen=True)
class Broken:
    id: int | None  # the chain record; None for a row that was never chained
    kind: str
    ref: str
    reason: str

    def __str__(self) -> str:
        where = f"record {self.id}" if self.id is not None else "unchained row"
        return f"{where} ({self.kind} {self.ref}): {self.reason}"


@dataclass
class VerifyResult:
    ok: bool
    records: int  # chain records checked
    rows: int  # stored rows checked against them
    first_broken: Broken | None
    problems: int  # how many broken records or rows in all
    head: dict[str, Any] | None  # {"id", "hash"} of the last record
    head_found: bool | None = None  # the exported head asked for is in the chain

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["first_broken"] = asdict(self.first_broken) if self.first_broken else None
        return d


@dataclass
class _Cover:
    """Event seqs of one call that a later call.replaced / retention record removed."""

    by_record: list[tuple[int, frozenset[int]]] = field(default_factory=list)

    def covers(self, seq: int, after: int) -> bool:
        return any(rid > after and seq in seqs for rid, seqs in self.by_record)


class Verifier:
    """Feed it the chain in id order (``record``), then the current rows (``row``), then
    ``finish``. Memory: about 200 bytes per distinct chained row (1M events: 200 MB)."""

    def __init__(self, head_hash: str | None = None) -> None:
        self.head_hash = head_hash
        self.head_found = False
        self.records = 0
        self.rows = 0
        self._last_id = 0
        self._last_hash = GENESIS
        # the first problem of the chain's own records (and its head), of the rows, and
        # how many in all (only the first is kept: a wholesale edit stays small in memory)
        self._first_chain: Broken | None = None
        self._first_row: Broken | None = None
        self._problems = 0
        self._latest: dict[str, dict[str, tuple[int, bytes]]] = {k: {} for k in KINDS}
        self._seen: dict[str, set[str]] = {k: set() for k in KINDS}
        self._covers: dict[str, _Cover] = {}

    def _broken(self, id_: int | None, kind: str, ref: str, reason: str) -> None:
        self._problems += 1
        self._first_chain = _earlier(self._first_chain, Broken(id_, kind, ref, reason))

    def _row_broken(self, id_: int | None, kind: str, ref: str, reason: str) -> None:
        self._problems += 1
        self._first_row = _earlier(self._first_row, Broken(id_, kind, ref, reason))

    # -- 1. links ---------------------------------------------------------------------------
    def record(self, r: Record) -> None:
        self.records += 1
        want = self._last_id + 1
        if r.id != want:
            if r.id > want:
                gone = f"{want}" if r.id == want + 1 else f"{want}-{r.id - 1}"
                self._broken(
                    want, "(deleted)", "", f"record {gone} is missing: the chain jumps to {r.id}"
                )
            else:
                self._broken(r.id, r.kind, r.ref, f"record id {r.id} out of order after {want - 1}")
        elif r.prev_hash != self._last_hash:
            self._broken(r.id, r.kind, r.ref, f"prev_hash does not match record {r.id - 1}'s hash")
        elif (
            record_hash(r.prev_hash, r.id, r.kind, r.ref, r.content_sha256, r.created_at) != r.hash
        ):
            self._broken(r.id, r.kind, r.ref, "hash does not match the record's fields")
        if r.call_id != call_of(r.kind, r.ref):
            self._broken(r.id, r.kind, r.ref, "the record's call_id disagrees with its ref")
        if r.kind not in KINDS:
            self._broken(r.id, r.kind, r.ref, f"unknown kind {r.kind!r}")
        elif r.kind in DETAIL_KINDS:
            self._deletion(r)
        else:
            self._latest[r.kind][r.ref] = (r.id, bytes.fromhex(r.content_sha256))
        if self.head_hash is not None and r.hash == self.head_hash:
            self.head_found = True
        self._last_id, self._last_hash = r.id, r.hash

    def _deletion(self, r: Record) -> None:
        """Register what a call.replaced / retention record removed. A record whose detail
        was edited is broken itself; what it lists is still taken, so the report names it
        rather than the rows it accounts for."""
        if r.detail is None or sha256_hex(r.detail) != r.content_sha256:
            self._broken(r.id, r.kind, r.ref, "detail does not match content_sha256")
            if r.detail is None:
                return
        try:
            d = json.loads(r.detail)
            seqs = frozenset(int(s) for s in d.get("removed", []) + d.get("deleted", []))
        except (ValueError, TypeError, AttributeError):
            self._broken(r.id, r.kind, r.ref, "detail is not the JSON this kind records")
            return
        self._covers.setdefault(r.ref, _Cover()).by_record.append((r.id, seqs))

    # -- 2. rows ----------------------------------------------------------------------------
    def row(self, kind: str, ref: str, content_sha256: str, mismatch: str | None = None) -> None:
        """A stored row of ``kind`` named ``ref``; ``mismatch``: a reason the row is
        inconsistent in itself (its columns disagree with its chained payload)."""
        self.rows += 1
        latest = self._latest[kind].get(ref)
        if latest is None:
            self._row_broken(None, kind, ref, "stored row has no chain record")
            return
        self._seen[kind].add(ref)
        if latest[1] != bytes.fromhex(content_sha256):
            self._row_broken(latest[0], kind, ref, "stored row changed since it was chained")
        elif mismatch:
            self._row_broken(latest[0], kind, ref, mismatch)

    def _missing_rows(self) -> None:
        for kind, latest in self._latest.items():
            seen = self._seen[kind]
            for ref, (rid, _) in latest.items():
                if ref in seen:
                    continue
                if kind == EVENT:
                    key = split_event_ref(ref)
                    cover = self._covers.get(key[0]) if key else None
                    if key and cover and cover.covers(key[1], rid):
                        continue
                self._row_broken(rid, kind, ref, "chained row is missing from the store")

    # -- 3. result --------------------------------------------------------------------------
    def finish(self, stored_head: tuple[int, str] | None) -> VerifyResult:
        if stored_head is None:
            self._broken(None, "chain_head", "", "the chain_head row is missing")
        elif stored_head != (self._last_id, self._last_hash):
            head_id = stored_head[0]
            if head_id > self._last_id:
                self._broken(
                    self._last_id + 1,
                    "(deleted)",
                    "",
                    f"the chain ends at record {self._last_id} but its head says {head_id}",
                )
            else:
                self._broken(head_id, "chain_head", "", "chain_head does not match the last record")
        self._missing_rows()
        # The chain's own records first: once one is edited or gone, "the latest record of
        # a row" may be the wrong one, so a row problem may only be its echo.
        first = self._first_chain or self._first_row
        head_found: bool | None = None
        if self.head_hash is not None:
            head_found = self.head_found
            if not head_found and first is None:
                first = Broken(
                    None,
                    "head",
                    self.head_hash,
                    "the exported head is not in the chain: the chain was rewritten or cut",
                )
        return VerifyResult(
            ok=first is None,
            records=self.records,
            rows=self.rows,
            first_broken=first,
            problems=self._problems + (1 if head_found is False else 0),
            head={"id": self._last_id, "hash": self._last_hash} if self.records else None,
            head_found=head_found,
        )


def _earlier(a: Broken | None, b: Broken) -> Broken:
    """The problem at the smaller record id; a row with no record comes after any other,
    and of two such the one found first."""
    if a is None:
        return b
    if b.id is not None and (a.id is None or b.id < a.id):
        return b
    return a
