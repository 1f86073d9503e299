"""Live suggestions for the agent: customer speech → playbook intent → what to say next.

``Assistant`` is one call's suggestion state (contexts established, intents already
suggested, dismissed ones); ``AssistLibrary`` holds the playbooks and one shared matcher per
playbook for every call of the process.

Partials are matched too, so a suggestion can appear while the customer is still talking;
they must clear the threshold by a margin and carry a few words, and the utterance's final
never repeats what its partial already suggested. The same intent is not suggested again
within the playbook's cooldown, nor at all once the agent dismissed it on this call.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assist.intents import IntentExample, IntentMatch, IntentMatcher
from assist.playbook import Intent, Playbook, playbook_for
from models.embed import SentenceEmbedder
from models.locator import cache_dir
from qa_rules.text import TokenSeq, find_phrase, tokens

log = logging.getLogger(__name__)

Suggestion = dict[str, Any]  # the fields of a ``suggestion`` event, without its envelope


@dataclass
class _Shown:
    suggestion_id: str
    intent: str
    t: float  # call time it was suggested at
    utterance: tuple[str, float]  # (speaker, start) of the line that triggered it
    blocked: bool


@dataclass
class Assistant:
    """One call's suggestions. Not thread-safe: the call's pipeline owns it."""

    playbook: Playbook
    matcher: IntentMatcher
    contexts: dict[str, float] = field(default_factory=dict)  # name -> time established
    _shown: list[_Shown] = field(default_factory=list)
    _dismissed: set[str] = field(default_factory=set)
    _ids: int = 0

    @property
    def label(self) -> str:
        """``playbook@version``, as call.started and reports name it."""
        return f"{self.playbook.playbook}@{self.playbook.version}"

    def embed(self, text: str) -> np.ndarray | None:
        """The query vector, computed where it is cheap to wait (the ASR worker thread)."""
        return self.matcher.embed(text)

    def will_match(self, speaker: str, text: str, final: bool) -> bool:
        """Whether this line is matched at all (so worth embedding): a speaker some intent
        listens to (the customer side, by default), and a partial long enough to mean it."""
        if not final and len(tokens(text)) < self.playbook.min_partial_words:
            return False
        return any(_speaker_ok(i.speaker, speaker) for i in self.playbook.intents if i.enabled)

    def on_transcript(
        self,
        speaker: str,
        t: float,
        t_end: float,
        text: str,
        final: bool,
        vector: np.ndarray | None = None,
    ) -> list[Suggestion]:
        """Suggestions this line triggers (most often none)."""
        out: list[Suggestion] = []
        if final:
            out.extend(self._observe_contexts(speaker, t_end, text))
        if not self.will_match(speaker, text, final):
            return out
        margin = 0.0 if final else self.playbook.partial_margin
        base = self.playbook.threshold if self.playbook.threshold is not None else None
        utterance = (speaker, round(t, 2))
        matches = self.matcher.match(text, vector, top_k=3)
        picked = 0
        for m in matches:
            intent = self.playbook.intent(m.intent)
            if not intent.enabled or not _speaker_ok(intent.speaker, speaker):
                continue
            threshold = _first(intent.threshold, base, self.matcher.threshold) + margin
            if m.score < threshold:
                continue
            if not self._may_suggest(intent, t_end, utterance):
                continue
            trigger = {
                "speaker": speaker,
                "t": round(t, 3),
                "t_end": round(t_end, 3),
                "text": text,
                "final": final,
            }
            out.append(self._suggest(intent, m, trigger, t_end, utterance, rank=picked + 1))
            picked += 1
            if picked >= self.playbook.max_per_utterance:
                break
        return out

    def dismiss(self, suggestion_id: str) -> None:
        """The agent dismissed a suggestion: its intent is not suggested again on this call."""
        for s in self._shown:
            if s.suggestion_id == suggestion_id:
                self._dismissed.add(s.intent)

    # -- internals -----------------------------------------------------------------------
    def _may_suggest(self, intent: Intent, now: float, utterance: tuple[str, float]) -> bool:
        if intent.id in self._dismissed:
            return False
        cooldown = _first(intent.cooldown_s, self.playbook.cooldown_s)
        for s in self._shown:
            if s.intent != intent.id:
                continue
            same_line = s.utterance[0] == utterance[0] and abs(s.utterance[1] - utterance[1]) < 1.0
            if same_line or now - s.t < cooldown:
                return False
        return True

    def _next_id(self) -> str:
        self._ids += 1
        return f"s{self._ids}"

    def _suggest(
        self,
        intent: Intent,
        m: IntentMatch,
        trigger: dict[str, Any],
        now: float,
        utterance: tuple[str, float],
        rank: int,
    ) -> Suggestion:
        missing = [c for c in intent.requires if c not in self.contexts]
        sid = self._next_id()
        self._shown.append(_Shown(sid, intent.id, now, utterance, bool(missing)))
        out = _card(intent, sid, trigger)
        out.update(score=round(m.score, 3), rank=rank, reason=m.reason())
        if missing:
            ctxs = [self.playbook.contexts[c] for c in missing]
            what = " and ".join(
                c.description or name for c, name in zip(ctxs, missing, strict=True)
            )
            out.update(
                title=f"{intent.title} (first: {what})",
                script=[c.prompt for c in ctxs],
                blocked_by=missing,
            )
        return out

    def _observe_contexts(self, speaker: str, t: float, text: str) -> list[Suggestion]:
        """Note contexts this line establishes; release intents held back for them."""
        seq: TokenSeq | None = None
        newly: list[str] = []
        for name, ctx in self.playbook.contexts.items():
            if name in self.contexts or not _speaker_ok(ctx.said_by, speaker):
                continue
            seq = seq or TokenSeq.from_text(text)
            if any(find_phrase(seq, p, ctx.min_score) for p in ctx.phrases):
                self.contexts[name] = t
                newly.append(name)
        if not newly:
            return []
        out: list[Suggestion] = []
        for shown in list(self._shown):
            if not shown.blocked or shown.intent in self._dismissed:
                continue
            intent = self.playbook.intent(shown.intent)
            if any(c not in self.contexts for c in intent.requires):
                continue
            shown.blocked = False
            sid = self._next_id()
            self._shown.append(_Shown(sid, intent.id, t, shown.utterance, False))
            card = _card(intent, sid, None)
            card.update(
                replaces=shown.suggestion_id,
                reason=f"{', '.join(newly).replace('_', ' ')}: the held suggestion is released",
            )
            out.append(card)
        return out


def _fields(sid: str, source: str, title: str, script: list[str], **rest: Any) -> Suggestion:
    """Every field of a suggestion card, defaults filled in (one shape for all sources)."""
    return {
        "suggestion_id": sid,
        "source": source,
        "intent": None,
        "rule_id": None,
        "title": title,
        "script": list(script),
        "action": None,
        "kb": [],
        "score": None,
        "rank": 1,
        "reason": "",
        "severity": "info",
        "trigger": None,
        "blocked_by": [],
        **rest,
    }


def _card(intent: Intent, sid: str, trigger: dict[str, Any] | None) -> Suggestion:
    return _fields(
        sid,
        "playbook",
        intent.title,
        intent.script,
        intent=intent.id,
        action=intent.action,
        kb=[k.model_dump(exclude_none=True) for k in intent.kb],
        trigger=trigger,
    )


def rule_prompt(alert: dict[str, Any], prompt: list[str], sid: str) -> Suggestion:
    """A QA rule's prompt (e.g. the disclosure wording) as a suggestion card."""
    return _fields(
        sid,
        "rule",
        alert["message"],
        prompt,
        rule_id=alert["rule_id"],
        reason=f"rule {alert['rule_id']}",
        severity=alert.get("severity", "info"),
    )


