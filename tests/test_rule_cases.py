"""Rule unit tests (``callwatch rules test``): cases files, the runner and its verdicts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qa_rules.cases import (
    Case,
    evaluate,
    load_cases,
    parse_cases,
    pipeline_order,
    run_case,
    run_cases,
)
from qa_rules.events import (
    EmotionObserved,
    RuleOutcome,
    SilenceEnded,
    SilenceStarted,
    Utterance,
)
from qa_rules.loader import BUILTIN_PACKS, RuleError
from qa_rules.schema import packs_for
from qa_rules.scoring import score_of

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "rules" / "default_cases.yaml"

# A call that satisfies every rule of the built-in pack: each case below breaks one thing.
GOOD = """\
      - {speaker: agent, t: 1, text: "Thank you for calling Acme, this call may be recorded. How can I help you?"}
      - {speaker: customer, t: 7, t_end: 9, text: "I'd like to check my bill."}
      - {speaker: agent, t: 9.5, text: "Sure, can you confirm your date of birth?"}
      - {speaker: customer, t: 13, t_end: 15, text: "Fourth of May, nineteen eighty."}
      - {speaker: agent, t: 16, text: "Thanks, it is paid. Is there anything else I can help you with?"}
"""


def one(body: str, packs: Any = None) -> Case:
    (case,) = parse_cases("cases:\n" + body, "t.yaml", packs)
    return case


def test_passing_case(packs: Any) -> None:
    case = one(f"  - name: good call\n    events:\n{GOOD}    only_expected: true\n", packs)
    result = run_case(packs, case)
    assert result.passed, result.failures
    assert result.alerts == []
    assert result.score == 100.0
    assert result.to_dict()["line"] == 2


def test_failing_case_says_what_was_expected_and_what_happened(packs: Any) -> None:
    case = one(
        f"""\
  - name: wrong expectations
    events:
{GOOD}    expect:
      - {{rule: recording_disclosure, at: 30}}
      - {{rule: forbidden_language, count: 1}}
""",
        packs,
    )
    result = run_case(packs, case)
    assert not result.passed
    assert result.failures == [
        "expected an alert from recording_disclosure at 30±1 s; got none (it did not fire)",
        "expected 1 alert from forbidden_language; got none (it did not fire)",
    ]


def test_failure_names_where_the_rule_did_fire(packs: Any) -> None:
    case = one(
        """\
  - name: disclosure late
    events:
      - {speaker: agent, t: 1, text: "Thank you for calling, how can I help you?"}
      - {speaker: agent, t: 40, text: "This call may be recorded."}
    expect:
      - {rule: recording_disclosure, at: 45}
      - {rule: recording_disclosure, at: 30, message_contains: "read it now please"}
""",
        packs,
    )
    first, second = run_case(packs, case).failures
    assert first.startswith(
        "expected an alert from recording_disclosure at 45±1 s; got none (it fired at 30 s: "
        '"Read the recording disclosure now'
    )
    assert second.startswith(
        'expected an alert from recording_disclosure at 30±1 s saying "read it now please"; '
        "got none (it fired at 30 s:"
    )


def test_expect_no_violated(packs: Any) -> None:
    case = one(
        """\
  - name: rude agent
    events:
      - {speaker: agent, t: 12, text: "Please calm down, I will help you."}
    expect_no: [forbidden_language]
""",
        packs,
    )
    result = run_case(packs, case)
    assert not result.passed
    assert result.failures == [
        "forbidden_language fired at 12.35 s but was listed in expect_no: "
        '"Agent said "calm down," (forbidden: "calm down")"'
    ]


def test_only_expected_fails_on_any_other_alert(packs: Any) -> None:
    body = f"""\
  - name: dead air
    events:
{GOOD}      - {{silence: 12, t: 21}}
    expect: [{{rule: dead_air, at: 31}}]
    only_expected: true
