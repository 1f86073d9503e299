"""Whisper ASR on short, VAD-cut clips, with word timestamps, on CPU.

``faster_whisper.WhisperModel.transcribe`` pads every input to a 30 s window, so a 2 s
utterance costs as much encoder time as 30 s of audio. Here each clip is encoded at its own
length (plus a little silence), several clips can share one encoder call (padded to the
longest), and decoding is greedy or beam with no temperature fallback, so latency is
predictable. Word times come from the model's cross-attention alignment, as in
faster-whisper's own ``word_timestamps=True``. Offline audits and live calls both use this
class, so the same utterance gets the same words on both paths.

Languages: a call passes its language, or None to have each clip identified among
``AsrConfig.detect_languages`` (``Transcript.language_prob`` says how sure; clips of one batch
identified as different languages are decoded apart). Mandarin (``zh``) output is simplified
Chinese (Whisper writes traditional characters at times: ``qa_rules.text.to_simplified``),
ASCII punctuation after a Han character becomes full-width, and words are characters: one
``Word`` per Han character, the time span of a multi-character token shared by its characters,
a run of Latin letters or digits ("APP", "2000") one word, punctuation attached for display.
English output is as it always was.
"""

from __future__ import annotations

import os
import re
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from audio import SAMPLE_RATE
from audio.codecs import Float32Array
from models.locator import fingerprint, locate
from qa_rules.text import is_cjk, speech_units, to_simplified

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights are local; never reach for a hub

MAX_CLIP_S = 29.0
_LOOPED = -99.0  # avg_logprob marker for a decode that looped (retried on 30 s)
_PREPEND_PUNCT = "\"'“¿([{-"
_APPEND_PUNCT = "\"'.。,，!！?？:：”)]}、"
# Chinese: words are characters (see _char_words); text and words are simplified.
_CHARACTER_LANGUAGES = frozenset({"zh", "yue"})
_SIMPLIFY = frozenset({"zh"})
_OPENING = "\"'“‘¿([{（【《〈「『"
_JOINERS = "'’.,:-"  # inside a Latin word or number when nothing separates them ("4.5", "it's")
# Decoding budget: tokens per second of clip. A Han character is often 2-3 byte-level tokens
# and a full-width comma 3, so Chinese needs more than English.
_TOKENS_PER_S = {"en": 12.0, "zh": 24.0, "yue": 24.0}
# About twice as fast as anyone speaks Mandarin (3-6 characters a second; 5.5 at most over
# the whole of each file in ../shared/data/asr_zh): more means a looping decode.
_MAX_CHARS_PER_S = 10.0
_REPEAT_RE = re.compile(r"(.{1,4}?)\1{3,}")
_TWICE_RE = re.compile(r"(.{5,60})\1")
# Whisper often writes ASCII punctuation in Chinese; after a Han character it is full-width.
_FULL_WIDTH = str.maketrans({",": "，", ".": "。", "?": "？", "!": "！", ":": "：", ";": "；"})


@dataclass(frozen=True)
class Word:
    w: str
    t: float
    t_end: float
    p: float

    def to_dict(self) -> dict[str, object]:
        return {"w": self.w, "t": self.t, "t_end": self.t_end, "p": round(self.p, 3)}


@dataclass(frozen=True)
class Transcript:
    """What one clip said. Times are seconds of call audio (clip offset applied).

    ``language_prob`` is the probability of ``language`` among the candidate languages
    (``AsrConfig.detect_languages``) when it was identified, 1.0 when it was given.
    """

    text: str
    words: tuple[Word, ...]
    t: float
    t_end: float
    language: str
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0
    language_prob: float = 1.0

    @property
    def empty(self) -> bool:
        return not self.words