def _speaker_ok(wanted: str, speaker: str) -> bool:
    """Customer-side intents hear every speaker but the agent (mono calls label lines
    "mixed" until the speaker is known)."""
    if wanted == "any":
        return True
    if wanted == "agent":
        return speaker == "agent"
    return speaker != "agent"


def _first(*values: float | None) -> float:
    return next(v for v in values if v is not None)


# Matchers by (playbook content, sentence model): a playbook's examples are embedded once
# per process, however many servers or audits use it. A matcher is read-only once built.
_MATCHERS: dict[tuple[str, str | None], IntentMatcher] = {}
_MATCHERS_LOCK = threading.Lock()


def _vector_cache() -> Path | None:
    try:
        folder = cache_dir() / "intents"
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only home only costs the embedding at start
    return folder


class AssistLibrary:
    """The playbooks and their matchers, shared by every call of the process.

    A matcher is built on first use (the examples are embedded once) and then reused;
    building is thread-safe so two calls starting together build it once.
    """

    def __init__(self, playbooks: list[Playbook], embedder: SentenceEmbedder | None) -> None:
        self.playbooks = playbooks
        self.embedder = embedder

    def matcher(self, book: Playbook) -> IntentMatcher:
        key = (book.model_dump_json(), self.embedder.fingerprint if self.embedder else None)
        with _MATCHERS_LOCK:
            m = _MATCHERS.get(key)
            if m is None:
                examples = [
                    IntentExample(i.id, ex) for i in book.intents if i.enabled for ex in i.examples
                ]
                # example vectors are kept on disk: a restart does not embed them again
                m = IntentMatcher(
                    examples, self.embedder, threshold=book.threshold, cache_dir=_vector_cache()
                )
                _MATCHERS[key] = m
            return m

    def warm(self) -> None:
        """Build every matcher now (server start), not on the first call."""
        for book in self.playbooks:
            self.matcher(book)

    def assistant(self, language: str | None) -> Assistant | None:
        book = playbook_for(self.playbooks, language)
        if book is None:
            return None
        return Assistant(book, self.matcher(book))

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "playbook": b.playbook,
                "version": b.version,
                "language": b.language,
                "intents": [
                    {
                        "id": i.id,
                        "title": i.title,
                        "requires": i.requires,
                        "examples": len(i.examples),
                    }
                    for i in b.intents
                ],
                "threshold": self.matcher(b).threshold,
                "embedder": self.embedder.model_id if self.embedder else None,
            }
            for b in self.playbooks
        ]
