"""Playbooks load like rule packs: all or nothing, every error with file, line and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from assist.playbook import BUILTIN_PLAYBOOKS, load_playbooks, parse_playbook, playbook_for
from qa_rules.loader import RuleError

GOOD = """\
playbook: shop
language: en
contexts:
  identity_verified:
    phrases: [thanks for verifying]
    prompt: Verify the caller first.
intents:
  - id: refund
    title: Wants a refund
    examples: [I want a refund, give me my money back, refund please]
    script: I can help with that refund.
    requires: [identity_verified]
  - id: delivery
    title: Where is my order
    examples: [where is my order, my parcel has not arrived, track my package]
    script: [Let me check where it is.]
"""


def issues_of(text: str) -> list[str]:
    with pytest.raises(RuleError) as err:
        parse_playbook(text, "shop.yaml")
    return [str(i) for i in err.value.issues]


def test_builtin_playbook_loads_with_intents_for_a_generic_contact_center() -> None:
    books = {b.language: b for b in load_playbooks(BUILTIN_PLAYBOOKS)}
    assert set(books) == {"en", "zh"}
    book = books["en"]
    ids = {i.id for i in book.intents}
    for needed in ("cancel_service", "billing_dispute", "address_change", "delivery_status"):
        assert needed in ids
    assert {"complaint", "technical_fault"} <= ids
    assert all(len(i.examples) >= 8 and i.script for i in book.intents)
    assert book.intent("address_change").requires == ["identity_verified"]


def test_a_good_playbook_parses_and_single_lines_become_lists() -> None:
    book = parse_playbook(GOOD, "shop.yaml")
    assert book.intent("refund").script == ["I can help with that refund."]
    assert book.contexts["identity_verified"].said_by == "agent"


def test_unknown_context_is_named_with_its_line_and_a_did_you_mean() -> None:
    (msg,) = issues_of(
        GOOD.replace("requires: [identity_verified]", "requires: [identity_verifed]")
    )
    assert msg.startswith("shop.yaml:12: intents[0](id=refund).requires:")
    assert "did you mean 'identity_verified'" in msg


def test_field_errors_point_at_the_line() -> None:
    bad = GOOD.replace("    script: I can help with that refund.\n", "    script: []\n")
    (msg,) = issues_of(bad)
    assert msg.startswith("shop.yaml:11: intents[0](id=refund).script:")
    (msg,) = issues_of(GOOD.replace("  - id: delivery", "  - id: Delivery!"))
    assert "shop.yaml:13" in msg and "id must be lower-case" in msg
    msgs = issues_of(GOOD.replace("    title: Where is my order\n", "    titel: x\n"))
    assert any("intents[1](id=delivery).title: Field required" in m for m in msgs)
    assert any("shop.yaml:14: intents[1](id=delivery).titel: Extra inputs" in m for m in msgs)


def test_an_example_in_two_intents_is_refused() -> None:
    bad = GOOD.replace("track my package]", "track my package, I want a refund]")
    (msg,) = issues_of(bad)
    assert "'I want a refund' is in intents 'refund' and 'delivery'" in msg


def test_broken_yaml_names_the_line() -> None:
    (msg,) = issues_of(GOOD.replace("title: Wants a refund", "title: Wants: a refund"))
    assert msg.startswith("shop.yaml:9: invalid YAML")


def test_a_folder_loads_all_or_nothing_one_playbook_per_language(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD.replace("playbook: shop", "playbook: shop2"))
    with pytest.raises(RuleError, match="one playbook per language"):
        load_playbooks(tmp_path)
    (tmp_path / "b.yaml").write_text(
        GOOD.replace("playbook: shop", "playbook: shop_zh").replace("language: en", "language: zh")
    )
    books = load_playbooks(tmp_path)
    assert playbook_for(books, "zh-CN") is not None
    assert playbook_for(books, "zh").playbook == "shop_zh"  # type: ignore[union-attr]
    assert playbook_for(books, "fr").playbook == "shop"  # type: ignore[union-attr]


def test_cli_check_reports_errors_and_success(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("requires: [identity_verified]", "requires: [nope]"))
    cmd = [sys.executable, "-m", "assist.cli", "playbook", "check"]
    ok = subprocess.run([*cmd, str(good)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "2 intents" in ok.stdout
    no = subprocess.run([*cmd, str(bad)], capture_output=True, text=True, check=False)
    assert no.returncode == 2
    assert f"error: {bad}:12: intents[0](id=refund).requires: no context 'nope'" in no.stderr
