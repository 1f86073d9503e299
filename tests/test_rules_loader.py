from pathlib import Path

import pytest

from assist.cli import main
from qa_rules.loader import BUILTIN_PACKS, RuleError, load_packs, parse_pack
from qa_rules.schema import KINDS


def test_builtin_packs_load_one_per_language_with_every_kind() -> None:
    packs = {p.language: p for p in load_packs(BUILTIN_PACKS)}
    assert set(packs) == {"en", "zh"}
    for pack in packs.values():
        assert {r.kind for r in pack.rules} == set(KINDS)
    assert "recording_disclosure" in {r.id for r in packs["en"].rules}
    assert "zh_recording_disclosure" in {r.id for r in packs["zh"].rules}


BROKEN = """\
pack: broken
rules:
  - id: ok_rule
    kind: silence
    min_s: 5
  - id: bad_phrase
    kind: phrase
    mode: required
    phrases: []
  - id: typo
    kind: silense
    min_s: 3
  - id: rate
    kind: speech_rate
    max_wpm: -5
"""


def test_errors_name_file_line_and_field() -> None:
    with pytest.raises(RuleError) as err:
        parse_pack(BROKEN, "qa/broken.yaml")
    text = str(err.value)
    assert "qa/broken.yaml:9: rules[1](id=bad_phrase).phrases:" in text
    assert "qa/broken.yaml:11: rules[2](id=typo).kind: unknown rule kind" in text
    assert "qa/broken.yaml:15: rules[3](id=rate).max_wpm: Input should be greater than 0" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pack: x\nrules:\n  - id: a\n    kind: [\n", "invalid YAML"),
        ("pack: x\npack: y\n", "duplicate key 'pack'"),
        ("- just\n- a list\n", "a rule pack is a mapping"),
        (
            "pack: x\nrules:\n  - id: a\n    kind: silence\n    min_s: 3\n    message: '{nope}'\n",
            "unknown placeholder(s) ['nope']",
        ),
        (
            "pack: x\nrules:\n  - id: A B\n    kind: silence\n    min_s: 3\n",
            "id must be lower-case",
        ),
        (
            "pack: x\nrules:\n  - id: a\n    kind: phrase\n    mode: forbidden\n    phrases: [x]\n"
            "    window: {last_s: 10}\n",
            "last_s is only known when the call ends",
        ),
    ],
)
def test_other_mistakes(text: str, expected: str) -> None:
    with pytest.raises(
        RuleError,
        match=expected.replace("(", r"\(")
        .replace(")", r"\)")
        .replace("[", r"\[")
        .replace("]", r"\]"),
    ):
        parse_pack(text, "x.yaml")


def test_one_bad_file_loads_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("pack: a\nrules:\n  - {id: s, kind: silence, min_s: 4}\n")
    (tmp_path / "b.yaml").write_text("pack: b\nrules:\n  - {id: s, kind: silence, min_s: 4}\n")
    with pytest.raises(RuleError, match="also defined in pack 'a'"):
        load_packs(tmp_path)


def test_rules_check_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", str(BUILTIN_PACKS)]) == 0
    assert "ok: pack default" in capsys.readouterr().out
    (tmp_path / "bad.yaml").write_text(BROKEN)
    assert main(["rules", "check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml:9" in err and "nothing loaded" in err
    assert main(["rules", "check", str(tmp_path / "missing")]) == 1
    assert "no such file or folder" in capsys.readouterr().err
