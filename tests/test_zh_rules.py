"""The Mandarin rule pack (qa_rules/packs/zh.yaml) on transcripts shaped like the Mandarin ASR's.

Utterances are built the way the pipeline builds them for language "zh": simplified text
with its punctuation, one word per Han character with its own time, punctuation attached
to the word before it. Each rule of the pack fires on the utterance that breaks it and
stays quiet on clean ones; traditional and simplified script, Chinese number words and
negation are checked at the matcher and at the engine.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from assist.cli import main as cli_main
from qa_rules.cases import evaluate, load_cases, run_cases
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
from qa_rules.loader import BUILTIN_PACKS, load_packs, parse_pack
from qa_rules.pii import cn_id_check_char, detect, luhn_ok, scrub_text
from qa_rules.schema import KINDS, PhraseRule, RulePack
from qa_rules.text import (
    PhraseIndex,
    TokenSeq,
    find_all,
    find_phrase,
    is_cjk,
    join_words,
    negated,
    to_simplified,
    tokens,
)
from tests.conftest import REPO, shared

ZH_PACK = BUILTIN_PACKS / "zh.yaml"
ZH_CASES = REPO / "examples" / "rules" / "zh_cases.yaml"
_PIECE_RE = re.compile(r"[\u3400-\u9fff]|[A-Za-z0-9]+|[^\sA-Za-z0-9\u3400-\u9fff]+")


@pytest.fixture(scope="module")
def zh() -> list[RulePack]:
    return load_packs(ZH_PACK)


def zh_utt(speaker: str, t: float, text: str, cpm: float = 240.0) -> Utterance:
    """An utterance as the Mandarin ASR gives it: simplified, one word per character at
    ``cpm`` characters a minute, punctuation attached to the word before it."""
    text = to_simplified(text)
    words: list[str] = []
    for p in _PIECE_RE.findall(text):
        if words and not (is_cjk(p) or p.isalnum()):
            words[-1] += p
        else:
            words.append(p)
    step = 60.0 / cpm
    timed = tuple(
        WordTime(w, round(t + i * step, 3), round(t + (i + 1) * step, 3))
        for i, w in enumerate(words)
    )
    return Utterance(speaker, t, timed[-1].t_end, text, timed, "zh")


# A compliant call: greeting, disclosure and identity check early, closing at the end.
CLEAN: list[tuple[str, float, str]] = [
    ("agent", 1, "您好，很高兴为您服务，请问有什么可以帮您？"),
    ("customer", 6, "你好，我想查一下我上个月的账单。"),
    ("agent", 10, "好的。为了保证服务质量，本次通话可能会被录音。请您提供一下身份证后四位。"),
    ("customer", 19, "幺二三叉。"),
    ("agent", 21, "谢谢，核实通过。您上个月的账单是一百二十八元，已经全部缴清。"),
    ("customer", 30, "好的，谢谢。"),
    ("agent", 32, "不好意思让您久等了，请问还有其他问题吗？"),
    ("customer", 37, "没有了，再见。"),
    ("agent", 39, "感谢您的来电，祝您生活愉快，再见。"),
]


def call(lines: Sequence[tuple[str, float, str]], cpm: float = 240.0) -> list[EngineInput]:
    return [zh_utt(s, t, text, cpm) for s, t, text in lines]


def fired(alerts: list[Alert], rule_id: str) -> list[Alert]:
    return [a for a in alerts if a.rule_id == rule_id]


def replaced(t: float, text: str | None) -> list[tuple[str, float, str]]:
    """The clean call with the agent line at ``t`` said differently (or not at all)."""
    out: list[tuple[str, float, str]] = []
    for s, tt, line in CLEAN:
        if tt == t:
            if text is not None:
                out.append((s, tt, text))
        else:
            out.append((s, tt, line))
    return out


# -- the pack ---------------------------------------------------------------------------------
def test_zh_pack_loads_next_to_the_english_pack() -> None:
    packs = {p.pack: p for p in load_packs(BUILTIN_PACKS)}  # ids are unique across packs
    assert {"default", "zh"} <= set(packs)
    zh, en = packs["zh"], packs["default"]
    assert zh.language == "zh" and en.language == "en"
    ids = [r.id for r in zh.rules]
    assert all(i.startswith("zh_") for i in ids)
    assert not set(ids) & {r.id for r in en.rules}
    assert {r.kind for r in zh.rules} == set(KINDS)
    assert {
        "zh_greeting",
        "zh_recording_disclosure",
        "zh_identity_verification",
        "zh_forbidden_language",
        "zh_closing",
        "zh_dead_air",
        "zh_agent_speech_rate",
        "zh_sensitive_numbers",
        "zh_caller_angry",
    } <= set(ids)
    for r in zh.rules:  # written for a Chinese-speaking QA team
        assert any(is_cjk(c) for c in r.description), r.id
        assert any(is_cjk(c) for c in r.message), r.id
        assert all(any(is_cjk(c) for c in p) for p in r.prompt), r.id
    assert cli_main(["rules", "check", str(ZH_PACK)]) == 0


def test_a_clean_mandarin_call_raises_nothing(zh: list[RulePack]) -> None:
    ev = evaluate(zh, call(CLEAN))
    assert ev.alerts == []
    assert ev.score == 100.0
    assert {o.status for o in ev.scorecard} == {"passed"}


# -- required phrases -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("t", "text", "rule_id", "at"),
    [
        (1, "您好，我是客服小王。", "zh_greeting", 20.0),
        (10, "好的，请您提供一下身份证后四位。", "zh_recording_disclosure", 30.0),
        (10, "好的。为了保证服务质量，本次通话可能会被录音。", "zh_identity_verification", 50.0),
        (32, "不好意思让您久等了。", "zh_closing", 50.0),
    ],
)
def test_each_required_rule_fires_when_its_line_is_missing(
    zh: list[RulePack], t: float, text: str, rule_id: str, at: float
) -> None:
    ev = evaluate(zh, call(replaced(t, text)), duration_s=50.0)
    assert [(a.rule_id, a.t) for a in ev.alerts] == [(rule_id, at)]
    assert any(is_cjk(c) for c in ev.alerts[0].message)


@pytest.mark.parametrize(
    "line",
    [
        "本次通话可能会被录音。",
        "为了保证服务质量，您的通话将被录音。",
        "为了提高服务质量，本次通话将会被录音，请问有什么可以帮您？",
        "温馨提示，通话过程将被录音。",
        "您的来电将被录音。",
        "本次通話可能會被錄音。",  # traditional script
        "本次通话可能会被路音。",  # an ASR slip (录 -> 路): fuzzy
        "本 次 通 话 可 能 会 被 录 音",  # spaces between characters
    ],
)
def test_real_disclosure_phrasings_count(zh: list[RulePack], line: str) -> None:
    lines = replaced(10, "好的。" + line + "请您提供一下身份证后四位。")
    alerts = evaluate(zh, call(lines)).alerts
    assert fired(alerts, "zh_recording_disclosure") == [], line


@pytest.mark.parametrize(
    "line",
    [
        "本次通话不会被录音。",  # the negation sits inside the phrase
        "这个电话没有录音。",
        "您放心，通话不会被录下来。",
        "我们会保证服务质量。",
    ],
)
def test_what_is_not_a_disclosure(zh: list[RulePack], line: str) -> None:
    lines = replaced(10, "好的。" + line + "请您提供一下身份证后四位。")
    alerts = evaluate(zh, call(lines)).alerts
    assert [a.t for a in fired(alerts, "zh_recording_disclosure")] == [30.0], line


@pytest.mark.parametrize(
    "line",
    [
        "我先核实一下您的身份。",
        "麻烦您提供一下身份证号码后四位。",
        "需要验证您的身份，请问机主姓名是？",
        "請提供身份證後四位。",  # traditional, 四 as a number word on both sides
        "请提供身份证后4位。",  # digits where the phrase has 四
    ],
)
def test_identity_checks(zh: list[RulePack], line: str) -> None:
    lines = replaced(10, "好的。本次通话可能会被录音。" + line)
    alerts = evaluate(zh, call(lines), duration_s=50.0).alerts
    assert fired(alerts, "zh_identity_verification") == [], line


# -- forbidden phrases ------------------------------------------------------------------------
FORBIDDEN = [
    ("这不关我的事，扣费是系统扣的。", "不关我的事"),
    ("你听不懂吗？我说的很清楚了。", "你听不懂吗"),
    ("这个我没办法，规定就是这样。", "我没办法"),
    ("这个我没有办法。", "我没办法"),  # fuzzy: one character more
    ("爱打不打。", "爱打不打"),
    ("那你自己看着办吧。", "你自己看着办"),
    ("我已经跟您说过了。", "我已经跟您说过了"),  # the exact item, not the fuzzy 你 one
    ("有本事你去投诉啊。", "有本事你去投诉"),
    ("你有完没完？", "你有完没完"),
    ("這不關我的事。", "不关我的事"),  # traditional transcript
]


@pytest.mark.parametrize(("line", "phrase"), FORBIDDEN)
def test_forbidden_phrases_fire_at_the_words_said(
    zh: list[RulePack], line: str, phrase: str
) -> None:
    lines = [*CLEAN[:4], ("agent", 21, line), *CLEAN[5:]]
    (a,) = fired(evaluate(zh, call(lines)).alerts, "zh_forbidden_language")
    assert a.speaker == "agent" and a.evidence["phrase"] == phrase
    u = zh_utt("agent", 21, line)
    words = a.evidence["words"]
    assert a.t == words[0]["t"] > 21.0 or line.startswith(phrase)
    said = "".join(re.sub(r"[^\u3400-\u9fff]", "", w["w"]) for w in words)
    assert said in "".join(c for c in u.text if is_cjk(c))  # the characters that were said
    assert len(said) >= len(tokens(phrase)) - 1
    assert "坐席说了" in a.message


def test_forbidden_phrases_only_count_for_the_agent(zh: list[RulePack]) -> None:
    lines = [*CLEAN[:4], ("customer", 21, "你听不懂吗？这不关我的事，你自己看着办！"), *CLEAN[5:]]
    assert fired(evaluate(zh, call(lines)).alerts, "zh_forbidden_language") == []


@pytest.mark.parametrize(
    "line",
    [
        "不好意思，让您久等了。",
        "没问题，我马上帮您办理。",
        "我有办法帮您解决这个问题。",
        "您先别着急，我帮您看一下。",
        "这个业务我可以帮您办理，您看可以吗？",
        "我跟您说一下具体的办理流程。",
        "如果您不满意，可以拨打我们的投诉电话。",
    ],
)
def test_polite_agent_lines_are_not_forbidden(zh: list[RulePack], line: str) -> None:
    lines = [*CLEAN[:4], ("agent", 21, line), *CLEAN[5:]]
    assert evaluate(zh, call(lines)).alerts == [], line


# -- dead air, holds, pace --------------------------------------------------------------------
def test_dead_air_and_announced_holds(zh: list[RulePack]) -> None:
    lines = [
        *call(CLEAN[:3]),
        zh_utt("agent", 19, "我帮您查一下。"),
        SilenceStarted(21.0),
        SilenceEnded(21.0, 34.0),
        zh_utt("agent", 34, "查到了。请您稍等，我帮您申请退费。"),
        SilenceStarted(38.5),
        SilenceEnded(38.5, 60.0),
        *call([(s, t + 40, x) for s, t, x in CLEAN[5:]]),
    ]
    alerts = [a for a in evaluate(zh, lines).alerts if a.rule_id != "zh_agent_talk_share"]
    assert [(a.rule_id, a.t) for a in alerts] == [("zh_dead_air", 31.0)]
    assert "静音 10 秒" in alerts[0].message
    long_hold = [*lines[:7], SilenceStarted(38.5), SilenceEnded(38.5, 110.0)]
    alerts = evaluate(zh, long_hold, duration_s=120).alerts
    assert ("zh_long_hold", 98.5) in [(a.rule_id, a.t) for a in alerts]
    assert "zh_dead_air" not in {a.rule_id for a in alerts if a.t > 38}


def agent_talking(cpm: float, seconds: float = 40.0) -> list[EngineInput]:
    """The agent explaining terms at ``cpm`` characters a minute, 20 characters a line,
    with the customer's acknowledgements in between."""
    text = "在办理之前我需要跟您说明一下具体的合约条款"  # 20 characters
    out: list[EngineInput] = []
    t = 0.0
    while t < seconds:
        u = zh_utt("agent", t, text, cpm)
        out.append(u)
        out.append(zh_utt("customer", u.t_end + 0.3, "嗯，好的。"))
        t = u.t_end + 2.0
    return out


