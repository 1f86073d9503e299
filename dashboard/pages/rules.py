"""Rules: QA teams browse, edit, validate, test, save and roll back rule packs in the board.

Every change goes through the server (``/v1/rules``), which checks the whole set before
anything runs, so a typo never switches a rule off. The editor's text lives in
``st.session_state`` (per pack, outside the widget) so a failed save, a server that is down
or a trip to another page never loses what the user typed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboard.client import ServerError
from dashboard.common import get_client, setup_page, show_error

# session_state keys (widget keys are also what the tests use)
PACK = "rules_pack"
EDITOR = "rules_yaml"
COMMENT = "rules_comment"
CASES = "rules_cases"
NEW_NAME = "rules_new_name"
VERSION = "rules_version"
VERSION_OF = "rules_version_of"  # (pack, latest version) the selector was set for
RESTORE_COMMENT = "rules_restore_comment"
DRAFTS = "rules_drafts"  # pack -> edited text not yet saved (survives widget cleanup)
BASES = "rules_bases"  # pack -> the server text the editor started from
NEW_PACKS = "rules_new_packs"  # packs created from the template, not saved yet
LOADED = "rules_loaded"  # the pack whose text is in the editor
OUTCOME = "rules_outcome"  # what the last button did, shown once

PACK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # the server's rule

TEMPLATE = """\
# {name}: a new rule pack. Field reference: docs/rules.md ("Writing QA rules").
# Rule ids must be unique across all packs.
pack: {name}
version: 1                # your label; the server numbers saved versions itself
language: en
description: What this pack checks, in one line
rules:
  - id: {prefix}_no_guarantees
    kind: phrase
    mode: forbidden         # required | forbidden
    speaker: agent          # agent | customer | any
    description: Agents do not promise outcomes
    phrases:
      - I guarantee
      - I promise you
    ignore_negated: true    # "I can't guarantee" is fine
    severity: warning       # info | warning | critical
    audience: supervisor    # agent | supervisor | both
    message: "Avoid promises: the agent said \\"{{matched}}\\""
"""

CASES_TEMPLATE = """\
# Scripted calls to test the rules with (docs/rules.md, "Testing rules before they go live").
# Test runs them against the text in the editor, saved or not.
cases:
  - name: a short polite call raises nothing from {rule}
    events:
      - {{speaker: agent, t: 1, text: "Thank you for calling Acme, how can I help you?"}}
      - {{speaker: customer, t: 4, t_end: 6, text: "Hi, I would like to check my bill."}}
      - {{speaker: agent, t: 7, text: "Of course, let me look at that for you."}}
    expect_no: [{rule}]
"""


@dataclass
class Outcome:
    """What the last button did: shown once, under the button's section."""

    section: str  # "edit" | "test" | "versions" | "new"
    ok: str = ""
    info: str = ""
    error: ServerError | None = None
    refused: str = ""  # what a 422 means for this action (the server's words otherwise)
    problems: list[str] = field(default_factory=list)  # our own checks, before any request
    data: dict[str, Any] = field(default_factory=dict)


def _state() -> Any:
    return st.session_state


def _drafts() -> dict[str, str]:
    return _state().setdefault(DRAFTS, {})


def _bases() -> dict[str, str]:
    return _state().setdefault(BASES, {})


def _new_packs() -> list[str]:
    return _state().setdefault(NEW_PACKS, [])


def _set_outcome(outcome: Outcome) -> None:
    _state()[OUTCOME] = outcome


def _editor_text() -> str:
    return str(_state().get(EDITOR) or "")


def issue_line(issue: dict[str, Any]) -> str:
    """``file:line field: message``: where to look, then what is wrong. The file is its name
    only: the server's folder means nothing to a QA lead in the board."""
    file = Path(str(issue.get("file") or "")).name or "?"
    line = issue.get("line")
    where = f"{file}:{line}" if line is not None else file
    fld = f" {issue['field']}:" if issue.get("field") else ":"
    return f"{where}{fld} {issue.get('message', '')}"


def rule_prefix(name: str) -> str:
    """A rule-id prefix from a pack name (ids are lower-case, packs need not be)."""
    return re.sub(r"[^a-z0-9_.-]", "_", name.lower()) or "rule"


def first_rule_id(yaml_text: str) -> str:
    m = re.search(r"^\s*-\s*id:\s*([a-z0-9][a-z0-9_.-]*)", yaml_text, re.MULTILINE)
    return m.group(1) if m else "greeting"


# -- actions (button callbacks: they run before the page, so they may set widget values) ----------
def _validate() -> None:
    try:
        reply = get_client().validate_pack(_editor_text())
    except ServerError as exc:
        _set_outcome(Outcome("edit", error=exc, refused="Not valid:"))
        return
    n = int(reply.get("rules", 0))
    _set_outcome(Outcome("edit", ok=f"valid: {n} rule{'s' if n != 1 else ''}"))


