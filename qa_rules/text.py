"""Text normalisation and tolerant phrase matching over ASR words.

ASR output differs from what a QA team types: case, punctuation, contractions ("that's" /
"that is") and small slips ("recorded" heard as "recorder"). Both sides are normalised the
same way into tokens, then a phrase matches a run of transcript tokens whose joined text is
similar enough (rapidfuzz ratio). Each token keeps the index of the ASR word it came from,
so a match reports the words and times that are its evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from rapidfuzz.fuzz import ratio

_CONTRACTIONS = {
    "won't": "will not",
    "can't": "cannot",
    "shan't": "shall not",
    "let's": "let us",
    "i'm": "i am",
    "it's": "it is",
    "that's": "that is",
    "there's": "there is",
    "what's": "what is",
    "here's": "here is",
    "he's": "he is",
    "she's": "she is",
}
_SUFFIXES = (("n't", " not"), ("'re", " are"), ("'ll", " will"), ("'ve", " have"), ("'d", " would"))
_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _expand(word: str) -> list[str]:
    w = word.replace("’", "'")
    if w in _CONTRACTIONS:
        return _CONTRACTIONS[w].split()
    for suffix, repl in _SUFFIXES:
        if w.endswith(suffix) and len(w) > len(suffix):
            return (w[: -len(suffix)] + repl).split()
    return [w.replace("'", "")]


def tokens(text: str) -> list[str]:
    """Lower-case word tokens with punctuation dropped and contractions expanded."""
    out: list[str] = []
    for m in _WORD_RE.finditer(text.lower().replace("’", "'")):
        out.extend(_expand(m.group(0)))
    return out


@lru_cache(maxsize=4096)
def phrase_tokens(phrase: str) -> tuple[str, ...]:
    return tuple(tokens(phrase))


@dataclass(frozen=True)
class TokenSeq:
    """An utterance as tokens, each pointing back at its ASR word."""

    toks: tuple[str, ...]
    word_index: tuple[int, ...]

    @classmethod
    def from_words(cls, words: list[str]) -> TokenSeq:
        toks: list[str] = []
        idx: list[int] = []
        for i, w in enumerate(words):
            for t in tokens(w):
                toks.append(t)
                idx.append(i)
        return cls(tuple(toks), tuple(idx))


@dataclass(frozen=True)
class Match:
    phrase: str
    start: int  # token positions in the TokenSeq, end exclusive
    end: int
    score: float


def find_phrase(seq: TokenSeq, phrase: str, min_score: float) -> Match | None:
    """Best occurrence of ``phrase`` in ``seq`` scoring at least ``min_score`` (0-1)."""
    ptoks = phrase_tokens(phrase)
    n = len(ptoks)
    if n == 0 or not seq.toks:
        return None
    # Exact run first: cheap and the common case.
    for i in range(len(seq.toks) - n + 1):
        if seq.toks[i : i + n] == ptoks:
            return Match(phrase, i, i + n, 1.0)
    target = " ".join(ptoks)
    if min_score >= 1.0 or len(target) < 8:  # short phrases: one slip is another word
        return None
    best: Match | None = None
    cutoff = min_score * 100
    # Windows one token shorter/longer absorb a dropped or split word.
    for length in {max(1, n - 1), n, n + 1}:
        for i in range(len(seq.toks) - length + 1):
            cand = " ".join(seq.toks[i : i + length])
            score = ratio(target, cand, score_cutoff=cutoff)
            if score and (best is None or score > best.score * 100):
                best = Match(phrase, i, i + length, score / 100)
    return best
