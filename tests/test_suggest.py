"""Suggestions from transcripts: the right intent, at the right line, once; nothing on small
talk; held back until identity is verified; rule prompts as cards. Real sentence model."""

from __future__ import annotations

import numpy as np
import pytest

from assist.pipeline import CallPipeline
from assist.playbook import BUILTIN_PLAYBOOKS, load_playbooks
from assist.suggest import Assistant, AssistLibrary
from models.embed import shared_embedder
from qa_rules.engine import RuleEngine
from qa_rules.loader import load_packs

pytestmark = pytest.mark.slow

SMALL_TALK = [
    "Hi, how are you today?",
    "Fine, thank you.",
    "Okay.",
    "The ninth of October.",
    "Yes, that's right.",
    "Can you hear me okay?",
    "Lovely weather we're having.",
    "Sorry, my dog is barking.",
    "No. Goodbye.",
    "Hold on a second, let me find my glasses.",
]


@pytest.fixture(scope="module")
def library() -> AssistLibrary:
    return AssistLibrary(load_playbooks(BUILTIN_PLAYBOOKS), shared_embedder())


@pytest.fixture
def assistant(library: AssistLibrary) -> Assistant:
    a = library.assistant("en")
    assert a is not None
    return a


def test_a_cancel_request_gets_the_retention_suggestion_on_its_final(assistant: Assistant) -> None:
    text = "Hi. I want to cancel my contract, the price went up again."
    (s,) = assistant.on_transcript("customer", 6.9, 10.2, text, final=True)
    assert s["intent"] == "cancel_service" and s["source"] == "playbook"
    assert s["trigger"] == {
        "speaker": "customer",
        "t": 6.9,
        "t_end": 10.2,
        "text": text,
        "final": True,
    }
    assert any("loyalty discount" in s["action"] for _ in [0])
    assert s["script"] and s["kb"] and s["blocked_by"] == []
    assert s["score"] >= assistant.matcher.threshold
    assert "cancel" in s["reason"].lower()


def test_nothing_is_suggested_on_small_talk(assistant: Assistant) -> None:
    t = 0.0
    for line in SMALL_TALK:
        for speaker in ("customer", "agent"):
            got = assistant.on_transcript(speaker, t, t + 2, line, final=True)
            assert got == [], (line, got)
            t += 3


def test_agent_lines_do_not_trigger_customer_intents(assistant: Assistant) -> None:
    got = assistant.on_transcript(
        "agent", 1.0, 3.0, "Do you want to cancel your contract?", final=True
    )
    assert got == []


def test_a_partial_suggests_early_and_its_final_does_not_repeat_it(assistant: Assistant) -> None:
    partial = assistant.on_transcript(
        "customer", 5.0, 7.0, "I want to cancel my contract", final=False
    )
    assert [s["intent"] for s in partial] == ["cancel_service"]
    assert partial[0]["trigger"]["final"] is False
    final = assistant.on_transcript(
        "customer", 5.0, 9.0, "I want to cancel my contract because it's too expensive", True
    )
    assert final == []


def test_short_partials_are_not_matched(assistant: Assistant) -> None:
    assert assistant.on_transcript("customer", 5.0, 5.8, "cancel my", final=False) == []


def test_cooldown_and_dismiss(assistant: Assistant) -> None:
    first = assistant.on_transcript("customer", 10, 12, "where is my order", final=True)
    assert [s["intent"] for s in first] == ["delivery_status"]
    again = assistant.on_transcript("customer", 60, 62, "my parcel still hasn't arrived", True)
    assert again == []  # within the playbook's cooldown
    later = assistant.playbook.cooldown_s + 20
    third = assistant.on_transcript("customer", later, later + 2, "where is my parcel", True)
    assert [s["intent"] for s in third] == ["delivery_status"]
    assistant.dismiss(third[0]["suggestion_id"])
    much_later = later + 2 * assistant.playbook.cooldown_s
    assert (
        assistant.on_transcript("customer", much_later, much_later + 2, "where is my order", True)
        == []
    )


def test_an_intent_needing_identity_is_held_until_the_agent_verifies(
    assistant: Assistant,
) -> None:
    (held,) = assistant.on_transcript(
        "customer", 3.0, 6.0, "I was charged twice on my bill this month", final=True
    )
    assert held["intent"] == "billing_dispute"
    assert held["blocked_by"] == ["identity_verified"]
    assert held["script"] == [assistant.playbook.contexts["identity_verified"].prompt]
    assert assistant.on_transcript("agent", 7.0, 9.0, "Can I take your date of birth?", True) == []
    (released,) = assistant.on_transcript(
        "agent", 12.0, 14.0, "Thanks for verifying. Let me look at the bill.", final=True
    )
    assert released["intent"] == "billing_dispute"
    assert released["replaces"] == held["suggestion_id"]
    assert released["blocked_by"] == []
    assert released["script"] == assistant.playbook.intent("billing_dispute").script


def test_lexical_fallback_still_suggests_without_the_sentence_model() -> None:
    lib = AssistLibrary(load_playbooks(BUILTIN_PLAYBOOKS), None)
    a = lib.assistant("en")
    assert a is not None
    got = a.on_transcript("customer", 1, 3, "I want to cancel my contract", final=True)
    assert [s["intent"] for s in got] == ["cancel_service"]
    assert a.on_transcript("customer", 5, 7, "Fine, thank you.", final=True) == []


def test_rule_prompt_reaches_the_agent_as_a_suggestion_card(library: AssistLibrary) -> None:
    """No disclosure in the first 30 s: the rule's alert goes out, and its prompt as a card."""
    packs = load_packs()
    pipe = CallPipeline("c1", ["agent", "customer"], RuleEngine(packs), assistant=None)
    silence = np.zeros(16000, dtype=np.float32)
    for _ in range(35):
        pipe.push(0, silence)
        pipe.push(1, silence)
    evs = pipe.drain()
    alert = next(e for e in evs if e["type"] == "alert" and e["rule_id"] == "recording_disclosure")
    card = next(
        e for e in evs if e["type"] == "suggestion" and e["rule_id"] == "recording_disclosure"
    )
    assert card["seq"] == alert["seq"] + 1 and card["source"] == "rule"
    assert card["script"] == [
        "Before we go on, please note this call may be recorded for quality and training purposes."
    ]
    assert card["severity"] == "critical" and card["title"] == alert["message"]
    # a supervisor-only rule has no card
    assert not any(
        e["type"] == "suggestion" and e["rule_id"] == "identity_verification" for e in evs
    )
