"""Audit recordings: run a file through the call pipeline as fast as the CPU allows.

The recording is fed in 1 s blocks, channel by channel, exactly as a live call would
arrive, and utterances are transcribed in small batches; then the call is closed and a
report is built from the events.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from assist.diarization import DiarizeOptions, separate_speakers
from assist.events import Event
from assist.language import (
    CallLanguage,
    LanguageModels,
    decide_language,
    language_fields,
    packs_for,
)
from assist.pipeline import AsrJob, CallPipeline
from assist.stored_call import ALERT_FIELDS
from assist.suggest import AssistLibrary
from audio import SAMPLE_RATE
from audio.reader import AgentChannel, CallAudio, read_call
from audio.vad import VadConfig
from models.asr import WhisperAsr
from models.emotion import EmotionAnalyzer, EmotionTracker
from qa_rules.engine import RuleEngine
from qa_rules.schema import RulePack

Progress = Callable[[float], None]  # called with audio seconds just processed


@dataclass
class AuditOptions:
    agent_channel: AgentChannel = "left"
    vad: VadConfig = field(default_factory=VadConfig)
    block_s: float = 1.0
    batch_size: int = 4
    diarize: DiarizeOptions = field(default_factory=DiarizeOptions)
    # Enrolled agents (agent id -> unit voiceprint) that decide roles on mono recordings.
    voiceprints: dict[str, np.ndarray] = field(default_factory=dict)
    agent_id: str | None = None  # the agent on these calls (the board filters by it)
    started_at: float | None = None  # when the call happened (None: the file's mtime)
    language: str | None = None  # the recording's language (None: the default, or detect)


def call_id_for(paths: list[str]) -> str:
    """Stable id per recording: the same file audited twice updates one stored call."""
    h = hashlib.sha1()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return f"audit-{Path(paths[0]).stem}-{h.hexdigest()[:8]}"


def run_pipeline(
    audio: CallAudio,
    call_id: str,
    packs: list[RulePack],
    asr: WhisperAsr | LanguageModels,
    options: AuditOptions | None = None,
    progress: Progress | None = None,
    emotion: EmotionAnalyzer | None = None,
    diarization: dict[str, Any] | None = None,
    assist: AssistLibrary | None = None,
) -> CallPipeline:
    """Run one recording; ``emotion`` adds emotion events and makes emotion rules live.

    ``asr``: one model, or the models of several languages; the recording's language is
    ``options.language``, else the configured default, else detected on its first
    utterances (``assist.language``), and decides its model, rule packs and playbook.

    ``diarization`` (how speakers were found and roles decided) is recorded in the
    call.started event and so in the report.
    """
    opts = options or AuditOptions()
    models = asr if isinstance(asr, LanguageModels) else LanguageModels.single(asr)
    lang = CallLanguage(models.config, requested=opts.language)
    assistant = assist.assistant(lang.language) if assist and not lang.pending else None
    first = models.asr_for(lang.language)
    pipe = CallPipeline(
        call_id,
        [c.role for c in audio.channels],
        RuleEngine(packs_for(packs, lang.language)),
        opts.vad,
        emotion=EmotionTracker() if emotion else None,
        analyzer=emotion,
        assistant=assistant,
    )
    pipe.start(
        sources=list(audio.sources),
        channels=[c.role for c in audio.channels],
        source_rate=audio.source_rate,
        language=lang.language,
        language_source=lang.source,
        model=first.model_id,
        mode="audit",
        emotion=emotion.backend if emotion else None,
        rule_packs=[f"{p.pack}@{p.version}" for p in pipe.engine.packs],
        playbook=assistant.label if assistant else None,
        diarization=diarization,
        agent_id=opts.agent_id,
        started_at=opts.started_at if opts.started_at is not None else time.time(),
    )
    block = int(opts.block_s * SAMPLE_RATE)
    n = max(c.samples.size for c in audio.channels)
    waiting: list[AsrJob] = []

    def run(jobs: list[AsrJob], force: bool = False) -> None:
        waiting.extend(jobs)
        while waiting and (force or len(waiting) >= opts.batch_size):
            batch = waiting[: opts.batch_size]
            del waiting[: opts.batch_size]
            model = models.asr_for(lang.language)
            clips = [(j.audio, j.segment.t) for j in batch]
            for job, tr in zip(batch, model.transcribe_batch(clips, lang.language), strict=True):
                if lang.pending and lang.observe(tr):
                    decide_language(pipe, lang, models, packs, assist, tr.t)
                pipe.deliver(job, tr)

    for start in range(0, n, block):
        for i, ch in enumerate(audio.channels):
            chunk = ch.samples[start : start + block]
            if chunk.size:
                run(pipe.push(i, chunk))
        if progress:
            progress(min(block, n - start) / SAMPLE_RATE)
    run(pipe.finish_audio(), force=True)
    pipe.close()
    return pipe


def build_report(pipe: CallPipeline, events: list[Event]) -> dict[str, Any]:
    started = next((e for e in events if e["type"] == "call.started"), {})
    decided = language_fields(events)  # detection may have decided after the start
    card = next((e for e in events if e["type"] == "scorecard"), {})
    duration = pipe.duration
    talk: dict[str, float] = {}
    words: dict[str, int] = {}
    transcripts = sorted(pipe.transcripts, key=lambda e: (e["t"], e["seq"]))
    for tr in transcripts:
        talk[tr["speaker"]] = talk.get(tr["speaker"], 0.0) + tr["t_end"] - tr["t"]
        words[tr["speaker"]] = words.get(tr["speaker"], 0) + len(tr["words"])
    silence = sum(s["duration"] for s in pipe.silences)
    report = {
        "call_id": pipe.call_id,
        "mode": started.get("mode"),
        "agent_id": started.get("agent_id"),
        "protocol": started.get("protocol"),
        "language": decided["language"],
        "started_at": started.get("started_at"),
        "sources": started.get("sources", []),
        "duration_s": round(duration, 2),
        "model": decided["model"],
        "rule_packs": decided["rule_packs"] or [],
        "channels": started.get("channels", []),
        "diarization": started.get("diarization"),
        "transcript": [
            {k: tr[k] for k in ("speaker", "t", "t_end", "text", "words")} for tr in transcripts
        ],
        "alerts": [{k: a[k] for k in ALERT_FIELDS} for a in pipe.alerts],
        "scorecard": {"score": card.get("score"), "rules": card.get("rules", [])},
        "suggestions": [
            {k: s.get(k) for k in SUGGESTION_FIELDS if s.get(k) not in (None, [], "")}
            for s in pipe.suggestions
        ],
        "emotion": emotion_summary(pipe.emotions),
        "stats": {
            "talk_s": {k: round(v, 2) for k, v in talk.items()},
            "silence_s": round(silence, 2),
            "longest_silence_s": round(max((s["duration"] for s in pipe.silences), default=0.0), 2),
            "wpm": {k: round(60 * words[k] / v, 1) for k, v in talk.items() if v > 0},
        },
        "events": events,
    }
    return pipe.report(report)


# what a report keeps of each suggestion (the full card is in the events)
SUGGESTION_FIELDS = (
    "suggestion_id",
    "t",
    "source",
    "intent",
    "rule_id",
    "title",
    "score",
    "reason",
    "trigger",
    "blocked_by",
    "replaces",
)


def emotion_summary(emotions: list[Event]) -> dict[str, Any]:
    """Per speaker: how often each label, the peak anger index, time spent escalated."""
    out: dict[str, Any] = {}
    escalated: set[str] = set()
    for e in sorted(emotions, key=lambda e: (e["t"], e["seq"])):
        s = out.setdefault(
            e["speaker"],
            {"labels": {}, "peak_anger_index": 0.0, "escalations": 0, "last": None},
        )
        s["labels"][e["label"]] = s["labels"].get(e["label"], 0) + 1
        s["peak_anger_index"] = max(s["peak_anger_index"], e["anger_index"])
        if e["escalated"] and e["speaker"] not in escalated:
            escalated.add(e["speaker"])
            s["escalations"] += 1
        elif not e["escalated"]:
            escalated.discard(e["speaker"])
        s["last"] = {k: e[k] for k in ("label", "anger_index", "escalated", "t")}
    return out


def audit_file(
    path: str,
    packs: list[RulePack],
    asr: WhisperAsr | LanguageModels,
    customer_path: str | None = None,
    options: AuditOptions | None = None,
    progress: Progress | None = None,
    emotion: EmotionAnalyzer | None = None,
    assist: AssistLibrary | None = None,
) -> dict[str, Any]:
    opts = options or AuditOptions()
    if opts.started_at is None:  # a recording happened when it was written, not when audited
        opts = replace(opts, started_at=os.path.getmtime(path))
    audio = read_call(path, customer_path, opts.agent_channel)
    models = asr if isinstance(asr, LanguageModels) else LanguageModels.single(asr)
    cue_asr = models.asr_for(CallLanguage(models.config, requested=opts.language).language)
    audio, diarization = separate_speakers(audio, opts.diarize, cue_asr, opts.voiceprints)
    paths = [path] + ([customer_path] if customer_path else [])
    pipe = run_pipeline(
        audio, call_id_for(paths), packs, models, opts, progress, emotion, diarization, assist
    )
    return build_report(pipe, pipe.drain())
