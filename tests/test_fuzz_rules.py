"""Property tests of the rule loader: any YAML gives packs or a RuleError naming file and line.

Inputs are random YAML documents, the built-in packs mutated (keys deleted, types swapped,
random and Chinese strings, bad regexes, huge numbers, duplicate ids), the packs' text cut
and spliced line by line, and hand-made hostile YAML (alias bombs, deep nesting, tags,
impossible dates). The oracle is bench/fuzz.py ``check_rules``.
"""

from __future__ import annotations

import copy
import itertools
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from bench.fuzz import check_rules
from qa_rules.loader import BUILTIN_PACKS, RuleError, load_texts, parse_pack
from qa_rules.matching import CompiledRules, Occurrence, UtteranceMatches
from qa_rules.schema import KINDS, PhraseRule
from qa_rules.text import Match, TokenSeq
from tests.fuzzing import fuzz_settings

FUZZ = fuzz_settings(200, 2000)

DEFAULT_TEXT = (BUILTIN_PACKS / "default.yaml").read_text(encoding="utf-8")
DEFAULT = yaml.safe_load(DEFAULT_TEXT)

HOSTILE = [
    "",
    "请稍等",
    "客户说：我要退款",
    "a" * 500,
    "(a+)+$",
    "(\\w+\\s?)+$",
    "([a-z]*)*",
    "(x|x)*y",
    "[",
    "(?P<n>",
    "\\",
    "{",
    "{t",
    "{t.__class__}",
    "{0}",
    "{t!z}",
    "{t:%}",
    "first_s",
    "both",
    "kind",
    ".nan",
    "1e400",
    "\x00",
    "\ud800",
    "\t",
    "- x",
    "&a",
    "*a",
]
NUMBERS = [0, -1, 1, 0.5, 1e-300, 1e308, 10**30, 10**400, float("inf"), float("-inf"), float("nan")]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(NUMBERS),
    st.text(max_size=15),
    st.sampled_from(HOSTILE),
    st.sampled_from(KINDS),
    st.dates(),
)
values = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(scalars, c, max_size=4),
    max_leaves=12,
)


def dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, (*prefix, i))
    return out


@st.composite
def mutated_pack(draw: st.DrawFn) -> Any:
    """The built-in pack with 1-4 edits a hurried (or hostile) QA author could make."""
    data = copy.deepcopy(DEFAULT)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(paths(data)))
        if not where:
            continue
        parent = data
        for k in where[:-1]:
            parent = parent[k]
        key = where[-1]
        op = draw(
            st.sampled_from(
                ["delete", "value", "hostile", "number", "wrap", "string", "dup_rule", "regex"]
            )
        )
        try:
            if op == "delete":
                del parent[key]
            elif op == "value":
                parent[key] = draw(values)
            elif op == "hostile":
                parent[key] = draw(st.sampled_from(HOSTILE))
            elif op == "number":
                parent[key] = draw(st.sampled_from(NUMBERS))
            elif op == "wrap":
                parent[key] = [parent[key]]
            elif op == "string":
                parent[key] = str(parent[key])
            elif op == "dup_rule":
                rules = data["rules"]
                rules.append(copy.deepcopy(rules[draw(st.integers(0, len(rules) - 1))]))
            else:
                rule = data["rules"][draw(st.integers(0, len(data["rules"]) - 1))]
                rule["regex"] = [draw(st.sampled_from(HOSTILE))]
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            continue
    return data


@st.composite
def spliced_text(draw: st.DrawFn) -> str:
    """The pack's text with lines deleted, duplicated, re-indented or replaced."""
    lines = DEFAULT_TEXT.splitlines()
    for _ in range(draw(st.integers(1, 5))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "dup", "indent", "dedent", "replace", "insert"]))
        if op == "delete":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "indent":
            lines[i] = " " + lines[i]
        elif op == "dedent":
            lines[i] = lines[i][1:]
        elif op == "replace":
            lines[i] = draw(st.text(max_size=30))
        else:
            lines.insert(i, draw(st.sampled_from(HOSTILE_YAML)))
    return "\n".join(lines) + "\n"


def bomb(levels: int, fanout: int) -> str:
    """An alias bomb inside a composite rule's condition: fanout**levels nodes once expanded."""
    text = "pack: bomb\nrules:\n"
    for i in range(levels):
        body = "{silence: 1}" if i == 0 else "{all: [" + ", ".join([f"*w{i - 1}"] * fanout) + "]}"
        text += f"  - id: r{i}\n    kind: composite\n    when: &w{i} {body}\n"
    return text