@pytest.mark.parametrize(("cpm", "alerts"), [(130, 0), (200, 0), (270, 0), (330, 0), (400, 1)])
def test_speech_rate_in_characters_per_minute(zh: list[RulePack], cpm: float, alerts: int) -> None:
    """Real agent-style Mandarin is 220-300 characters a minute of speech (docs/rules.md);
    the default alerts only when the agent is clearly faster than that (above 350)."""
    got = fired(evaluate(zh, agent_talking(cpm)).alerts, "zh_agent_speech_rate")
    assert len(got) == alerts, [a.evidence for a in got]
    for a in got:
        assert a.evidence["unit"] == "cpm" and a.evidence["cpm"] == pytest.approx(cpm, rel=0.02)
        assert a.evidence["wpm"] is None
        assert a.message == f"请放慢语速：您现在每分钟约 {a.evidence['cpm']:.0f} 字"


def test_a_stricter_team_can_coach_toward_150(zh: list[RulePack]) -> None:
    """The training guideline (120-150) as a rule: fires at 200, not at 130."""
    strict = parse_pack(
        ZH_PACK.read_text(encoding="utf-8").replace("max_cpm: 350", "max_cpm: 150"), "zh.yaml"
    )
    for cpm, n in ((130, 0), (200, 1)):
        got = fired(evaluate([strict], agent_talking(cpm)).alerts, "zh_agent_speech_rate")
        assert len(got) == n, cpm