"""
    assert run_case(packs, one(body, packs)).passed  # dead_air is the only alert: expected

    rude = body.replace(
        "    expect:",
        '      - {speaker: agent, t: 33, text: "Sorry, please calm down."}\n    expect:',
    )
    result = run_case(packs, one(rude, packs))
    assert result.failures == [
        "forbidden_language fired at 33.7 s but no expect matches it (only_expected is on): "
        '"Agent said "calm down." (forbidden: "calm down")"'
    ]
    lax = rude.replace("    only_expected: true\n", "")
    assert run_case(packs, one(lax, packs)).passed


def test_scorecard_and_score(packs: Any) -> None:
    body = f"""\
  - name: dead air costs the call
    events:
{GOOD}      - {{silence: 12, t: 21}}
    scorecard: {{dead_air: failed, greeting: passed, caller_angry: passed}}
"""
    result = run_case(packs, one(body + "    score: {min: 80, max: 90}\n", packs))
    assert result.passed, result.failures
    by_id = {o.rule_id: o for o in result.scorecard}
    assert by_id["dead_air"].status == "failed"
    assert result.score == score_of(result.scorecard)
    weights = [o.weight for o in result.scorecard if o.status in ("passed", "failed")]
    assert result.score == round(100 * (sum(weights) - by_id["dead_air"].weight) / sum(weights), 1)

    wrong = body.replace("dead_air: failed", "dead_air: passed") + "    score: 100\n"
    failures = run_case(packs, one(wrong, packs)).failures
    assert failures == [
        "scorecard: expected dead_air to be passed, but it was failed (1 alert)",
        f"score is {result.score:g}; expected 100",
    ]
    failures = run_case(packs, one(body + "    score: {min: 95}\n", packs)).failures
    assert failures == [f"score is {result.score:g}; expected at least 95"]


def test_score_of_matches_the_pipeline_formula() -> None:
    lines = [
        RuleOutcome("a", "", "passed", 3, 0),
        RuleOutcome("b", "", "failed", 1, 2),
        RuleOutcome("c", "", "not_applicable", 5, 0),
        RuleOutcome("d", "", "failed", 0, 1),
    ]
    assert score_of(lines) == 75.0
    assert score_of([]) == 100.0
    assert score_of([RuleOutcome("z", "", "failed", 0, 1)]) == 100.0


def test_counts_speaker_and_tolerance(packs: Any) -> None:
    case = one(
        """\
  - name: two forbidden phrases
    events:
      - {speaker: customer, t: 3, t_end: 5, text: "Don't tell me to calm down"}
      - {speaker: agent, t: 10, text: "Calm down please."}
      - {speaker: agent, t: 20, text: "That is not my problem."}
    expect:
      - {rule: forbidden_language, count: 2}
      - {rule: forbidden_language, speaker: agent, at: 10.2, tolerance_s: 0.5, count: 1}
      - {rule: forbidden_language, at: 3, count: 0}
      - {rule: forbidden_language, speaker: customer}
""",
        packs,
    )
    assert run_case(packs, case).failures == [
        "expected an alert from forbidden_language about customer; got none (it fired at "
        '10 s (agent): "Agent said "Calm down" (forbidden: "calm down")"; at 20.7 s (agent): '
        '"Agent said "not my problem." (forbidden: "not my problem")")'
    ]


def test_events_are_processed_in_time_order_whatever_the_file_order(packs: Any) -> None:
    case = one(
        """\
  - name: silence listed first
    events:
      - {silence: 15, t: 22}
      - {speaker: agent, t: 40, text: "Thanks for waiting."}
      - {speaker: agent, t: 1, text: "Thank you for calling, this call may be recorded. How can I help you?"}
      - {speaker: customer, t: 20, t_end: 22, text: "My bill please."}
    expect: [{rule: dead_air, at: 32, count: 1}]
    expect_no: [greeting, recording_disclosure]
