"""Every phrase of a rule set, compiled once and found in an utterance in one pass.

A rule set (the active packs) is immutable, so its phrase index and regexes are built once
and shared by every call's engine. Per utterance, ``UtteranceMatches`` holds the hits of all
phrases; rules then only look up theirs, which keeps 200 rules well under a millisecond.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rapidfuzz.fuzz import ratio

from qa_rules.schema import (
    DEFAULT_HOLD_PHRASES,
    AnyRule,
    CompositeRule,
    HoldRule,
    PhraseRule,
    RulePack,
)
from qa_rules.text import (
    STOPWORDS,
    Match,
    PhraseIndex,
    TokenSeq,
    is_cjk,
    negated,
    phrase_tokens,
)

HOLD_FUZZY = 0.85
HOLD_WITHIN_S = 15.0  # an announcement this long before a silence makes it a hold

# "mm-hmm" while the other side talks is listening, not interrupting.
BACKCHANNEL = frozenset(
    [
        "yeah",
        "yes",
        "yep",
        "ok",
        "okay",
        "right",
        "sure",
        "mhm",
        "mm",
        "hmm",
        "uh",
        "huh",
        "uhhuh",
        "mmhmm",
        "oh",
        "ah",
        "i",
        "see",
        "alright",
        # Mandarin, one character per token: 嗯 / 对对对 / 好的 / 是的 / 行吧 / 明白了 / 可以
        "嗯",
        "对",
        "好",
        "是",
        "哦",
        "啊",
        "行",
        "的",
        "吧",
        "呀",
        "噢",
        "喔",
        "唔",
        "了",
        "明",
        "白",
        "可",
        "以",
    ]
)


@dataclass(frozen=True)
class Occurrence:
    """One item of a rule (a phrase or a regex) found in one utterance."""

    item: int  # index into PhraseRule.items
    match: Match


class CompiledRules:
    """The phrase index and regexes of one rule set."""

    def __init__(self, rules: Sequence[AnyRule]) -> None:
        # Hold announcements are always looked for (dead air rules skip announced holds):
        # the hold rules' own phrases and window, else the defaults.
        holds = [r for r in rules if isinstance(r, HoldRule)]
        self.hold_phrases = sorted(
            {(p, r.fuzzy) for r in holds for p in r.phrases}
            or {(p, HOLD_FUZZY) for p in DEFAULT_HOLD_PHRASES}
        )
        self.hold_within_s = max((r.announce_within_s for r in holds), default=HOLD_WITHIN_S)
        pairs: set[tuple[str, float]] = set(self.hold_phrases)
        self.regexes: dict[str, re.Pattern[str]] = {}
        for r in rules:
            if isinstance(r, PhraseRule):
                pairs.update((p, r.fuzzy) for p in [*r.phrases, *r.unless_near])
                for pattern in r.regex:
                    self.regexes[pattern] = re.compile(pattern)
            elif isinstance(r, HoldRule):
                pairs.update((p, r.fuzzy) for p in r.phrases)
            elif isinstance(r, CompositeRule):
                for c in r.conditions():
                    pairs.update((p, c.fuzzy) for p in c.said or [])
        self.index = PhraseIndex(sorted(pairs))
        # per phrase rule: the index keys of its items, to skip rules nothing hit
        self.keys: dict[int, frozenset[tuple[str, float]]] = {
            id(r): frozenset((p, r.fuzzy) for p in r.phrases)
            for r in rules
            if isinstance(r, PhraseRule)
        }

    def scan(self, seq: TokenSeq) -> UtteranceMatches:
        return UtteranceMatches(seq, self.index.search(seq), self)


_cache: dict[tuple[int, ...], tuple[list[RulePack], CompiledRules]] = {}
_cache_lock = threading.Lock()


def compiled_for(packs: list[RulePack], rules: Sequence[AnyRule]) -> CompiledRules:
    """The compiled form of a pack list, built once however many calls use it."""
    key = tuple(id(p) for p in packs)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], packs, strict=True)):
            return hit[1]
        compiled = CompiledRules(rules)
        if len(_cache) >= 16:
            _cache.pop(next(iter(_cache)))
        _cache[key] = (list(packs), compiled)  # holding the packs keeps their ids unique
        return compiled


class UtteranceMatches:
    """What one utterance says, in terms of the rule set's phrases and regexes."""

    def __init__(
        self,
        seq: TokenSeq,
        hits: dict[tuple[str, float], list[Match]],
        compiled: CompiledRules,
    ) -> None:
        self.seq = seq
        self._hits = hits
        self._compiled = compiled
        self._regex_hits: dict[str, list[Match]] = {}

    def phrase(self, phrase: str, fuzzy: float) -> list[Match]:
        found = self._hits.get((phrase, fuzzy), [])
        if any(m.score < 1.0 for m in found):
            found = [m for m in found if m.score >= 1.0 or self._content_kept(phrase, m)]
        return found

    def _content_kept(self, phrase: str, m: Match) -> bool:
        """A fuzzy match may misspell a word of the phrase, not leave one out: "can I
        confirm your" is not "can I confirm your name", however close the characters."""
        heard = self.seq.toks[m.start : m.end]
        for p in phrase_tokens(phrase):
            if len(p) < 3 or p in STOPWORDS:
                continue
            if not any(ratio(p, w) >= 60 for w in heard):
                return False
        return True

    def regex(self, pattern: str) -> list[Match]:
        if pattern not in self._regex_hits:
            rx = self._compiled.regexes.get(pattern) or re.compile(pattern)
            out = []
            for m in rx.finditer(self.seq.text):
                if m.end() > m.start():
                    a, b = self.seq.tokens_of_chars(m.start(), m.end())
                    if b > a:
                        out.append(Match(f"re:{pattern}", a, b, 1.0))
            self._regex_hits[pattern] = out
        return self._regex_hits[pattern]

    def announces_hold(self) -> bool:
        return any(self.phrase(p, f) for p, f in self._compiled.hold_phrases)

    def any_phrase(self, phrases: Iterable[str], fuzzy: float) -> Match | None:
        found = [m for p in phrases for m in self.phrase(p, fuzzy)]
        return min(found, key=lambda m: m.start) if found else None

    def occurrences(self, rule: PhraseRule) -> list[Occurrence]:
        """Each item of the rule found here, minus negated ones and ones near an exclusion."""
        keys = self._compiled.keys.get(id(rule))
        if keys is not None and not rule.regex and keys.isdisjoint(self._hits):
            return []
        out: list[Occurrence] = []
        for i, item in enumerate(rule.items):
            found = (
                self.regex(item.removeprefix("re:"))
                if i >= len(rule.phrases)
                else self.phrase(item, rule.fuzzy)
            )
            for m in found:
                if rule.ignore_negated and negated(self.seq, m.start):
                    continue
                if rule.unless_near and self._near(rule, m):
                    continue
                out.append(Occurrence(i, m))
        # at one position the best-scoring item is reported (the exact 您 phrase, not a
        # fuzzy 你 one listed before it)
        out.sort(key=lambda o: (o.match.start, -o.match.score, o.item))
        return out

    def _near(self, rule: PhraseRule, m: Match) -> bool:
        for p in rule.unless_near:
            for x in self.phrase(p, rule.fuzzy):
                gap = max(x.start - m.end, m.start - x.end, 0)
                if gap <= rule.near_words:
                    return True
        return False

    def combination(self, rule: PhraseRule, occ: list[Occurrence]) -> list[Occurrence] | None:
        """All items within ``within_words`` tokens (in order for ``in_order``), if present.

        Of the combinations (one occurrence per item, up to 8 each) that fit, the one whose
        last item starts earliest; on a tie, the first in item-by-item order. Found without
        trying every combination: 8**n of them stalled the engine at ten phrases."""
        n = len(rule.items)
        by_item: list[list[Occurrence]] = [[o for o in occ if o.item == i][:8] for i in range(n)]
        if any(not b for b in by_item):
            return None
        fit = _Fit(by_item, rule.within_words or 0, rule.match == "in_order")
        for last in sorted({o.match.start for b in by_item for o in b}):
            if fit.possible(last):
                return fit.first(last)
        return None