def _save(pack: str) -> None:
    comment = str(_state().get(COMMENT) or "").strip()
    if not comment:
        _set_outcome(Outcome("edit", problems=["Write a comment first: what changed and why."]))
        return
    text = _editor_text()
    try:
        reply = get_client().save_pack(pack, text, comment)
    except ServerError as exc:  # nothing changed on the server; the editor keeps the text
        _set_outcome(Outcome("edit", error=exc))
        return
    _bases()[pack] = text
    _drafts().pop(pack, None)
    if pack in _new_packs():
        _new_packs().remove(pack)
    _state()[COMMENT] = ""
    if reply.get("changed", True):
        _set_outcome(
            Outcome(
                "edit",
                ok=f"Saved {pack} version {reply.get('version')} as {reply.get('author')}: "
                "it runs now, live calls included.",
            )
        )
    else:
        _set_outcome(
            Outcome("edit", info=f"Nothing to save: this is version {reply.get('version')}.")
        )


def _discard(pack: str, server_text: str | None) -> None:
    _drafts().pop(pack, None)
    if server_text is None:  # a new pack never saved: drop it
        if pack in _new_packs():
            _new_packs().remove(pack)
        _state().pop(LOADED, None)
        _state().pop(PACK, None)
        return
    _state()[EDITOR] = server_text
    _bases()[pack] = server_text
    _set_outcome(Outcome("edit", info="Edits discarded: the editor shows the running pack."))


def _run_tests() -> None:
    cases = str(_state().get(CASES) or "")
    if not cases.strip():
        _set_outcome(Outcome("test", problems=["Write at least one case to run."]))
        return
    try:
        reply = get_client().test_rules(cases, _editor_text())
    except ServerError as exc:
        _set_outcome(
            Outcome("test", error=exc, refused="The cases, or the pack in the editor, do not load:")
        )
        return
    _set_outcome(Outcome("test", data=reply))


def _create(existing: list[str]) -> None:
    name = str(_state().get(NEW_NAME) or "").strip()
    if not PACK_NAME_RE.match(name):
        _set_outcome(
            Outcome(
                "new",
                problems=[
                    "A pack name is letters, digits, '_', '-' or '.', starting with a letter or "
                    "digit (it becomes the file name)."
                ],
            )
        )
        return
    if name in existing or name in _new_packs():
        _set_outcome(Outcome("new", problems=[f"There is already a pack called {name}."]))
        return
    _new_packs().append(name)
    _drafts()[name] = TEMPLATE.format(name=name, prefix=rule_prefix(name))
    _state()[PACK] = name
    _state()[NEW_NAME] = ""
    _set_outcome(
        Outcome("edit", info=f"New pack {name} from the template: edit it, then Save to run it.")
    )


def _restore(pack: str, n: int) -> None:
    comment = str(_state().get(RESTORE_COMMENT) or "").strip()
    before = _bases().get(pack)
    client = get_client()
    try:
        reply = client.restore_version(pack, n, comment)
        running = str(client.rule_pack(pack).get("yaml") or "")
    except ServerError as exc:
        _set_outcome(Outcome("versions", error=exc))
        return
    _state()[RESTORE_COMMENT] = ""
    msg = f"Restored version {n} of {pack} as version {reply.get('version')}."
    if not reply.get("changed", True):
        msg = f"Version {n} is what already runs: nothing changed."
    if _editor_text() == before or pack not in _drafts():
        _state()[EDITOR] = running
        _bases()[pack] = running
        _drafts().pop(pack, None)
        _set_outcome(Outcome("versions", ok=msg))
    else:  # never throw away the user's edits: keep them and say so
        _bases()[pack] = running
        _set_outcome(
            Outcome(
                "versions",
                ok=msg,
                info="Your unsaved edits stay in the editor; Discard edits shows the restored text.",
            )
        )


# -- rendering ------------------------------------------------------------------------------------
def show_outcome(section: str) -> None:
    outcome: Outcome | None = _state().get(OUTCOME)
    if outcome is None or outcome.section != section:
        return
    _state().pop(OUTCOME, None)
    for p in outcome.problems:
        st.warning(p)
    if outcome.ok:
        st.success(outcome.ok)
    if outcome.info:
        st.info(outcome.info)
    if outcome.error is not None:
        show_server_error(outcome.error, outcome.refused)
    if outcome.data:
        show_test_results(outcome.data)


def show_server_error(exc: ServerError, refused: str = "") -> None:
    """Rule problems as ``file:line field: message`` lines; anything else as the board says it."""
    if exc.status == 422:
        st.error(
            refused if refused and exc.issues else exc.message or "The server refused the rules."
        )
        if exc.issues:
            st.code("\n".join(issue_line(i) for i in exc.issues), language=None)
        return
    show_error(exc)