""",
        packs,
    )
    result = run_case(packs, case)
    assert result.passed, result.failures
    fed = evaluate(packs, case.inputs(), case.end()).inputs
    assert [type(x).__name__ for x in fed] == [
        "Utterance",
        "Utterance",
        "SilenceStarted",
        "SilenceEnded",
        "Utterance",
    ]
    assert [(a.rule_id, a.t) for a in result.alerts if a.rule_id == "dead_air"] == [
        ("dead_air", 32.0)
    ]


def test_clock_waits_for_an_utterance_still_going_on(packs: Any) -> None:
    """A long agent turn ends after a customer's short interjection: the interjection is
    known first, but the clock must not pass the agent's greeting before it is fed."""
    case = one(
        """\
  - name: barge-in
    events:
      - {speaker: agent, t: 2, t_end: 24, text: "Thank you for calling Acme, this call may be recorded, how can I help you today, I see you are calling about your bill"}
      - {speaker: customer, t: 21, t_end: 22, text: "Yes."}
    expect_no: [greeting, recording_disclosure]
""",
        packs,
    )
    result = run_case(packs, case)
    assert result.passed, result.failures
    assert [type(x) for x in result_inputs(packs, case)] == [Utterance, Utterance]
    assert result_inputs(packs, case)[0].speaker == "customer"  # released first (ends first)


def result_inputs(packs: Any, case: Case) -> list[Any]:
    return evaluate(packs, case.inputs(), case.end()).inputs


def test_pipeline_order_keys() -> None:
    u = Utterance("agent", 0.0, 5.0, "hello")
    e = EmotionObserved("agent", 0.0, 5.0, "neutral", 0.9, 0.1, "hello")
    s0, s1 = SilenceStarted(5.0), SilenceEnded(5.0, 9.0)
    v = Utterance("customer", 9.0, 10.0, "hi")
    assert pipeline_order([v, s1, e, s0, u]) == [u, e, s0, s1, v]


def test_estimated_word_times_and_emotion_defaults(packs: Any) -> None:
    case = one(
        """\
  - name: timings
    language: en
    events:
      - {speaker: customer, t: 10, text: "I am really angry"}
      - {emotion: angry, speaker: customer, t: 10, anger_index: 0.8}
      - {emotion: frustrated, speaker: agent, t: 30}
      - {speaker: agent, t: 40, t_end: 42, text: "one two three four"}
      - {speaker: agent, t: 50, text: "您好，请问有什么可以帮您", language: zh}
""",
        packs,
    )
    u, e, e2, u2, zh = case.inputs()
    assert isinstance(u, Utterance) and u.t_end == pytest.approx(11.4)  # 4 words x 0.35 s
    assert [w.t for w in u.words] == pytest.approx([10, 10.35, 10.7, 11.05])
    assert isinstance(e, EmotionObserved)
    assert (e.t_end, e.text, e.confidence) == (u.t_end, "I am really angry", 1.0)
    assert isinstance(e2, EmotionObserved) and e2.t_end == 32.0 and e2.anger_index == 0.0
    assert isinstance(u2, Utterance) and [w.t_end for w in u2.words] == [40.5, 41, 41.5, 42]
    assert isinstance(zh, Utterance) and zh.language == "zh"
    assert len(zh.words) == 11 and zh.t_end == pytest.approx(50 + 11 * 0.25)
    assert zh.words[1].w == "好，"  # punctuation sticks to the character before it
    assert case.end() == pytest.approx(zh.t_end + 1)


# -- malformed cases files -----------------------------------------------------------------
BROKEN = """\
cases:
  - name: typo in a field
    events:
      - {speker: agent, t: 1, text: "hello"}
      - {speaker: agent, t: -1, text: "hello"}
      - {speaker: agnet, t: 2, text: "hello"}
      - {t: 3}
      - {silence: 5, t: 2, t_end: 3}
    expect:
      - {rule: greeting, att: 20}
    scorecard: {greeting: passd}
"""