@dataclass(frozen=True)
class AsrConfig:
    model: str = "tiny.en"
    compute_type: str = "int8"
    threads: int = 1  # CPU threads per model call
    workers: int = 1  # model calls that may run at the same time (one thread each)
    beam_size: int = 1
    # Beam size per language, overriding beam_size. Mandarin on base: beam 5 gives CER
    # 0.109 vs 0.122 greedy at 16 kHz (0.150 vs 0.174 on AISHELL), for ~7 % more time
    # (docs/benchmarks.md, issue 10).
    language_beam_sizes: tuple[tuple[str, int], ...] = (("zh", 5),)
    language: str | None = "en"  # None: detect per clip (multilingual models only)
    # With language None on a multilingual model: the languages a clip may be identified as
    # (the most probable of these wins; its probability is renormalised over them). Empty:
    # any of Whisper's languages.
    detect_languages: tuple[str, ...] = ()
    pad_s: float = 0.5  # silence appended so the last word is not cut by the window
    # Encoder window floor. Whisper trained on 30 s windows loops on very short ones;
    # 10 s measured loop-free on jfk/OSR at 1/6 of the 30 s cost (docs/benchmarks.md).
    min_window_s: float = 10.0
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    max_compression_ratio: float = 2.4
    # (language, text) pairs: text given to the decoder as the previous context (Whisper's
    # "initial prompt") for clips in that language. None by default: a simplified-Chinese
    # prompt ("以下是普通话的句子。") puts punctuation in 92 % of Mandarin lines instead of
    # 50 %, but costs CER with beam 5 (0.112 vs 0.109; AISHELL 0.163 vs 0.150), and a prompt
    # is one more thing Whisper may echo on noise (docs/benchmarks.md, issue 10).
    prompts: tuple[tuple[str, str], ...] = ()


