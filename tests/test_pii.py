"""PII detection (qa_rules.pii) and redaction of events and reports (assist.redact)."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from assist.redact import Redactor
from qa_rules.pii import (
    PII_KINDS,
    PiiTracker,
    RedactSpan,
    cn_id_check_char,
    detect,
    luhn_ok,
    scrub_text,
)
from qa_rules.text import TokenSeq

CARD = "4111 1111 1111 1111"  # the standard Visa test number (Luhn valid)
CARD_DIGITS = CARD.replace(" ", "")


def kinds_in(text: str, kinds: tuple[str, ...] = PII_KINDS, min_digits: int = 8) -> list[str]:
    return [h.kind for h in detect(TokenSeq.from_text(text), kinds, min_digits)]


def words_of_hits(text: str) -> list[tuple[str, str]]:
    """(kind, the words a hit covers) for every hit in ``text``."""
    words = text.split()
    seq = TokenSeq.from_words(words)
    out = []
    for h in detect(seq, PII_KINDS):
        r = seq.words_of(h.start, h.end)
        out.append((h.kind, " ".join(words[r.start : r.stop])))
    return out


# -- cards -----------------------------------------------------------------------------------
def test_luhn() -> None:
    assert luhn_ok(CARD_DIGITS)
    assert not luhn_ok("4111111111111112")
    assert luhn_ok("378282246310005")  # Amex test number, 15 digits
    assert not luhn_ok("41111111x1111111")


def test_card_valid_vs_invalid() -> None:
    assert kinds_in(f"my card is {CARD}") == ["card_number"]
    # One digit off: not a card, but 16 digits are still redacted as digits.
    assert kinds_in("my card is 4111 1111 1111 1112") == ["digits"]
    assert kinds_in("my card is 4111 1111 1111 1112", ("card_number",)) == []


def test_card_spoken_digit_by_digit_and_with_fillers() -> None:
    spoken = "my card number is " + " ".join(["four"] + ["one"] * 15) + " thanks"
    hits = detect(TokenSeq.from_text(spoken), PII_KINDS)
    assert [h.kind for h in hits] == ["card_number"]
    assert hits[0].masked == "•••• 1111"
    assert CARD_DIGITS not in hits[0].masked
    assert words_of_hits("it is 4111 1111 uh 1111 um 1111 okay") == [
        ("card_number", "4111 1111 uh 1111 um 1111")
    ]
    assert words_of_hits("yes 4111-1111-1111-1111.") == [("card_number", "4111-1111-1111-1111.")]


def test_card_spoken_in_chinese() -> None:
    seq = TokenSeq.from_text("卡号是四幺幺幺 幺幺幺幺 幺幺幺幺 幺幺幺幺")
    hits = detect(seq, PII_KINDS)
    assert [h.kind for h in hits] == ["card_number"]


# -- SSN -------------------------------------------------------------------------------------
def test_ssn_needs_context_or_grouping() -> None:
    assert kinds_in("my social security number is 123 45 6789", ("ssn",)) == ["ssn"]
    assert kinds_in("my ssn is one two three four five six seven eight nine", ("ssn",)) == ["ssn"]
    # Nine digits and no context: not called an SSN (still digits when asked for).
    assert kinds_in("the reference is 123456789", ("ssn",)) == []
    assert kinds_in("the reference is 123456789") == ["digits"]
    # Invalid SSNs even with context: area 000 / 666 / 9xx, group 00, serial 0000.
    for bad in ("000456789", "666456789", "912456789", "123006789", "123450000"):
        assert kinds_in(f"my social is {bad}", ("ssn",)) == [], bad
    # Written 3-2-4 with dashes keeps its grouping in free text (scrub_text).
    assert scrub_text("it is 123-45-6789, right") == "it is [ssn], right"
    assert scrub_text("social: 123456789") == "social: [ssn]"


# -- Chinese resident id ---------------------------------------------------------------------
def test_cn_resident_id_checksum() -> None:
    body = "11010519491231002"
    assert cn_id_check_char(body) == "X"  # the standard example 11010519491231002X
    assert kinds_in(f"{body}X") == ["cn_resident_id"]
    # Any other check character is not a resident id (but still redacted as digits).
    assert kinds_in(f"{body}7") == ["digits"]
    assert kinds_in(f"{body}3X") == ["digits"]  # 19 characters: no id, all redacted
    assert scrub_text("id 110105194912310021X ok") == "id [digits] ok"
    # A checksum computed here for another body.
    other = "44030419800101123"
    check = cn_id_check_char(other)
    assert kinds_in(f"身份证号 {other}{check}", ("cn_resident_id",)) == ["cn_resident_id"]
    wrong = "0" if check != "0" else "1"
    assert kinds_in(f"身份证号 {other}{wrong}", ("cn_resident_id",)) == []


def test_cn_resident_id_spoken_with_yao_and_x() -> None:
    text = "我的身份证号是幺幺零幺零五幺九四九幺二三幺零零二叉"
    seq = TokenSeq.from_text(text)
    hits = detect(seq, PII_KINDS)
    assert [h.kind for h in hits] == ["cn_resident_id"]
    assert hits[0].masked.endswith("002X") and "110105" not in hits[0].masked
    assert scrub_text(text) == "我的身份证号是[cn_resident_id]"


def test_cn_resident_id_old_15_digit_form_needs_context() -> None:
    assert kinds_in("身份证 110105491231002", ("cn_resident_id",)) == ["cn_resident_id"]
    assert kinds_in("number 110105491231002", ("cn_resident_id",)) == []


# -- dates of birth --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "my date of birth is March 12 1985",
        "date of birth 12/03/1985",
        "I was born on the twelfth of March nineteen eighty five",
        "born 12 March 1985",
        "我的生日是1985年3月12日",
        "我是一九八五年三月十二号出生的",
        "dob March twenty first 1985",
    ],
)
def test_date_of_birth(text: str) -> None:
    hits = detect(TokenSeq.from_text(text), PII_KINDS)
    assert [h.kind for h in hits] == ["date_of_birth"], text
    assert hits[0].masked == "••/••/19••"


def test_date_of_birth_covers_the_date_words_only() -> None:
    assert words_of_hits("my date of birth is March 12 1985 okay") == [
        ("date_of_birth", "March 12 1985")
    ]
    assert scrub_text("my date of birth is 12/03/1985.") == "my date of birth is [date_of_birth]."


def test_recent_date_without_context_is_not_a_birth_date() -> None:
    assert kinds_in("the payment was due on March 12 2024", ("date_of_birth",)) == []
    assert kinds_in("born March 12 2024", ("date_of_birth",)) == ["date_of_birth"]


# -- no false positives ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "I've been a customer for 15 years",
        "your order number is 482913",
        "that comes to 19.99 a month",
        "I'll call you back at 3 30",
        "between 1000 and 20000 dollars",
        "we opened in 1985",
        "call me on the twelfth",
        "press one then two then three",
        "the limit is ten million dollars",
    ],
)
def test_no_false_positive(text: str) -> None:
    assert kinds_in(text) == []
    assert scrub_text(text) == text


def test_min_digits_controls_digit_runs() -> None:
    assert kinds_in("account 12345678") == ["digits"]
    assert kinds_in("account 1234567") == []
    assert kinds_in("order 482913", min_digits=6) == ["digits"]


# -- across utterances -----------------------------------------------------------------------
def _observe(
    tr: PiiTracker, utt_id: int, speaker: str, text: str, t: float, step: float = 0.4
) -> list[Any]:
    words = text.split()
    times = [(round(t + i * step, 3), round(t + (i + 1) * step, 3)) for i in range(len(words))]
    return tr.observe(utt_id, speaker, TokenSeq.from_words(words), times, t, t + step * len(words))


def test_tracker_joins_card_across_utterances() -> None:
    tr = PiiTracker(("card_number",))
    assert _observe(tr, 1, "customer", "my card is 4111 1111", 10.0) == []
    found = _observe(tr, 2, "customer", "1111 1111 okay", 11.6 + 3.0)
    assert [f.kind for f in found] == ["card_number"]
    f = found[0]
    assert f.speaker == "customer" and f.masked == "•••• 1111"
    assert [(p.utt_id, p.word_start, p.word_end) for p in f.parts] == [(1, 3, 5), (2, 0, 2)]
    assert f.parts[0].t == pytest.approx(11.2) and f.parts[1].t_end == pytest.approx(15.4)
    assert (f.t, f.t_end) == (pytest.approx(11.2), pytest.approx(15.4))


def test_tracker_does_not_join_after_a_long_pause_or_another_speaker() -> None:
    tr = PiiTracker(("card_number",))
    _observe(tr, 1, "customer", "my card is 4111 1111", 10.0)
    assert _observe(tr, 2, "customer", "1111 1111", 12.0 + 20.0) == []
    tr = PiiTracker(("card_number",))
    _observe(tr, 1, "customer", "my card is 4111 1111", 10.0)
    assert _observe(tr, 2, "agent", "1111 1111", 13.0) == []


def test_tracker_reports_each_item_once_and_uses_cue_from_previous_utterance() -> None:
    tr = PiiTracker(("ssn", "card_number"))
    assert [f.kind for f in _observe(tr, 1, "customer", CARD, 0.0)] == ["card_number"]
    assert _observe(tr, 2, "customer", "is that right", 3.0) == []
    assert _observe(tr, 3, "customer", "and my social is", 5.0) == []
    found = _observe(tr, 4, "customer", "123 45 6789", 8.0)
    assert [(f.kind, f.parts[0].utt_id) for f in found] == [("ssn", 4)]


def test_tracker_without_word_times_uses_utterance_times() -> None:
    tr = PiiTracker()
    found = tr.observe(7, "agent", TokenSeq.from_text(f"card {CARD}"), None, 4.0, 6.5)
    assert [(f.kind, f.t, f.t_end) for f in found] == [("card_number", 4.0, 6.5)]
    assert found[0].parts == (RedactSpan(7, "agent", 1, 5, 4.0, 6.5, "card_number"),)


def test_tracker_memory_is_bounded() -> None:
    tr = PiiTracker(tail_tokens=8, max_speakers=2)
    for i in range(200):
        _observe(tr, i, f"s{i % 5}", "one two three four five six seven eight nine ten", i * 1.0)
    assert len(tr._tails) <= 2
    assert all(len(tail) <= 8 for _, tail in tr._tails.values())


# -- redaction -------------------------------------------------------------------------------
def _words(text: str, t: float, step: float = 0.5) -> list[dict[str, Any]]:
    return [
        {"w": w, "t": round(t + i * step, 3), "t_end": round(t + (i + 1) * step, 3), "p": 0.9}
        for i, w in enumerate(text.split())
    ]


def _call_events(text: str, t: float = 20.0) -> tuple[dict[str, Any], dict[str, Any], Redactor]:
    words = _words(text, t)
    transcript = {
        "type": "transcript.final",
        "call_id": "call-1",
        "seq": 5,
        "t": t,
        "t_end": words[-1]["t_end"],
        "speaker": "customer",
        "text": text,
        "words": words,
        "language": "en",
        "emitted_at": "2025-06-01T10:00:00.123Z",
    }
    ev_words = [w for w in words if w["w"] in ("card", "is")]
    alert = {
        "type": "alert",
        "call_id": "call-1",
        "seq": 6,
        "t": t,
        "rule_id": "no_card_talk",
        "severity": "warning",
        "speaker": "customer",
        "message": f'Said "{text}"',
        "audience": ["supervisor"],
        "evidence": {
            "matched": "card is",
            "utterance": text,
            "speaker": "customer",
            "words": [{k: w[k] for k in ("w", "t", "t_end")} for w in ev_words],
            "nested": [{"quote": text}],
        },
        "emitted_at": "2025-06-01T10:00:00.456Z",
    }
    tr = PiiTracker()
    found = tr.observe(
        1,
        "customer",
        TokenSeq.from_words([w["w"] for w in words]),
        [(w["t"], w["t_end"]) for w in words],
        t,
        words[-1]["t_end"],
    )
    red = Redactor()
    for f in found:
        red.add(f.parts)
    return transcript, alert, red


GROUPS = ("4111", "1111")


def _no_card_digits(obj: Any) -> None:
    dumped = json.dumps(obj, ensure_ascii=False)
    for g in GROUPS:
        assert g not in dumped, dumped


def test_redactor_transcript_and_alert_evidence() -> None:
    transcript, alert, red = _call_events(f"yes my card is {CARD} and it expires soon")
    assert red.spans and red.spans[0].kind == "card_number"
    original = copy.deepcopy(transcript)
    out = red.event(transcript)
    assert transcript == original  # a copy, the input is untouched
    _no_card_digits(out)
    assert out["text"] == "yes my card is [card_number] and it expires soon"
    assert [w["w"] for w in out["words"]] == [
        "yes", "my", "card", "is", "[card_number]", "and", "it", "expires", "soon",
    ]  # fmt: skip
    placeholder = out["words"][4]
    assert (placeholder["t"], placeholder["t_end"]) == (22.0, 24.0)  # the four groups, merged
    # Envelope and structural fields are untouched.
    assert {k: out[k] for k in ("type", "call_id", "seq", "t", "emitted_at", "speaker")} == {
        k: transcript[k] for k in ("type", "call_id", "seq", "t", "emitted_at", "speaker")
    }
    a = red.event(alert)
    _no_card_digits(a)
    assert a["evidence"]["utterance"] == out["text"]
    assert a["evidence"]["nested"][0]["quote"] == out["text"]
    assert a["evidence"]["matched"] == "card is"
    assert a["message"] == f'Said "{out["text"]}"'
    assert a["emitted_at"] == alert["emitted_at"] and a["audience"] == ["supervisor"]


def test_redactor_is_idempotent() -> None:
    transcript, alert, red = _call_events(f"my card is {CARD} thanks")
    once = [red.event(transcript), red.event(alert)]
    twice = [red.event(once[0]), red.event(once[1])]
    assert twice == once
    fresh = Redactor(red.spans)  # a new redactor that never saw the original text
    assert [fresh.event(e) for e in once] == once


def test_redactor_alert_before_transcript_in_a_report() -> None:
    transcript, alert, red = _call_events(f"so it's {CARD} okay")
    report = {
        "call_id": "call-1",
        "sources": ["/data/calls/2025-06-01/12345678.wav"],
        "duration_s": 60.0,
        "transcript": [{k: transcript[k] for k in ("speaker", "t", "t_end", "text", "words")}],
        "alerts": [{k: alert[k] for k in ("rule_id", "severity", "t", "speaker", "message")}
                   | {"audience": alert["audience"], "evidence": alert["evidence"]}],
        "scorecard": {"score": 80.0, "rules": [{"rule_id": "no_card_talk", "alerts": 1}]},
        "events": [alert, transcript],  # the alert comes first: the report is read twice
    }  # fmt: skip
    out = Redactor(red.spans).report(report)
    _no_card_digits(out)
    assert out["sources"] == report["sources"]  # paths and ids are not scrubbed
    assert out["alerts"][0]["evidence"]["utterance"] == "so it's [card_number] okay"
    assert out["events"][0]["evidence"]["utterance"] == "so it's [card_number] okay"
    assert out["transcript"][0]["text"] == "so it's [card_number] okay"
    assert Redactor(red.spans).report(out) == out


def test_redactor_redacts_a_redacted_digit_group_wherever_it_recurs() -> None:
    transcript, alert, red = _call_events(f"the card is {CARD} ok")
    red.event(transcript)
    alert["evidence"]["matched"] = "card is 4111"  # a phrase match reaching into the number
    alert["message"] = 'Said "card is 4111" (masked •••• 1111)'
    out = red.event(alert)
    assert out["evidence"]["matched"] == "card is [card_number]"
    assert out["message"] == 'Said "card is [card_number]" (masked •••• 1111)'


def test_redactor_backstop_without_spans() -> None:
    red = Redactor()
    ev = {
        "type": "transcript.final",
        "call_id": "c",
        "seq": 1,
        "t": 1.0,
        "t_end": 4.0,
        "speaker": "agent",
        "text": "card 4111 1111 1111 1111 and born March 12 1985",
        "words": _words("card 4111 1111 1111 1111 and born March 12 1985", 1.0),
    }
    out = red.event(ev)
    _no_card_digits(out)
    assert out["text"] == "card [card_number] and born [date_of_birth]"
    emo = {"type": "emotion", "t": 1.0, "speaker": "agent", "text": ev["text"]}
    assert red.event(emo)["text"] == out["text"]


def test_redactor_spans_match_speaker_and_time() -> None:
    span = RedactSpan(1, "customer", 1, 2, 10.0, 10.5, "digits")
    red = Redactor([span])
    words = [
        {"w": "number", "t": 9.5, "t_end": 10.0},
        {"w": "seven", "t": 10.0, "t_end": 10.5},
        {"w": "two", "t": 10.53, "t_end": 10.53},  # zero length, within the ±0.05 s tolerance
        {"w": "thanks", "t": 10.6, "t_end": 11.0},
    ]
    ev = {"type": "transcript.final", "speaker": "customer", "text": "number seven two thanks"}
    out = red.event({**ev, "words": words})
    assert out["text"] == "number [digits] thanks"
    assert out["words"][1] == {"w": "[digits]", "t": 10.0, "t_end": 10.53}
    other = red.event({**ev, "speaker": "agent", "words": words})
    assert other["text"] == "number seven two thanks"


def test_redactor_never_raises_on_odd_shapes() -> None:
    red = Redactor([RedactSpan(1, "customer", 0, 1, 0.0, 1.0, "card_number")])
    odd: dict[str, Any] = {
        "type": "alert",
        "words": [{"w": 5}, "x", None],
        "evidence": {"words": "not a list", "t": "soon", "deep": [[{"text": CARD}]], 3: (1, 2)},
        "speaker": None,
        "text": None,
        "t": None,
    }
    out = red.event(odd)
    assert out["words"] == [{"w": 5}, "x", None]
    assert out["evidence"]["deep"] == [[{"text": "[card_number]"}]]
    assert red.event({}) == {}
    # A transcript without words that a span falls in: the whole text goes.
    ev = {"type": "transcript.partial", "speaker": "customer", "t": 0.0, "t_end": 1.2,
          "text": "four one one one"}  # fmt: skip
    assert red.event(ev)["text"] == "[card_number]"


def test_masks_never_hold_the_value() -> None:
    text = (
        f"card {CARD} social 123 45 6789 id 11010519491231002X born March 12 1985 "
        "account 987654321012"
    )
    hits = detect(TokenSeq.from_text(text), PII_KINDS)
    assert [h.kind for h in hits] == [
        "card_number", "ssn", "cn_resident_id", "date_of_birth", "digits",
    ]  # fmt: skip
    masks = [h.masked for h in hits]
    assert masks == ["•••• 1111", "•••-••-6789", "••••••••••••••002X", "••/••/19••", "••••••••••12"]


# -- the pipeline: what leaves it -----------------------------------------------------------
def _pipeline_lines(
    pack_yaml: str | None, lines: list[tuple[str, float, str]]
) -> tuple[list[dict], dict]:  # type: ignore[type-arg]
    """Deliver transcripts to a real CallPipeline (no audio needed); the events that left it
    live, and the report at the end."""
    import numpy as np

    from assist.audit import build_report
    from assist.pipeline import AsrJob, CallPipeline
    from audio.vad import Segment
    from models.asr import Transcript, Word
    from qa_rules.engine import RuleEngine
    from qa_rules.loader import load_packs, parse_pack

    packs = [parse_pack(pack_yaml, "p.yaml")] if pack_yaml else load_packs()
    pipe = CallPipeline("c1", ["agent", "customer"], RuleEngine(packs))
    pipe.push(0, np.zeros(16000 * 60, dtype=np.float32))
    pipe.push(1, np.zeros(16000 * 60, dtype=np.float32))
    for i, (speaker, t, text) in enumerate(lines):
        words = tuple(
            Word(w, t + k * 0.4, t + k * 0.4 + 0.35, 0.9) for k, w in enumerate(text.split())
        )
        job = AsrJob(
            i + 1,
            0 if speaker == "agent" else 1,
            speaker,
            Segment(t, words[-1].t_end),
            np.zeros(1, dtype=np.float32),
        )
        pipe.deliver(job, Transcript(text, words, t, words[-1].t_end, "en"))
    pipe.finish_audio()
    live = pipe.drain()
    pipe.close()
    events = live + pipe.drain()
    return live, build_report(pipe, events)


def test_split_card_masked_live_from_the_second_half_and_fully_stored() -> None:
    live, report = _pipeline_lines(
        None,
        [("customer", 5.0, "my card is 4111 1111"), ("customer", 9.0, "1111 1111 thanks")],
    )
    finals = [e["text"] for e in live if e["type"] == "transcript.final"]
    assert finals[1] == "[card_number] thanks"
    stored = json.dumps(report, ensure_ascii=False)
    assert not re.search(r"1111\D{0,3}1111", stored) and "4111" not in stored
    assert [a["rule_id"] for a in report["alerts"]].count("sensitive_numbers") == 1


def test_only_what_the_rules_ask_for_is_masked() -> None:
    said = [("customer", 5.0, "call me on 0207 946 0018 my order is 55512345 born March 12 1985")]
    _, report = _pipeline_lines(None, said)  # the default pack: cards and national ids only
    assert report["transcript"][0]["text"] == said[0][2]
    no_rule = "pack: p\nrules:\n  - {id: d, kind: silence, min_s: 10}\n"
    _, report = _pipeline_lines(no_rule, said)
    assert report["transcript"][0]["text"] == said[0][2]
    dob = "pack: p\nrules:\n  - {id: d, kind: pii, types: [date_of_birth]}\n"
    _, report = _pipeline_lines(dob, said)
    text = report["transcript"][0]["text"]
    assert "1985" not in text and "0207 946 0018" in text and "55512345" in text