NO_END = -(10**18)  # "no chain": below any token index minus any limit


class _Fit:
    """Combinations of occurrences, one per item, with every start at most ``last`` and
    (``last`` minus the smallest end) within ``limit``; in order when ``ordered``."""

    def __init__(self, by_item: list[list[Occurrence]], limit: int, ordered: bool) -> None:
        self.by_item = by_item
        self.limit = limit
        self.ordered = ordered

    def _best_ends(self, last: int) -> list[list[int]]:
        """best[i][k]: the largest smallest-end of items i.. when item i is occurrence k."""
        n = len(self.by_item)
        best = [[NO_END] * len(b) for b in self.by_item]
        for i in range(n - 1, -1, -1):
            for k, o in enumerate(self.by_item[i]):
                if o.match.start > last:
                    continue
                if i == n - 1:
                    best[i][k] = o.match.end
                    continue
                nxt = [
                    best[i + 1][j]
                    for j, o2 in enumerate(self.by_item[i + 1])
                    if not self.ordered or o2.match.start > o.match.start
                ]
                rest = max(nxt, default=NO_END)
                best[i][k] = NO_END if rest == NO_END else min(o.match.end, rest)
        return best

    def possible(self, last: int) -> bool:
        return any(last - e <= self.limit for e in self._best_ends(last)[0] if e != NO_END)

    def first(self, last: int) -> list[Occurrence]:
        """The first fitting combination in item-by-item order (``possible(last)`` holds)."""
        best = self._best_ends(last)
        out: list[Occurrence] = []
        low = -NO_END  # the smallest end chosen so far
        for i, b in enumerate(self.by_item):
            for k, o in enumerate(b):
                if best[i][k] == NO_END:
                    continue
                if self.ordered and out and o.match.start <= out[-1].match.start:
                    continue
                if last - min(low, best[i][k]) <= self.limit:  # the rest can still fit
                    out.append(o)
                    low = min(low, o.match.end)
                    break
        return out


def is_backchannel(seq: TokenSeq) -> bool:
    """A short acknowledgement: up to 3 words ("mm-hmm, yeah, okay"), or up to 4 Chinese
    characters (one token each: "好的好的", "嗯嗯对"), all of them backchannel words."""
    n = len(seq.toks)
    limit = 4 if seq.toks and all(is_cjk(t) for t in seq.toks) else 3
    return 0 < n <= limit and all(t in BACKCHANNEL for t in seq.toks)