def test_english_speech_does_not_count_against_the_cpm_rule(zh: list[RulePack]) -> None:
    fast = "before we go ahead I need to read you the terms of the contract right now " * 2
    lines: list[EngineInput] = []
    t = 0.0
    for _ in range(6):
        words = fast.split()
        step = 60.0 / 400  # 400 words a minute
        wt = tuple(WordTime(w, t + i * step, t + (i + 1) * step) for i, w in enumerate(words))
        lines.append(Utterance("agent", t, wt[-1].t_end, fast, wt, "en"))
        t = wt[-1].t_end + 1
    assert fired(evaluate(zh, lines).alerts, "zh_agent_speech_rate") == []


# -- personal data read out in Chinese digits -------------------------------------------------
_ZH_DIGIT = dict(zip("0123456789", "零幺二三四五六七八九", strict=True))


def spoken(digits: str, two: str = "二") -> str:
    """Digits as read over the phone: 幺 for 1, ``two`` for 2, X as 叉."""
    return "".join(_ZH_DIGIT.get(d, "叉").replace("二", two) for d in digits)


def resident_id(first17: str) -> str:
    return first17 + cn_id_check_char(first17)


def luhn_complete(prefix: str) -> str:
    return next(prefix + str(d) for d in range(10) if luhn_ok(prefix + str(d)))


