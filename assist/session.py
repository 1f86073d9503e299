"""Live calls: a CallPipeline per call, fed by a protocol adapter, transcribed on the shared
scheduler, publishing events to the bus as they happen.

Everything here runs on the asyncio event loop; the scheduler's worker threads hand
results back with ``loop.call_soon_threadsafe``. Partial transcripts are requested for the
utterance still being spoken (at most one per ``partial_every_s`` of new speech per channel)
and dropped if the utterance already has its final.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from assist.audit import build_report, emotion_summary
from assist.bus import EventBus
from assist.events import Event
from assist.facts import call_facts
from assist.language import CallLanguage, LanguageModels, decide_language, packs_for
from assist.persist import LiveStoreWriter
from assist.pipeline import AsrJob, CallPipeline
from assist.store import Store, StoreError
from assist.suggest import Assistant, AssistLibrary
from audio.codecs import Float32Array
from audio.protocols.base import CallInfo
from audio.vad import VadConfig
from models.asr import MAX_CLIP_S, Transcript
from models.diarize.channel import ChannelDiarizer
from models.diarize.online import OnlineDiarizer
from models.emotion import EmotionAnalyzer, EmotionTracker, VoiceMeasure
from models.scheduler import AsrScheduler
from qa_rules.engine import RuleEngine
from qa_rules.schema import RulePack

log = logging.getLogger(__name__)


# A live call's stored listing is refreshed at least this often, so other instances can
# tell a quiet call from one whose server died (see assist/cluster.py).
HEARTBEAT_S = 15.0


@dataclass
class LiveConfig:
    partial_every_s: float = 1.0  # new speech between two partial requests on a channel
    min_partial_s: float = 0.6  # no partial for the first moments of an utterance
    partials: bool = True
    vad: VadConfig = field(default_factory=VadConfig)


@dataclass
class _ChannelState:
    generation: int = 0  # bumps when an utterance closes; stale partials are ignored
    last_partial_at: float = 0.0  # audio time of the last partial request
    open_since: float | None = None


class LiveCall:
    def __init__(
        self,
        info: CallInfo,
        packs: list[RulePack],
        scheduler: AsrScheduler,
        bus: EventBus,
        loop: asyncio.AbstractEventLoop,
        config: LiveConfig,
        models: LanguageModels,
        emotion: EmotionAnalyzer | None = None,
        speakers: OnlineDiarizer | None = None,
        assist: AssistLibrary | None = None,
        writer: LiveStoreWriter | None = None,
    ) -> None:
        """``packs``: every running pack; the call runs those of its language."""
        self.info = info
        self.writer = writer
        self.models = models
        self.assist = assist
        self.all_packs = packs
        # metadata, the default, or (pending) detected on the first utterances
        self.lang = CallLanguage(models.config, requested=info.language)
        assistant = (
            assist.assistant(self.lang.language) if assist and not self.lang.pending else None
        )
        # A mono "mixed" stream: each utterance's speaker is found as it finishes.
        self.speakers = speakers
        self.scheduler = scheduler
        self.bus = bus
        self.loop = loop
        self.config = config
        self.analyzer = emotion
        self.pipe = CallPipeline(
            info.call_id,
            info.channels,
            RuleEngine(packs_for(packs, self.lang.language)),
            config.vad,
            emotion=EmotionTracker() if emotion else None,
            analyzer=None,  # measured on the worker thread (see _submit_final), never here
            assistant=assistant,
        )
        self.started_wall = time.time()
        self.ended_reason: str | None = None
        self.events: list[Event] = []
        self._facts: dict[str, Any] | None = None
        self._channels = [_ChannelState() for _ in info.channels]
        self._done = asyncio.Event()
        self._closing = False
        self.pipe.start(
            channels=info.channels,
            protocol=info.protocol,
            agent_id=info.agent_id,
            language=self.lang.language,
            language_source=self.lang.source,
            **({"language_requested": info.language} if info.language else {}),
            model=models.asr_for(self.lang.language).model_id,
            mode="live",
            emotion=emotion.backend if emotion else None,
            rule_packs=[f"{p.pack}@{p.version}" for p in self.pipe.engine.packs],
            playbook=assistant.label if assistant else None,
            metadata=info.metadata,
            diarization=self.diarization(),
            started_at=self.started_wall,
        )
        if writer is not None:
            writer.call_started(
                info.call_id,
                agent_id=info.agent_id,
                protocol=info.protocol,
                language=self.lang.language,
                started_at=self.started_wall,
                channels=list(info.channels),
            )
        self._listed_seq = 0  # the last seq whose listing went to the store, and when
        self._listed_at = 0.0
        self._flush()

    @property
    def call_id(self) -> str:
        return self.info.call_id

    @property
    def active(self) -> bool:
        return self.ended_reason is None

    # -- audio ---------------------------------------------------------------------------
    def on_audio(self, channel: int, samples: Float32Array) -> None:
        if self._closing or samples.size == 0:
            return
        for job in self.pipe.push(channel, samples):
            self._submit_final(job)
        if self.config.partials:
            self._maybe_partial(channel)
        self._flush()

    def _submit_final(self, job: AsrJob) -> None:
        self._channels[job.channel].generation += 1
        self._channels[job.channel].open_since = None
        self.scheduler.cancel_partial((self.call_id, job.channel))

        analyzer = self.analyzer
        speakers = self.speakers
        assistant = self.pipe.assistant

        def done(tr: Transcript | None, err: BaseException | None) -> None:
            # Runs on the ASR worker thread: measure the voice, find the speaker and embed
            # the text for suggestions here, off the event loop.
            voice = None
            speaker = None
            vector = None
            if tr is not None and not tr.empty:
                where = f"call {self.call_id} at {job.segment.t:.2f} s"
                if analyzer is not None:
                    voice = analyzer.measure_or_none(job.audio, where)
                if speakers is not None:
                    speaker = _speaker_or_none(speakers, job.audio, tr.text, where)
                vector = _vector_or_none(assistant, speaker or job.speaker, tr.text, True, where)
            self.loop.call_soon_threadsafe(self._on_final, job, tr, err, voice, speaker, vector)

        language = self.lang.language  # None while detecting: the detector finds it
        self.scheduler.submit_final(
            job.audio, job.segment.t, done, language, self.models.asr_for(language)
        )

    def _on_final(
        self,
        job: AsrJob,
        tr: Transcript | None,
        err: BaseException | None,
        voice: VoiceMeasure | None = None,
        speaker: str | None = None,
        vector: Float32Array | None = None,
    ) -> None:
        if tr is None:
            log.error(
                "call %s: ASR failed for %.2f-%.2f s: %s",
                self.call_id,
                job.segment.t,
                job.segment.t_end,
                err,
            )
            language = self.lang.language or "en"
            tr = Transcript("", (), job.segment.t, job.segment.t_end, language)
        elif self.lang.pending and self.lang.observe(tr):
            decide_language(self.pipe, self.lang, self.models, self.all_packs, self.assist, tr.t)
            self._listed_at = 0.0  # the listing shows the language at the next refresh
        self.pipe.deliver(job, tr, voice, speaker, vector)
        self._flush()
        if self._closing and self.pipe.pending_jobs == 0:
            self._done.set()

    def _maybe_partial(self, channel: int) -> None:
        if self.lang.pending:
            return  # no partials until the language is known (its first utterance)
        ch = self.pipe.channels[channel]
        state = self._channels[channel]
        open_since = ch.vad.open_since
        if open_since is None:
            return
        now = ch.vad.processed_s
        if state.open_since != open_since:
            state.open_since = open_since
            state.last_partial_at = open_since
        if (
            now - open_since < self.config.min_partial_s
            or now - state.last_partial_at < self.config.partial_every_s
        ):
            return
        state.last_partial_at = now
        start = max(open_since, now - MAX_CLIP_S + 1)
        audio = ch.buffer.slice(start, now)
        generation = state.generation
        assistant = self.pipe.assistant
        speaker = self.info.channels[channel]

        def done(tr: Transcript | None, err: BaseException | None) -> None:
            vector = None
            if tr is not None and not tr.empty:
                where = f"call {self.call_id} partial"
                vector = _vector_or_none(assistant, speaker, tr.text, False, where)
            self.loop.call_soon_threadsafe(self._on_partial, channel, generation, tr, vector)

        language = self.lang.language
        self.scheduler.submit_partial(
            (self.call_id, channel), audio, start, done, language, self.models.asr_for(language)
        )

    def _on_partial(
        self,
        channel: int,
        generation: int,
        tr: Transcript | None,
        vector: Float32Array | None = None,
    ) -> None:
        if (
            tr is None
            or tr.empty
            or self._channels[channel].generation != generation
            or not self.active
        ):
            return  # the utterance already has its final: this partial is stale
        self.pipe.partial(self.info.channels[channel], tr, vector)
        self._flush()

    def reload_rules(self, packs: list[RulePack]) -> None:
        """The running packs changed: the call switches to those of its language."""
        self.all_packs = packs
        self.pipe.reload_rules(packs_for(packs, self.lang.language))

    def dismiss(self, suggestion_id: str) -> None:
        """The agent dismissed a suggestion: its intent is not suggested again on this call."""
        self.pipe.dismiss(suggestion_id)

    # -- end -----------------------------------------------------------------------------
    async def end(self, reason: str, timeout_s: float = 60.0) -> None:
        """Finalise what was said (even mid-utterance), decide end-of-call rules, close."""
        if self._closing:
            await self._done.wait()
            return
        self._closing = True
        for job in self.pipe.finish_audio():
            self._submit_final(job)
        for i in range(len(self._channels)):
            self.scheduler.cancel_partial((self.call_id, i))
        if self.pipe.pending_jobs == 0:
            self._done.set()
        try:
            await asyncio.wait_for(self._done.wait(), timeout_s)
        except TimeoutError:
            log.error(
                "call %s: %d transcripts still pending at close",
                self.call_id,
                self.pipe.pending_jobs,
            )
        self.pipe.close(reason)
        self.ended_reason = reason
        self._flush()

    # -- events --------------------------------------------------------------------------
    def _flush(self) -> None:
        out = self.pipe.drain()
        for ev in out:
            self._publish(ev)
        if out and self.writer is not None:
            self.writer.events(out)

    def store_listing(self) -> None:
        """Send the call's listing to the store if it changed (boards of other instances
        list live calls from there)."""
        if self.writer is None or not self.events:
            return
        now = time.monotonic()
        if self.events[-1]["seq"] == self._listed_seq and now - self._listed_at < HEARTBEAT_S:
            return
        self._listed_seq, self._listed_at = self.events[-1]["seq"], now
        row = self.listing()
        self.writer.live_update(
            self.call_id,
            duration_s=row["duration_s"],
            score=row["score"],
            alerts=row["alerts"],
            facts=row["facts"],
            language=self.lang.language,
        )

    def _publish(self, ev: Event) -> None:
        self.events.append(ev)
        self.bus.publish(ev, self.info.agent_id)

    def summary(self) -> dict[str, Any]:
        alerts = [e for e in self.events if e["type"] == "alert"]
        return {
            "call_id": self.call_id,
            "agent_id": self.info.agent_id,
            "protocol": self.info.protocol,
            "channels": self.info.channels,
            "language": self.lang.language,
            "status": "active" if self.active else "ended",
            "ended_reason": self.ended_reason,
            "started_at": self.started_wall,
            "duration_s": round(self.pipe.duration, 2),
            "alerts": len(alerts),
            "critical_alerts": sum(1 for a in alerts if a.get("severity") == "critical"),
            "last_alert": alerts[-1]["message"] if alerts else None,
            "mood": self.mood(),
        }

    def listing(self) -> dict[str, Any]:
        """The summary plus what the board lists and filters calls by (``assist.facts``)."""
        if self._facts is None or self.active:
            facts = call_facts(self.report())
            if not self.active:
                self._facts = facts  # an ended call no longer changes
        else:
            facts = self._facts
        card = next((e for e in reversed(self.events) if e["type"] == "scorecard"), None)
        return {
            **self.summary(),
            "mode": "live",
            "sources": [],
            "score": card["score"] if card else None,
            "facts": facts,
        }

    def mood(self) -> dict[str, Any]:
        """Latest emotion reading per speaker (the board's mood gauge)."""
        return {spk: s["last"] for spk, s in emotion_summary(self.pipe.emotions).items()}

    def detail(self) -> dict[str, Any]:
        """Everything about the call so far, PII masked (numbers found late included)."""
        return self.pipe.report(self._detail())

    def _detail(self) -> dict[str, Any]:
        transcript = sorted(
            (e for e in self.events if e["type"] == "transcript.final"),
            key=lambda e: (e["t"], e["seq"]),
        )
        card = next((e for e in reversed(self.events) if e["type"] == "scorecard"), None)
        return {
            **self.summary(),
            "transcript": [
                {k: e[k] for k in ("speaker", "t", "t_end", "text", "words")} for e in transcript
            ],
            "alerts": [e for e in self.events if e["type"] == "alert"],
            "scorecard": {"score": card["score"], "rules": card["rules"]}
            if card
            else self.pipe.scorecard(),
            "silences": [e for e in self.events if e["type"] == "silence"],
            "emotion": emotion_summary(self.pipe.emotions),
            "diarization": self.diarization(),
        }

    def diarization(self) -> dict[str, Any]:
        """How this call's speakers are found: per channel, or live on a mono mix (with the
        roles decided so far)."""
        if self.speakers is not None:
            return self.speakers.summary()
        return ChannelDiarizer.describe(self.info.channels)

    def report(self) -> dict[str, Any]:
        # the roles of a mono call are only all known at its end, not at call.started
        return {**build_report(self.pipe, list(self.events)), "diarization": self.diarization()}


def _vector_or_none(
    assistant: Assistant | None, speaker: str, text: str, final: bool, where: str
) -> Any:
    """The line's sentence vector if it will be matched for suggestions. On a failure the
    pipeline tries once more when it matches, and failing again loses only the suggestion."""
    if assistant is None or not assistant.will_match(speaker, text, final):
        return None
    try:
        return assistant.embed(text)
    except Exception:
        log.exception("%s: sentence embedding failed", where)
        return None


def _speaker_or_none(
    speakers: OnlineDiarizer, audio: Float32Array, text: str, where: str
) -> str | None:
    """The utterance's speaker; a failure costs only this label (the line stays "mixed")."""
    try:
        return speakers.assign(audio, text)
    except Exception:
        log.exception("%s: speaker identification failed", where)
        return None


class CallManager:
    """All calls of this server: live ones and recently ended ones."""

    def __init__(
        self,
        packs: list[RulePack],
        scheduler: AsrScheduler,
        bus: EventBus,
        store: Store | None,
        config: LiveConfig,
        models: LanguageModels,
        keep_recent: int = 200,
        emotion: EmotionAnalyzer | None = None,
        diarize: bool = True,
        assist: AssistLibrary | None = None,
        writer: LiveStoreWriter | None = None,
    ) -> None:
        self.writer = writer
        self.emotion = emotion
        self.assist = assist
        self.diarize = diarize
        self.packs = packs
        self.scheduler = scheduler
        self.bus = bus
        self.store = store
        self.config = config
        self.models = models
        self.keep_recent = keep_recent
        self.calls: dict[str, LiveCall] = {}

    def start(self, info: CallInfo) -> LiveCall:
        if info.call_id in self.calls and self.calls[info.call_id].active:
            raise ValueError(f"call {info.call_id} is already live on this server")
        call = LiveCall(
            info,
            self.packs,
            self.scheduler,
            self.bus,
            asyncio.get_running_loop(),
            self.config,
            self.models,
            self.emotion,
            self._online_diarizer(info),
            self.assist,
            self.writer,
        )
        self.calls[info.call_id] = call
        self._trim()
        return call

    def set_packs(self, packs: list[RulePack]) -> None:
        """New rules: calls started from now on use ``packs``, and every live call switches
        to them (the pipeline keeps the state of unchanged rules, replays the call for new
        ones, and publishes ``rules.changed``). One call per event-loop turn, so a reload
        over many long calls never stalls audio and alerts. A call that is already ending
        keeps the rules it has. Call on the event loop thread."""
        self.packs = packs
        for call in list(self.calls.values()):
            if call.active and not call._closing:
                call.loop.call_soon(self._reload_call, call, packs)

    def _reload_call(self, call: LiveCall, packs: list[RulePack]) -> None:
        if self.packs is not packs or not call.active or call._closing:
            return  # superseded by a newer rule set, or the call is ending
        try:
            call.reload_rules(packs)
        except Exception:
            log.exception(
                "call %s: reloading its rules failed; it keeps the old ones", call.call_id
            )
        call._flush()

    async def end(self, call: LiveCall, reason: str) -> None:
        await call.end(reason)
        # A call cut by our own shutdown did not end: it is "interrupted", as after a crash.
        status = "interrupted" if reason == "server_shutdown" else "ended"
        if self.writer is not None:
            self.writer.call_ended(call.report(), status, reason)
            # the report is stored when this returns (unless the store is down: then queued)
            await asyncio.to_thread(self.writer.flush, 5.0)

    def store_listings(self) -> None:
        """Refresh the stored listing of every live call that changed (every few seconds)."""
        for call in list(self.calls.values()):
            if call.active:
                try:
                    call.store_listing()
                except Exception:
                    log.exception("call %s: listing for the store failed", call.call_id)

    def _online_diarizer(self, info: CallInfo) -> OnlineDiarizer | None:
        """Mono mixed streams get speakers found live; the call's enrolled agent, if any."""
        if not self.diarize or info.channels != ["mixed"]:
            return None
        agent_print = None
        if self.store is not None and info.agent_id:
            try:
                prints = self.store.voiceprints([info.agent_id])
            except StoreError as exc:
                log.error("call %s: voiceprints unavailable: %s", info.call_id, exc)
                prints = {}
            if info.agent_id in prints:
                agent_print = (info.agent_id, prints[info.agent_id])
        return OnlineDiarizer(agent_voiceprint=agent_print)

    def _trim(self) -> None:
        ended = [c for c in self.calls.values() if not c.active]
        for c in ended[: max(0, len(ended) - self.keep_recent)]:
            del self.calls[c.call_id]