class WhisperAsr:
    """One loaded model; ``transcribe_batch`` may be called from ``workers`` threads at once."""

    def __init__(self, config: AsrConfig | None = None) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        self.config = config or AsrConfig()
        self.model_path: Path = locate(self.config.model)
        self.model_id = f"{self.config.model}@{fingerprint(self.model_path)}"
        self._fw = WhisperModel(
            str(self.model_path),
            device="cpu",
            compute_type=self.config.compute_type,
            cpu_threads=self.config.threads,
            num_workers=self.config.workers,
        )
        self._tokenizer_cls = Tokenizer
        self.multilingual = bool(self._fw.model.is_multilingual)
        if not self.multilingual and self.config.language not in (None, "en"):
            raise ValueError(
                f"model {self.config.model} is English-only; language "
                f"{self.config.language!r} needs a multilingual model such as 'base'"
            )
        # an English-only model never detects: its detect_languages do not matter
        known = set(self._fw.supported_languages) if self.multilingual else None
        unknown = [c for c in self.config.detect_languages if known is not None and c not in known]
        if unknown:
            raise ValueError(f"unknown language code(s) in detect_languages: {unknown}")
        # CTranslate2 runs up to `workers` calls in parallel on one copy of the weights.
        self._slots = threading.Semaphore(self.config.workers)
        self._prompt_tokens: dict[str, list[int]] = {}

    def transcribe(self, audio: Float32Array, offset: float = 0.0) -> Transcript:
        return self.transcribe_batch([(audio, offset)])[0]

    def transcribe_batch(
        self, clips: Sequence[tuple[Float32Array, float]], language: str | None = None
    ) -> list[Transcript]:
        """Transcribe several clips (each <= 29 s) with one encoder call."""
        if not clips:
            return []
        for audio, _ in clips:
            if audio.size > MAX_CLIP_S * SAMPLE_RATE:
                raise ValueError(f"clip of {audio.size / SAMPLE_RATE:.1f} s exceeds {MAX_CLIP_S} s")
        lang = language or self.config.language
        pad = int(self.config.pad_s * SAMPLE_RATE)
        buckets: dict[int, list[int]] = {}
        for i, (audio, _) in enumerate(clips):
            buckets.setdefault(self.window_frames((audio.size + pad) // 160), []).append(i)
        out: list[Transcript | None] = [None] * len(clips)
        with self._slots:
            for width, idx in buckets.items():
                for i, tr in zip(idx, self._run([clips[i] for i in idx], lang, width), strict=True):
                    if tr.empty and tr.avg_logprob == _LOOPED:
                        # A looping decode on the short window: one retry on the full 30 s
                        # (in the language already identified for it).
                        tr = self._run([clips[i]], tr.language, 3000, tr.language_prob)[0]
                    out[i] = tr
        return [tr for tr in out if tr is not None]

    def _run(
        self,
        clips: Sequence[tuple[Float32Array, float]],
        language: str | None,
        width: int,
        language_prob: float = 1.0,
    ) -> list[Transcript]:
        import ctranslate2

        fe = self._fw.feature_extractor
        pad = int(self.config.pad_s * SAMPLE_RATE)
        feats = [fe(np.asarray(a, dtype=np.float32), padding=pad)[:, :-1] for a, _ in clips]
        frames = [f.shape[-1] for f in feats]
        batch = np.zeros((len(feats), feats[0].shape[0], width), dtype=np.float32)
        for i, f in enumerate(feats):
            batch[i, :, : f.shape[-1]] = f
        encoder_output = self._fw.model.encode(ctranslate2.StorageView.from_array(batch))

        if language is not None or not self.multilingual:
            languages = [(language or "en", language_prob)] * len(clips)
        else:
            languages = self._detect(encoder_output)
        groups: dict[str, list[int]] = {}
        for i, (lang, _) in enumerate(languages):
            groups.setdefault(lang, []).append(i)
        if len(groups) == 1:
            return self._decode(encoder_output, clips, frames, languages, width)
        # Clips identified as different languages decode (and align) apart.
        enc = np.asarray(encoder_output)
        results: list[Transcript | None] = [None] * len(clips)
        for idx in groups.values():
            sub = ctranslate2.StorageView.from_array(np.ascontiguousarray(enc[idx]))
            part = self._decode(
                sub,
                [clips[i] for i in idx],
                [frames[i] for i in idx],
                [languages[i] for i in idx],
                width,
            )
            for i, tr in zip(idx, part, strict=True):
                results[i] = tr
        return [tr for tr in results if tr is not None]

    def _decode(
        self,
        encoder_output: object,
        clips: Sequence[tuple[Float32Array, float]],
        frames: list[int],
        languages: Sequence[tuple[str, float]],
        width: int,
    ) -> list[Transcript]:
        """Generate and align the clips of one language from their encoder output."""
        lang = languages[0][0]
        tok = self._tokenizer_cls(
            self._fw.hf_tokenizer, self.multilingual, task="transcribe", language=lang
        )
        prompt = [*self._prompt(tok, lang), *tok.sot_sequence, tok.no_timestamps]
        longest_s = max(a.size for a, _ in clips) / SAMPLE_RATE
        rate = _TOKENS_PER_S.get(lang, _TOKENS_PER_S["en"])
        max_length = min(448, len(prompt) + int(rate * longest_s) + 16)
        gen = self._fw.model.generate(
            encoder_output,
            [prompt] * len(clips),
            beam_size=self.beam_size(lang),
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        token_lists = [[t for t in res.sequences_ids[0] if t < tok.eot] for res in gen]

        # Alignment for word times, one call for the whole batch.
        alignments = self._fw.find_alignment(tok, token_lists, encoder_output, frames)
        results: list[Transcript] = []
        for (audio, offset), res, tokens, alignment, (_, prob) in zip(
            clips, gen, token_lists, alignments, languages, strict=True
        ):
            text = tok.decode(tokens).strip()
            if lang in _SIMPLIFY:
                text = to_simplified(text)
            if lang in _CHARACTER_LANGUAGES:
                # As the words are spelled (_char_words): no half characters, full-width marks.
                text = _full_width_punctuation(text.replace("\ufffd", "").strip())
            seq_len = len(tokens)
            avg_logprob = float(res.scores[0]) * seq_len / (seq_len + 1) if seq_len else -10.0
            no_speech = float(res.no_speech_prob)
            seconds = audio.size / SAMPLE_RATE
            clip_end = offset + seconds
            hit_limit = len(res.sequences_ids[0]) + len(prompt) >= max_length
            empty = Transcript("", (), offset, clip_end, lang, no_speech, avg_logprob, prob)
            if width < 3000 and self._is_loop(text, hit_limit, seconds, lang):
                results.append(replace(empty, avg_logprob=_LOOPED))
                continue
            if self._is_noise(text, no_speech, avg_logprob):
                results.append(empty)
                continue
            if lang in _CHARACTER_LANGUAGES:
                words = _char_words(alignment, offset, clip_end, lang in _SIMPLIFY)
            else:
                words = self._words(alignment, offset, clip_end)
            results.append(
                Transcript(
                    text=text,
                    words=words,
                    t=words[0].t if words else offset,
                    t_end=words[-1].t_end if words else clip_end,
                    language=lang,
                    no_speech_prob=no_speech,
                    avg_logprob=avg_logprob,
                    language_prob=prob,
                )
            )
        return results

    def beam_size(self, language: str) -> int:
        """The beam a clip in ``language`` is decoded with."""
        return dict(self.config.language_beam_sizes).get(language, self.config.beam_size)

    def _prompt(self, tok: object, language: str) -> list[int]:
        """Previous-context tokens for ``language`` (empty without a configured prompt)."""
        text = dict(self.config.prompts).get(language)
        if not text:
            return []
        if language not in self._prompt_tokens:
            encoded = tok.encode(" " + text.strip())  # type: ignore[attr-defined]
            self._prompt_tokens[language] = [tok.sot_prev, *encoded]  # type: ignore[attr-defined]
        return self._prompt_tokens[language]

    def window_frames(self, frames: int) -> int:
        """Encoder width for a clip: 5 s buckets from the floor up to 30 s.

        A clip gets the same width whether it is encoded alone or in a batch, so batching
        never changes what a clip transcribes to.
        """
        floor = int(self.config.min_window_s * 100)
        width = max(frames, floor)
        width = -(-width // 500) * 500
        return min(3000, width)

    def _detect(self, encoder_output: object) -> list[tuple[str, float]]:
        """Each clip's language among ``detect_languages`` and its renormalised probability."""
        allowed = set(self.config.detect_languages)
        out = []
        for ranked in self._fw.model.detect_language(encoder_output):
            probs = {str(t)[2:-2]: float(p) for t, p in ranked}
            if allowed:
                probs = {c: p for c, p in probs.items() if c in allowed}
            best = max(probs, key=lambda c: probs[c])
            total = sum(probs.values())
            out.append((best, probs[best] / total if total > 0 else 1.0 / len(probs)))
        return out

    def _is_noise(self, text: str, no_speech: float, avg_logprob: float) -> bool:
        """Whisper's own guard against text invented for silence or noise."""
        if not text:
            return True
        return (
            no_speech > self.config.no_speech_threshold
            and avg_logprob < self.config.logprob_threshold
        )

    def _is_loop(self, text: str, hit_max_length: bool, seconds: float, language: str) -> bool:
        """A repeating decode: hit the length limit, compresses too well, more words (or
        Chinese characters) than anyone can say in the clip, or the same sentence three
        times in a row."""
        data = text.encode("utf-8")
        ratio = len(data) / max(1, len(zlib.compress(data)))
        if hit_max_length or ratio > self.config.max_compression_ratio:
            return True
        if language in _CHARACTER_LANGUAGES:
            # zlib barely compresses a short run of 3-byte characters ("多少岛岛岛...岛" x21
            # scores 1.5), so look for the run itself: 1-4 characters repeated (8 or more in
            # all), or 5 or more said twice in a row ("推动该公司推动该公司", a phone number
            # twice), which Whisper does on short windows (with beam search most).
            dense = "".join(c for c in text if c.isalnum())
            if any(len(m.group(0)) >= 8 for m in _REPEAT_RE.finditer(dense)):
                return True
            if _TWICE_RE.search(dense):
                return True
            latin, han = speech_units(text.split())
            if han + latin > _MAX_CHARS_PER_S * seconds + 5:
                return True
        elif len(text.split()) > 6.0 * seconds + 3:
            return True
        sentences = [x.strip().lower() for x in re.split(r"[.?!。？！]", text) if x.strip()]
        return any(
            sentences[i] == sentences[i + 1] == sentences[i + 2] for i in range(len(sentences) - 2)
        )

    @staticmethod
    def _words(alignment: list[dict], offset: float, clip_end: float) -> tuple[Word, ...]:
        from faster_whisper.transcribe import merge_punctuations

        merge_punctuations(alignment, _PREPEND_PUNCT, _APPEND_PUNCT)
        words = []
        for a in alignment:
            w = str(a["word"]).strip()
            if not w:
                continue
            t = min(offset + float(a["start"]), clip_end)
            t_end = min(offset + float(a["end"]), clip_end)
            words.append(Word(w, round(t, 3), round(max(t, t_end), 3), float(a["probability"])))
        return tuple(words)


@dataclass
class _Unit:
    """A word being built by ``_char_words``."""

    text: str
    t: float
    t_end: float
    probs: list[float]
    han: bool

    def continues_with(self, c: str) -> bool:
        """Whether Latin letter/digit ``c`` (no space before it) extends this word."""
        last = self.text[-1]
        return not self.han and (
            last.isalnum() or (last in _JOINERS and self.text[-2:-1].isalnum())
        )


def _char_words(
    alignment: list[dict], offset: float, clip_end: float, simplify: bool
) -> tuple[Word, ...]:
    """Words of a Chinese clip: one per Han character, one per run of Latin letters/digits.

    Whisper's pieces (tokens split where they decode to whole characters) may hold several
    characters; a piece's time span is shared equally by its letters and characters.
    Punctuation takes no time: an opening mark goes with the next word, any other with the
    word before it (for display; rules drop it).
    """
    units: list[_Unit] = []
    prefix = ""  # opening punctuation waiting for the next word
    for a in alignment:
        piece = str(a["word"]).replace("\ufffd", "")
        if simplify:
            piece = to_simplified(piece)
        start = offset + float(a["start"])
        end = max(start, offset + float(a["end"]))
        prob = float(a["probability"])
        timed = sum(1 for c in piece if c.isalnum())
        step = (end - start) / timed if timed else 0.0
        k = 0
        space = False
        for c in piece:
            last = units[-1] if units else None
            if c.isspace():
                space = True
            elif not c.isalnum():
                if last is None or (c in _OPENING and (space or last.han or c not in _JOINERS)):
                    prefix += c
                else:
                    last.text += c.translate(_FULL_WIDTH) if last.han else c
            else:
                t0 = start + k * step
                k += 1
                han = is_cjk(c)
                if (
                    last is not None
                    and not han
                    and not space
                    and not prefix
                    and last.continues_with(c)
                ):
                    last.text += c
                    last.t_end = t0 + step
                    last.probs.append(prob)
                else:
                    units.append(_Unit(prefix + c, t0, t0 + step, [prob], han))
                    prefix = ""
                space = False
    if prefix and units:
        units[-1].text += prefix
    words = []
    for u in units:
        t = round(min(u.t, clip_end), 3)
        t_end = round(max(t, min(u.t_end, clip_end)), 3)
        words.append(Word(u.text, t, t_end, float(np.mean(u.probs))))
    return tuple(words)


def _full_width_punctuation(text: str) -> str:
    """ASCII , . ? ! : ; right after a Han character (spaces between allowed) -> full width."""
    out = []
    prev = ""
    for c in text:
        if c in ",.?!:;" and is_cjk(prev):
            c = c.translate(_FULL_WIDTH)
        out.append(c)
        if not c.isspace():
            prev = c
    return "".join(out)