def show_test_results(reply: dict[str, Any]) -> None:
    s = reply.get("summary") or {}
    passed, failed = int(s.get("passed", 0)), int(s.get("failed", 0))
    c1, c2, c3 = st.columns(3)
    c1.metric("Cases", int(s.get("cases", passed + failed)))
    c2.metric("Passed", passed)
    c3.metric("Failed", failed)
    if failed:
        st.error(f"{passed} passed, {failed} failed")
    else:
        st.success(f"{passed} passed, {failed} failed")
    for case in reply.get("cases") or []:
        ok = bool(case.get("passed"))
        line = f" (line {case['line']})" if case.get("line") else ""
        with st.expander(
            f"{'✅ PASS' if ok else '❌ FAIL'}: {case.get('name')}{line}", expanded=not ok
        ):
            for reason in case.get("failures") or []:
                st.text(f"• {reason}")
            alerts = case.get("alerts") or []
            if alerts:
                st.caption("Alerts the rules raised")
                st.dataframe(
                    pd.DataFrame(
                        [
                            {
                                "t": a.get("t"),
                                "rule": a.get("rule_id"),
                                "severity": a.get("severity"),
                                "message": a.get("message"),
                            }
                            for a in alerts
                        ]
                    ),
                    hide_index=True,
                )
            else:
                st.caption("No alerts.")
            if case.get("score") is not None:
                st.caption(f"Score: {float(case['score']):.0f}")


