"""Scoring helpers shared by benchmarks and tests: WER/CER, frame F1, DER-free basics."""

from __future__ import annotations

import re
from collections.abc import Sequence

_PUNCT = re.compile(r"[^\w\s']")


def normalise_words(text: str) -> list[str]:
    """Lower-case, punctuation stripped (apostrophes kept), as the shared data README asks."""
    return _PUNCT.sub(" ", text.lower()).split()


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(ref: str, hyp: str) -> float:
    r = normalise_words(ref)
    return edit_distance(r, normalise_words(hyp)) / max(1, len(r))


def corpus_wer(pairs: Sequence[tuple[str, str]]) -> float:
    errors = sum(edit_distance(normalise_words(r), normalise_words(h)) for r, h in pairs)
    words = sum(len(normalise_words(r)) for r, _ in pairs)
    return errors / max(1, words)


def f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, score
