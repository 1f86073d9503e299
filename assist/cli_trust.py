"""``callwatch db upgrade|current``, ``callwatch verify`` and ``callwatch retention``: the
store's schema, its audit chain and its retention policy from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DB_HELP = "store URL (default: $CALLWATCH_DB_URL or the local SQLite store)"


def add_trust_commands(sub: Any) -> None:
    db = sub.add_parser("db", help="the store's schema (migrations)")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    up = dbsub.add_parser("upgrade", help="bring the store's schema up to date")
    up.add_argument("--db", metavar="URL", help=DB_HELP)
    up.set_defaults(func=_cmd_db_upgrade)
    cur = dbsub.add_parser("current", help="the store's schema revision and the newest one")
    cur.add_argument("--db", metavar="URL", help=DB_HELP)
    cur.set_defaults(func=_cmd_db_current)

    v = sub.add_parser(
        "verify",
        help="check the tamper-evident audit chain; exit 1 naming the first broken record",
    )
    v.add_argument("--db", metavar="URL", help=DB_HELP)
    v.add_argument(
        "--head",
        metavar="HASH",
        help="a chain head hash from an earlier export: it must still be in the chain "
        "(catches a chain recomputed from scratch)",
    )
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.set_defaults(func=_cmd_verify)

    r = sub.add_parser(
        "retention",
        help="delete transcripts and audio of calls older than N days (scores, alerts and "
        "the audit trail of the deletion are kept)",
    )
    r.add_argument("--days", type=float, required=True, metavar="N", help="keep the last N days")
    r.add_argument("--dry-run", action="store_true", help="say what would go, delete nothing")
    r.add_argument("--db", metavar="URL", help=DB_HELP)
    r.add_argument(
        "--audio-dir",
        metavar="DIR",
        action="append",
        help="a folder whose recordings of purged calls are deleted (repeatable; default: "
        "the server's uploads folder). A recording anywhere else is never touched.",
    )
    r.add_argument("--by", default=None, help="who runs it (recorded on the chain; default $USER)")
    r.set_defaults(func=_cmd_retention)


def _url(args: argparse.Namespace) -> str:
    from assist.store import default_url

    return str(args.db or default_url())


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from assist.migrations import upgrade_schema
    from assist.store import open_engine

    url = _url(args)
    try:
        engine = open_engine(url)
        before, after = upgrade_schema(engine)
        engine.dispose()
    except Exception as exc:
        print(f"error: cannot upgrade {url}: {exc}", file=sys.stderr)
        return 1
    if before == after:
        print(f"{url}: already at revision {after}")
    else:
        print(f"{url}: upgraded from {before or 'an empty store'} to revision {after}")
    return 0


def _cmd_db_current(args: argparse.Namespace) -> int:
    from assist.migrations import current_revision, head_revision, legacy_revision
    from assist.store import open_engine

    url = _url(args)
    try:
        engine = open_engine(url)
        with engine.connect() as conn:
            now = current_revision(conn)
            legacy = legacy_revision(conn) if now is None else None
        engine.dispose()
    except Exception as exc:
        print(f"error: cannot read {url}: {exc}", file=sys.stderr)
        return 1
    head = head_revision()
    if legacy:
        state = f"made before migrations (matches {legacy}); run 'callwatch db upgrade'"
    elif now is None:
        state = "empty; run 'callwatch db upgrade'"
    elif now == head:
        state = f"revision {now} (up to date)"
    else:
        state = f"revision {now}, newest is {head}; run 'callwatch db upgrade'"
    print(f"{url}: {state}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from assist.migrations import HEAD, current_revision
    from assist.store import Store, StoreError

    url = _url(args)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        print(f"error: no store at {url}", file=sys.stderr)
        return 1
    try:
        store = Store(url, upgrade=False)  # checking must not change the store
        with store.engine.connect() as conn:
            rev = current_revision(conn)
    except Exception as exc:
        print(f"error: cannot open {url}: {exc}", file=sys.stderr)
        return 1
    if rev != HEAD:
        print(
            f"error: {url} is at schema revision {rev or 'none'}, not {HEAD}: "
            "run 'callwatch db upgrade' first (it chains the rows stored so far)",
            file=sys.stderr,
        )
        return 1

    def progress(done: int, total: int) -> None:
        if total >= 10_000:
            print(f"  {done:,} / {total:,} records checked", file=sys.stderr, flush=True)

    try:
        result = store.verify(head=args.head, progress=progress)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    elif result.ok:
        head = result.head or {"id": 0, "hash": "(empty chain)"}
        found = " (the exported head is in it)" if result.head_found else ""
        print(
            f"audit chain intact: {result.records:,} records, {result.rows:,} stored rows "
            f"checked{found}\nhead: record {head['id']} {head['hash']}"
        )
    else:
        more = f" ({result.problems - 1} more problem(s))" if result.problems > 1 else ""
        print(
            f"audit chain BROKEN after checking {result.records:,} records: "
            f"first broken: {result.first_broken}{more}"
        )
    return 0 if result.ok else 1


def _cmd_retention(args: argparse.Namespace) -> int:
    import getpass

    from assist.retention import run_retention
    from assist.store import Store, StoreError, callwatch_home

    if args.days < 0:
        print("error: --days must be 0 or more", file=sys.stderr)
        return 2
    roots = [Path(d) for d in args.audio_dir] if args.audio_dir else [callwatch_home() / "uploads"]
    by = args.by or f"cli:{getpass.getuser()}"
    try:
        store = Store(args.db)
        summary = run_retention(store, args.days, audio_roots=roots, by=by, dry_run=args.dry_run)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for call in summary.calls:
        print(f"  {call}")
        for a in call.audio:
            print(f"    {'would delete' if args.dry_run else 'deleted'} {a}")
        for k in call.audio_kept:
            print(f"    kept {k}")
    print(summary)
    return 0
