"""Which diarized speaker is the agent and which the customer, and what decided it.

Evidence, strongest first:

1. ``voiceprint``: an enrolled agent voice matches one speaker clearly better than the others;
2. ``content``: agent phrases (greeting with the company name, "how can I help", the recording
   disclosure) versus customer phrases ("I'm calling about", "I want to cancel") in each
   speaker's first utterances, English and Mandarin;
3. ``first_speaker``: on inbound calls the agent answers, so the first voice is the agent.

Every decision carries its evidence so a report can say why a line is labelled agent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Cosine between an enrolled voiceprint and a speaker's mean voice (uncentred d-vectors): one
# person measures 0.84-0.96 across recordings, two people 0.44-0.82 (docs/diarization.md).
VOICEPRINT_MATCH = 0.80
VOICEPRINT_MARGIN = 0.05

AGENT_CUES = (
    r"thank(s| you) for (calling|contacting|holding|waiting)",
    r"how (can|may|might) i (help|assist)",
    r"what can i (do|help)",
    r"\bthis is \w+ (from|at|with)\b",
    r"(this|the|your) call (is|may be|will be|might be) (being )?(recorded|monitored)",
    r"for (quality|training) purposes",
    r"\bwelcome to\b",
    r"(can|could|may) i (have|get|take) your",
    r"is there anything else",
    r"verify your",
    r"您好.{0,6}(这里是|欢迎)",
    r"(请问)?有什么(可以)?(帮|为)(您|你)",
    r"很高兴为您服务",
    r"(本次)?通话(可能)?(会)?被录音",
    r"工号",
)
CUSTOMER_CUES = (
    r"\bi'?m calling (about|because|to)\b",
    r"\bi (want|need|would like|'d like) to (cancel|complain|change|close|know|report)\b",
    r"\bmy (account|bill|order|card|package|car|phone|internet)\b",
    r"\bi have (a|an) (problem|issue|question)\b",
    r"\bcan you (help|tell) me\b",
    r"我(想|要)(问|咨询|投诉|取消|办理)",
    r"我的(账户|订单|卡|快递)",
)
_AGENT = [re.compile(p, re.IGNORECASE) for p in AGENT_CUES]
_CUSTOMER = [re.compile(p, re.IGNORECASE) for p in CUSTOMER_CUES]


@dataclass
class SpeakerProfile:
    """What is known about one diarized speaker when roles are decided."""

    label: str
    first_t: float
    speech_s: float
    voice: np.ndarray | None = None  # unit mean embedding of their speech
    texts: list[str] = field(default_factory=list)  # their first utterances, in order


@dataclass
class RoleDecision:
    roles: dict[str, str]  # speaker label -> agent / customer / speaker_N
    evidence: str  # voiceprint | content | first_speaker | single_speaker
    detail: str  # one human sentence: why
    agent_id: str | None = None
    scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "roles": self.roles,
            "evidence": self.evidence,
            "detail": self.detail,
        }
        if self.agent_id:
            out["agent_id"] = self.agent_id
        if self.scores:
            out["scores"] = {k: round(v, 3) for k, v in self.scores.items()}
        return out


def cue_score(texts: list[str]) -> tuple[int, int, list[str]]:
    """(agent cues, customer cues, the phrases that matched) in a speaker's words."""
    agent = customer = 0
    hits: list[str] = []
    for text in texts:
        for rx in _AGENT:
            m = rx.search(text)
            if m:
                agent += 1
                hits.append(m.group(0))
        for rx in _CUSTOMER:
            m = rx.search(text)
            if m:
                customer += 1
                hits.append(m.group(0))
    return agent, customer, hits


def _name_rest(agent: str, profiles: list[SpeakerProfile]) -> dict[str, str]:
    """Agent, then the customer (most speech of the rest), then speaker_3, speaker_4..."""
    rest = sorted((p for p in profiles if p.label != agent), key=lambda p: -p.speech_s)
    roles = {agent: "agent"}
    for i, p in enumerate(rest):
        roles[p.label] = "customer" if i == 0 else f"speaker_{i + 2}"
    return roles


def by_voiceprint(
    profiles: list[SpeakerProfile], voiceprints: dict[str, np.ndarray]
) -> RoleDecision | None:
    voiced = [p for p in profiles if p.voice is not None]
    if not voiced or not voiceprints:
        return None
    best: tuple[float, str, str, float] | None = None  # (score, agent_id, label, runner-up)
    for agent_id, vp in voiceprints.items():
        sims = sorted(((float(p.voice @ vp), p.label) for p in voiced), reverse=True)
        top, label = sims[0]
        runner = sims[1][0] if len(sims) > 1 else -1.0
        if best is None or top > best[0]:
            best = (top, agent_id, label, runner)
    assert best is not None
    top, agent_id, label, runner = best
    if top < VOICEPRINT_MATCH or top - runner < VOICEPRINT_MARGIN:
        return None
    detail = f"{label} matches enrolled agent {agent_id} (cosine {top:.2f}"
    detail += f", next speaker {runner:.2f})" if runner > -1 else ")"
    return RoleDecision(
        _name_rest(label, profiles),
        "voiceprint",
        detail,
        agent_id,
        {"match": top, "runner_up": runner},
    )


def by_content(profiles: list[SpeakerProfile]) -> RoleDecision | None:
    if len(profiles) < 2:
        return None
    scored = []
    for p in profiles:
        agent, customer, hits = cue_score(p.texts)
        scored.append((agent - customer, p, hits))
    scored.sort(key=lambda s: -s[0])
    top, second = scored[0], scored[1]
    if top[0] <= 0 or top[0] == second[0]:
        return None
    p, hits = top[1], top[2]
    shown = ", ".join(f'"{h}"' for h in hits[:3])
    return RoleDecision(
        _name_rest(p.label, profiles),
        "content",
        f"{p.label} says agent phrases ({shown})",
        scores={s[1].label: float(s[0]) for s in scored},
    )


def decide_roles(
    profiles: list[SpeakerProfile], voiceprints: dict[str, np.ndarray] | None = None
) -> RoleDecision:
    """Roles for every speaker, from the strongest evidence available."""
    if not profiles:
        return RoleDecision({}, "none", "no speech")
    if len(profiles) == 1:
        only = profiles[0]
        decision = by_voiceprint(profiles, voiceprints or {})
        if decision is not None:
            return decision
        return RoleDecision(
            {only.label: "agent"}, "single_speaker", f"only one voice ({only.label}) was heard"
        )
    for decision in (by_voiceprint(profiles, voiceprints or {}), by_content(profiles)):
        if decision is not None:
            return decision
    first = min(profiles, key=lambda p: p.first_t)
    return RoleDecision(
        _name_rest(first.label, profiles),
        "first_speaker",
        f"{first.label} spoke first (at {first.first_t:.1f} s); no voiceprint or phrase decided",
    )
