"""Personal data spoken on a call: card numbers, national ids, mobile numbers, dates of birth,
long digit runs.

Detection works on normalised tokens (``qa_rules.text.TokenSeq``): spoken numbers are
already digits there and adjacent digit groups one token, so "four one one one, one one one
one ..." and "4111 1111 ..." look the same. Each detector reports token positions; the
caller maps them to ASR words (``TokenSeq.words_of``) to redact exactly those words.

``PiiTracker`` joins one speaker's consecutive utterances, so a card number read out in two
breaths is still one card number. ``scrub_text`` is the backstop for free strings.

Every detector is conservative about what it calls a specific kind (checksums, validity
rules, context words) and liberal about redaction: whatever it is, a long digit run is
``digits``.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from qa_rules.text import TokenSeq, is_cjk

PII_KINDS = ("card_number", "ssn", "cn_resident_id", "cn_mobile", "date_of_birth", "digits")

# Most specific first: an overlapping candidate of a later kind is dropped.
_RANK = {
    "cn_resident_id": 0,
    "card_number": 1,
    "cn_mobile": 2,
    "ssn": 3,
    "date_of_birth": 4,
    "digits": 5,
}

# Tokens that may sit between the digit groups of one number as it is read out.
_FILLERS = frozenset(
    {"uh", "um", "umm", "uhm", "er", "erm", "ah", "hmm", "mm", "and", "dash", "hyphen"}
    | {"呃", "额", "嗯", "啊", "杠"}
)
# "and" joins groups of a card number but also two amounts ("between 1000 and 20000").
_HESITATIONS = _FILLERS - {"and"}
_X_TOKENS = frozenset({"x", "ex", "叉"})  # the check character of a Chinese resident id
_MAX_GAP = 2  # filler tokens allowed between two digit groups

_SSN_CUES = (("social",), ("security",), ("ssn",), ("socialsecurity",))
_CN_ID_CUES = (("身", "份", "证"), ("身", "份", "证", "号"), ("id", "card"))
_DOB_CUES = (
    ("born",),
    ("birth",),
    ("dob",),
    ("d", "o", "b"),
    ("birthday",),
    ("birthdate",),
    ("出", "生"),
    ("生", "日"),
)
# A mobile number is called one in Chinese speech (any Han character near it) or after one
# of these words; elsewhere an 11-digit run stays ``digits`` ("1 555 123 4567" is American).
_MOBILE_CUES = (
    ("手", "机"),
    ("电", "话"),
    ("号", "码"),
    ("联", "系"),
    ("mobile",),
    ("cell",),
    ("phone",),
)
_MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
_MOBILE_WINDOW = 10
_SSN_CUE_WINDOW = 6
_CN_ID_CUE_WINDOW = 10
_DOB_CUE_WINDOW = 8

_MONTHS = {
    "january": 1,
    "jan": 1,
    "february": 2,
    "feb": 2,
    "march": 3,
    "april": 4,
    "apr": 4,
    "may": 5,
    "june": 6,
    "jun": 6,
    "july": 7,
    "jul": 7,
    "august": 8,
    "aug": 8,
    "september": 9,
    "sept": 9,
    "sep": 9,
    "october": 10,
    "oct": 10,
    "november": 11,
    "nov": 11,
    "december": 12,
    "dec": 12,
}
_ORDINALS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "eleventh": 11,
    "twelfth": 12,
    "thirteenth": 13,
    "fourteenth": 14,
    "fifteenth": 15,
    "sixteenth": 16,
    "seventeenth": 17,
    "eighteenth": 18,
    "nineteenth": 19,
    "twentieth": 20,
    "thirtieth": 30,
}
_DAY_RE = re.compile(r"^(\d{1,2})(?:st|nd|rd|th)?$")
_DIGITS_X_RE = re.compile(r"^(\d+)x$")
_ROUND_RE = re.compile(r"^[1-9]\d{0,2}0{5,}$")  # "ten million" = 10000000: an amount
_SSN_DASHED_RE = re.compile(r"^\W*(\d{3})-(\d{2})-(\d{4})\W*$")
_CN_WEIGHTS = tuple(2 ** (17 - i) % 11 for i in range(17))
_CN_CHECK = "10X98765432"
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_PIECE_RE = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
_EDGE_RE = re.compile(r"^(\W*)(.*?)(\W*)$", re.S)

_MASK = "•"


@dataclass(frozen=True)
class PiiHit:
    """One item of personal data over tokens ``start:end`` of a TokenSeq."""

    kind: str
    start: int
    end: int
    masked: str  # safe to show: never the whole value


@dataclass(frozen=True)
class RedactSpan:
    """ASR words ``word_start:word_end`` of one utterance that must not be stored."""

    utt_id: int
    speaker: str
    word_start: int
    word_end: int
    t: float
    t_end: float
    kind: str


@dataclass(frozen=True)
class PiiFinding:
    """One item of personal data a speaker said, possibly across utterances (``parts``)."""

    kind: str
    speaker: str
    t: float
    t_end: float
    masked: str
    parts: tuple[RedactSpan, ...]


# -- checks ----------------------------------------------------------------------------------
def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check every payment card number passes."""
    if not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def cn_id_check_char(first17: str) -> str:
    """The GB 11643-1999 check character (0-9 or X) of an 18-character resident id."""
    s = sum(int(c) * w for c, w in zip(first17, _CN_WEIGHTS, strict=True))
    return _CN_CHECK[s % 11]