HOSTILE_YAML = [
    "? [a, b]\n: 1",
    "{[1]: 2}: 3",
    "description: 2001-13-45",
    "description: !!float abc",
    "version: !!int abc",
    "version: " + "9" * 5000,
    "description: !!binary '@@@'",
    "description: !!python/name:os.system x",
    "<<: [1]",
    "description: *undefined",
    "rules: &a [*a]",
    "rules: " + "[" * 3000 + "]" * 3000,
    "rules:\n" + "".join(" " * i + "- \n" for i in range(0, 400, 2)),
    "rules: !!set {a, b}",
    "\x00",
    "\t- tab",
    "%YAML 1.1\n---",
    "--- a\n--- b",
    bomb(6, 6),
]


@st.composite
def pack_texts(draw: st.DrawFn) -> dict[str, str]:
    kind = draw(st.sampled_from(["random", "mutated", "mutated", "spliced", "hostile", "pair"]))
    if kind == "random":
        return {"a.yaml": dump(draw(values))}
    if kind == "mutated":
        return {"a.yaml": dump(draw(mutated_pack()))}
    if kind == "spliced":
        return {"a.yaml": draw(spliced_text())}
    if kind == "hostile":
        return {"a.yaml": "pack: p\n" + draw(st.sampled_from(HOSTILE_YAML)) + "\n"}
    # two packs: duplicate pack names and rule ids across files, composite references
    second = copy.deepcopy(DEFAULT)
    second["pack"] = draw(st.sampled_from(["default", "other"]))
    second["rules"] = second["rules"][: draw(st.integers(0, len(second["rules"])))]
    if draw(st.booleans()):
        second["rules"].append(
            {
                "id": "loop",
                "kind": "composite",
                "when": {"rule": draw(st.sampled_from(["loop", "nope", "recording_disclosure"]))},
            }
        )
    return {"a.yaml": DEFAULT_TEXT, "b.yaml": dump(second)}


@FUZZ
@given(texts=pack_texts())
def test_any_yaml_gives_packs_or_rule_errors_with_lines(texts: dict[str, str]) -> None:
    check_rules(texts)


@FUZZ
@given(text=st.text(max_size=400))
def test_any_text_gives_packs_or_rule_errors_with_lines(text: str) -> None:
    check_rules({"x.yaml": text})


# -- what the fuzzers found --------------------------------------------------------------------
FOUND = [
    ("pack: p\n? [a, b]\n: 1\n", 2, "unhashable"),
    ("pack: p\n{[1]: 2}: 3\n", 2, "unhashable"),
    ("pack: p\ndescription: 2001-13-45\n", 2, "month must be in 1..12"),
    ("pack: p\nversion: !!float abc\n", 2, "could not convert"),
    ("pack: p\nversion: " + "9" * 5000 + "\n", 2, "digits"),
    ("pack: p\nrules: " + "[" * 3000 + "]" * 3000 + "\n", 2, "nested more than"),
    ("pack: p\x00\n", 1, "unacceptable character"),
    ("pack: p\nrules: &a [*a]\n", 2, "refers to itself"),
    (bomb(9, 8), 23, "expands past"),
    ("pack: p\nrules:\n  - {id: s, kind: silence, min_s: 1, weight: .inf}\n", 3, "finite"),
    ("pack: p\nrules:\n  - {id: s, kind: silence, min_s: 1, weight: 1e308}\n", 3, "less than"),
    ('pack: p\nrules:\n  - {id: "s\\n", kind: silence, min_s: 1}\n', 3, "id must be"),
    ('pack: "evil\\n"\n', 1, "pack name"),  # once written to the file 'evil\\n.yaml'
    ("pack: ../../etc/x\n", 1, "pack name"),
    (
        "pack: p\nrules:\n  - {id: s, kind: silence, min_s: 1, message: '{t.__class__}'}\n",
        3,
        "attribute",
    ),
    (
        "pack: p\nrules:\n  - {id: r, kind: phrase, mode: required, regex: ['(\\w+\\s?)+$']}\n",
        3,
        "backtrack",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), FOUND)
def test_found_inputs_are_rule_errors_on_their_line(text: str, line: int, message: str) -> None:
    with pytest.raises(RuleError) as err:
        parse_pack(text, "p.yaml")
    check_rules({"p.yaml": text})
    assert any(i.line == line and message in i.message for i in err.value.issues), err.value


def test_cross_pack_issues_name_their_lines() -> None:
    """Duplicate pack names and rule ids across files used to come without a line."""
    a = "pack: a\nrules:\n  - {id: s, kind: silence, min_s: 4}\n"
    b = "# b\npack: a\n"
    c = "pack: c\nrules:\n  - {id: t, kind: silence, min_s: 4}\n  - {id: s, kind: silence, min_s: 4}\n"
    with pytest.raises(RuleError) as err:
        load_texts({"a.yaml": a, "b.yaml": b, "c.yaml": c})
    where = {(i.file, i.line) for i in err.value.issues}
    assert ("b.yaml", 2) in where and ("c.yaml", 4) in where


