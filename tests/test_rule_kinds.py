"""Each rule kind on transcript fixtures: fires when it should, at the right time, only then."""

from __future__ import annotations

import json

import pytest

from qa_rules.engine import RuleEngine
from qa_rules.events import (
    Alert,
    EmotionObserved,
    EngineInput,
    SilenceEnded,
    SilenceStarted,
    Utterance,
    WordTime,
)
from qa_rules.loader import RuleError, load_texts, parse_pack


def utt(
    speaker: str, t: float, text: str, rate: float = 2.5, words: list[str] | None = None
) -> Utterance:
    """An utterance whose words follow each other at ``rate`` words per second."""
    ws = []
    for i, w in enumerate(words or text.split()):
        ws.append(WordTime(w, round(t + i / rate, 3), round(t + (i + 1) / rate, 3)))
    return Utterance(speaker, t, ws[-1].t_end, text, tuple(ws))


def engine(yaml_rules: str) -> RuleEngine:
    return RuleEngine([parse_pack("pack: t\nrules:\n" + yaml_rules, "t.yaml")])


def _key(x: EngineInput) -> float:
    return x.t_end if isinstance(x, Utterance | SilenceEnded | EmotionObserved) else x.t


def run(eng: RuleEngine, items: list[EngineInput], end: float) -> list[Alert]:
    """Feed inputs the way the pipeline does: in order of when they are known."""
    out: list[Alert] = []
    for item in sorted(items, key=_key):
        out += eng.advance(item.t_end if isinstance(item, SilenceEnded) else item.t)
        out += eng.feed(item)
    out += eng.finish(end)
    return out


def ids(alerts: list[Alert]) -> list[str]:
    return [a.rule_id for a in alerts]


# -- phrase options ------------------------------------------------------------------------
def test_all_of_spread_over_the_call_and_in_order() -> None:
    rules = """\
  - id: both_parts
    kind: phrase
    mode: required
    match: all
    phrases: [terms and conditions, cooling off period]
  - id: ordered
    kind: phrase
    mode: required
    match: in_order
    phrases: [can I confirm your name, can I confirm your address]
"""
    eng = engine(rules)
    alerts = run(
        eng,
        [
            utt("agent", 5, "can I confirm your address please"),
            utt("agent", 20, "you have a cooling off period of fourteen days"),
            utt("agent", 40, "can I confirm your name"),
            utt("agent", 60, "the terms and conditions are on our website"),
        ],
        90,
    )
    # all parts said (any order) -> passes; address before name -> in_order not met
    assert ids(alerts) == ["ordered"]
    assert {o.rule_id: o.status for o in eng.scorecard()} == {
        "both_parts": "passed",
        "ordered": "failed",
    }


def test_distance_between_phrases() -> None:
    rules = """\
  - id: refund_cancel
    kind: phrase
    mode: forbidden
    speaker: customer
    match: all
    within_words: 10
    phrases: [refund, cancel]
    cooldown_s: 0
"""
    near = utt("customer", 5, "if you cannot refund me today then please cancel everything")
    reversed_order = utt("customer", 40, "cancel it and refund me")
    far = utt(
        "customer",
        20,
        "I asked for a refund last month and since then nobody has called me back about "
        "it so maybe I should cancel",
    )
    alerts = run(engine(rules), [near, far, reversed_order], 60)
    assert [a.t for a in alerts][1:] == [41.2]  # the gap counts, in either order ("refund" at 41.2)
    alerts = alerts[:1]
    assert len(alerts) == 1
    a = alerts[0]
    assert a.t == pytest.approx(near.words[8].t, abs=0.01)  # when "cancel" completed it
    assert a.evidence["matched"] == "refund … cancel"