def rules_table(definition: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for r in definition.get("rules") or []:
        audience = r.get("audience")
        rows.append(
            {
                "id": r.get("id"),
                "kind": r.get("kind"),
                "severity": r.get("severity"),
                "audience": ", ".join(audience) if isinstance(audience, list) else audience,
                "weight": r.get("weight"),
                "enabled": r.get("enabled"),
                "description": r.get("description"),
            }
        )
    return pd.DataFrame(
        rows, columns=["id", "kind", "severity", "audience", "weight", "enabled", "description"]
    )


def versions_table(versions: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for v in versions:
        summary = v.get("summary") or {}
        rows.append(
            {
                "version": v.get("version"),
                "author": v.get("author"),
                "when (UTC)": str(v.get("created_at") or "")[:19].replace("T", " "),
                "comment": v.get("comment"),
                "added": ", ".join(summary.get("added") or []),
                "changed": ", ".join(summary.get("changed") or []),
                "removed": ", ".join(summary.get("removed") or []),
                "deleted": bool(summary.get("deleted")),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "version",
            "author",
            "when (UTC)",
            "comment",
            "added",
            "changed",
            "removed",
            "deleted",
        ],
    )


def load_editor(pack: str, server_text: str | None) -> None:
    """Put ``pack``'s text in the editor: the user's draft if any, else the running text;
    follow changes made elsewhere while the user has not edited."""
    state = _state()
    drafts, bases = _drafts(), _bases()
    if state.get(LOADED) != pack or EDITOR not in state:
        if server_text is not None and pack not in drafts:
            bases[pack] = server_text
        state[EDITOR] = drafts.get(pack, server_text or "")
        state[LOADED] = pack
    elif (
        server_text is not None
        and pack not in drafts
        and state.get(EDITOR) == bases.get(pack)
        and server_text != bases.get(pack)
    ):
        state[EDITOR] = server_text  # someone else saved; nothing of ours to keep
        bases[pack] = server_text


def remember_draft(pack: str) -> None:
    text = _editor_text()
    if text != _bases().get(pack):
        _drafts()[pack] = text
    else:
        _drafts().pop(pack, None)


def page() -> None:
    setup_page("Rules", "📏")
    st.title("📏 Rules")
    st.caption(
        "Edit a pack, Validate and Test it against scripted calls, then Save: the server checks "
        "every pack together and only a valid set runs. Every save is a version you can restore."
    )
    client = get_client()
    try:
        listing = client.rule_packs()
    except ServerError as exc:
        show_error(exc)
        if _drafts():
            st.info(f"Your unsaved edits are kept: {', '.join(sorted(_drafts()))}.")
        return

    packs: list[dict[str, Any]] = list(listing.get("packs") or [])
    names = [str(p["pack"]) for p in packs]
    last_error = listing.get("last_error")
    if last_error:
        st.warning(
            "The rules folder on the server does not load; the packs below keep running until "
            "it does:"
        )
        st.code(
            "\n".join(issue_line(i) for i in last_error.get("issues") or []) or str(last_error),
            language=None,
        )

    with st.expander(f"All packs ({len(packs)})", expanded=False):
        if packs:
            table = pd.DataFrame(packs)
            cols = ["pack", "rules", "version", "yaml_version", "updated_by", "updated_at", "file"]
            st.dataframe(table[[c for c in cols if c in table.columns]], hide_index=True)
        else:
            st.info("No rule packs run on this server.")

    with st.expander("New pack from a template"):
        st.text_input("Pack name", key=NEW_NAME, placeholder="e.g. retail_uk")
        st.button("Create", key="rules_new", on_click=_create, args=(names,))
        show_outcome("new")

    options = names + [n for n in _new_packs() if n not in names]
    if not options:
        st.info("No rule packs yet: create one from the template above.")
        return
    if _state().get(PACK) not in options:
        _state()[PACK] = "default" if "default" in options else options[0]
    pack = str(
        st.selectbox(
            "Pack",
            options,
            key=PACK,
            format_func=lambda n: n if n in names else f"{n} (new, not saved)",
        )
    )

    info: dict[str, Any] | None = None
    if pack in names:
        try:
            info = client.rule_pack(pack)
        except ServerError as exc:
            show_error(exc)
            return
    server_text = str(info.get("yaml") or "") if info else None

    if info:
        st.caption(
            f"Version {info.get('version')} · saved by {info.get('updated_by') or '-'} at "
            f"{str(info.get('updated_at') or '-')[:19].replace('T', ' ')} UTC · "
            f"{info.get('rules')} rules · file {info.get('file')}"
        )
        st.dataframe(rules_table(info.get("definition") or {}), hide_index=True)

    load_editor(pack, server_text)
    tab_edit, tab_test, tab_versions = st.tabs(["Edit", "Test", "Versions"])

    with tab_edit:
        st.text_area("Pack YAML", key=EDITOR, height=480)
        remember_draft(pack)
        dirty = server_text is None or _editor_text() != server_text
        if dirty:
            st.caption("✏️ Unsaved changes")
        st.text_input(
            "Comment (required to save)",
            key=COMMENT,
            placeholder="what changed and why",
        )
        user = client.user or "anonymous"
        c1, c2, c3 = st.columns(3)
        c1.button("Validate", key="rules_validate", on_click=_validate)
        c2.button(
            f"Save as {user}",
            key="rules_save",
            type="primary",
            on_click=_save,
            args=(pack,),
        )
        c3.button(
            "Discard edits",
            key="rules_discard",
            on_click=_discard,
            args=(pack, server_text),
            disabled=not dirty,
        )
        if not client.user:
            st.caption("No board user set (sidebar or CALLWATCH_USER): saves are by 'anonymous'.")
        show_outcome("edit")

    with tab_test:
        if CASES not in _state():
            _state()[CASES] = CASES_TEMPLATE.format(rule=first_rule_id(_editor_text()))
        st.text_area("Cases (the `rules test` format)", key=CASES, height=320)
        st.button("Test", key="rules_test", on_click=_run_tests)
        show_outcome("test")

    with tab_versions:
        show_versions(pack, names)


def show_versions(pack: str, names: list[str]) -> None:
    if pack not in names:
        st.info("No versions yet: save the pack to create version 1.")
        return
    client = get_client()
    try:
        versions = client.pack_versions(pack)
    except ServerError as exc:
        if exc.status == 404:
            st.info("No versions stored for this pack.")
        else:
            show_error(exc)
        return
    st.dataframe(versions_table(versions), hide_index=True)
    by_n = {int(v["version"]): v for v in versions if v.get("version") is not None}
    if not by_n:
        return
    latest = max(by_n)
    numbers = sorted(by_n, reverse=True)
    # a new pack or a new save shows its latest version first
    if _state().get(VERSION) not in numbers or _state().get(VERSION_OF) != (pack, latest):
        _state()[VERSION] = latest
        _state()[VERSION_OF] = (pack, latest)
    n = int(
        st.selectbox(
            "Version",
            numbers,
            key=VERSION,
            format_func=lambda k: (
                f"v{k} · {by_n[k].get('author')} · {str(by_n[k].get('comment') or '')[:60]}"
            ),
        )
    )
    try:
        detail = client.pack_version(pack, n)
    except ServerError as exc:
        show_error(exc)
        return
    t_text, t_diff = st.tabs([f"Text of v{n}", f"Changes from v{n - 1}"])
    with t_text:
        st.code(str(detail.get("text") or ""), language="yaml", line_numbers=True, height=420)
    with t_diff:
        st.code(str(detail.get("diff") or "(no changes)"), language="diff", height=420)
    deleted = bool((by_n[n].get("summary") or {}).get("deleted"))
    st.text_input("Comment for the restore (optional)", key=RESTORE_COMMENT)
    st.button(
        f"Restore v{n} as a new version",
        key="rules_restore",
        on_click=_restore,
        args=(pack, n),
        disabled=n == latest or deleted,
        help="The latest version already runs" if n == latest else None,
    )
    show_outcome("versions")


page()