def _valid_date(y: int, m: int, d: int) -> bool:
    try:
        date(y, m, d)
    except ValueError:
        return False
    return True


def _card_ok(s: str) -> bool:
    return 13 <= len(s) <= 19 and s[0] in "23456" and luhn_ok(s)


def _ssn_ok(s: str) -> bool:
    if len(s) != 9 or not s.isdigit():
        return False
    area, group, serial = s[:3], s[3:5], s[5:]
    return area != "000" and area != "666" and area[0] != "9" and group != "00" and serial != "0000"


def _cn_id18_ok(s: str) -> bool:
    s = s.upper()
    if len(s) != 18 or not s[:17].isdigit() or s[0] not in "12345678":
        return False
    y, m, d = int(s[6:10]), int(s[10:12]), int(s[12:14])
    if not (1900 <= y <= date.today().year and _valid_date(y, m, d)):
        return False
    return cn_id_check_char(s[:17]) == s[17]


def _cn_mobile_ok(s: str) -> bool:
    """A mainland China mobile number: 11 digits, 13x-19x."""
    return bool(_MOBILE_RE.match(s))


def _cn_id15_ok(s: str) -> bool:
    if len(s) != 15 or not s.isdigit() or s[0] not in "12345678":
        return False
    return _valid_date(1900 + int(s[6:8]), int(s[8:10]), int(s[10:12]))


# -- masks -----------------------------------------------------------------------------------
def _mask(kind: str, value: str, year: int | None = None) -> str:
    if kind == "card_number":
        return f"{_MASK * 4} {value[-4:]}"
    if kind == "ssn":
        return f"{_MASK * 3}-{_MASK * 2}-{value[-4:]}"
    if kind == "cn_resident_id":
        return _MASK * (len(value) - 4) + value[-4:].upper()
    if kind == "cn_mobile":
        return _MASK * 7 + value[-4:]
    if kind == "date_of_birth":
        century = str(year)[:2] if year else _MASK * 2
        return f"{_MASK * 2}/{_MASK * 2}/{century}{_MASK * 2}"
    n = len(value)
    return _MASK * (n - 2) + value[-2:] if n >= 6 else _MASK * n


# -- token helpers ---------------------------------------------------------------------------
def _is_digits(tok: str) -> bool:
    return tok.isascii() and tok.isdigit()


@dataclass(frozen=True)
class _Piece:
    pos: int  # token position
    s: str  # digits, possibly ending in "x"