def test_regex_negation_and_unless_near() -> None:
    rules = """\
  - id: promise
    kind: phrase
    mode: forbidden
    regex: ['\\bguarantee(d)?\\b']
    ignore_negated: true
    cooldown_s: 0
  - id: free
    kind: phrase
    mode: forbidden
    phrases: [it is free]
    unless_near: [first month]
    near_words: 4
    cooldown_s: 0
"""
    alerts = run(
        engine(rules),
        [
            utt("agent", 1, "I can't guarantee a delivery date"),
            utt("agent", 10, "it is free for the first month"),
            utt("agent", 20, "the repair is guaranteed by us"),
            utt("agent", 30, "and honestly it is free"),
        ],
        60,
    )
    assert [(a.rule_id, round(a.t)) for a in alerts] == [("promise", 21), ("free", 31)]
    assert alerts[0].evidence["matched"] == "guaranteed"


def test_spoken_numbers_match_digits() -> None:
    rules = """\
  - id: hotline
    kind: phrase
    mode: required
    phrases: [your reference is 4111 20]
"""
    spoken = utt("agent", 3, "okay your reference is four one one one twenty")
    digits = utt("agent", 3, "okay your reference is 4111-20.")
    other = utt("agent", 3, "okay your reference is 4111 21")
    for u, passed in ((spoken, True), (digits, True), (other, False)):
        eng = engine(rules)
        run(eng, [u], 30)
        assert (eng.scorecard()[0].status == "passed") is passed, u.text


# -- Mandarin ------------------------------------------------------------------------------
def test_mandarin_phrase_matches_traditional_and_simplified() -> None:
    simplified_rule = """\
  - id: disclosure_zh
    kind: phrase
    mode: required
    window: {first_s: 30}
    phrases: [本次通话可能会被录音]
"""
    traditional_rule = simplified_rule.replace("本次通话可能会被录音", "本次通話可能會被錄音")
    trad_text = "您好，本次通話可能會被錄音，請問有什麼可以幫您？"
    simp_text = "您好，本次通话可能会被录音，请问有什么可以帮您？"
    for rule in (simplified_rule, traditional_rule):
        for text in (trad_text, simp_text):
            eng = engine(rule)
            alerts = run(eng, [utt("agent", 2, text, words=[text])], 60)
            assert alerts == [], (rule, text)
            assert eng.scorecard()[0].status == "passed"
    eng = engine(simplified_rule)
    alerts = run(
        eng,
        [utt("agent", 2, "您好，请问有什么可以帮您？", words=["您好，请问有什么可以帮您？"])],
        60,
    )
    assert ids(alerts) == ["disclosure_zh"]


def test_mandarin_speech_rate_in_characters_per_minute() -> None:
    rules = """\
  - id: rate_zh
    kind: speech_rate
    max_cpm: 300
    min_words: 20
  - id: rate_en
    kind: speech_rate
    max_wpm: 200
"""
    fast = (
        "您好请问有什么可以帮您我们这边已经为您查询到了订单信息请您稍等一下马上为您处理"  # 40 chars
    )
    chars = list(fast)
    u = Utterance(
        "agent",
        0.0,
        6.0,
        fast,
        tuple(WordTime(c, i * 0.15, (i + 1) * 0.15) for i, c in enumerate(chars)),
        "zh",
    )
    alerts = run(engine(rules), [u], 30)
    assert ids(alerts) == ["rate_zh"]
    assert alerts[0].evidence["unit"] == "cpm"
    assert alerts[0].evidence["cpm"] == pytest.approx(60 * len(fast) / 6.0, abs=1)
    slow = Utterance("agent", 0.0, 12.0, fast, u.words, "zh")
    assert run(engine(rules), [slow], 30) == []


# -- talk over, talk ratio, hold -----------------------------------------------------------
TALK_OVER = """\
  - id: talk_over
    kind: talk_over
    speaker: agent
    min_overlap_s: 1.0
    allowed: 1
"""


