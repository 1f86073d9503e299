"""Redact personal data from events and reports before they are stored or shown.

The rule engine's PII tracker says which ASR words of which utterance carried a card
number, an id or a date of birth (``RedactSpan``). A ``Redactor`` holds those spans for a
call and rewrites any event or report:

- word lists (``{"w", "t", "t_end"}``: transcripts, alert evidence): words inside a span
  of the same speaker become ``[kind]``, adjacent ones one placeholder; a ``text`` next to
  such a list is rebuilt from the words;
- any string equal to (or containing) the original text of a redacted utterance gets the
  redacted text; digit groups that were redacted are redacted wherever they appear again;
- every remaining string goes through ``scrub_text`` as a backstop (PII no span named).

It works on a copy, is idempotent, and never raises: an unexpected shape passes through
(scrubbed where it is text).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Any, TypeGuard

from qa_rules.pii import PII_KINDS, RedactSpan, detect_words, scrub_text
from qa_rules.text import join_words

# Structural strings: ids, enums, timestamps, paths. Never PII, and scrubbing them would
# corrupt them (a timestamp is a long digit run).
_KEEP_KEYS = frozenset(
    {
        "type",
        "call_id",
        "emitted_at",
        "speaker",
        "rule_id",
        "severity",
        "audience",
        "language",
        "model",
        "backend",
        "label",
        "status",
        "mode",
        "source",
        "sources",
        "rule_packs",
        "channels",
        "url",
        "id",
        "pack",
        "version",
        "state",
        "masked",
    }
)
_PLACEHOLDER_RE = re.compile(r"\[(?:" + "|".join(PII_KINDS) + r")\]")
_MIN_ORIGINAL_CHARS = 8  # shorter originals are not replaced inside longer strings
_MIN_DIGIT_WORD = 4  # a redacted word with this many digits is redacted wherever it recurs


def _is_keep_key(key: object) -> bool:
    return isinstance(key, str) and (key in _KEEP_KEYS or key.endswith(("_id", "_at")))


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def _is_word(x: Any) -> bool:
    return (
        isinstance(x, dict)
        and isinstance(x.get("w"), str)
        and _num(x.get("t")) is not None
        and _num(x.get("t_end")) is not None
    )


def _is_word_list(x: Any) -> TypeGuard[list[dict[str, Any]]]:
    return isinstance(x, list) and bool(x) and all(_is_word(w) for w in x)


class Redactor:
    """One call's redaction: the spans found so far, and what each affected text became."""

    def __init__(
        self,
        spans: Iterable[RedactSpan] = (),
        kinds: Collection[str] = PII_KINDS,
        tolerance_s: float = 0.05,
        scrub: bool = True,
        min_digits: int = 8,
    ) -> None:
        self.kinds = tuple(kinds)
        self.tolerance_s = tolerance_s
        self.scrub = scrub
        self.min_digits = min_digits
        self._spans: list[RedactSpan] = []
        self._seen: set[RedactSpan] = set()
        self._texts: dict[str, str] = {}  # original utterance text -> redacted
        self._digit_words: dict[str, str] = {}  # a redacted digit group -> its kind
        self._learning = False
        self.add(spans)

    # -- what to redact ----------------------------------------------------------------------
    def add(self, spans: Iterable[RedactSpan]) -> None:
        for s in spans:
            if isinstance(s, RedactSpan) and s not in self._seen:
                self._seen.add(s)
                self._spans.append(s)

    def add_text(self, original: str, redacted: str) -> None:
        """Known redaction of a whole text (e.g. computed where the utterance was seen)."""
        if original and original != redacted:
            self._texts[original] = redacted

    @property
    def spans(self) -> tuple[RedactSpan, ...]:
        return tuple(self._spans)

    @property
    def texts(self) -> dict[str, str]:
        return dict(self._texts)

    # -- public entry points -----------------------------------------------------------------
    def event(self, ev: dict[str, Any]) -> dict[str, Any]:
        """A redacted copy of one event."""
        out = self._apply(ev)
        return out if isinstance(out, dict) else {}

    def report(self, rep: dict[str, Any]) -> dict[str, Any]:
        """A redacted copy of a report (``assist.audit.build_report``), events included.

        Utterances are learnt from the whole report first, so an alert quoting one is
        redacted wherever the transcript sits in the report.
        """
        out = self._apply(rep)
        return out if isinstance(out, dict) else {}

    def words(self, words: list[dict[str, Any]], speaker: str | None) -> list[dict[str, Any]]:
        """A word list with redacted words replaced by ``[kind]`` (adjacent ones merged)."""
        try:
            return self._words(words, speaker)
        except Exception:
            return [dict(w) for w in words if isinstance(w, dict)]

    # -- internals ---------------------------------------------------------------------------
    def _apply(self, obj: Any) -> Any:
        try:
            self._learning = True  # first pass: what each affected utterance becomes
            self._walk(obj, None, None)
            self._learning = False
            return self._walk(obj, None, None)
        except Exception:
            self._learning = False  # never lose an event over an odd shape: scrub what is text
            return self._fallback(obj)

    def _fallback(self, obj: Any) -> Any:
        try:
            if isinstance(obj, dict):
                return {k: (v if _is_keep_key(k) else self._fallback(v)) for k, v in obj.items()}
            if isinstance(obj, list | tuple):
                return [self._fallback(v) for v in obj]
            if isinstance(obj, str):
                return scrub_text(obj, self.kinds, self.min_digits) if self.scrub else obj
            return obj
        except Exception:
            return None if isinstance(obj, str) else obj

    def _walk(self, obj: Any, speaker: str | None, key: Any) -> Any:
        if isinstance(obj, dict):
            return self._dict(obj, speaker)
        if isinstance(obj, list | tuple):
            return [self._walk(v, speaker, key) for v in obj]
        if isinstance(obj, str):
            return self._string(obj, {})
        return obj

    def _dict(self, obj: dict[Any, Any], speaker: str | None) -> dict[Any, Any]:
        spk = obj.get("speaker")
        speaker = spk if isinstance(spk, str) and spk else speaker
        words = obj.get("words")
        local: dict[str, str] = {}  # strings of this dict tied to its word list
        new_words = None
        if _is_word_list(words):
            new_words = self._words(words, speaker)
            if new_words != words:
                before = " ".join(w["w"] for w in words)
                after = join_words(w["w"] for w in new_words)
                local[before] = after
                local[join_words(w["w"] for w in words)] = after
                text = obj.get("text")
                if isinstance(text, str) and text and not _PLACEHOLDER_RE.fullmatch(text):
                    local[text] = after
                    self.add_text(text, after)
                self.add_text(before, after)
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            if k == "words" and new_words is not None:
                out[k] = new_words
            elif _is_keep_key(k):
                out[k] = v if not isinstance(v, dict | list) else _copy(v)
            elif k == "text" and isinstance(v, str) and new_words is not None and not local:
                # The words are this utterance's truth: nothing of this speaker's was
                # redacted in them, so only the backstop applies (the same text said by
                # someone else elsewhere is not this one).
                out[k] = self._scrub(v)
            elif isinstance(v, str):
                out[k] = self._string(v, local)
            else:
                out[k] = self._walk(v, speaker, k)
        text = out.get("text")
        if (
            isinstance(text, str)
            and new_words is None
            and speaker is not None
            and text == obj.get("text")
            and not _PLACEHOLDER_RE.search(text)
        ):
            kind = self._span_inside(speaker, obj.get("t"), obj.get("t_end"))
            if kind is not None:  # an utterance without words that a span falls in
                out["text"] = f"[{kind}]"
        return out

    def _string(self, s: str, local: dict[str, str]) -> str:
        if self._learning:
            return s
        if s in local:
            s = local[s]
        elif s in self._texts:
            s = self._texts[s]
        else:
            for orig in sorted(self._texts, key=len, reverse=True):
                if len(orig) >= _MIN_ORIGINAL_CHARS and orig in s:
                    s = s.replace(orig, self._texts[orig])
        if self._digit_words:
            s = self._replace_digit_words(s)
        return self._scrub(s)

    def _scrub(self, s: str) -> str:
        if self._learning or not self.scrub:
            return s
        return scrub_text(s, self.kinds, self.min_digits)

    def _replace_digit_words(self, s: str) -> str:
        def sub(m: re.Match[str]) -> str:
            kind = self._digit_words.get(m.group(0))
            if kind is None or s[: m.start()].rstrip(" -/").endswith("•"):
                return m.group(0)  # not redacted, or the visible end of a mask
            return f"[{kind}]"

        return re.sub(r"(?<![\w-])\d[\d-]*\d(?![\w-])", sub, s)

    def _kind_at(self, speaker: str | None, t: float, t_end: float) -> str | None:
        tol = self.tolerance_s
        for s in self._spans:
            if speaker is not None and s.speaker != speaker:
                continue
            inside = t >= s.t - tol and t_end <= s.t_end + tol
            overlap = min(t_end, s.t_end) - max(t, s.t)
            if inside or (t_end > t and overlap >= 0.5 * (t_end - t)):
                return s.kind
        return None

    def _span_inside(self, speaker: str, t: Any, t_end: Any) -> str | None:
        a, b = _num(t), _num(t_end)
        if a is None or b is None:
            return None
        tol = self.tolerance_s
        for s in self._spans:
            if s.speaker == speaker and s.t >= a - tol and s.t_end <= b + tol:
                return s.kind
        return None

    def _words(self, words: list[dict[str, Any]], speaker: str | None) -> list[dict[str, Any]]:
        kinds: list[str | None] = [
            self._kind_at(speaker, float(w["t"]), float(w["t_end"])) for w in words
        ]
        if self.scrub:  # backstop: PII in the words themselves that no span named
            for ws, we, h in detect_words([w["w"] for w in words], self.kinds, self.min_digits):
                for i in range(ws, we):
                    kinds[i] = kinds[i] or h.kind
        for w, kind in zip(words, kinds, strict=True):
            if kind is None:
                continue
            for part in re.findall(r"\d[\d-]*\d", w["w"]):
                if sum(c.isdigit() for c in part) >= _MIN_DIGIT_WORD:
                    self._digit_words.setdefault(part, kind)
        out: list[dict[str, Any]] = []
        prev_kind: str | None = None
        for w, kind in zip(words, kinds, strict=True):
            if kind is None and _PLACEHOLDER_RE.fullmatch(w["w"]):
                kind = w["w"][1:-1]  # redacted before
            if kind is None:
                out.append(dict(w))
            elif prev_kind == kind:
                out[-1]["t_end"] = w["t_end"]
            else:
                out.append({"w": f"[{kind}]", "t": w["t"], "t_end": w["t_end"]})
            prev_kind = kind
        return out


def _copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_copy(x) for x in v]
    return v