def _chains(toks: Sequence[str], joiners: frozenset[str]) -> list[list[_Piece]]:
    """Runs of digit tokens read out as one number: only ``joiners`` (at most _MAX_GAP of
    them) between groups. A trailing "x" (a Chinese id's check character) ends a run."""
    chains: list[list[_Piece]] = []
    cur: list[_Piece] = []
    gap = 0

    def close() -> None:
        nonlocal cur, gap
        if cur:
            chains.append(cur)
        cur, gap = [], 0

    for i, tok in enumerate(toks):
        mx = _DIGITS_X_RE.match(tok) if tok.isascii() else None
        if _is_digits(tok) or mx:
            if cur and gap > _MAX_GAP:
                close()
            cur.append(_Piece(i, tok))
            gap = 0
            if mx:
                close()
        elif tok in _X_TOKENS and cur and gap == 0 and cur[-1].pos == i - 1:
            cur.append(_Piece(i, "x"))
            close()
        elif tok in joiners and cur:
            gap += 1
        else:
            close()
    close()
    return chains


def _cue_before(
    toks: Sequence[str], start: int, cues: Iterable[tuple[str, ...]], window: int
) -> bool:
    lo = max(0, start - window)
    for cue in cues:
        n = len(cue)
        for i in range(lo, start - n + 1):
            if tuple(toks[i : i + n]) == cue:
                return True
    return False


def _sub_ranges(chain: list[_Piece], max_chars: int) -> Iterable[tuple[int, int, str]]:
    """Contiguous runs of pieces of at most ``max_chars`` characters: (first, last, chars)."""
    for a in range(len(chain)):
        s = ""
        for b in range(a, len(chain)):
            s += chain[b].s
            if len(s) > max_chars:
                break
            yield a, b, s


def _hit(kind: str, chain: list[_Piece], a: int, b: int, masked: str) -> PiiHit:
    return PiiHit(kind, chain[a].pos, chain[b].pos + 1, masked)


# -- detectors (each returns candidates; overlaps are resolved in detect) ---------------------
def _cards(toks: Sequence[str]) -> list[PiiHit]:
    out: list[PiiHit] = []
    for chain in _chains(toks, _FILLERS):
        for a, b, s in _sub_ranges(chain, 19):
            if _card_ok(s):
                out.append(_hit("card_number", chain, a, b, _mask("card_number", s)))
        for p in chain:  # expiry or CVV merged into the same digit group
            if len(p.s) > 19 and p.s.isdigit():
                for n in (16, 15):
                    if _card_ok(p.s[:n]):
                        out.append(
                            PiiHit("card_number", p.pos, p.pos + 1, _mask("card_number", p.s[:n]))
                        )
                        break
    return out


def _ssns(toks: Sequence[str]) -> list[PiiHit]:
    out: list[PiiHit] = []
    for chain in _chains(toks, _FILLERS):
        for a, b, s in _sub_ranges(chain, 9):
            if not _ssn_ok(s):
                continue
            grouped = b - a == 2 and [len(p.s) for p in chain[a : b + 1]] == [3, 2, 4]
            if grouped or _cue_before(toks, chain[a].pos, _SSN_CUES, _SSN_CUE_WINDOW):
                out.append(_hit("ssn", chain, a, b, _mask("ssn", s)))
    return out


def _cn_ids(toks: Sequence[str]) -> list[PiiHit]:
    out: list[PiiHit] = []
    for chain in _chains(toks, _FILLERS):
        for a, b, s in _sub_ranges(chain, 18):
            ok = (len(s) == 18 and _cn_id18_ok(s)) or (
                len(s) == 15
                and _cn_id15_ok(s)
                and _cue_before(toks, chain[a].pos, _CN_ID_CUES, _CN_ID_CUE_WINDOW)
            )
            if ok:
                out.append(_hit("cn_resident_id", chain, a, b, _mask("cn_resident_id", s)))
    return out


