"""``callwatch playbook`` and ``callwatch tokens``: the agent-assist commands of the CLI."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_assist_commands(sub: Any) -> None:
    pb = sub.add_parser("playbook", help="agent-assist playbooks: check them, try an utterance")
    pbsub = pb.add_subparsers(dest="playbook_command", required=True)
    pc = pbsub.add_parser("check", help="validate playbooks (file:line:field on every error)")
    pc.add_argument("path", nargs="?", metavar="PATH", help="file or folder (default: built-in)")
    pc.set_defaults(func=_cmd_playbook_check)
    pm = pbsub.add_parser(
        "match", help="which intents a customer line matches, with scores and reasons"
    )
    pm.add_argument("text", nargs="+", metavar="TEXT", help="what the customer says")
    pm.add_argument("--playbook", metavar="PATH", help="file or folder (default: built-in)")
    pm.add_argument("--language", default="en", help="picks the playbook (default: en)")
    pm.add_argument("--lexical", action="store_true", help="words only (no sentence model)")
    pm.add_argument("--format", choices=["table", "json"], default="table")
    pm.set_defaults(func=_cmd_playbook_match)

    tk = sub.add_parser(
        "tokens", help="API tokens: every route needs one, its role says what it may do"
    )
    tksub = tk.add_subparsers(dest="tokens_command", required=True)
    tc = tksub.add_parser("create", help="make a token; it is shown once, only its hash is kept")
    tc.add_argument(
        "--role",
        default="agent",
        help="agent: its own calls and panel; supervisor: every call, alert triage, audits; "
        "qa: every call, rule edits, audits; admin: everything and tokens; ingest: streaming "
        "calls in only (see docs/security.md)",
    )
    tc.add_argument("--agent", metavar="AGENT_ID", help="the agent an agent token belongs to")
    tc.add_argument("--label", default="", help="a note: who or what uses it")
    tc.add_argument("--db", metavar="URL")
    tc.set_defaults(func=_cmd_tokens_create)
    tl = tksub.add_parser("list", help="tokens (without their secret)")
    tl.add_argument("--db", metavar="URL")
    tl.set_defaults(func=_cmd_tokens_list)
    tr = tksub.add_parser("revoke", help="revoke a token by its id (from `tokens list`)")
    tr.add_argument("id", type=int, metavar="ID")
    tr.add_argument("--db", metavar="URL")
    tr.set_defaults(func=_cmd_tokens_revoke)


def playbooks_or_report(path: str | None) -> list[Any] | None:
    """The playbooks under ``path`` (None: the built-in one), or None after printing every
    problem as FILE:LINE: FIELD: message."""
    from assist.playbook import BUILTIN_PLAYBOOKS, load_playbooks
    from qa_rules.loader import RuleError

    try:
        return load_playbooks(path or BUILTIN_PLAYBOOKS)
    except RuleError as exc:
        for problem in exc.issues:
            print(f"error: {problem}", file=sys.stderr)
        return None


def _cmd_playbook_check(args: argparse.Namespace) -> int:
    books = playbooks_or_report(args.path)
    if books is None:
        return 2
    for b in books:
        examples = sum(len(i.examples) for i in b.intents)
        print(
            f"ok: playbook {b.playbook} v{b.version} ({b.language}): {len(b.intents)} intents, "
            f"{examples} examples, {len(b.contexts)} contexts"
        )
    return 0


def _cmd_playbook_match(args: argparse.Namespace) -> int:
    from assist.playbook import playbook_for
    from assist.suggest import AssistLibrary
    from models.embed import shared_embedder

    books = playbooks_or_report(args.playbook)
    if books is None:
        return 2
    book = playbook_for(books, args.language)
    assert book is not None  # load_playbooks never returns an empty list
    matcher = AssistLibrary(books, None if args.lexical else shared_embedder()).matcher(book)
    text = " ".join(args.text)
    matches = matcher.match(text, top_k=5)
    threshold = book.threshold if book.threshold is not None else matcher.threshold
    rows: list[dict[str, Any]] = [
        {
            "intent": m.intent,
            "score": round(m.score, 3),
            "suggested": m.score >= _intent_threshold(book, m.intent, threshold),
            "semantic": round(m.semantic, 3),
            "lexical": round(m.lexical, 3),
            "reason": m.reason(),
        }
        for m in matches
    ]
    if args.format == "json":
        print(json.dumps({"text": text, "threshold": threshold, "matches": rows}, indent=2))
        return 0
    print(f"playbook {book.playbook} ({book.language}), threshold {threshold:.2f}")
    if not rows:
        print("no intent matches")
    for r in rows:
        mark = "SUGGEST" if r["suggested"] else "   -   "
        print(f"  {mark} {r['score']:.3f}  {r['intent']:<22} {r['reason']}")
    return 0


def _intent_threshold(book: Any, intent_id: str, default: float) -> float:
    own = book.intent(intent_id).threshold
    return float(own) if own is not None else default


def _cmd_tokens_create(args: argparse.Namespace) -> int:
    from assist.auth import token_request_problem  # the same checks as POST /v1/tokens
    from assist.store import Store, StoreError

    problem = token_request_problem(args.role, args.agent, args.label)
    if problem:
        print(f"error: {problem.replace('agent_id', '--agent')}", file=sys.stderr)
        return 2
    try:
        token = Store(args.db).create_token(args.role, args.agent, args.label)
    except (StoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    who = f" for agent {args.agent}" if args.agent else ""
    article = "an" if args.role[0] in "aeiou" else "a"
    print(
        f"created {article} {args.role} token{who} (shown once; keep it secret):", file=sys.stderr
    )
    print(token)
    if args.role == "agent":
        print(
            f"agent panel: http://HOST:PORT/agent?agent={args.agent}&token={token}",
            file=sys.stderr,
        )
    elif args.role == "ingest":
        print(
            'for connectors: Authorization: Bearer TOKEN on /v1/ingest/*, or "token" in a raw '
            "stream's start message",
            file=sys.stderr,
        )
    else:
        print("the board: callwatch dashboard --token TOKEN (or $CALLWATCH_TOKEN)", file=sys.stderr)
    return 0


def _cmd_tokens_list(args: argparse.Namespace) -> int:
    from assist.store import Store, StoreError

    try:
        rows = Store(args.db).list_tokens()
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print("no tokens (callwatch tokens create --agent AGENT_ID)")
    for r in rows:
        state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
        print(
            f"{r['id']:>4}  {r['role']:<10} {r['agent_id'] or '-':<16} {r['created_at']}  "
            f"{state:<28} {r['label']}"
        )
    return 0


def _cmd_tokens_revoke(args: argparse.Namespace) -> int:
    from assist.store import Store, StoreError

    try:
        done = Store(args.db).revoke_token(args.id)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not done:
        print(f"error: no active token {args.id}", file=sys.stderr)
        return 1
    print(f"revoked token {args.id}")
    return 0
