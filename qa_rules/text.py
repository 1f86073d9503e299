"""Language-aware tokenisation and tolerant phrase matching over ASR words (English, Mandarin).

ASR output differs from what a QA team types: case, punctuation, contractions ("that's" /
"that is"), script (traditional / simplified Chinese), numbers ("four one one one" / "4111")
and small slips ("recorded" heard as "recorder"). Rule phrases and ASR words are normalised
the same way into tokens; a phrase then matches a run of transcript tokens exactly, or one
whose text is similar enough (rapidfuzz ``ratio``). Every token remembers the span of ASR
words it came from, so a match reports the words (and so the times) that are its evidence.

Normalisation (identical for phrases and ASR words)
----------------------------------------------------
1. NFKC (full-width forms -> ASCII), traditional -> simplified Chinese per character
   (OpenCC's ``TSCharacters`` table, first candidate), lower case, curly apostrophes -> ``'``.
2. Token = a Han character (each one is its own token: Whisper writes Chinese without spaces
   or as multi-character "words"), or a run of other letters/digits with at most one inner
   apostrophe (so "我的iPhone坏了" -> 我 的 iphone 坏 了). Everything else (ASCII and CJK
   punctuation, hyphens, commas) separates tokens and is dropped. Contractions are expanded
   ("can't" -> cannot, "isn't" -> is not, "they're" -> they are, "i'd" -> i would, other
   apostrophes are removed). A decimal "4.5" becomes ``4 point 5`` (as spoken).
3. Spoken numbers become digits; then adjacent digit tokens merge into ONE token that spans
   all their words ("4111 1111", "4,111", "555-1212" are one token each). A token mixing
   digits and letters ("3rd", "mp3") is left as is. Grammar, applied left to right:

   English, one *group* is read greedily and yields a value::

       group   := sub1000 (BIG [and] sub1000?)*      BIG = thousand|million|billion, decreasing
       sub1000 := (sub100 | "a" | DIGITS<1000) "hundred" [and] sub100?   (a hundred and five = 105)
                | sub100 | "a" BIG | bare "hundred"/BIG (= 1 x scale) | DIGITS<1000 BIG
       sub100  := TENS [UNIT|single digit] | TEEN | UNIT       (twenty one / twenty-one = 21)
       UNIT = zero..nine, TEEN = ten..nineteen, TENS = twenty..ninety

   Consecutive groups are written one after the other as digit strings, which is how digit
   sequences and years are read: "four one one one" -> 4111, "nineteen eighty five" ->
   1985, "twenty twenty four" -> 2024. "double X" / "triple X" (X a single digit or "oh")
   repeat the digit. "oh" (or "o") is 0 only inside a digit run: right after a number and
   followed (possibly after more "oh"s) by one ("four oh five" -> 405; "oh, okay" stays).
   Ordinals ("first", "3rd") and words like "once", "someone", "none" are not numbers.

   Chinese, a maximal run of 零〇一二三四五六七八九幺两 十百千万亿: without a unit character it
   is read digit by digit (一三八 -> 138, 二零二四 -> 2024, 幺 = 1, 两 = 2); with units it is
   compositional (二十三 -> 23, 十五 -> 15, 一百零五 -> 105, 三千五 -> 3500, 两万三 ->
   23000). Two digits in a row inside a compositional run start a new number that is
   concatenated. Every such run is converted, also idiomatic ones (一下 -> "1 下",
   千万 -> 10000000): it is the same on both sides, so matching is unaffected.

Matching
--------
Exact token runs always count (score 1.0). Fuzzy windows of n-1, n, n+1 tokens are scored
with ``ratio`` on the window text (Han characters joined without spaces, other tokens with
one), unless the phrase is short: fewer than 8 characters of non-Han text AND fewer than 4 Han
characters -> exact only. Digits never slip: a fuzzy window is only accepted when its digit
tokens are exactly the phrase's digit tokens, in order (none if the phrase has none); so
"4111" never matches "4112", and a phrase without digits never matches across a number.
Negations never slip either: a fuzzy window holds as many negation tokens (``is_negation``:
not, never, 不, 没, 别 ... but not the 不 of 不好意思 or the 别 of 特别) as the phrase, so
"本次通话不会被录音" is not "本次通话会被录音" and "anything I can do" is not "nothing I can
do", however close the characters.
``find_all`` keeps every non-overlapping occurrence, best first (exact, then higher score,
earlier, shorter); ``find_phrase`` is the first exact one or else the best fuzzy one.
``PhraseIndex`` gives ``find_all`` for hundreds of phrases at once, fast (see its notes).
"""

from __future__ import annotations

import importlib.util
import math
import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

from rapidfuzz.distance import LCSseq
from rapidfuzz.fuzz import ratio

__all__ = [
    "NEGATIONS",
    "Match",
    "PhraseIndex",
    "TokenSeq",
    "find_all",
    "find_phrase",
    "is_cjk",
    "is_negation",
    "join_words",
    "negated",
    "phrase_tokens",
    "speech_units",
    "to_simplified",
    "tokens",
]