def test_number_words_become_digits() -> None:
    assert tokens("一三八幺二三四五六七八") == ["13812345678"]
    assert tokens("两万三") == ["23000"]
    assert tokens("二零二四年") == ["2024", "年"]
    assert tokens("一百零五") == ["105"]
    assert tokens("后四位") == tokens("后4位") == tokens("後四位") == ["后", "4", "位"]
    assert tokens("两个人") == ["2", "个", "人"]


def test_a_mobile_number_read_in_chinese_digits_is_found_and_masked(
    zh: list[RulePack],
) -> None:
    engine = RuleEngine(zh)
    u = zh_utt("customer", 5, "我的手机号是幺三八，幺二三四，五六七八。")
    (a,) = engine.feed(u)
    assert a.rule_id == "zh_sensitive_numbers" and a.evidence["type"] == "cn_mobile"
    assert a.evidence["masked"] == "•••••••5678" and "13812345678" not in a.message
    (span,) = engine.take_redactions()
    redacted = [w.w for w in u.words[span.word_start : span.word_end]]
    assert "".join(redacted) == "幺三八，幺二三四，五六七八。"  # exactly the digits
    assert (span.t, span.t_end) == (u.words[6].t, u.words[-1].t_end)
    assert scrub_text("我的手机号是幺三八幺二三四五六七八") == "我的手机号是[cn_mobile]"
    # an American number in English is not a Chinese mobile number (still long digits)
    assert [h.kind for h in detect(TokenSeq.from_text("call 15551234567"))] == ["digits"]


