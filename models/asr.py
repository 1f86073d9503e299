"""Whisper ASR on short, VAD-cut clips, with word timestamps, on CPU.

``faster_whisper.WhisperModel.transcribe`` pads every input to a 30 s window, so a 2 s
utterance costs as much encoder time as 30 s of audio. Here each clip is encoded at its own
length (plus a little silence), several clips can share one encoder call (padded to the
longest), and decoding is greedy or beam with no temperature fallback, so latency is
predictable. Word times come from the model's cross-attention alignment, as in
faster-whisper's own ``word_timestamps=True``. Offline audits and live calls both use this
class, so the same utterance gets the same words on both paths.
"""

from __future__ import annotations

import os
import re
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audio import SAMPLE_RATE
from audio.codecs import Float32Array
from models.locator import fingerprint, locate

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights are local; never reach for a hub

MAX_CLIP_S = 29.0
_LOOPED = -99.0  # avg_logprob marker for a decode that looped (retried on 30 s)
_PREPEND_PUNCT = "\"'“¿([{-"
_APPEND_PUNCT = "\"'.。,，!！?？:：”)]}、"


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
    """What one clip said. Times are seconds of call audio (clip offset applied)."""

    text: str
    words: tuple[Word, ...]
    t: float
    t_end: float
    language: str
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0

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
    language: str | None = "en"  # None: detect per clip (multilingual models only)
    pad_s: float = 0.5  # silence appended so the last word is not cut by the window
    # Encoder window floor. Whisper trained on 30 s windows loops on very short ones;
    # 10 s measured loop-free on jfk/OSR at 1/6 of the 30 s cost (docs/benchmarks.md).
    min_window_s: float = 10.0
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    max_compression_ratio: float = 2.4


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
        # CTranslate2 runs up to `workers` calls in parallel on one copy of the weights.
        self._slots = threading.Semaphore(self.config.workers)

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
                        # A looping decode on the short window: one retry on the full 30 s.
                        tr = self._run([clips[i]], lang, 3000)[0]
                    out[i] = tr
        return [tr for tr in out if tr is not None]

    def _run(
        self,
        clips: Sequence[tuple[Float32Array, float]],
        language: str | None,
        width: int,
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

        languages = self._languages(encoder_output, len(clips), language)
        results: list[Transcript] = []
        prompts = []
        tokenizers = []
        for lang in languages:
            tok = self._tokenizer_cls(
                self._fw.hf_tokenizer, self.multilingual, task="transcribe", language=lang
            )
            tokenizers.append(tok)
            prompts.append([*tok.sot_sequence, tok.no_timestamps])
        longest_s = max(a.size for a, _ in clips) / SAMPLE_RATE
        max_length = min(448, len(prompts[0]) + int(12 * longest_s) + 16)
        gen = self._fw.model.generate(
            encoder_output,
            prompts,
            beam_size=self.config.beam_size,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        token_lists: list[list[int]] = []
        for res, tok in zip(gen, tokenizers, strict=True):
            token_lists.append([t for t in res.sequences_ids[0] if t < tok.eot])

        # Alignment for word times, one call for the whole batch.
        alignments = self._fw.find_alignment(
            tokenizers[0],
            token_lists,
            encoder_output,
            frames,
        )
        for i, ((audio, offset), res, tok, tokens) in enumerate(
            zip(clips, gen, tokenizers, token_lists, strict=True)
        ):
            text = tok.decode(tokens).strip()
            seq_len = len(tokens)
            avg_logprob = float(res.scores[0]) * seq_len / (seq_len + 1) if seq_len else -10.0
            no_speech = float(res.no_speech_prob)
            clip_end = offset + audio.size / SAMPLE_RATE
            hit_limit = len(res.sequences_ids[0]) + len(prompts[i]) >= max_length
            if width < 3000 and self._is_loop(text, hit_limit, audio.size / SAMPLE_RATE):
                results.append(
                    Transcript("", (), offset, clip_end, languages[i], no_speech, _LOOPED)
                )
                continue
            if self._is_noise(text, no_speech, avg_logprob):
                results.append(
                    Transcript("", (), offset, clip_end, languages[i], no_speech, avg_logprob)
                )
                continue
            words = self._words(alignments[i], offset, clip_end)
            results.append(
                Transcript(
                    text=text,
                    words=words,
                    t=words[0].t if words else offset,
                    t_end=words[-1].t_end if words else clip_end,
                    language=languages[i],
                    no_speech_prob=no_speech,
                    avg_logprob=avg_logprob,
                )
            )
        return results

    def window_frames(self, frames: int) -> int:
        """Encoder width for a clip: 5 s buckets from the floor up to 30 s.

        A clip gets the same width whether it is encoded alone or in a batch, so batching
        never changes what a clip transcribes to.
        """
        floor = int(self.config.min_window_s * 100)
        width = max(frames, floor)
        width = -(-width // 500) * 500
        return min(3000, width)

    def _languages(self, encoder_output: object, n: int, language: str | None) -> list[str]:
        if language is not None or not self.multilingual:
            return [language or "en"] * n
        detected = self._fw.model.detect_language(encoder_output)
        return [str(d[0][0])[2:-2] for d in detected]

    def _is_noise(self, text: str, no_speech: float, avg_logprob: float) -> bool:
        """Whisper's own guard against text invented for silence or noise."""
        if not text:
            return True
        return (
            no_speech > self.config.no_speech_threshold
            and avg_logprob < self.config.logprob_threshold
        )

    def _is_loop(self, text: str, hit_max_length: bool, seconds: float) -> bool:
        """A repeating decode: hit the length limit, compresses too well, more words than
        anyone can say in the clip, or the same sentence three times in a row."""
        data = text.encode("utf-8")
        ratio = len(data) / max(1, len(zlib.compress(data)))
        if hit_max_length or ratio > self.config.max_compression_ratio:
            return True
        if len(text.split()) > 6.0 * seconds + 3:
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