def test_talk_over_counts_who_interrupted_whom() -> None:
    customer = utt(
        "customer", 0.0, "so I was trying to explain that the parcel never arrived at my door", 2.0
    )
    agent_over = utt("agent", 4.0, "okay but let me stop you there and check", 2.5)
    yeah = utt("agent", 1.0, "yeah", 2.5)
    customer2 = utt(
        "customer", 20.0, "and the second time it was the same thing again honestly", 2.0
    )
    agent_over2 = utt("agent", 22.0, "right I need you to hold on a second please", 2.5)
    cust_over_agent = utt("customer", 41.0, "no no listen to me", 2.5)
    agent3 = utt("agent", 40.0, "we will send a replacement tomorrow morning first thing", 2.5)
    alerts = run(
        engine(TALK_OVER),
        [customer, agent_over, yeah, customer2, agent_over2, agent3, cust_over_agent],
        60,
    )
    # first interruption allowed, the backchannel ignored, the customer's own not counted
    assert len(alerts) == 1
    a = alerts[0]
    assert a.t == pytest.approx(22.0, abs=0.01)
    assert (a.evidence["speaker"], a.evidence["interrupted"], a.evidence["count"]) == (
        "agent",
        "customer",
        2,
    )
    assert a.evidence["overlap"] >= 1.0


def test_talk_ratio() -> None:
    rules = """\
  - id: share
    kind: talk_ratio
    speaker: agent
    max_share: 0.7
    min_talk_s: 30
"""
    monologue = [utt("agent", t, "word " * 20, 2.0) for t in range(0, 100, 10)]
    reply = [utt("customer", 101, "okay thanks", 2.0)]
    alerts = run(engine(rules), monologue + reply, 120)
    assert ids(alerts) == ["share"]
    assert alerts[0].evidence["share"] > 0.9
    assert alerts[0].t == pytest.approx(monologue[2].t_end, abs=0.01)  # first past 30 s of talk
    balanced = []
    for t in range(0, 100, 20):
        balanced += [utt("agent", t, "word " * 20, 2.0), utt("customer", t + 10, "word " * 18, 2.0)]
    assert run(engine(rules), balanced, 120) == []


def test_hold_announced_too_long_and_unannounced() -> None:
    rules = """\
  - id: hold
    kind: hold
    max_s: 60
    unannounced_s: 30
"""
    announce = utt("agent", 10, "let me put you on hold while I check that")
    end = announce.t_end
    long_hold = [
        announce,
        SilenceStarted(end),
        SilenceEnded(end, end + 75),
        utt("agent", end + 75, "thanks for holding"),
    ]
    alerts = run(engine(rules), long_hold, end + 90)
    assert ids(alerts) == ["hold"]
    assert alerts[0].t == pytest.approx(end + 60, abs=0.01)
    assert alerts[0].evidence["announced"] is True
    short_hold = [
        announce,
        SilenceStarted(end),
        SilenceEnded(end, end + 40),
        utt("agent", end + 40, "thanks for holding"),
    ]
    assert run(engine(rules), short_hold, end + 60) == []
    quiet = [
        utt("agent", 10, "I see"),
        SilenceStarted(11),
        SilenceEnded(11, 50),
        utt("agent", 50, "okay"),
    ]
    alerts = run(engine(rules), quiet, 60)
    assert ids(alerts) == ["hold"] and alerts[0].evidence["announced"] is False
    assert alerts[0].t == pytest.approx(41, abs=0.01)


# -- PII -----------------------------------------------------------------------------------
PII = """\
  - id: pii
    kind: pii
    types: [card_number]
"""


def test_pii_card_number_alerts_masked_and_asks_redaction() -> None:
    eng = engine(PII)
    alerts = run(
        eng,
        [
            utt("customer", 5, "my card number is 4111 1111 1111 1111 expiry next May"),
            utt("customer", 20, "my membership number is 4111 1111 1111 1112"),  # fails Luhn
        ],
        60,
    )
    assert ids(alerts) == ["pii"]
    assert alerts[0].evidence["type"] == "card_number"
    assert "1111 1111" not in json.dumps(alerts[0].to_dict())
    spans = eng.take_redactions()
    assert [(s.speaker, s.word_start, s.word_end) for s in spans] == [("customer", 4, 8)]