# ---------------------------------------------------------------------------------------
# Characters
# ---------------------------------------------------------------------------------------
_HAN = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_W = rf"(?:(?![{_HAN}])[^\W_])"  # a letter or digit that is not a Han character
_TOKEN_RE = re.compile(rf"([{_HAN}])|([0-9]+(?:\.[0-9]+)+)|({_W}+(?:'{_W}+)?)")
_UNIT_RE = re.compile(rf"([{_HAN}])|[0-9]+(?:[.,:][0-9]+)*|{_W}+(?:'{_W}+)*")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'"})


def is_cjk(ch: str) -> bool:
    """True for one Han character (CJK unified ideographs, extensions, compatibility, 〇)."""
    if len(ch) != 1:
        return False
    o = ord(ch)
    return (
        0x4E00 <= o <= 0x9FFF
        or 0x3400 <= o <= 0x4DBF
        or o == 0x3007
        or 0xF900 <= o <= 0xFAFF
        or 0x20000 <= o <= 0x3134F
    )


_TS_TABLE: dict[int, str] | None = None


def _ts_table() -> dict[int, str]:
    """Traditional -> simplified one-character table from OpenCC's TSCharacters.txt (once)."""
    global _TS_TABLE
    if _TS_TABLE is None:
        spec = importlib.util.find_spec("opencc")  # locate the data; never import the converter
        locs = list(spec.submodule_search_locations or []) if spec else []
        path = next(
            (p for p in (Path(d) / "dictionary" / "TSCharacters.txt" for d in locs) if p.exists()),
            None,
        )
        if path is None:
            raise RuntimeError(
                "opencc-python-reimplemented (TSCharacters.txt) is required to normalise "
                "traditional Chinese: pip install opencc-python-reimplemented==0.1.7"
            )
        table: dict[int, str] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            src, _, cands = line.partition("\t")
            first = cands.split(" ", 1)[0].strip()
            if len(src) == 1 and first and first != src:
                table[ord(src)] = first
        _TS_TABLE = table
    return _TS_TABLE


def _cjk_edge(ch: str) -> bool:
    """A Han character or CJK / full-width punctuation (no space next to it in display)."""
    return is_cjk(ch) or "\u3000" <= ch <= "\u303f" or "\uff00" <= ch <= "\uffef"


def join_words(words: Iterable[str]) -> str:
    """ASR words as display text: one space between words, none between Chinese ones
    ("不 关 我 的 事，" -> "不关我的事，", "我 的 iPhone 坏 了" -> "我的 iPhone 坏了")."""
    out = ""
    for w in words:
        if not w:
            continue
        if out and not (_cjk_edge(out[-1]) and _cjk_edge(w[0])):
            out += " "
        out += w
    return out


def to_simplified(text: str) -> str:
    """Traditional -> simplified Chinese, character by character (``str.translate``)."""
    if text.isascii():
        return text
    return text.translate(_ts_table())


# ---------------------------------------------------------------------------------------
# Words -> raw tokens
# ---------------------------------------------------------------------------------------
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


def _expand(w: str) -> list[str]:
    if w in _CONTRACTIONS:
        return _CONTRACTIONS[w].split()
    for suffix, repl in _SUFFIXES:
        if w.endswith(suffix) and len(w) > len(suffix):
            return (w[: -len(suffix)] + repl).split()
    return [w.replace("'", "")]


_UNITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
}
_TEENS = {
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_BIG = {"thousand": 1000, "million": 10**6, "billion": 10**9}
_SCALES = {"hundred": 100, **_BIG}
_OH = frozenset({"oh", "o"})
_REPEAT = {"double": 2, "triple": 3}
_ZH_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "幺": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_ZH_SMALL = {"十": 10, "百": 100, "千": 1000}
_ZH_BIG = {"万": 10**4, "亿": 10**8}
_ZH_NUM = frozenset(_ZH_DIGITS) | frozenset(_ZH_SMALL) | frozenset(_ZH_BIG)
_NUMBER_WORDS = frozenset(_UNITS) | frozenset(_TEENS) | frozenset(_TENS) | frozenset(_SCALES)
_NUMERIC = _NUMBER_WORDS | _ZH_NUM


def _is_digits(t: str) -> bool:
    return t.isdigit() and t.isascii()


@lru_cache(maxsize=65536)
def _word_raw(word: str) -> tuple[tuple[str, ...], bool]:
    """One ASR word (or any text) -> raw tokens before number handling, and whether any
    token may be part of a number."""
    if not word.isascii():
        word = to_simplified(unicodedata.normalize("NFKC", word))
    text = word.lower().translate(_APOSTROPHES)
    out: list[str] = []
    for m in _TOKEN_RE.finditer(text):
        han, dec, w = m.groups()
        if han:
            out.append(han)
        elif dec:
            parts = dec.split(".")
            out.append(parts[0])
            for p in parts[1:]:
                out += ("point", p)
        elif w:
            out.extend(_expand(w) if "'" in w else (w,))
    has_num = any(t in _NUMERIC or _is_digits(t) for t in out)
    return tuple(out), has_num


# ---------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------
def _en_sub100(r: Sequence[str], i: int) -> tuple[int, int] | None:
    t = r[i]
    v = _TENS.get(t)
    if v is not None:
        if i + 1 < len(r):
            nx = r[i + 1]
            u = _UNITS.get(nx)
            if u:
                return v + u, i + 2
            if len(nx) == 1 and nx in "123456789":
                return v + int(nx), i + 2
        return v, i + 1
    v = _TEENS.get(t)
    if v is None:
        v = _UNITS.get(t)
    return (v, i + 1) if v is not None else None


def _en_sub1000(r: Sequence[str], i: int, lead: bool) -> tuple[int, int] | None:
    """A number below 1000 (or a count for the scale that follows) starting at ``i``.
    ``lead``: may start with "a"/a bare scale word (not right after a scale)."""
    n = len(r)
    t = r[i]
    nxt_scale = i + 1 < n and r[i + 1] in _SCALES
    if lead and t == "a" and nxt_scale:
        v, j = 1, i + 1
    elif lead and t in _SCALES:
        v, j = 1, i  # "hundred percent" = "one hundred percent"
    elif nxt_scale and _is_digits(t) and len(t) <= 3 and t[0] != "0":
        v, j = int(t), i + 1  # "5 hundred", "20 thousand"
    else:
        s = _en_sub100(r, i)
        if s is None:
            return None
        v, j = s
    if j < n and r[j] == "hundred" and 1 <= v <= 99:
        v *= 100
        j += 1
        k = j + 1 if j < n and r[j] == "and" else j
        if k < n:
            s = _en_sub100(r, k)
            if s is not None:
                v += s[0]
                j = s[1]
    return v, j


def _en_group(r: Sequence[str], i: int) -> tuple[str, int] | None:
    s = _en_sub1000(r, i, lead=True)
    if s is None:
        return None
    v, j = s
    n = len(r)
    total, last = 0, 10**12
    while j < n and 1 <= v <= 999:
        sc = _BIG.get(r[j])
        if sc is None or sc >= last:
            break
        total += v * sc
        last, v, j = sc, 0, j + 1
        k = j + 1 if j < n and r[j] == "and" else j
        if k < n:
            s = _en_sub1000(r, k, lead=False)
            if s is not None:
                v, j = s
    return str(total + v), j


def _zh_run(chars: Sequence[str]) -> str:
    """A run of Chinese numeral characters -> digit string (see module docstring)."""
    if not any(c in _ZH_SMALL or c in _ZH_BIG for c in chars):
        return "".join(str(_ZH_DIGITS[c]) for c in chars)
    out: list[str] = []
    total = section = 0
    num: int | None = None
    last_unit = 0
    zero = used = False

    def finish() -> str:
        val = total + section
        if num is not None:
            val += num * (last_unit // 10) if last_unit >= 100 and not zero else num
        return str(val)

    for c in chars:
        d = _ZH_DIGITS.get(c)
        if d is not None:
            if num is not None:  # two digits in a row: a new number starts
                out.append(finish())
                total = section = last_unit = 0
                zero = False
            if d == 0:
                zero, num = True, None
            else:
                num = d
            used = True
        elif c in _ZH_SMALL:
            u = _ZH_SMALL[c]
            section += (1 if num is None else num) * u
            num, last_unit, zero, used = None, u, False, True
        else:
            u = _ZH_BIG[c]
            total += ((section + (num or 0)) or 1) * u
            section, num, last_unit, zero, used = 0, None, u, False, True
    if used:
        out.append(finish())
    return "".join(out)


def _number_start(r: Sequence[str], k: int) -> bool:
    if k >= len(r):
        return False
    t = r[k]
    return t in _UNITS or t in _TEENS or t in _TENS or t in _REPEAT or _is_digits(t) or t in _ZH_NUM


def _numbers(
    raw: Sequence[str], ws: Sequence[int], we: Sequence[int]
) -> tuple[list[str], list[int], list[int]]:
    """Spoken numbers -> digit tokens; adjacent digit tokens merge (spans are unioned)."""
    toks: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    digit: list[bool] = []

    def emit(tok: str, a: int, b: int, is_digit: bool) -> None:
        if is_digit and digit and digit[-1]:
            toks[-1] += tok
            ends[-1] = we[b - 1]
        else:
            toks.append(tok)
            starts.append(ws[a])
            ends.append(we[b - 1])
            digit.append(is_digit)

    n = len(raw)
    i = 0
    while i < n:
        t = raw[i]
        g = _en_group(raw, i) if (t in _NUMBER_WORDS or t == "a" or _is_digits(t)) else None
        if g is not None:
            emit(g[0], i, g[1], True)
            i = g[1]
        elif _is_digits(t):
            emit(t, i, i + 1, True)
            i += 1
        elif t in _ZH_NUM:
            j = i + 1
            while j < n and raw[j] in _ZH_NUM:
                j += 1
            emit(_zh_run(raw[i:j]), i, j, True)
            i = j
        elif t in _OH and digit and digit[-1]:
            k = i + 1
            while k < n and raw[k] in _OH:
                k += 1
            if _number_start(raw, k):
                emit("0", i, i + 1, True)
            else:
                emit(t, i, i + 1, False)
            i += 1
        elif t in _REPEAT and i + 1 < n:
            x = raw[i + 1]
            d = _UNITS.get(x, 0 if x in _OH else None)
            if d is None and len(x) == 1 and x.isascii() and x.isdigit():
                d = int(x)
            if d is not None:
                emit(str(d) * _REPEAT[t], i, i + 2, True)
                i += 2
            else:
                emit(t, i, i + 1, False)
                i += 1
        else:
            emit(t, i, i + 1, False)
            i += 1
    return toks, starts, ends


# ---------------------------------------------------------------------------------------
# Token sequences
# ---------------------------------------------------------------------------------------
def _fuzzy_join(toks: Sequence[str]) -> str:
    """Text compared by the fuzzy scorer: Han characters without spaces, else one space."""
    parts: list[str] = []
    prev_han = False
    for t in toks:
        han = is_cjk(t)
        if parts and not (han and prev_han):
            parts.append(" ")
        parts.append(t)
        prev_han = han
    return "".join(parts)


@dataclass(frozen=True)
class TokenSeq:
    """An utterance as normalised tokens, each pointing back at the ASR words it came from."""

    toks: tuple[str, ...]
    word_start: tuple[int, ...]  # index of the first ASR word of each token
    word_end: tuple[int, ...]  # index after the last ASR word of each token

    @classmethod
    def from_words(cls, words: Sequence[str]) -> TokenSeq:
        raw: list[str] = []
        ws: list[int] = []
        has_num = False
        for i, w in enumerate(words):
            wt, num = _word_raw(w)
            if wt:
                raw.extend(wt)
                ws.extend([i] * len(wt))
                has_num = has_num or num
        we = [i + 1 for i in ws]
        if has_num:
            raw, ws, we = _numbers(raw, ws, we)
        return cls(tuple(raw), tuple(ws), tuple(we))

    @classmethod
    def from_text(cls, text: str) -> TokenSeq:
        return cls.from_words(text.split())

    def words_of(self, start: int, end: int) -> range:
        """ASR word indices covered by tokens[start:end]."""
        start = max(start, 0)
        end = min(end, len(self.toks))
        if start >= end:
            return range(0)
        return range(self.word_start[start], self.word_end[end - 1])

    @cached_property
    def text(self) -> str:
        return " ".join(self.toks)

    @cached_property
    def _char_bounds(self) -> tuple[list[int], list[int]]:
        starts: list[int] = []
        ends: list[int] = []
        pos = 0
        for t in self.toks:
            starts.append(pos)
            pos += len(t)
            ends.append(pos)
            pos += 1
        return starts, ends

    def tokens_of_chars(self, a: int, b: int) -> tuple[int, int]:
        """Token range [start, end) overlapping the character range [a, b) of ``text``."""
        starts, ends = self._char_bounds
        i = bisect_right(ends, a)
        if b <= a:
            return i, i
        j = bisect_left(starts, b)
        return (i, j) if j > i else (i, i)

    # -- helpers for fuzzy matching -------------------------------------------------------
    @cached_property
    def _fz(self) -> tuple[str, list[int], list[int], list[int]]:
        """Fuzzy text, per-token start/end offsets in it, prefix count of digit tokens."""
        parts: list[str] = []
        fs: list[int] = []
        fe: list[int] = []
        dcount = [0]
        pos = 0
        prev_han = False
        for t in self.toks:
            han = is_cjk(t)
            if parts and not (han and prev_han):
                parts.append(" ")
                pos += 1
            fs.append(pos)
            parts.append(t)
            pos += len(t)
            fe.append(pos)
            prev_han = han
            dcount.append(dcount[-1] + (1 if _is_digits(t) else 0))
        return "".join(parts), fs, fe, dcount

    @cached_property
    def _negcount(self) -> list[int]:
        """Prefix count of negation tokens (``is_negation``): a fuzzy window must hold as
        many as its phrase."""
        out = [0]
        for j in range(len(self.toks)):
            out.append(out[-1] + (1 if is_negation(self.toks, j) else 0))
        return out


def tokens(text: str) -> list[str]:
    """Normalised tokens of ``text`` (see the module docstring)."""
    return list(TokenSeq.from_text(text).toks)


@lru_cache(maxsize=4096)
def phrase_tokens(phrase: str) -> tuple[str, ...]:
    return TokenSeq.from_text(phrase).toks


def speech_units(words: Sequence[str]) -> tuple[int, int]:
    """(latin words, Han characters) spoken in ``words``, for words / characters per minute.

    A latin word is a run of letters/digits (a contraction or "4,111" is one); each Han
    character counts once; punctuation counts nothing. A number written in digits counts as
    one word however it was said.
    """
    latin = han = 0
    for m in _UNIT_RE.finditer(" ".join(words)):
        if m.group(1):
            han += 1
        else:
            latin += 1
    return latin, han


NEGATIONS: frozenset[str] = frozenset(
    {"not", "no", "never", "cannot", "without", "nobody", "nothing", "neither", "nor"}
    | {"不", "没", "别", "未", "无", "莫"}
)

# Chinese words in which a negation character negates nothing that follows: politeness
# (不好意思 "sorry", 没关系 "never mind", 不客气 "you're welcome"), connectives (不过 "but",
# 不管 "whatever"), and words where it is another morpheme (特别 "especially", 别人
# "others", 未来 "future", 无论 "regardless"). Chinese is one token per character, so these
# are recognised around the character: "没问题，通话会被录音" is not a negated disclosure.
_ZH_NOT_NEGATION = (
    "不好意思",
    "不客气",
    "不用客气",
    "不用谢",
    "不谢",
    "不错",
    "不过",
    "不仅",
    "不但",
    "不管",
    "不论",
    "不久",
    "不少",
    "不断",
    "不停",
    "不然",
    "不如",
    "不由得",
    "不免",
    "对不起",
    "差不多",
    "了不起",
    "说不定",
    "不得不",
    "要不",
    "忍不住",
    "没关系",
    "没问题",
    "没事",
    "没什么",
    "没错",
    "埋没",
    "淹没",
    "出没",
    "别人",
    "别的",
    "别处",
    "别客气",
    "别致",
    "特别",
    "区别",
    "分别",
    "级别",
    "类别",
    "告别",
    "差别",
    "性别",
    "识别",
    "鉴别",
    "个别",
    "派别",
    "离别",
    "辨别",
    "判别",
    "未来",
    "无论",
    "无线",
    "无疑",
    "无限",
    "无数",
    "无聊",
    "无偿",
    "无比",
    "无锡",
    "莫名其妙",
    "莫非",
)


def _negation_exceptions() -> dict[str, tuple[tuple[tuple[str, ...], int], ...]]:
    """Negation character -> (word as tokens, offset of the character in it)."""
    out: dict[str, list[tuple[tuple[str, ...], int]]] = {}
    for word in _ZH_NOT_NEGATION:
        for k, ch in enumerate(word):
            if ch in NEGATIONS:
                out.setdefault(ch, []).append((tuple(word), k))
    return {ch: tuple(v) for ch, v in out.items()}


_NEG_EXCEPT = _negation_exceptions()


def is_negation(toks: Sequence[str], j: int) -> bool:
    """Whether token ``j`` negates: a negation word, and for a Chinese character neither
    part of a word like 不好意思 / 特别 / 没问题 (see ``_ZH_NOT_NEGATION``) nor the middle of
    an A-not-A question (能不能保证 asks for a promise)."""
    t = toks[j]
    if t not in NEGATIONS:
        return False
    if 0 < j < len(toks) - 1 and is_cjk(t) and toks[j - 1] == toks[j + 1]:
        return False  # A-not-A asks, it does not deny: 能不能, 是不是, 有没有
    for word, k in _NEG_EXCEPT.get(t, ()):
        a = j - k
        if a >= 0 and tuple(toks[a : a + len(word)]) == word:
            return False
    return True


def negated(seq: TokenSeq, start: int, span: int = 3) -> bool:
    """A negation token within ``span`` tokens before token ``start``."""
    return any(is_negation(seq.toks, j) for j in range(max(0, start - span), max(0, start)))


# ---------------------------------------------------------------------------------------
# Phrase matching
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Match:
    phrase: str
    start: int  # token positions in the TokenSeq, end exclusive
    end: int
    score: float


class _Phrase:
    """A normalised phrase, ready for matching."""

    __slots__ = ("digits", "fuzzy", "lengths", "n", "negs", "target", "toks")

    def __init__(self, ptoks: tuple[str, ...]) -> None:
        han = sum(1 for t in ptoks if is_cjk(t))
        other = " ".join(t for t in ptoks if not is_cjk(t))
        n = len(ptoks)
        self.toks = ptoks
        self.n = n
        self.target = _fuzzy_join(ptoks)  # text the fuzzy scorer compares
        self.digits = tuple(t for t in ptoks if _is_digits(t))  # digit tokens, in order
        self.negs = sum(1 for j in range(n) if is_negation(ptoks, j))  # negations in it
        self.fuzzy = han >= 4 or len(other) >= 8  # long enough for fuzzy matching
        self.lengths = tuple(sorted({max(1, n - 1), n, n + 1}))  # fuzzy window sizes


@lru_cache(maxsize=4096)
def _phrase(ptoks: tuple[str, ...]) -> _Phrase:
    return _Phrase(ptoks)


def _exact(toks: tuple[str, ...], p: _Phrase) -> list[tuple[float, int, int]]:
    n = p.n
    first = p.toks[0]
    return [
        (100.0, i, i + n)
        for i in range(len(toks) - n + 1)
        if toks[i] == first and toks[i : i + n] == p.toks
    ]


def _score_windows(
    seq: TokenSeq, p: _Phrase, windows: Iterable[tuple[int, int]], cutoff: float
) -> list[tuple[float, int, int]]:
    """(score, start, end) of the windows scoring at least ``cutoff`` (0-100) whose digit
    tokens are exactly the phrase's and that hold as many negations as the phrase."""
    ftext, fs, fe, dcount = seq._fz
    ncount = seq._negcount
    negs = p.negs
    toks = seq.toks
    target = p.target
    digits = p.digits
    nd = len(digits)
    lo, hi = _length_bounds(len(target), cutoff)
    out: list[tuple[float, int, int]] = []
    for s, e in windows:
        if dcount[e] - dcount[s] != nd or ncount[e] - ncount[s] != negs:
            continue
        a = fs[s]
        b = fe[e - 1]
        if not lo <= b - a <= hi:
            continue
        if nd and tuple(t for t in toks[s:e] if _is_digits(t)) != digits:
            continue
        score = ratio(target, ftext[a:b], score_cutoff=cutoff)
        if score and score >= cutoff:
            out.append((score, s, e))
    return out


def _cutoff(min_score: float) -> float:
    """``min_score`` (0-1) as a rapidfuzz cutoff (0-100)."""
    return min(max(min_score, 0.0), 1.0) * 100


def _length_bounds(size: int, cutoff: float) -> tuple[float, float]:
    """Window text lengths W that can reach ``cutoff`` against a phrase text of ``size``:
    ratio = 200 LCS / (P + W) <= 200 min(P, W) / (P + W)."""
    c = cutoff / 100
    lo = c * size / (2 - c) - 1e-6
    hi = size * (2 - c) / c + 1e-6 if c > 0 else float("inf")
    return lo, hi


def _select(phrase: str, cands: list[tuple[float, int, int]], cutoff: float) -> list[Match]:
    """Best-first non-overlapping choice: score desc, then start, then shorter; by start."""
    if len(cands) == 1:
        score, s, e = cands[0]
        return [Match(phrase, s, e, score / 100)] if score >= cutoff else []
    chosen: list[tuple[float, int, int]] = []
    taken: set[int] = set()
    for score, s, e in sorted(cands, key=lambda c: (-c[0], c[1], c[2] - c[1])):
        if score < cutoff or any(k in taken for k in range(s, e)):
            continue
        taken.update(range(s, e))
        chosen.append((score, s, e))
    chosen.sort(key=lambda c: c[1])
    return [Match(phrase, s, e, score / 100) for score, s, e in chosen]


def _all_windows(p: _Phrase, n_toks: int) -> list[tuple[int, int]]:
    return [(s, s + L) for L in p.lengths for s in range(n_toks - L + 1)]


def find_all(seq: TokenSeq, phrase: str, min_score: float) -> list[Match]:
    """All non-overlapping occurrences of ``phrase`` scoring at least ``min_score`` (0-1),
    sorted by start. Overlaps are resolved best first (exact matches before fuzzy ones)."""
    ptoks = phrase_tokens(phrase)
    if not ptoks or not seq.toks:
        return []
    p = _phrase(ptoks)
    cands = _exact(seq.toks, p)
    cutoff = _cutoff(min_score)
    if p.fuzzy and cutoff < 100.0:
        cands += _score_windows(seq, p, _all_windows(p, len(seq.toks)), cutoff)
    return _select(phrase, cands, cutoff)


def find_phrase(seq: TokenSeq, phrase: str, min_score: float) -> Match | None:
    """Best occurrence of ``phrase`` in ``seq`` scoring at least ``min_score`` (0-1): the
    first exact one, else the best fuzzy window (earliest, then shortest, on ties)."""
    ptoks = phrase_tokens(phrase)
    if not ptoks or not seq.toks:
        return None
    p = _phrase(ptoks)
    ex = _exact(seq.toks, p)
    if ex:
        return Match(phrase, ex[0][1], ex[0][2], 1.0)
    cutoff = _cutoff(min_score)
    if not p.fuzzy or cutoff >= 100.0:
        return None
    cands = _score_windows(seq, p, _all_windows(p, len(seq.toks)), cutoff)
    if not cands:
        return None
    score, s, e = min(cands, key=lambda c: (-c[0], c[1], c[2] - c[1]))
    return Match(phrase, s, e, score / 100)


# ---------------------------------------------------------------------------------------
# Many phrases at once
# ---------------------------------------------------------------------------------------
_STOP_EN_TEXT = """a an the and or but of to in on at for with by from as is are was were be been being
    am do does did have has had will would shall should can could may might must i you he she
    it we they me him her us them my your his its our their this that these those there here
    what which who whom how when where why if then so not no yes just all any some up out
    about into over than too very let get got go going okay ok oh um uh well"""
_STOP_EN = frozenset(_STOP_EN_TEXT.split())
_STOP_ZH = frozenset("的了是我你您他她它们在有吗呢吧啊呀和也就都这那个不")
_STOP = _STOP_EN | _STOP_ZH
STOPWORDS = _STOP  # words too common to tell phrases apart (matching reads them too)


def _prefix(t: str) -> str | None:
    """Index key of a latin token of 4+ characters (Han tokens are single characters)."""
    return t[:4] if len(t) >= 4 and not t.isdigit() else None


class _Group:
    """The (phrase, min_score) keys whose phrases normalise to the same tokens, with what
    the search needs at hand."""

    __slots__ = (
        "cutoff",
        "digits",
        "hi",
        "keys",
        "lengths",
        "lo",
        "longest",
        "n",
        "need",
        "p",
        "target",
        "toks",
    )

    def __init__(self, p: _Phrase) -> None:
        self.p = p
        self.toks = p.toks
        self.n = p.n
        self.target = p.target
        self.digits = p.digits
        self.lengths = p.lengths
        self.longest = p.lengths[-1]
        self.keys: list[tuple[str, float]] = []
        self.cutoff = 100.0  # lowest fuzzy cutoff (0-100) among the keys
        self.need = 0  # fewest characters a window passing the cutoff shares with the phrase
        self.lo = self.hi = 0.0  # window text lengths that can pass the cutoff

    def prepare(self) -> None:
        # A passing window has a text length W >= lo (see _length_bounds) and, as
        # 2 LCS >= c (P + W), shares LCS >= c P / (2 - c) = lo characters with the phrase.
        self.lo, self.hi = _length_bounds(len(self.target), self.cutoff)
        self.need = max(0, math.ceil(self.lo))


_NO_GROUPS: tuple[_Group, ...] = ()


class PhraseIndex:
    """Built once per rule set (shared across calls, immutable); finds many phrases in one
    utterance fast.

    Exact matches: each utterance token is looked up among the phrases' first tokens.
    Fuzzy matches are only tried for phrases sharing a *key* with the utterance, and only on
    windows near the tokens that share it (*anchors*). A phrase's keys are its content
    tokens (not stopwords; its longest tokens if it has only stopwords): a Han character, a
    digit token or a token of 1-3 letters as itself; a longer latin token by its first 4
    characters ("recorded" / "recorder" share "reco") and, from 5 letters, also by its last 5
    ("overcharged" / "charged", "exchange" / "change"). Regions around anchors, then around
    each window start, are skipped whole when their longest common subsequence with the
    phrase is shorter than any passing window needs -- a sound bound that changes no result.

    Limitation: a fuzzy window holding no token that shares a key with its phrase is not
    found (e.g. "my pop-up is" for "my top up is": "pop" is the only content token; "how
    does" for "how do": only "does" is a key), and, rarely, such a window could have won an
    overlap against one that is. Otherwise ``search(seq)[(phrase, min_score)] ==
    find_all(seq, phrase, min_score)`` (tests/test_rule_text.py checks this).

    The index only grows a private cache of per-token lookups; it is safe to share.
    """

    _CACHE_MAX = 200_000

    def __init__(self, phrases: Iterable[tuple[str, float]]) -> None:
        groups: dict[tuple[str, ...], _Group] = {}
        seen: set[tuple[str, float]] = set()
        for phrase, min_score in phrases:
            key = (phrase, min_score)
            ptoks = phrase_tokens(phrase)
            if key in seen or not ptoks:
                continue
            seen.add(key)
            g = groups.get(ptoks)
            if g is None:
                g = groups[ptoks] = _Group(_phrase(ptoks))
            g.keys.append(key)
            if g.p.fuzzy:
                g.cutoff = min(g.cutoff, _cutoff(min_score))
        one: dict[str, list[_Group]] = {}  # exact: one-token phrases by token
        two: dict[tuple[str, str], list[_Group]] = {}  # longer ones by their first two
        by_tok: dict[str, list[_Group]] = {}
        by_pre: dict[str, list[_Group]] = {}
        by_suf: dict[str, list[_Group]] = {}
        for g in groups.values():
            if g.n == 1:
                one.setdefault(g.toks[0], []).append(g)
            else:
                two.setdefault((g.toks[0], g.toks[1]), []).append(g)
            if g.cutoff >= 100.0:
                continue  # exact only
            g.prepare()
            keys = {t for t in g.toks if t not in _STOP}
            if not keys:  # only stopwords: the longest carry most of the text
                longest = max(map(len, g.toks))
                keys = {t for t in g.toks if len(t) == longest}
            for t in keys:
                pre = _prefix(t)
                if pre is None:
                    by_tok.setdefault(t, []).append(g)
                    continue
                by_pre.setdefault(pre, []).append(g)
                if len(t) >= 5:
                    by_suf.setdefault(t[-5:], []).append(g)
        self._one = {t: tuple(gs) for t, gs in one.items()}
        self._two = {t: tuple(gs) for t, gs in two.items()}
        self._starts = frozenset(t for t, _ in two)
        self._by_tok = {t: tuple(gs) for t, gs in by_tok.items()}
        self._by_pre = {t: tuple(gs) for t, gs in by_pre.items()}
        self._by_suf = {t: tuple(dict.fromkeys(gs)) for t, gs in by_suf.items()}
        self._cache: dict[str, tuple[tuple[_Group, ...], bool, tuple[_Group, ...]]] = {}

    def _lookup(self, t: str) -> tuple[tuple[_Group, ...], bool, tuple[_Group, ...]]:
        """(one-token phrases t, whether longer phrases start with t, groups sharing a key
        with t)."""
        pre = _prefix(t)
        if pre is None:
            anchored = self._by_tok.get(t, _NO_GROUPS)
        else:
            anchored = self._by_pre.get(pre, _NO_GROUPS)
            if len(t) >= 5:
                suf = self._by_suf.get(t[-5:])
                if suf:
                    anchored = tuple(dict.fromkeys((*anchored, *suf)))
        hit = (self._one.get(t, _NO_GROUPS), t in self._starts, anchored)
        if len(self._cache) < self._CACHE_MAX:
            self._cache[t] = hit
        return hit

    def search(self, seq: TokenSeq) -> dict[tuple[str, float], list[Match]]:
        """Every phrase's matches in ``seq``: {(phrase, min_score): find_all(...)} for the
        keys with at least one match (see the class docstring for the one limitation)."""
        toks = seq.toks
        n_toks = len(toks)
        if not n_toks:
            return {}
        cands: dict[_Group, list[tuple[float, int, int]]] = {}
        anchors: dict[_Group, list[int]] = {}
        cache, two = self._cache, self._two
        last = n_toks - 1
        for i, t in enumerate(toks):
            hit = cache.get(t)
            if hit is None:
                hit = self._lookup(t)
            exact, starts, anchored = hit
            if starts and i < last:
                gs = two.get((t, toks[i + 1]))
                if gs:
                    exact = (*exact, *gs)
            for g in exact:
                n = g.n
                if toks[i : i + n] == g.toks:
                    found = cands.get(g)
                    if found is None:
                        cands[g] = [(100.0, i, i + n)]
                    else:
                        found.append((100.0, i, i + n))
            for g in anchored:
                pos = anchors.get(g)
                if pos is None:
                    anchors[g] = [i]
                else:
                    pos.append(i)
        if anchors:
            self._fuzzy_windows(seq, anchors, cands)
        out: dict[tuple[str, float], list[Match]] = {}
        for g, cs in cands.items():
            for phrase, min_score in g.keys:
                cutoff = _cutoff(min_score) if g.p.fuzzy else 100.0
                ms = _select(
                    phrase, cs if cutoff < 100.0 else [c for c in cs if c[0] >= 100.0], cutoff
                )
                if ms:
                    out[(phrase, min_score)] = ms
        return out

    @staticmethod
    def _fuzzy_windows(
        seq: TokenSeq,
        anchors: dict[_Group, list[int]],
        cands: dict[_Group, list[tuple[float, int, int]]],
    ) -> None:
        toks = seq.toks
        n_toks = len(toks)
        ftext, fs, fe, dcount = seq._fz
        ncount = seq._negcount
        lcs = LCSseq.similarity
        for g, pos in anchors.items():
            target, need, lens, longest = g.target, g.need, g.lengths, g.longest
            last_start = n_toks - lens[0]
            found: list[tuple[float, int, int]] | None = None
            k = 0
            n_pos = len(pos)
            while k < n_pos:
                # Anchors whose windows overlap form one cluster: every window holding one
                # of them starts in [a, q1] and lies in tokens [a, b).
                q0 = q1 = pos[k]
                k += 1
                while k < n_pos and pos[k] < q1 + longest:
                    q1 = pos[k]
                    k += 1
                a = q0 - longest + 1 if q0 >= longest else 0
                b = q1 + longest if q1 + longest < n_toks else n_toks
                if lcs(target, ftext[fs[a] : fe[b - 1]], score_cutoff=need) < need:
                    continue
                digits, lo, hi, cutoff, negs = g.digits, g.lo, g.hi, g.cutoff, g.p.negs
                nd = len(digits)
                for s in range(a, (q1 if q1 < last_start else last_start) + 1):
                    e_max = s + longest if s + longest < n_toks else n_toks
                    x = fs[s]
                    # every window starting at s lies in tokens [s, e_max)
                    if lcs(target, ftext[x : fe[e_max - 1]], score_cutoff=need) < need:
                        continue
                    for L in lens:
                        e = s + L
                        if e > n_toks:
                            break
                        y = fe[e - 1]
                        if not lo <= y - x <= hi or dcount[e] - dcount[s] != nd:
                            continue
                        if ncount[e] - ncount[s] != negs:
                            continue
                        if nd and tuple(t for t in toks[s:e] if _is_digits(t)) != digits:
                            continue
                        score = ratio(target, ftext[x:y], score_cutoff=cutoff)
                        if score and score >= cutoff:
                            if found is None:
                                found = [(score, s, e)]
                            else:
                                found.append((score, s, e))
            if found:
                prev = cands.get(g)
                if prev is None:
                    cands[g] = found
                else:
                    prev.extend(found)