def _mobile_context(toks: Sequence[str], start: int, end: int) -> bool:
    """Chinese speech around tokens ``start:end`` (a Han character within the window on
    either side), or a phone cue before them."""
    lo, hi = max(0, start - _MOBILE_WINDOW), min(len(toks), end + _MOBILE_WINDOW)
    if any(is_cjk(t) for t in toks[lo:hi]):
        return True
    return _cue_before(toks, start, _MOBILE_CUES, _MOBILE_WINDOW)


def _cn_mobiles(toks: Sequence[str]) -> list[PiiHit]:
    out: list[PiiHit] = []
    for chain in _chains(toks, _FILLERS):
        for a, b, s in _sub_ranges(chain, 11):
            ok = len(s) == 11 and _cn_mobile_ok(s)
            if ok and _mobile_context(toks, chain[a].pos, chain[b].pos + 1):
                out.append(_hit("cn_mobile", chain, a, b, _mask("cn_mobile", s)))
        for p in chain:  # +86 / 0086 in front, or the number said twice in one breath
            if len(p.s) <= 11 or not p.s.isdigit():
                continue
            for head in ("0086", "86", ""):
                m = p.s[len(head) : len(head) + 11] if p.s.startswith(head) else ""
                if _cn_mobile_ok(m) and _mobile_context(toks, p.pos, p.pos + 1):
                    out.append(PiiHit("cn_mobile", p.pos, p.pos + 1, _mask("cn_mobile", m)))
                    break
    return out


def _day_at(toks: Sequence[str], i: int) -> tuple[int, int] | None:
    """A day of the month at ``i``: (day, tokens used). "12", "12th", "twelfth", "20 first"."""
    if i >= len(toks):
        return None
    tok = toks[i]
    if tok in ("20", "30") and i + 1 < len(toks) and _ORDINALS.get(toks[i + 1], 99) < 10:
        return int(tok) + _ORDINALS[toks[i + 1]], 2
    m = _DAY_RE.match(tok) if tok.isascii() else None
    if m:
        d = int(m.group(1))
        return (d, 1) if 1 <= d <= 31 else None
    if tok in _ORDINALS:
        return _ORDINALS[tok], 1
    return None


def _year_at(toks: Sequence[str], i: int, two_digit: bool) -> int | None:
    if i >= len(toks) or not _is_digits(toks[i]):
        return None
    tok = toks[i]
    if len(tok) == 4:
        return int(tok)
    if len(tok) == 2 and two_digit:
        yy = int(tok)
        return 2000 + yy if yy <= date.today().year % 100 else 1900 + yy
    return None


def _skip(toks: Sequence[str], i: int, words: tuple[str, ...]) -> int:
    while i < len(toks) and toks[i] in words:
        i += 1
    return i


_DateMatch = tuple[int, int, int, int, int]  # start, end, year, month, day