def test_pii_card_number_read_over_two_utterances() -> None:
    eng = engine(PII)
    alerts = run(
        eng,
        [
            utt("customer", 5, "it is four one one one one one one one"),
            utt("customer", 10, "one one one one one one one one"),
        ],
        60,
    )
    assert ids(alerts) == ["pii"]
    assert {s.t for s in eng.take_redactions()} >= {5.0 + 2 / 2.5, 10.0}


# -- composite -----------------------------------------------------------------------------
COMPOSITE = """\
  - id: angry
    kind: emotion
    speaker: customer
    index_above: 0.6
  - id: no_apology
    kind: composite
    after: {rule: angry}
    within_s: 30
    when:
      not: {said: [sorry, apologise], speaker: agent}
  - id: cancel_without_offer
    kind: composite
    when:
      all:
        - said: [cancel my account]
          speaker: customer
        - not: {said: [special offer, discount], speaker: agent}
  - id: angry_or_silent
    kind: composite
    window: {first_s: 60}
    when:
      any:
        - emotion: [angry]
          speaker: customer
          min_confidence: 0.8
        - silence: 8
"""


def angry(t: float, index: float = 0.8) -> EmotionObserved:
    return EmotionObserved("customer", t, t + 2, "angry", 0.9, index)


def test_no_apology_within_30_s_after_anger_fires_at_the_deadline() -> None:
    alerts = run(
        engine(COMPOSITE),
        [
            angry(10),
            utt("agent", 20, "I hear you let me look"),
            utt("customer", 50, "I want to cancel my account"),
        ],
        100,
    )
    got = [(a.rule_id, a.t) for a in alerts]
    assert ("angry", 12.0) in got
    assert ("no_apology", 42.0) in got  # the span after the trigger closed without "sorry"
    assert ("cancel_without_offer", 100.0) in got  # decided when the call ended
    assert ("angry_or_silent", 12.0) in got
    no_apology = next(a for a in alerts if a.rule_id == "no_apology")
    assert no_apology.evidence["trigger_t"] == 12.0


def test_apology_in_time_and_offer_made_fire_nothing() -> None:
    alerts = run(
        engine(COMPOSITE),
        [
            angry(10, index=0.7),
            utt("agent", 25, "I am so sorry about that"),
            utt("customer", 50, "I want to cancel my account"),
            utt("agent", 60, "before you go we have a special offer for you"),
        ],
        100,
    )
    assert sorted(ids(alerts)) == ["angry", "angry_or_silent"]


def test_composite_silence_signal_respects_window() -> None:
    items: list[EngineInput] = [utt("agent", 0, "hello"), SilenceStarted(70), SilenceEnded(70, 90)]
    assert "angry_or_silent" not in ids(run(engine(COMPOSITE), items, 100))  # after first 60 s
    items = [utt("agent", 0, "hello"), SilenceStarted(20), SilenceEnded(20, 40)]
    alerts = [a for a in run(engine(COMPOSITE), items, 100) if a.rule_id == "angry_or_silent"]
    assert [a.t for a in alerts] == [28.0]


def test_composite_references_are_checked_at_load() -> None:
    text = """\
pack: t
rules:
  - id: a
    kind: composite
    after: {rule: angri}
    within_s: 10
    when: {said: [sorry]}
  - id: angry
    kind: emotion
    index_above: 0.6
"""
    with pytest.raises(RuleError) as err:
        load_texts({"t.yaml": text})
    assert "t.yaml:3: rules[0](id=a): no rule 'angri' in the packs; did you mean 'angry'?" in str(
        err.value
    )
    loop = """\
pack: t
rules:
  - id: a
    kind: composite
    when: {rule: b}
  - id: b
    kind: composite
    when: {not: {rule: a}}
"""
    with pytest.raises(RuleError, match="cannot loop"):
        load_texts({"t.yaml": loop})
    with pytest.raises(RuleError, match="exactly one of"):
        parse_pack(
            "pack: t\nrules:\n  - id: c\n    kind: composite\n    when: {said: [x], silence: 3}\n",
            "t.yaml",
        )


