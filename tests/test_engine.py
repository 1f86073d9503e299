"""The rule engine on transcript fixtures (no audio): each kind fires when it should, only then."""

from qa_rules.engine import RuleEngine
from qa_rules.events import SilenceEnded, SilenceStarted, Utterance, WordTime
from qa_rules.loader import parse_pack


def utt(speaker: str, t: float, text: str, rate: float = 2.5) -> Utterance:
    """An utterance whose words follow each other at ``rate`` words per second."""
    words = []
    for i, w in enumerate(text.split()):
        words.append(WordTime(w, round(t + i / rate, 3), round(t + (i + 1) / rate, 3)))
    return Utterance(speaker, t, words[-1].t_end, text, tuple(words))


def engine(yaml_rules: str) -> RuleEngine:
    return RuleEngine([parse_pack("pack: t\nrules:\n" + yaml_rules, "t.yaml")])


def run(eng: RuleEngine, items: list, end: float) -> list:  # type: ignore[type-arg]
    out = []
    for item in items:
        out += eng.advance(item.t)
        out += eng.feed(item)
    out += eng.finish(end)
    return out


DISCLOSURE = """\
  - id: disclosure
    kind: phrase
    mode: required
    speaker: agent
    window: {first_s: 30}
    phrases: [this call may be recorded]
    severity: critical
"""
FORBIDDEN = """\
  - id: forbidden
    kind: phrase
    mode: forbidden
    speaker: agent
    phrases: [calm down, not my problem]
    cooldown_s: 0
"""


def test_required_phrase_in_window_passes_even_with_asr_slip() -> None:
    eng = engine(DISCLOSURE)
    alerts = run(eng, [utt("agent", 12.0, "Please note this call may be recorder for quality")], 90)
    assert alerts == []
    assert eng.scorecard()[0].status == "passed"


def test_required_phrase_missing_fires_at_window_end() -> None:
    eng = engine(DISCLOSURE)
    alerts = run(
        eng,
        [
            utt("agent", 5.0, "hello how can I help"),
            utt("agent", 40.0, "this call may be recorded"),
        ],
        90,
    )
    assert [(a.rule_id, a.t, a.severity) for a in alerts] == [("disclosure", 30.0, "critical")]


def test_required_phrase_by_the_wrong_speaker_does_not_count() -> None:
    alerts = run(engine(DISCLOSURE), [utt("customer", 5.0, "this call may be recorded")], 60)
    assert [a.rule_id for a in alerts] == ["disclosure"]


def test_forbidden_phrase_fires_at_the_word_with_evidence() -> None:
    eng = engine(FORBIDDEN)
    u = utt("agent", 48.0, "Please calm down, that's not my problem.")
    alerts = run(eng, [utt("agent", 10.0, "I can help you with that"), u], 90)
    assert [a.rule_id for a in alerts] == ["forbidden"]
    a = alerts[0]
    assert a.t == 48.4  # "calm" is the second word
    assert a.evidence["matched"] == "calm down,"
    assert a.evidence["utterance"] == u.text and a.speaker == "agent"
    assert eng.scorecard()[0].status == "failed"


def test_forbidden_phrase_not_fired_by_customer_or_near_miss() -> None:
    alerts = run(
        engine(FORBIDDEN),
        [utt("customer", 3.0, "calm down please"), utt("agent", 9.0, "come down to the store")],
        30,
    )
    assert alerts == []


def test_silence_fires_at_threshold_and_not_for_short_gaps() -> None:
    eng = engine("  - {id: dead_air, kind: silence, min_s: 10, cooldown_s: 0}\n")
    alerts = []
    alerts += eng.feed(SilenceStarted(20.0))
    alerts += eng.advance(25.0)
    alerts += eng.feed(SilenceEnded(20.0, 27.0))  # 7 s: fine
    alerts += eng.feed(SilenceStarted(40.0))
    alerts += eng.advance(49.9)
    assert alerts == []
    alerts += eng.advance(52.0)
    assert [(a.rule_id, a.t) for a in alerts] == [("dead_air", 50.0)]
    alerts += eng.advance(70.0)  # the same silence fires once
    assert len(alerts) == 1


RATE = """\
  - id: rate
    kind: speech_rate
    speaker: agent
    window_s: 10
    max_wpm: 250
    min_words: 20
    cooldown_s: 60
"""


def test_speech_rate_fires_on_fast_stretch_only() -> None:
    normal = utt("agent", 0.0, " ".join(["word"] * 30), rate=2.5)  # 150 wpm
    fast = utt("agent", 40.0, " ".join(["word"] * 40), rate=6.0)  # 360 wpm
    alerts = run(engine(RATE), [normal], 60)
    assert alerts == []
    alerts = run(engine(RATE), [normal, fast], 60)
    assert [a.rule_id for a in alerts] == ["rate"]
    assert alerts[0].t == fast.t_end and alerts[0].evidence["wpm"] > 250


def test_closing_in_last_seconds() -> None:
    rule = """\
  - id: closing
    kind: phrase
    mode: required
    window: {last_s: 30}
    phrases: [anything else I can help]
"""
    early = [utt("agent", 5.0, "is there anything else I can help with")]
    assert [a.rule_id for a in run(engine(rule), early, 100)] == ["closing"]
    late = [utt("agent", 80.0, "is there anything else I can help with")]
    assert run(engine(rule), late, 100) == []


def test_message_template_uses_evidence() -> None:
    eng = engine("  - {id: s, kind: silence, min_s: 5, message: 'Quiet for {duration:.0f} s'}\n")
    eng.feed(SilenceStarted(1.0))
    (alert,) = eng.advance(7.0)
    assert alert.message == "Quiet for 5 s"