def test_schema_errors_name_file_line_and_field() -> None:
    with pytest.raises(RuleError) as err:
        parse_cases(BROKEN, "qa/cases.yaml")
    text = str(err.value)
    assert "qa/cases.yaml:4: cases[0](name=typo in a field).events[0].speker: Extra inputs" in text
    assert "qa/cases.yaml:5: cases[0](name=typo in a field).events[1].t: Input should be" in text
    assert (
        "qa/cases.yaml:6: cases[0](name=typo in a field).events[2].speaker: speaker must be" in text
    )
    assert (
        "qa/cases.yaml:7: cases[0](name=typo in a field).events[3]: an event is an utterance"
        in text
    )
    assert "qa/cases.yaml:8: cases[0](name=typo in a field).events[4].t_end: Extra inputs" in text
    assert "qa/cases.yaml:10: cases[0](name=typo in a field).expect[0].att: Extra inputs" in text
    assert (
        "qa/cases.yaml:11: cases[0](name=typo in a field).scorecard.greeting: Input should be"
        in text
    )


def test_unknown_rule_ids_suggest_the_closest(packs: Any) -> None:
    text = """\
cases:
  - name: typos
    events: []
    expect:
      - rule: gretting
    expect_no:
      - dead_air
      - dead_aire
    scorecard:
      zzz_nothing_like_it: passed
"""
    cases = parse_cases(text, "c.yaml")  # no packs: only the file's own shape is checked
    with pytest.raises(RuleError) as err:
        run_cases(packs, cases)
    assert [str(i) for i in err.value.issues] == [
        "c.yaml:5: cases[0](name=typos).expect[0].rule: no rule 'gretting' in the packs under "
        "test; did you mean 'greeting'?",
        "c.yaml:8: cases[0](name=typos).expect_no[1]: no rule 'dead_aire' in the packs under "
        "test; did you mean 'dead_air'?",
        "c.yaml:10: cases[0](name=typos).scorecard.zzz_nothing_like_it: no rule "
        "'zzz_nothing_like_it' in the packs under test (they have: "
        + ", ".join(sorted(r.id for p in packs_for(packs, "en") for r in p.rules))
        + ")",
    ]
    with pytest.raises(RuleError, match="did you mean 'greeting'"):
        parse_cases(text, "c.yaml", packs)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cases:\n  - name: x\n    events: [\n", "c.yaml:4: invalid YAML"),
        (
            "cases:\n  - name: x\n    name: y\n",
            "c.yaml:3: invalid YAML: duplicate key 'name' (first on line 2)",
        ),
        ("- a list\n", "c.yaml:1: a cases file is a mapping with a 'cases' list"),
        ("cases: []\n", "c.yaml:1: cases: List should have at least 1 item"),
        ("cases:\n  - name: a\n  - name: a\n", "c.yaml:3: cases[1](name=a).name: another case"),
        (
            "cases:\n  - name: a\n    events:\n      - {speaker: agent, t: 5, text: a b c d e}\n"
            "      - {silence: 10, t: 6}\n",
            "c.yaml:5: cases[0](name=a).events[1]: silence 6-16 s overlaps the agent's utterance "
            "5-6.75 s (events[0]) (its end is estimated",
        ),
        (
            "cases:\n  - name: a\n    duration_s: 3\n    events:\n"
            "      - {speaker: agent, t: 5, t_end: 6, text: hi}\n",
            "c.yaml:3: cases[0](name=a).duration_s: the call ends (3 s) before its last event",
        ),
        (
            "cases:\n  - name: a\n    events:\n      - {speaker: agent, t: 5, t_end: 4, text: hi}\n",
            "c.yaml:4: cases[0](name=a).events[0].t_end: t_end (4) must be after t (5)",
        ),
        ("cases:\n  - name: a\n    score: {min: 90, max: 80}\n", "min must not be above max"),
    ],
)
def test_other_mistakes(text: str, expected: str) -> None:
    with pytest.raises(RuleError) as err:
        parse_cases(text, "c.yaml")
    assert expected in str(err.value)