def _dates_at(toks: Sequence[str], i: int, cued: bool) -> list[_DateMatch]:
    """Full dates starting at token ``i`` (several readings may fit)."""
    out: list[_DateMatch] = []
    n = len(toks)
    tok = toks[i]
    # "march 12 1985", "march the 12th of 1985", "march 121985" (day and year merged)
    if tok in _MONTHS:
        mon = _MONTHS[tok]
        j = _skip(toks, i + 1, ("the",))
        day = _day_at(toks, j)
        if day:
            k = _skip(toks, j + day[1], ("of", "in"))
            y = _year_at(toks, k, cued)
            if y:
                out.append((i, k + 1, y, mon, day[0]))
        if j < n and _is_digits(toks[j]) and len(toks[j]) in (5, 6):
            out.append((i, j + 1, int(toks[j][-4:]), mon, int(toks[j][:-4])))
    # "12 march 1985", "the 12th of march 1985"
    j = _skip(toks, i, ("the",)) if tok == "the" else i
    day = _day_at(toks, j)
    if day:
        k = _skip(toks, j + day[1], ("of",))
        if k < n and toks[k] in _MONTHS:
            mon = _MONTHS[toks[k]]
            k2 = _skip(toks, k + 1, ("of", "in"))
            y = _year_at(toks, k2, cued)
            if y:
                out.append((i, k2 + 1, y, mon, day[0]))
    if _is_digits(tok):
        # 1985年3月12日 / 1985年3月12号
        if (
            len(tok) == 4
            and i + 5 < n
            and toks[i + 1] == "年"
            and _is_digits(toks[i + 2])
            and toks[i + 3] == "月"
            and _is_digits(toks[i + 4])
            and toks[i + 5] in ("日", "号")
        ):
            out.append((i, i + 6, int(tok), int(toks[i + 2]), int(toks[i + 4])))
        # numeric groups: 12 03 1985 (either d/m or m/d), 1985 03 12; 2-digit years if cued
        groups: list[int] = [i]
        j = i
        while len(groups) < 3:
            j = _skip(toks, j + 1, ("slash", "dash", "hyphen", "dot"))
            if j >= n or not _is_digits(toks[j]):
                break
            groups.append(j)
        if len(groups) == 3:
            a, b, c = (toks[g] for g in groups)
            end = groups[2] + 1
            if len(a) <= 2 and len(b) <= 2 and (len(c) == 4 or (cued and len(c) == 2)):
                y = _year_at(toks, groups[2], cued)
                if y:
                    out.append((i, end, y, int(b), int(a)))
                    out.append((i, end, y, int(a), int(b)))
            elif len(a) == 4 and len(b) <= 2 and len(c) <= 2:
                out.append((i, end, int(a), int(b), int(c)))
        # one merged group, only after a cue: ddmmyyyy, mmddyyyy, yyyymmdd, dmyyyy, ...
        if cued and 5 <= len(tok) <= 8:
            if len(tok) == 8:
                out.append((i, i + 1, int(tok[:4]), int(tok[4:6]), int(tok[6:])))
            head, y = tok[:-4], int(tok[-4:])
            for cut in range(1, len(head)):
                a, b = head[:cut], head[cut:]
                if len(a) <= 2 and len(b) <= 2:
                    out.append((i, i + 1, y, int(b), int(a)))
                    out.append((i, i + 1, y, int(a), int(b)))
    return out


def _may_start_date(tok: str) -> bool:
    return tok in _MONTHS or tok == "the" or tok in _ORDINALS or tok[:1].isdigit()


def _dobs(toks: Sequence[str]) -> list[PiiHit]:
    out: list[PiiHit] = []
    oldest_adult = date.today().year - 14
    cue_ends = [
        i + len(cue)
        for cue in _DOB_CUES
        for i in range(len(toks) - len(cue) + 1)
        if toks[i] == cue[0] and tuple(toks[i : i + len(cue)]) == cue
    ]
    for i, tok in enumerate(toks):
        if not _may_start_date(tok):
            continue
        cued = any(i - _DOB_CUE_WINDOW <= e <= i for e in cue_ends)
        latest = 2030 if cued else oldest_adult
        for start, end, y, m, d in _dates_at(toks, i, cued):
            if 1900 <= y <= latest and _valid_date(y, m, d):
                out.append(PiiHit("date_of_birth", start, end, _mask("date_of_birth", "", y)))
                break
    return out


def _digit_runs(toks: Sequence[str], taken: list[PiiHit], min_digits: int) -> list[PiiHit]:
    def free(pos: int) -> bool:
        return not any(h.start <= pos < h.end for h in taken)

    out: list[PiiHit] = []
    for chain in _chains(toks, _HESITATIONS):
        run: list[_Piece] = []
        for p in [*chain, None]:
            if p is not None and (p.s == "x" or p.s.rstrip("x").isdigit()) and free(p.pos):
                run.append(p)  # an id's "x" stays with its digits
                continue
            s = "".join(q.s for q in run).rstrip("x")
            if run and len(s) >= max(1, min_digits) and not _ROUND_RE.match(s):
                out.append(PiiHit("digits", run[0].pos, run[-1].pos + 1, _mask("digits", s)))
            run = []
    return out