def test_a_resident_id_read_with_yao_liang_and_cha(zh: list[RulePack]) -> None:
    number = resident_id("11010519491231002")  # check character X
    assert number[-1] == "X"
    text = "身份证号码是" + spoken(number, two="两")
    assert "幺" in text and "两" in text and text.endswith("叉")
    engine = RuleEngine(zh)
    (a,) = engine.feed(zh_utt("customer", 3, text))
    assert a.evidence["type"] == "cn_resident_id"
    assert a.evidence["masked"].endswith(number[-4:])
    assert scrub_text(text) == "身份证号码是[cn_resident_id]"


def test_a_bank_card_read_in_two_breaths(zh: list[RulePack]) -> None:
    card = luhn_complete("622202020011223")  # 16 digits, UnionPay
    engine = RuleEngine(zh)
    first = zh_utt("customer", 3, "卡号是" + spoken(card[:8]))
    second = zh_utt("customer", first.t_end + 1.0, spoken(card[8:]) + "。")
    assert engine.feed(first) == []  # 8 digits: not yet a card
    (a,) = engine.feed(second)
    assert a.evidence["type"] == "card_number" and a.evidence["masked"] == f"•••• {card[-4:]}"
    spans = engine.take_redactions()
    assert sum(s.word_end - s.word_start for s in spans) == 16  # every digit, both breaths


def test_amounts_and_dates_are_not_personal_numbers(zh: list[RulePack]) -> None:
    engine = RuleEngine(zh)
    for i, line in enumerate(
        ["您的账单是一百二十八元。", "保费是三千五百块一年。", "二零二四年三月十二号到期。"]
    ):
        assert engine.feed(zh_utt("agent", 5.0 * i, line)) == [], line


# -- script, numbers and negation in the matcher ----------------------------------------------
def test_traditional_and_simplified_match_each_other() -> None:
    simp = TokenSeq.from_text("为了保证服务质量，您的通话将被录音")
    trad = TokenSeq.from_text("為了保證服務質量，您的通話將被錄音")
    assert simp.toks == trad.toks
    for seq in (simp, trad):
        for phrase in ("通话将被录音", "通話將被錄音"):
            m = find_phrase(seq, phrase, 0.85)
            assert m is not None and m.score == 1.0, (seq.toks, phrase)
    index = PhraseIndex([("通話將被錄音", 0.85), ("服务质量", 1.0)])
    assert set(index.search(simp)) == {("通話將被錄音", 0.85), ("服务质量", 1.0)}


def test_traditional_phrases_in_a_pack_match_simplified_speech() -> None:
    pack = parse_pack(
        """\
pack: zh_trad
language: zh
rules:
  - id: verify
    kind: phrase
    mode: required
    phrases: [核實您的身份]
""",
        "trad.yaml",
    )
    ok = evaluate([pack], [zh_utt("agent", 1, "我先核实您的身份。")], duration_s=10)
    assert ok.alerts == []
    missing = evaluate([pack], [zh_utt("agent", 1, "请问您贵姓？")], duration_s=10)
    assert [a.rule_id for a in missing.alerts] == ["verify"]


def test_phrases_match_characters_with_or_without_spaces() -> None:
    for text in (
        "本次通话可能会被录音",
        "本次 通话 可能 会被 录音",
        "本 次 通 话 可 能 会 被 录 音",
    ):
        seq = TokenSeq.from_text(text)
        (m,) = find_all(seq, "本次通话可能会被录音", 0.85)
        assert m.score == 1.0 and (m.start, m.end) == (0, 10)
    # a match reports the ASR words it came from, and they display without spaces
    words = ["本次", "通话", "可能", "会", "被录音。"]
    seq = TokenSeq.from_words(words)
    found = find_phrase(seq, "通话可能会被录音", 0.85)
    assert found is not None
    assert (
        join_words(words[i] for i in seq.words_of(found.start, found.end)) == "通话可能会被录音。"
    )