# Patterns whose backtracking is exponential (or a high power) in the text's length.
CATASTROPHIC = [
    r"(a+)+$",
    r"(\w+\s?)+$",
    r"(\w+\s*)+refund",
    r"([a-z]+)*x",
    r"(.*a){12}",
    r"(a|a)*b",
    r"(a|aa)+$",
    r"(?:\s*\w+\s*)+\.",
    r"(a{1,5})+$",
    r"\w*\w*\w*x",
]
# What QA authors actually write: must keep loading.
SAFE = [
    r"\b(refund|cancel)\b",
    r"\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}",
    r"(?i)this call (is|may be) recorded",
    r"(ab)+c",
    r"\b\w+@\w+\.com\b",
    r"(mr|mrs|ms)\.? \w+",
    r"[0-9]+(\.[0-9]+)?",
    r"(?:one|two|three)+",
    r"no+",
    r"(a|b)*c",
    r"(\d|\w)+!",  # re folds the alternatives into one character class
    r"(no|not)+x",
    r"(ab|a)*c",
    r"(\d+,)+",
    r".*refund.*cancel.*",
    r"(\w+\s?)++x",  # possessive: never backtracked into
    r"((?>\w+)\s?)+x",
]


def regex_rule(pattern: str) -> str:
    return yaml.safe_dump(
        {
            "pack": "p",
            "rules": [{"id": "r", "kind": "phrase", "mode": "required", "regex": [pattern]}],
        }
    )


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_regexes_are_refused_at_load(pattern: str) -> None:
    with pytest.raises(RuleError, match="backtrack"):
        parse_pack(regex_rule(pattern), "p.yaml")


@pytest.mark.parametrize("pattern", SAFE)
def test_ordinary_regexes_still_load_and_match(pattern: str) -> None:
    pack = parse_pack(regex_rule(pattern), "p.yaml")
    words = ("aaaa refund 1234 no mr smith " * 40 + "!").split()
    um = CompiledRules(pack.rules).scan(TokenSeq.from_words(words))
    assert isinstance(um.regex(pattern), list)


# -- phrase combinations (match: all / in_order with within_words) ------------------------------
def brute_force_combination(
    rule: Any, occ: list[Occurrence]
) -> list[Occurrence] | None:  # the engine's former search: every combination, 8**n of them
    n = len(rule.items)
    limit = rule.within_words or 0
    by_item = [[o for o in occ if o.item == i][:8] for i in range(n)]
    if any(not b for b in by_item):
        return None
    best: list[Occurrence] | None = None
    for combo in itertools.product(*by_item):
        starts = [o.match.start for o in combo]
        if rule.match == "in_order" and any(a >= b for a, b in itertools.pairwise(starts)):
            continue
        if max(starts) - min(o.match.end for o in combo) > limit:
            continue
        if best is None or max(starts) < max(o.match.start for o in best):
            best = list(combo)
    return best


@st.composite
def occurrences(draw: st.DrawFn) -> tuple[Any, list[Occurrence]]:
    n = draw(st.integers(1, 4))
    rule = SimpleNamespace(
        items=[f"p{i}" for i in range(n)],
        within_words=draw(st.integers(0, 12)),
        match=draw(st.sampled_from(["all", "in_order"])),
    )
    occ = []
    for i in range(n):
        for _ in range(draw(st.integers(0, 5))):
            start = draw(st.integers(0, 30))
            occ.append(Occurrence(i, Match(f"p{i}", start, start + draw(st.integers(1, 3)), 1.0)))
    occ.sort(key=lambda o: (o.match.start, o.item))
    return rule, occ


@FUZZ
@given(case=occurrences())
def test_combination_picks_what_trying_every_combination_picks(
    case: tuple[Any, list[Occurrence]],
) -> None:
    rule, occ = case
    got = UtteranceMatches.combination(None, rule, occ)  # type: ignore[arg-type]
    assert got == brute_force_combination(rule, occ)


def test_ten_repeated_phrases_no_longer_stall_the_engine() -> None:
    """10 phrases said 8 times each: 8**10 combinations for the former search."""
    words = [
        "refund",
        "cancel",
        "order",
        "now",
        "please",
        "today",
        "agent",
        "account",
        "card",
        "bank",
    ]
    pack = parse_pack(
        yaml.safe_dump(
            {
                "pack": "p",
                "rules": [
                    {
                        "id": "r",
                        "kind": "phrase",
                        "mode": "forbidden",
                        "phrases": words,
                        "match": "in_order",
                        "within_words": 100,
                    }
                ],
            }
        ),
        "p.yaml",
    )
    rule = pack.rules[0]
    assert isinstance(rule, PhraseRule)
    um = CompiledRules(pack.rules).scan(TokenSeq.from_words(words * 8))
    combo = um.combination(rule, um.occurrences(rule))
    assert combo is not None and [o.match.start for o in combo] == list(range(10))
