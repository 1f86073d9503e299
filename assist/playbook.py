"""Playbooks: what an agent should say when the customer wants something (YAML, validated).

A playbook lists *intents*: example customer utterances, the script lines to suggest, a
next-best action and knowledge-base snippets. An intent may *require* a context (e.g. the
caller's identity verified): until an agent line establishes it, the agent is prompted to do
that first. QA teams write these files by hand, so every mistake is reported like a rule
error: file, line, field, and a did-you-mean for a misspelt context.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from qa_rules.loader import RuleError, RuleIssue, pack_files, parse_yaml_model, yaml_line_of
from qa_rules.text import to_simplified, tokens

BUILTIN_PLAYBOOKS = Path(__file__).parent / "playbooks"
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")

Speaker = Literal["customer", "agent", "any"]


def _check_id(v: str) -> str:
    if not _ID_RE.match(v):
        raise ValueError(
            "id must be lower-case letters, digits, '_', '-' or '.', starting with a letter "
            f"or digit (got {v!r})"
        )
    return v


def _one_or_many(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


class KbSnippet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    text: str = Field(min_length=1)
    url: str | None = None


class Context(BaseModel):
    """Something the call must have established before some intents are suggested in full.

    It is established when ``said_by`` says one of ``phrases`` (fuzzy, like rule phrases).
    """

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    said_by: Speaker = "agent"
    phrases: list[str] = Field(min_length=1)
    min_score: float = Field(default=0.85, ge=0.5, le=1.0)
    prompt: str = Field(min_length=1)  # what the agent should do first

    _phrases = field_validator("phrases", mode="before")(_one_or_many)


class Intent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    title: str = Field(min_length=1)
    examples: list[str] = Field(min_length=3)
    script: list[str] = Field(min_length=1)
    action: str | None = None
    kb: list[KbSnippet] = Field(default_factory=list)
    requires: list[str] = Field(default_factory=list)
    speaker: Speaker = "customer"
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    cooldown_s: float | None = Field(default=None, ge=0)
    enabled: bool = True

    _id = field_validator("id")(_check_id)
    _script = field_validator("script", "requires", mode="before")(_one_or_many)

    @field_validator("examples")
    @classmethod
    def _examples_have_words(cls, v: list[str]) -> list[str]:
        for i, ex in enumerate(v):
            if not tokens(ex):
                raise ValueError(f"example {i + 1} has no words: {ex!r}")
        return v


class Playbook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    playbook: str
    version: int | str = 1
    language: str = "en"
    description: str = ""
    # None: the matcher's measured operating threshold (docs/benchmarks.md)
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    # a partial transcript is still changing: it must clear the threshold by this much
    partial_margin: float = Field(default=0.05, ge=0.0, le=0.5)
    min_partial_words: int = Field(default=3, ge=1)
    cooldown_s: float = Field(default=300.0, ge=0)  # the same intent again, at the earliest
    max_per_utterance: int = Field(default=2, ge=1, le=5)
    contexts: dict[str, Context] = Field(default_factory=dict)
    intents: list[Intent] = Field(min_length=1)

    _id = field_validator("playbook")(_check_id)

    @field_validator("language")
    @classmethod
    def _language(cls, v: str) -> str:
        return v.lower().split("-")[0]

    @model_validator(mode="after")
    def _consistent(self) -> Playbook:
        seen: dict[str, str] = {}
        examples: dict[str, str] = {}
        for intent in self.intents:
            if intent.id in seen:
                raise ValueError(f"intent id {intent.id!r} appears twice")
            seen[intent.id] = intent.id
            for ex in intent.examples:
                key = " ".join(tokens(to_simplified(ex)))
                other = examples.get(key)
                if other is not None and other != intent.id:
                    raise ValueError(
                        f"example {ex!r} is in intents {other!r} and {intent.id!r}: "
                        "an example must point at one intent"
                    )
                examples[key] = intent.id
        for name in self.contexts:
            _check_id(name)
        return self

    def intent(self, intent_id: str) -> Intent:
        return next(i for i in self.intents if i.id == intent_id)


def parse_playbook(text: str, filename: str) -> Playbook:
    """Parse and check one playbook. Raises RuleError naming file, line and field."""
    book = parse_yaml_model(
        text, filename, Playbook, "a playbook is a mapping with 'playbook' and 'intents'"
    )
    node: yaml.Node | None = None
    issues = []
    for i, intent in enumerate(book.intents):
        for j, ctx in enumerate(intent.requires):
            if ctx not in book.contexts:
                close = difflib.get_close_matches(ctx, list(book.contexts), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                known = ", ".join(sorted(book.contexts)) or "none defined"
                node = node or yaml.compose(text, Loader=yaml.SafeLoader)
                issues.append(
                    RuleIssue(
                        filename,
                        yaml_line_of(node, ("intents", i, "requires", j)),
                        f"intents[{i}](id={intent.id}).requires",
                        f"no context {ctx!r} in 'contexts' ({known}){hint}",
                    )
                )
    if issues:
        raise RuleError(issues)
    return book


def load_playbooks(path: str | Path = BUILTIN_PLAYBOOKS) -> list[Playbook]:
    """Every playbook under ``path`` (a file or folder), all or nothing. One per language."""
    books: list[Playbook] = []
    issues: list[RuleIssue] = []
    by_language: dict[str, str] = {}
    for f in pack_files(path, "playbooks"):
        try:
            book = parse_playbook(f.read_text(encoding="utf-8"), str(f))
        except RuleError as exc:
            issues.extend(exc.issues)
            continue
        except (OSError, UnicodeDecodeError) as exc:
            issues.append(RuleIssue(str(f), None, "", f"cannot read: {exc}"))
            continue
        if book.language in by_language:
            issues.append(
                RuleIssue(
                    str(f),
                    None,
                    "language",
                    f"{by_language[book.language]} is also a {book.language!r} playbook: "
                    "one playbook per language",
                )
            )
            continue
        by_language[book.language] = str(f)
        books.append(book)
    if issues:
        raise RuleError(issues)
    return books


def playbook_for(books: list[Playbook], language: str | None) -> Playbook | None:
    """The playbook for a call's language: an exact match, else English, else the first."""
    lang = (language or "en").lower().split("-")[0]
    for book in books:
        if book.language == lang:
            return book
    return next((b for b in books if b.language == "en"), books[0] if books else None)
