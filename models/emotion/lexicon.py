"""Valence from the words: VADER, the NRC emotion lexicon and curated complaint phrases.

Valence runs from -1 (hostile, complaining) to +1 (pleased). English uses VADER's compound
score, NRC anger/negative words and the phrase list; Mandarin (no VADER) uses the phrase
lists only. Phrases are what contact-center callers say when they are upset, which general
sentiment lexicons miss ("speak to a manager", "third time I call", "找你们领导").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

# Complaint and anger phrases. Weight: how strongly each one signals an upset caller.
ANGER_PHRASES_EN: dict[str, float] = {
    "ridiculous": 0.6,
    "unacceptable": 0.6,
    "outrageous": 0.6,
    "disgusting": 0.6,
    "pathetic": 0.6,
    "useless": 0.5,
    "incompetent": 0.6,
    "i am angry": 0.7,
    "i'm angry": 0.7,
    "really angry": 0.8,
    "so angry": 0.8,
    "furious": 0.8,
    "fed up": 0.6,
    "sick of": 0.6,
    "sick and tired": 0.7,
    "had enough": 0.6,
    "speak to a manager": 0.6,
    "speak to your manager": 0.6,
    "speak to a supervisor": 0.6,
    "talk to a manager": 0.6,
    "talk to your supervisor": 0.6,
    "file a complaint": 0.5,
    "make a complaint": 0.5,
    "waste of time": 0.6,
    "wasting my time": 0.6,
    "nobody called me back": 0.5,
    "no one called me back": 0.5,
    "been waiting for weeks": 0.4,
    "been waiting for hours": 0.4,
    "third time": 0.4,
    "every single time": 0.4,
    "lied to me": 0.6,
    "rip off": 0.6,
    "ripped off": 0.6,
    "scam": 0.6,
    "terrible service": 0.6,
    "worst service": 0.7,
    "not happy": 0.4,
    "are you kidding": 0.5,
    "you people": 0.4,
    "cancel everything": 0.4,
    "damn": 0.5,
    "hell": 0.3,
    "bloody": 0.4,
}

ANGER_PHRASES_ZH: dict[str, float] = {
    "投诉": 0.5,
    "太差了": 0.6,
    "太过分了": 0.7,
    "气死": 0.8,
    "受不了": 0.6,
    "不满意": 0.4,
    "找你们领导": 0.6,
    "找你们经理": 0.6,
    "叫你们领导": 0.6,
    "你们领导": 0.4,
    "骗子": 0.7,
    "骗人": 0.6,
    "耽误我时间": 0.6,
    "浪费我时间": 0.6,
    "等了半天": 0.4,
    "第三次": 0.4,
    "什么破": 0.6,
    "垃圾": 0.6,
    "有病": 0.7,
    "凭什么": 0.5,
    "搞什么": 0.5,
    "没人管": 0.5,
    "没人回": 0.4,
    "很生气": 0.8,
    "非常生气": 0.9,
    "愤怒": 0.7,
    "不可理喻": 0.7,
    "离谱": 0.5,
    "退钱": 0.4,
}

POSITIVE_PHRASES_ZH: dict[str, float] = {
    "谢谢": 0.3,
    "感谢": 0.3,
    "太好了": 0.5,
    "满意": 0.4,
    "非常好": 0.5,
    "辛苦了": 0.4,
    "麻烦你了": 0.2,
}

_NEGATORS_ZH = ("不", "没")


@dataclass(frozen=True)
class Valence:
    valence: float  # -1 .. +1
    cues: tuple[str, ...] = field(default_factory=tuple)  # phrases and words that moved it


@cache
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


@cache
def _nrc() -> dict[str, frozenset[str]]:
    """NRC word-emotion lexicon as shipped inside the NRCLex wheel (read directly: importing
    nrclex pulls TextBlob corpora that are not installed)."""
    try:
        ref = resources.files("nrclex") / "data" / "nrc_en.json"
        raw = json.loads(ref.read_text(encoding="utf-8"))
    except (ModuleNotFoundError, FileNotFoundError):
        return {}
    return {w: frozenset(tags) for w, tags in raw.items()}


_WORD_RE = re.compile(r"[a-z']+")


def _clip(x: float) -> float:
    return max(-1.0, min(1.0, x))


def english_valence(text: str) -> Valence:
    low = " " + " ".join(_WORD_RE.findall(text.lower())) + " "
    cues: list[str] = []
    phrase_neg = 0.0
    for phrase, w in ANGER_PHRASES_EN.items():
        if f" {phrase} " in low:
            cues.append(phrase)
            phrase_neg += w
    nrc = _nrc()
    anger_words = [w for w in low.split() if "anger" in nrc.get(w, ())]
    cues.extend(w for w in anger_words if w not in cues)
    compound = float(_vader().polarity_scores(text)["compound"])
    # VADER alone calls "I am really angry" only mildly negative and is blind to
    # complaint phrases; the phrase and NRC anger evidence pushes further down.
    v = compound - min(phrase_neg, 1.0) - 0.15 * min(len(anger_words), 3)
    return Valence(_clip(v), tuple(cues))


def mandarin_valence(text: str) -> Valence:
    cues: list[str] = []
    v = 0.0
    for phrase, w in ANGER_PHRASES_ZH.items():
        if phrase in text:
            cues.append(phrase)
            v -= w
    for phrase, w in POSITIVE_PHRASES_ZH.items():
        i = text.find(phrase)
        if i < 0:
            continue
        if i > 0 and text[i - 1] in _NEGATORS_ZH:  # 不满意: negated praise is a complaint
            continue
        cues.append(phrase)
        v += w
    return Valence(_clip(v), tuple(cues))


def text_valence(text: str, language: str = "en") -> Valence:
    """Valence of one utterance's words in its language (``zh*`` = Mandarin)."""
    if not text.strip():
        return Valence(0.0)
    if language.startswith("zh"):
        return mandarin_valence(text)
    return english_valence(text)