def test_negation_in_chinese() -> None:
    """不/没/别/未/无/莫 negate what follows within three characters (``ignore_negated``);
    not in 不好意思, 没问题, 特别 ... A fuzzy match never adds or drops a negation."""
    assert negated(TokenSeq.from_text("我不能保证退款"), 3)
    assert negated(TokenSeq.from_text("没有保证退款"), 2)
    assert not negated(TokenSeq.from_text("没问题保证退款"), 3)
    assert not negated(TokenSeq.from_text("不好意思保证退款"), 4)
    assert not negated(TokenSeq.from_text("特别保证退款"), 2)
    assert find_all(TokenSeq.from_text("本次通话不会被录音"), "本次通话会被录音", 0.85) == []
    assert find_all(TokenSeq.from_text("本次通话将被录音"), "本次通话不会被录音", 0.85) == []
    assert find_all(TokenSeq.from_text("我没有办法"), "我没办法", 0.85)  # 没有 for 没: still one
    assert find_all(TokenSeq.from_text("我有办法"), "我没办法", 0.85) == []
    assert (
        find_all(TokenSeq.from_text("is there anything I can do"), "nothing I can do", 0.85) == []
    )

    pack = RulePack(
        pack="promise",
        language="zh",
        rules=[
            PhraseRule(
                id="promise",
                kind="phrase",
                mode="forbidden",
                phrases=["保证退款"],
                ignore_negated=True,
                cooldown_s=0,
            )
        ],
    )
    lines = ["我保证退款。", "我不能保证退款。", "没问题，保证退款。", "这个没法保证退款。"]
    alerts = evaluate([pack], [zh_utt("agent", 5.0 * i, x) for i, x in enumerate(lines)]).alerts
    assert [a.evidence["utterance"] for a in alerts] == ["我保证退款。", "没问题，保证退款。"]


# -- emotion and composite --------------------------------------------------------------------
def test_angry_caller_alerts_and_apology_is_expected(zh: list[RulePack]) -> None:
    angry = zh_utt("customer", 12, "你们这是什么破服务，我要投诉！")
    reading = EmotionObserved("customer", angry.t, angry.t_end, "angry", 0.9, 0.75, angry.text)
    base = [*call(CLEAN[:3]), angry, reading]
    closing = call([("agent", 32, "请问还有其他问题吗？"), *CLEAN[7:]])
    no_sorry = [*base, zh_utt("agent", 20, "您的账单已经缴清了。"), *closing]
    ids = [a.rule_id for a in evaluate(zh, no_sorry, duration_s=60).alerts]
    assert ids.count("zh_caller_angry") == 1 and ids.count("zh_deescalate") == 1
    assert "zh_apology_after_anger" in ids
    sorry = [*base, zh_utt("agent", 20, "非常抱歉给您带来不便。"), *closing]
    ids = [a.rule_id for a in evaluate(zh, sorry, duration_s=60).alerts]
    assert "zh_apology_after_anger" not in ids and "zh_caller_angry" in ids


def test_backchannels_are_not_talking_over(zh: list[RulePack]) -> None:
    lines: list[EngineInput] = []
    for i in range(4):  # the customer says 好的好的 / 嗯嗯 while the agent explains
        agent = zh_utt("agent", 10.0 * i, "我跟您说明一下具体的办理流程和需要的材料")
        lines += [agent, zh_utt("customer", agent.t + 1.0, "好的好的" if i % 2 else "嗯嗯对")]
    assert fired(evaluate(zh, lines).alerts, "zh_agent_talks_over") == []


# -- rule cases and real agent speech ---------------------------------------------------------
def test_the_shipped_zh_cases_pass(zh: list[RulePack]) -> None:
    results = run_cases(zh, load_cases(ZH_CASES, zh))
    assert len(results) >= 9
    assert all(r.passed for r in results), [(r.name, r.failures) for r in results if not r.passed]
    assert cli_main(["rules", "test", str(ZH_PACK), "--cases", str(ZH_CASES)]) == 0


def test_real_agent_lines_raise_no_false_alerts(zh: list[RulePack]) -> None:
    """250 real customer-service lines (Magic Data, read by an agent-style speaker) as one
    agent's speech at their recorded durations: no forbidden phrase, no pace alert, no PII."""
    path = shared("asr_zh/magicdata_cs_scene/transcripts.tsv")
    with Path(path).open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert len(rows) == 250
    inputs: list[EngineInput] = []
    t = 0.0
    for r in rows:
        dur = float(r["duration_s"])
        han = sum(1 for c in r["text"] if is_cjk(c))
        inputs.append(zh_utt("agent", t, r["text"], cpm=60.0 * han / dur))
        t += dur + 0.8
    alerts = evaluate(zh, inputs).alerts
    noisy = {"zh_forbidden_language", "zh_agent_speech_rate", "zh_sensitive_numbers"}
    assert [a for a in alerts if a.rule_id in noisy] == []
