"""One call's pipeline: audio in, events out. The synchronous core of audit and live.

Audio arrives per channel (``push``). VAD cuts each channel into utterances; each finished
utterance becomes an ``AsrJob`` for whoever runs the model (the audit loop calls it inline,
the live server hands it to a shared worker pool) and comes back through ``deliver``.
Transcripts and silence boundaries are released to the rule engine strictly in time
order, and the engine clock only moves up to a *watermark*: a time before which nothing is
still unknown (no open utterance, no transcript still being decoded, no audio not yet
classified). That is what makes a live call and an audit of the same audio agree.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from assist.events import Event, EventStamper
from assist.redact import Redactor
from assist.suggest import Assistant, rule_prompt
from audio import SAMPLE_RATE
from audio.codecs import Float32Array
from audio.vad import FRAME_MS, Segment, VadConfig, VadSegmenter
from models.asr import Transcript
from models.emotion import EmotionAnalyzer, EmotionTracker, VoiceMeasure
from qa_rules.engine import RuleEngine
from qa_rules.events import (
    Alert,
    EmotionObserved,
    EngineInput,
    SilenceEnded,
    SilenceStarted,
    Utterance,
    WordTime,
)
from qa_rules.pii import PiiTracker, RedactSpan, detect
from qa_rules.schema import PiiRule, RulePack
from qa_rules.scoring import score_of
from qa_rules.text import TokenSeq

log = logging.getLogger(__name__)


# How far back a segment can start relative to the audio already classified: it opens after
# ``start_ms`` of voiced frames and is padded by ``pad_ms`` (see audio.vad).
def _lookback_s(cfg: VadConfig) -> float:
    return (cfg.start_ms + cfg.pad_ms) / 1000 + FRAME_MS / 1000


@dataclass(frozen=True)
class AsrJob:
    job_id: int
    channel: int
    speaker: str
    segment: Segment
    audio: Float32Array


class _ChannelBuffer:
    """Recent audio of one channel, trimmed as utterances are handed out."""

    def __init__(self) -> None:
        self._chunks: list[Float32Array] = []
        self._start = 0  # sample index of the first kept sample
        self._n = 0  # total samples received

    @property
    def samples_received(self) -> int:
        return self._n

    def append(self, samples: Float32Array) -> None:
        self._chunks.append(samples)
        self._n += samples.size

    def slice(self, t: float, t_end: float) -> Float32Array:
        data = np.concatenate(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks = [data]
        a = max(round(t * SAMPLE_RATE) - self._start, 0)
        b = max(round(t_end * SAMPLE_RATE) - self._start, a)
        return data[a:b].copy()

    def trim_before(self, t: float) -> None:
        keep_from = int(t * SAMPLE_RATE)
        if keep_from <= self._start or not self._chunks:
            return
        data = np.concatenate(self._chunks)
        cut = min(keep_from - self._start, data.size)
        self._chunks = [data[cut:]]
        self._start += cut


@dataclass
class _Channel:
    speaker: str
    vad: VadSegmenter
    buffer: _ChannelBuffer = field(default_factory=_ChannelBuffer)
    last_end: float | None = None  # end of the latest closed segment


@dataclass(order=True)
class _Pending:
    """An engine input waiting for its turn; ordered by the time it becomes known."""

    key: float
    order: int
    start: float = field(compare=False)
    item: EngineInput = field(compare=False)
    voice: VoiceMeasure | None = field(default=None, compare=False)


class CallPipeline:
    def __init__(
        self,
        call_id: str,
        speakers: list[str],
        engine: RuleEngine,
        vad_config: VadConfig | None = None,
        silence_report_s: float = 2.0,
        emotion: EmotionTracker | None = None,
        analyzer: EmotionAnalyzer | None = None,
        assistant: Assistant | None = None,
    ) -> None:
        self.call_id = call_id
        self.assistant = assistant  # playbook suggestions (None: rule prompts only)
        self.emotion = emotion
        self.analyzer = analyzer
        self.vad_config = vad_config or VadConfig()
        self.stamper = EventStamper(call_id)
        self.engine = engine
        self.channels = [_Channel(s, VadSegmenter(self.vad_config)) for s in speakers]
        self._lookback = _lookback_s(self.vad_config)
        self._silence_report_s = silence_report_s
        self._job_ids = itertools.count(1)
        self._pending_jobs: dict[int, AsrJob] = {}
        self._ready: list[_Pending] = []
        self._order = itertools.count()
        self._silence_since: float | None = None
        self._silence_next_start: float | None = None
        self._last_silence_end = -1.0
        self._audio_done = False
        self._any_speech = False
        self._outbox: list[Event] = []
        self.transcripts: list[Event] = []
        self.alerts: list[Event] = []
        self.silences: list[Event] = []
        self.emotions: list[Event] = []
        self.suggestions: list[Event] = []
        self._prompts: dict[str, list[str]] = {}
        self._suggestion_ids = 0
        self._ended = False
        # PII said on the call is masked in every event that leaves, and again in the
        # report once numbers split over two utterances are known.
        self.redactor = Redactor()
        self._redact_kinds: list[str] = []
        self._live_pii: PiiTracker | None = None
        self._configure_redaction(engine.packs)
        self._configure_prompts(engine.packs)

    # -- audio in ------------------------------------------------------------------------
    def push(self, channel: int, samples: Float32Array) -> list[AsrJob]:
        """Add 16 kHz audio to one channel; returns utterances ready for ASR."""
        ch = self.channels[channel]
        ch.buffer.append(samples)
        segments = ch.vad.push(samples)
        self._observe_starts(channel, segments)
        jobs = [self._job(channel, seg) for seg in segments]
        self._track_silence()
        self._release()
        return jobs

    def finish_audio(self) -> list[AsrJob]:
        """No more audio will come: close open utterances."""
        jobs: list[AsrJob] = []
        for i, ch in enumerate(self.channels):
            segments = ch.vad.flush()
            self._observe_starts(i, segments)
            jobs.extend(self._job(i, seg) for seg in segments)
        self._audio_done = True
        self._track_silence()
        self._release()
        return jobs

    def deliver(
        self,
        job: AsrJob,
        transcript: Transcript,
        voice: VoiceMeasure | None = None,
        speaker: str | None = None,
        vector: Float32Array | None = None,
    ) -> None:
        """A transcript came back, with (if measured where the audio was) its voice, on a
        diarized mono stream who spoke it, and its sentence vector for suggestions."""
        self._pending_jobs.pop(job.job_id, None)
        if speaker is not None:
            job = AsrJob(job.job_id, job.channel, speaker, job.segment, job.audio)
        if not transcript.empty and any(c.isalnum() for c in transcript.text):
            if voice is None and self.emotion is not None and self.analyzer is not None:
                voice = self.analyzer.measure_or_none(
                    job.audio, f"call {self.call_id} at {job.segment.t:.2f} s"
                )
            words = tuple(WordTime(w.w, w.t, w.t_end) for w in transcript.words)
            # The utterance spans its VAD segment (speaking time for rates); words keep
            # their own times (evidence, windows).
            seg = job.segment
            utt = Utterance(
                job.speaker, seg.t, seg.t_end, transcript.text, words, transcript.language
            )
            self._queue(job.segment.t_end, job.segment.t, utt, voice)
            self._emit_transcript(job, transcript)
            self._suggest(
                job.speaker, transcript.t, transcript.t_end, transcript.text, True, vector
            )
        self._release()

    def close(self, reason: str = "completed") -> None:
        """All audio and transcripts are in: decide the rest, score the call."""
        if self._ended:
            return
        duration = self.duration
        self._release(final=True)
        if self._silence_since is not None:
            self._record_silence(self._silence_since, duration)
        self._handle_alerts(self.engine.finish(duration))
        card = self.scorecard()
        self._out(self.stamper.make("scorecard", duration, **card))
        self._out(self.stamper.make("call.ended", duration, reason=reason))
        self._ended = True

    def set_language(
        self,
        t: float,
        packs: list[RulePack],
        assistant: Assistant | None,
        **fields: Any,
    ) -> None:
        """Language identification decided the call's language (``fields``: language,
        source, confidence, model): announce it, then run that language's rules and
        playbook from here on (the engine replays the call for the rules it gains)."""
        self.assistant = assistant
        self._out(self.stamper.make("call.language", t, **fields))
        self.reload_rules(packs)

    def reload_rules(self, packs: list[RulePack]) -> dict[str, list[str]]:
        """Swap the call's rules (hot reload); the change is an event on the call."""
        change = self.engine.reload(packs)
        self._configure_redaction(packs)
        self._configure_prompts(packs)
        self._out(
            self.stamper.make(
                "rules.changed",
                self.engine.clock,
                packs=[f"{p.pack}@{p.version}" for p in packs],
                **change,
            )
        )
        return change

    def report(self, report: dict[str, Any]) -> dict[str, Any]:
        """A report or call detail with every PII span found so far masked."""
        self._collect_redactions()
        if not self._redact_kinds and not self.redactor.spans:
            return report  # no rule asks for redaction: nothing is touched
        return self.redactor.report(report)

    def partial(self, speaker: str, tr: Transcript, vector: Float32Array | None = None) -> None:
        """A partial transcript of the line still being spoken (live only): out masked, and
        matched for suggestions so one can appear before the customer finishes."""
        ev = self.stamper.make(
            "transcript.partial",
            tr.t,
            t_end=round(tr.t_end, 3),
            speaker=speaker,
            text=tr.text,
            words=[w.to_dict() for w in tr.words],
        )
        self._outbox.append(self.mask_partial(ev))
        self._suggest(speaker, tr.t, tr.t_end, tr.text, False, vector)

    def dismiss(self, suggestion_id: str) -> None:
        if self.assistant is not None:
            self.assistant.dismiss(suggestion_id)

    def _suggest(
        self,
        speaker: str,
        t: float,
        t_end: float,
        text: str,
        final: bool,
        vector: Float32Array | None,
    ) -> None:
        if self.assistant is None:
            return
        try:
            found = self.assistant.on_transcript(speaker, t, t_end, text, final, vector)
        except Exception:
            # a suggestion is a help, never a reason to lose the transcript or the rules
            log.exception("call %s: suggestion matching failed at %.2f s", self.call_id, t)
            return
        for s in found:
            self._emit_suggestion(t_end, s)

    def _emit_suggestion(self, t: float, fields: dict[str, Any]) -> None:
        ev = self._out(self.stamper.make("suggestion", t, **fields))
        self.suggestions.append(ev)

    def _configure_redaction(self, packs: list[RulePack]) -> None:
        """Mask what the pii rules with ``redact`` look for (their types, their min_digits)."""
        rules = [
            r for p in packs for r in p.rules if isinstance(r, PiiRule) and r.enabled and r.redact
        ]
        kinds: list[str] = sorted({k for r in rules for k in r.types})
        min_digits = min((r.min_digits for r in rules), default=8)
        self.redactor.kinds = tuple(kinds)
        self.redactor.min_digits = min_digits
        self.redactor.scrub = bool(kinds)
        if kinds != self._redact_kinds:
            self._live_pii = PiiTracker(kinds, min_digits=min_digits) if kinds else None
        self._redact_kinds = kinds

    @property
    def duration(self) -> float:
        return max(ch.buffer.samples_received for ch in self.channels) / SAMPLE_RATE

    @property
    def pending_jobs(self) -> int:
        return len(self._pending_jobs)

    def start(self, **info: Any) -> None:
        self._out(self.stamper.make("call.started", 0.0, **info))

    def drain(self) -> list[Event]:
        """Events produced since the last drain, in seq order."""
        out, self._outbox = self._outbox, []
        return out

    def scorecard(self) -> dict[str, Any]:
        lines = self.engine.scorecard()
        return {"score": score_of(lines), "rules": [o.to_dict() for o in lines]}

    # -- internals -----------------------------------------------------------------------
    def _job(self, channel: int, seg: Segment) -> AsrJob:
        ch = self.channels[channel]
        job = AsrJob(
            next(self._job_ids), channel, ch.speaker, seg, ch.buffer.slice(seg.t, seg.t_end)
        )
        self._pending_jobs[job.job_id] = job
        self._any_speech = True
        ch.last_end = seg.t_end
        ch.buffer.trim_before(seg.t_end - 1.0)
        return job

    def _classified_until(self) -> float:
        """Audio time before which no new utterance can still start on any channel."""
        if self._audio_done:
            return self.duration
        return max(min(ch.vad.processed_s for ch in self.channels) - self._lookback, 0.0)

    def _known_until(self) -> float:
        """Audio time up to which every channel's speech/silence is decided."""
        until = self._classified_until()
        for ch in self.channels:
            if ch.vad.open_since is not None:
                until = min(until, ch.vad.open_since)
        return until

    def _observe_starts(self, channel: int, new_segments: list[Segment]) -> None:
        """Note where speech (re)starts, to end an open silence there."""
        if self._silence_since is None:
            return
        starts = [seg.t for seg in new_segments]
        open_since = self.channels[channel].vad.open_since
        if open_since is not None:
            starts.append(open_since)
        for st in starts:
            if self._silence_next_start is None or st < self._silence_next_start:
                self._silence_next_start = st

    def _track_silence(self) -> None:
        """Open and close joint silences once the audio on every channel decides them."""
        classified = self._classified_until()
        nxt = self._silence_next_start
        if self._silence_since is not None and nxt is not None and classified >= nxt:
            self._silence_next_start = None
            self._end_silence(nxt)
        if self._silence_since is not None or not self._any_speech or self._audio_done:
            return
        if any(ch.vad.open_since is not None for ch in self.channels):
            return
        last = max(ch.last_end for ch in self.channels if ch.last_end is not None)
        if last > self._last_silence_end and classified >= last:
            self._silence_since = last
            self._queue(last, last, SilenceStarted(last))

    def _end_silence(self, t_end: float) -> None:
        since = self._silence_since
        assert since is not None
        self._silence_since = None
        t_end = max(t_end, since)
        self._last_silence_end = t_end
        self._queue(t_end, t_end, SilenceEnded(since, t_end))
        self._record_silence(since, t_end)

    def _record_silence(self, t: float, t_end: float) -> None:
        if t_end - t >= self._silence_report_s:
            ev = self.stamper.make(
                "silence", t, t_end=round(t_end, 3), duration=round(t_end - t, 3)
            )
            self.silences.append(ev)
            self._out(ev)

    def _queue(
        self, key: float, start: float, item: EngineInput, voice: VoiceMeasure | None = None
    ) -> None:
        heapq.heappush(self._ready, _Pending(key, next(self._order), start, item, voice))

    def _watermark(self) -> float:
        w = self._known_until()
        for job in self._pending_jobs.values():
            w = min(w, job.segment.t)
        for p in self._ready:
            w = min(w, p.start)
        return w

    def _release(self, final: bool = False) -> None:
        """Feed the engine every input whose turn has come, then move its clock."""
        while self._ready:
            head = self._ready[0]
            if not final and any(j.segment.t_end < head.key for j in self._pending_jobs.values()):
                break
            if not final and head.key > self._known_until():
                break
            heapq.heappop(self._ready)
            limit = self._watermark() if not final else head.start
            self._handle_alerts(self.engine.advance(min(head.start, limit)))
            self._handle_alerts(self.engine.feed(head.item))
            if isinstance(head.item, Utterance) and self.emotion is not None:
                self._handle_alerts(self.engine.feed(self._observe_emotion(head.item, head.voice)))
        if not final:
            self._handle_alerts(self.engine.advance(self._watermark()))

    def _handle_alerts(self, alerts: list[Alert]) -> None:
        self._collect_redactions()
        for a in alerts:
            d = a.to_dict()
            t = d.pop("t")
            ev = self._out(self.stamper.make("alert", t, **d))
            self.alerts.append(ev)
            prompt = self._prompts.get(a.rule_id)
            if prompt and "agent" in ev.get("audience", []):
                # a rule's prompt reaches the agent as a suggestion card, beside the alert
                self._suggestion_ids += 1
                self._emit_suggestion(t, rule_prompt(ev, prompt, f"r{self._suggestion_ids}"))

    def _configure_prompts(self, packs: list[RulePack]) -> None:
        self._prompts = {r.id: list(r.prompt) for p in packs for r in p.rules if r.prompt}

    def _collect_redactions(self) -> None:
        spans = self.engine.take_redactions()
        if spans:
            self.redactor.add(spans)

    def _out(self, ev: Event) -> Event:
        """Every event leaves through here: PII masked once any redacting rule is active."""
        if self._redact_kinds or self.redactor.spans:
            ev = self.redactor.event(ev)
        self._outbox.append(ev)
        return ev

    def _observe_emotion(self, u: Utterance, voice: VoiceMeasure | None) -> EmotionObserved:
        """Score the utterance's emotion in time order (baselines depend on the order)."""
        assert self.emotion is not None
        r = self.emotion.observe(
            u.speaker,
            u.t,
            u.t_end,
            u.text,
            u.language,
            voice.features if voice else None,
            voice.angry_probability if voice else None,
            voice.backend if voice else "prosody",
        )
        d = r.to_dict()
        ev = self._out(self.stamper.make("emotion", u.t, **d))
        self.emotions.append(ev)
        return EmotionObserved(
            u.speaker, u.t, u.t_end, r.label, r.confidence, r.anger_index, u.text
        )

    def _note_pii(
        self, speaker: str, words: list[tuple[str, float, float]], final: bool = True
    ) -> None:
        """Mask PII before a line goes out. A final is read together with the same speaker's
        previous line (a card number read in two halves is masked from the second half on);
        a partial on its own."""
        if not self._redact_kinds or not words:
            return
        seq = TokenSeq.from_words([w for w, _, _ in words])
        if final and self._live_pii is not None:
            times = [(t, t_end) for _, t, t_end in words]
            found = self._live_pii.observe(-1, speaker, seq, times, words[0][1], words[-1][2])
            self.redactor.add(span for f in found for span in f.parts)
            return
        for hit in detect(seq, self._redact_kinds, self.redactor.min_digits):
            idx = seq.words_of(hit.start, hit.end)
            if len(idx):
                first, last = words[idx[0]], words[idx[-1]]
                self.redactor.add(
                    [RedactSpan(-1, speaker, idx[0], idx[-1] + 1, first[1], last[2], hit.kind)]
                )

    def mask_partial(self, ev: Event) -> Event:
        """A partial transcript (made outside the pipeline) masked like every other line."""
        words = [(w["w"], w["t"], w["t_end"]) for w in ev.get("words", [])]
        self._note_pii(ev["speaker"], words, final=False)
        return self.redactor.event(ev) if self._redact_kinds or self.redactor.spans else ev

    def _emit_transcript(self, job: AsrJob, tr: Transcript) -> None:
        self._note_pii(job.speaker, [(w.w, w.t, w.t_end) for w in tr.words])
        ev = self.stamper.make(
            "transcript.final",
            tr.t,
            t_end=round(tr.t_end, 3),
            speaker=job.speaker,
            text=tr.text,
            words=[w.to_dict() for w in tr.words],
            language=tr.language,
        )
        ev = self._out(ev)
        self.transcripts.append(ev)