def detect_tokens(
    toks: Sequence[str], kinds: Collection[str] = PII_KINDS, min_digits: int = 8
) -> list[PiiHit]:
    """``detect`` over bare normalised tokens (what the tracker joins across utterances)."""
    if not any(t[:1].isdigit() and t.isascii() for t in toks):
        return []  # every kind needs digits (a year at least)
    cands: list[PiiHit] = []
    if "card_number" in kinds:
        cands += _cards(toks)
    if "ssn" in kinds:
        cands += _ssns(toks)
    if "cn_resident_id" in kinds:
        cands += _cn_ids(toks)
    if "cn_mobile" in kinds:
        cands += _cn_mobiles(toks)
    if "date_of_birth" in kinds:
        cands += _dobs(toks)
    cands.sort(key=lambda h: (_RANK[h.kind], -(h.end - h.start), h.start))
    taken: list[PiiHit] = []
    for h in cands:
        if all(h.end <= o.start or h.start >= o.end for o in taken):
            taken.append(h)
    if "digits" in kinds:
        taken += _digit_runs(toks, taken, min_digits)
    return sorted(taken, key=lambda h: h.start)


def detect(seq: TokenSeq, kinds: Collection[str] = PII_KINDS, min_digits: int = 8) -> list[PiiHit]:
    """Personal data in one utterance, as token ranges of ``seq``, in order, not overlapping.

    ``kinds`` limits what is looked for (any of PII_KINDS); where two readings overlap the
    more specific kind wins (resident id > card > mobile > SSN > date of birth > digits).
    """
    return detect_tokens(seq.toks, kinds, min_digits)


def detect_words(
    words: Sequence[str], kinds: Collection[str] = PII_KINDS, min_digits: int = 8
) -> list[tuple[int, int, PiiHit]]:
    """Personal data in a list of words: (first word, word after the last, hit).

    Also catches an SSN written "123-45-6789" in one word, whose grouping the tokens lose.
    """
    seq = TokenSeq.from_words(list(words))
    out: list[tuple[int, int, PiiHit]] = []
    for h in detect(seq, kinds, min_digits):
        r = seq.words_of(h.start, h.end)
        out.append((r.start, r.stop, h))
    if "ssn" in kinds:
        for i, w in enumerate(words):
            m = _SSN_DASHED_RE.match(w)
            if not m or not _ssn_ok("".join(m.groups())):
                continue
            s = "".join(m.groups())
            # the same word as a bare digit run: it is an SSN (a wider run stays digits)
            out = [x for x in out if not (x[:2] == (i, i + 1) and x[2].kind == "digits")]
            if not any(x[0] <= i < x[1] for x in out):
                out.append((i, i + 1, PiiHit("ssn", -1, -1, _mask("ssn", s))))
    return sorted(out, key=lambda x: x[0])


def scrub_text(text: str, kinds: Collection[str] = PII_KINDS, min_digits: int = 8) -> str:
    """``text`` with the words that carry personal data replaced by ``[kind]``.

    Everything else is kept as written; adjacent redacted words of one kind become one
    placeholder, and punctuation around them stays.
    """
    if not text or text.isspace():
        return text
    spans = [m.span() for m in _PIECE_RE.finditer(text)]
    words = [text[a:b] for a, b in spans]
    kind_of: dict[int, str] = {}
    for ws, we, h in detect_words(words, kinds, min_digits):
        for w in range(ws, we):
            kind_of.setdefault(w, h.kind)
    if not kind_of:
        return text
    out: list[str] = []
    pos = 0
    i = 0
    while i < len(words):
        kind = kind_of.get(i)
        if kind is None:
            i += 1
            continue
        j = i
        while j + 1 < len(words) and kind_of.get(j + 1) == kind:
            j += 1
        lead = _EDGE_RE.match(words[i])
        trail = _EDGE_RE.match(words[j])
        a = spans[i][0] + (len(lead.group(1)) if lead else 0)
        b = spans[j][1] - (len(trail.group(3)) if trail else 0)
        out.append(text[pos:a])
        out.append(f"[{kind}]")
        pos = max(a, b)
        i = j + 1
    out.append(text[pos:])
    return "".join(out)