def test_load_cases_folder_and_missing(tmp_path: Path, packs: Any) -> None:
    (tmp_path / "a.yaml").write_text(f"cases:\n  - name: a\n    events:\n{GOOD}")
    (tmp_path / "b.yml").write_text("cases:\n  - name: b\n    expect_no: [dead_air]\n")
    cases = load_cases(tmp_path, packs)
    assert [(c.name, Path(c.file).name, c.line) for c in cases] == [
        ("a", "a.yaml", 2),
        ("b", "b.yml", 2),
    ]
    with pytest.raises(RuleError, match="no such file or folder"):
        load_cases(tmp_path / "nope.yaml")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuleError, match=r"no \*\.yaml cases files"):
        load_cases(tmp_path / "empty")


def test_example_cases_pass_against_the_builtin_packs(packs: Any) -> None:
    cases = load_cases(EXAMPLE, packs)
    assert len(cases) >= 8
    results = run_cases(packs, cases)
    failed = {r.name: r.failures for r in results if not r.passed}
    assert not failed
    fired = {a.rule_id for r in results for a in r.alerts}
    assert {
        "greeting",
        "recording_disclosure",
        "identity_verification",
        "forbidden_language",
        "closing",
        "dead_air",
        "agent_speech_rate",
        "caller_angry",
    } <= fired


# -- the CLI -------------------------------------------------------------------------------
def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "assist.cli", "rules", "test", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_cli_pass_and_fail(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(f"cases:\n  - name: good call\n    events:\n{GOOD}    only_expected: true\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"cases:\n  - name: expects dead air\n    events:\n{GOOD}"
        "    expect: [{rule: dead_air, at: 30}]\n"
    )

    ok = cli(str(BUILTIN_PACKS), "--cases", str(good), "--cases", str(EXAMPLE))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("PASS good call\n")
    n = 1 + len(load_cases(EXAMPLE))
    assert ok.stdout.rstrip().endswith(f"{n} cases: {n} passed, 0 failed")

    fail = cli(str(BUILTIN_PACKS), "--cases", str(good), "--cases", str(bad))
    assert fail.returncode == 1
    lines = fail.stdout.splitlines()
    assert lines[0] == "PASS good call"
    assert lines[1] == f"FAIL expects dead air  ({bad}:2)"
    assert lines[2] == "    expected an alert from dead_air at 30±1 s; got none (it did not fire)"
    assert lines[3] == "    no alerts fired"
    assert lines[-1] == "2 cases: 1 passed, 1 failed"

    as_json = cli(str(BUILTIN_PACKS), "--cases", str(tmp_path), "--format", "json")
    assert as_json.returncode == 1
    doc = json.loads(as_json.stdout)
    assert doc["summary"] == {"cases": 2, "passed": 1, "failed": 1}
    assert [c["name"] for c in doc["cases"]] == ["expects dead air", "good call"]
    assert doc["cases"][0]["failures"] == [
        "expected an alert from dead_air at 30±1 s; got none (it did not fire)"
    ]
    assert doc["cases"][1]["score"] == 100.0


def test_cli_reports_bad_cases_and_bad_packs(tmp_path: Path) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text("cases:\n  - name: x\n    expect:\n      - {rule: gretting}\n")
    res = cli(str(BUILTIN_PACKS), "--cases", str(bad))
    assert res.returncode == 1
    assert f"error: {bad}:4: cases[0](name=x).expect[0].rule: no rule 'gretting'" in res.stderr
    assert "did you mean 'greeting'?" in res.stderr
    assert res.stdout == ""

    packs = tmp_path / "packs"
    packs.mkdir()
    (packs / "p.yaml").write_text("pack: p\nrules:\n  - {id: s, kind: silense, min_s: 3}\n")
    res = cli(str(packs), "--cases", str(EXAMPLE))
    assert res.returncode == 1
    assert f"{packs / 'p.yaml'}:3:" in res.stderr
    assert "nothing loaded" in res.stderr