# -- windows on event kinds ----------------------------------------------------------------
def test_first_and_last_window_on_event_rules() -> None:
    rules = """\
  - id: early_dead_air
    kind: silence
    min_s: 5
    window: {first_s: 60}
    cooldown_s: 0
  - id: late_dead_air
    kind: silence
    min_s: 5
    window: {last_s: 30}
    cooldown_s: 0
"""
    items: list[EngineInput] = [
        utt("agent", 0, "hello"),
        SilenceStarted(10),
        SilenceEnded(10, 20),
        utt("agent", 20, "still there"),
        SilenceStarted(80),
        SilenceEnded(80, 90),
        utt("agent", 90, "still there"),
        SilenceStarted(100),
        SilenceEnded(100, 110),
        utt("agent", 110, "bye"),
    ]
    eng = engine(rules)
    alerts = run(eng, items, 120)
    assert [(a.rule_id, a.t) for a in alerts] == [
        ("early_dead_air", 15.0),
        ("late_dead_air", 105.0),
    ]
    assert {o.rule_id: o.alerts for o in eng.scorecard()} == {
        "early_dead_air": 1,
        "late_dead_air": 1,
    }


# -- hot reload ----------------------------------------------------------------------------
def test_reload_keeps_state_and_new_rules_apply_from_now() -> None:
    v1 = """\
pack: t
rules:
  - id: disclosure
    kind: phrase
    mode: required
    phrases: [this call may be recorded]
  - id: rude
    kind: phrase
    mode: forbidden
    phrases: [calm down]
    cooldown_s: 0
  - id: dead_air
    kind: silence
    min_s: 5
"""
    eng = RuleEngine([parse_pack(v1, "t.yaml")])
    early = [
        utt("agent", 1, "this call may be recorded"),
        utt("agent", 5, "calm down please"),
        utt("agent", 10, "we guarantee it"),
    ]
    fired = []
    for u in early:
        fired += eng.advance(u.t) + eng.feed(u)
    assert ids(fired) == ["rude"]
    v2 = (
        v1.replace(
            "phrases: [this call may be recorded]",
            "phrases: [this call may be recorded, calls are recorded]",
        ).replace("  - id: dead_air\n    kind: silence\n    min_s: 5\n", "")
        + "  - id: promise\n    kind: phrase\n    mode: forbidden\n    phrases: [we guarantee]\n    cooldown_s: 0\n"
    )
    change = eng.reload([parse_pack(v2, "t.yaml")])
    assert change == {"added": ["promise"], "changed": ["disclosure"], "removed": ["dead_air"]}
    late = [utt("agent", 20, "again we guarantee delivery")]
    for u in late:
        fired += eng.advance(u.t) + eng.feed(u)
    fired += eng.finish(30)
    # the changed disclosure learned it was already read; the new rule alerts only from now
    # on, but its breach at 10 s counts in the scorecard, as an audit with it would
    assert [(a.rule_id, a.t) for a in fired] == [("rude", 5.0), ("promise", 20.4)]
    card = {o.rule_id: (o.status, o.alerts) for o in eng.scorecard()}
    assert card == {"disclosure": ("passed", 0), "rude": ("failed", 1), "promise": ("failed", 2)}


def test_reload_after_a_window_closed_keeps_the_failure() -> None:
    rule = """pack: t
rules:
  - id: disclosure
    kind: phrase
    mode: required
    window: {first_s: 30}
    phrases: [this call may be recorded]
"""
    eng = RuleEngine([parse_pack(rule, "t.yaml")])
    assert ids(eng.advance(5) + eng.feed(utt("agent", 5, "hello there")) + eng.advance(45)) == [
        "disclosure"
    ]
    change = eng.reload(
        [
            parse_pack(
                rule.replace("pack: t", "pack: t\ndescription: x").replace(
                    "    kind: phrase", "    message: Read it\n    kind: phrase"
                ),
                "t.yaml",
            )
        ]
    )
    assert change["changed"] == ["disclosure"]
    assert eng.finish(60) == []  # decided already: no second alert
    assert [(o.status, o.alerts) for o in eng.scorecard()] == [("failed", 1)]