# -- per call: numbers read out across utterances ---------------------------------------------
@dataclass(frozen=True)
class _Tok:
    tok: str
    utt_id: int
    word_start: int
    word_end: int
    t: float
    t_end: float


class PiiTracker:
    """Finds personal data in a call's final utterances, one speaker at a time.

    Keeps, per speaker, the last ``tail_tokens`` tokens of what they said; an utterance that
    starts within ``join_s`` of that speaker's previous one is read together with that tail,
    so a card number (or an SSN after "my social is") split by a pause is still found.
    Findings report only what touches the new utterance (the tail was reported before);
    their ``parts`` name the words to redact in each utterance involved.
    """

    def __init__(
        self,
        kinds: Collection[str] = PII_KINDS,
        join_s: float = 6.0,
        min_digits: int = 8,
        tail_tokens: int = 24,
        max_speakers: int = 16,
    ) -> None:
        unknown = set(kinds) - set(PII_KINDS)
        if unknown:
            raise ValueError(f"unknown PII kinds {sorted(unknown)}; known: {list(PII_KINDS)}")
        self.kinds = frozenset(kinds)
        self.join_s = join_s
        self.min_digits = min_digits
        self.tail_tokens = tail_tokens
        self.max_speakers = max_speakers
        self._tails: OrderedDict[str, tuple[float, deque[_Tok]]] = OrderedDict()

    def observe(
        self,
        utt_id: int,
        speaker: str,
        seq: TokenSeq,
        word_times: Sequence[tuple[float, float]] | None,
        t: float,
        t_end: float,
    ) -> list[PiiFinding]:
        new: list[_Tok] = []
        for i, tok in enumerate(seq.toks):
            ws, we = seq.word_start[i], seq.word_end[i]
            if word_times and 0 <= ws < we <= len(word_times):
                tt, tt_end = word_times[ws][0], word_times[we - 1][1]
            else:
                tt, tt_end = t, t_end
            new.append(_Tok(tok, utt_id, ws, we, tt, tt_end))
        prev = self._tails.pop(speaker, None)
        tail = list(prev[1]) if prev and t - prev[0] <= self.join_s else []
        toks = tail + new
        findings: list[PiiFinding] = []
        if new:
            for h in detect_tokens([x.tok for x in toks], self.kinds, self.min_digits):
                if h.end <= len(tail):
                    continue  # said (and reported) before this utterance
                parts = self._parts(speaker, toks[h.start : h.end], h.kind)
                findings.append(
                    PiiFinding(
                        h.kind,
                        speaker,
                        min(p.t for p in parts),
                        max(p.t_end for p in parts),
                        h.masked,
                        parts,
                    )
                )
        kept = deque(toks[-self.tail_tokens :], maxlen=self.tail_tokens)
        last_end = max(t_end, prev[0]) if prev and tail else t_end
        self._tails[speaker] = (last_end, kept)
        while len(self._tails) > self.max_speakers:
            self._tails.popitem(last=False)
        return findings

    def reset(self, speaker: str | None = None) -> None:
        """Forget the tail of one speaker (or everyone's), e.g. when the call ends."""
        if speaker is None:
            self._tails.clear()
        else:
            self._tails.pop(speaker, None)

    @staticmethod
    def _parts(speaker: str, toks: list[_Tok], kind: str) -> tuple[RedactSpan, ...]:
        parts: list[RedactSpan] = []
        group: list[_Tok] = []
        for x in [*toks, None]:
            if x is not None and (not group or x.utt_id == group[0].utt_id):
                group.append(x)
                continue
            if group:
                parts.append(
                    RedactSpan(
                        group[0].utt_id,
                        speaker,
                        min(g.word_start for g in group),
                        max(g.word_end for g in group),
                        min(g.t for g in group),
                        max(g.t_end for g in group),
                        kind,
                    )
                )
            group = [x] if x is not None else []
        return tuple(parts)
