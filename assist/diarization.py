"""Turn a mono recording into role channels: diarize, decide who is the agent, split.

Everything downstream (VAD, ASR, per-speaker rules, emotion baselines, talk ratios) already
works per channel, so a diarized mono call is rebuilt as one channel per speaker: the mixed
audio with everyone else's turns silenced (10 ms fades, no clicks). Roles come from enrolled
voiceprints, else from what each speaker says in their first turns (a few seconds of ASR),
else from who spoke first; the report carries the backend, its confidence and the evidence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audio import SAMPLE_RATE
from audio.reader import CallAudio, Channel
from models.asr import WhisperAsr
from models.diarize import Diarization, Diarizer, make_diarizer
from models.diarize.channel import ChannelDiarizer
from models.diarize.encoder import SpeakerEncoder, shared_encoder
from models.diarize.roles import RoleDecision, SpeakerProfile, by_voiceprint, decide_roles

log = logging.getLogger(__name__)

DIARIZE_CHOICES = ("embedding", "pyannote", "none")
FADE_S = 0.01
VOICE_SECONDS = 60.0  # speech per speaker used for its voiceprint comparison
CUE_TURNS = 3  # first turns per speaker transcribed to look for agent/customer phrases
CUE_SECONDS = 20.0


@dataclass
class DiarizeOptions:
    backend: str = "embedding"  # embedding | pyannote | none (keep one "mixed" speaker)
    pyannote_dir: str | None = None
    _diarizer: Diarizer | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.backend not in DIARIZE_CHOICES:
            raise ValueError(
                f"unknown diarization backend {self.backend!r}: use {', '.join(DIARIZE_CHOICES)}"
            )
        if self.backend == "pyannote" and not self.pyannote_dir:
            raise ValueError("--diarize pyannote needs --pyannote-dir: a local pipeline folder")

    def diarizer(self) -> Diarizer:
        """Built once and reused for every file (a pyannote pipeline takes seconds to load)."""
        if self._diarizer is None:
            self._diarizer = make_diarizer(self.backend, self.pyannote_dir)
        return self._diarizer


def speaker_voice(
    samples: np.ndarray, turns: list[tuple[float, float]], encoder: SpeakerEncoder
) -> np.ndarray | None:
    """Unit mean voice of one speaker over (up to ``VOICE_SECONDS`` of) their turns."""
    pieces: list[np.ndarray] = []
    total = 0
    for start, end in turns:
        piece = samples[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
        if piece.size < SAMPLE_RATE // 2:
            continue
        pieces.append(piece)
        total += piece.size
        if total >= VOICE_SECONDS * SAMPLE_RATE:
            break
    if not pieces:
        return None
    return encoder.embed_utterance(np.concatenate(pieces))


def _profiles(d: Diarization, samples: np.ndarray, encoder: SpeakerEncoder) -> list[SpeakerProfile]:
    out = []
    speech = d.speech_seconds()
    for label in d.speakers:
        turns = [(t.start, t.end) for t in d.turns if t.speaker == label]
        out.append(
            SpeakerProfile(
                label,
                min(s for s, _ in turns),
                speech[label],
                speaker_voice(samples, turns, encoder),
            )
        )
    return out


def _cue_texts(d: Diarization, samples: np.ndarray, asr: WhisperAsr) -> dict[str, list[str]]:
    """Transcribe each speaker's first few turns (not the whole call) to read their phrases."""
    clips: list[tuple[str, np.ndarray, float]] = []
    for label in d.speakers:
        taken = 0.0
        for turn in sorted((t for t in d.turns if t.speaker == label), key=lambda t: t.start):
            if turn.duration < 0.5:
                continue
            a, b = int(turn.start * SAMPLE_RATE), int(turn.end * SAMPLE_RATE)
            clips.append((label, samples[a:b], turn.start))
            taken += turn.duration
            if taken >= CUE_SECONDS or sum(c[0] == label for c in clips) >= CUE_TURNS:
                break
    texts: dict[str, list[str]] = {label: [] for label in d.speakers}
    results = asr.transcribe_batch([(audio, t0) for _, audio, t0 in clips]) if clips else []
    for (label, _, _), tr in zip(clips, results, strict=True):
        texts[label].append(tr.text)
    return texts


def assign_roles(
    d: Diarization,
    samples: np.ndarray,
    asr: WhisperAsr | None,
    voiceprints: dict[str, np.ndarray] | None = None,
    encoder: SpeakerEncoder | None = None,
) -> RoleDecision:
    encoder = encoder or shared_encoder()
    profiles = _profiles(d, samples, encoder)
    decision = by_voiceprint(profiles, voiceprints or {})
    if decision is not None:
        return decision
    if asr is not None and len(profiles) > 1:
        texts = _cue_texts(d, samples, asr)
        for p in profiles:
            p.texts = texts.get(p.label, [])
    return decide_roles(profiles)  # no voiceprint matched: phrases, then speaking order


def _masked(samples: np.ndarray, turns: list[tuple[float, float]]) -> np.ndarray:
    gain = np.zeros(samples.size, dtype=np.float32)
    fade = int(FADE_S * SAMPLE_RATE)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    for start, end in turns:
        a = max(0, int(start * SAMPLE_RATE))
        b = min(samples.size, int(end * SAMPLE_RATE))
        if b - a <= 2 * fade:
            continue
        piece = np.ones(b - a, dtype=np.float32)
        piece[:fade] = ramp
        piece[-fade:] = ramp[::-1]
        gain[a:b] = np.maximum(gain[a:b], piece)
    return samples * gain


def separate_speakers(
    audio: CallAudio,
    options: DiarizeOptions,
    asr: WhisperAsr | None,
    voiceprints: dict[str, np.ndarray] | None = None,
) -> tuple[CallAudio, dict[str, Any]]:
    """Mono -> one channel per diarized speaker, named by role; stereo passes through."""
    if len(audio.channels) > 1 or audio.channels[0].role != "mixed":
        info = ChannelDiarizer.describe([c.role for c in audio.channels])
        return audio, info
    if options.backend == "none":
        return audio, {"backend": "none", "confidence": 0.0, "speakers": ["mixed"]}
    samples = audio.channels[0].samples
    d = options.diarizer().diarize(samples)
    if not d.turns:
        return audio, {**d.to_dict(), "note": "no speech found; kept one mixed speaker"}
    decision = assign_roles(d, samples, asr, voiceprints)
    order = sorted(decision.roles, key=lambda label: _role_rank(decision.roles[label]))
    channels = tuple(
        Channel(
            decision.roles[label],
            _masked(samples, [(t.start, t.end) for t in d.turns if t.speaker == label]),
        )
        for label in order
    )
    info = {**d.to_dict(), **decision.to_dict()}
    log.info(
        "%s: %s diarization, %d speakers (confidence %.2f); roles by %s: %s",
        audio.sources[0],
        d.backend,
        len(d.speakers),
        d.confidence,
        decision.evidence,
        decision.detail,
    )
    return CallAudio(audio.sources, audio.source_rate, channels), info


def _role_rank(role: str) -> tuple[int, str]:
    return ({"agent": 0, "customer": 1}.get(role, 2), role)


MIN_ENROL_S = 5.0
GOOD_ENROL_S = 15.0


class EnrolmentError(ValueError):
    """The recording cannot make a voiceprint; the message says why."""


@dataclass
class Enrolment:
    voiceprint: np.ndarray
    speech_s: float
    note: str


def enrol_from(audio: CallAudio) -> Enrolment:
    """The agent's voiceprint from a recording of them.

    Stereo or two-leg audio: the agent channel. Mono: the whole file if one voice is heard,
    else the speaker who talks most (an agent's own call recording), which the note says.
    """
    from models.diarize.speech import speech_regions

    encoder = shared_encoder()
    agent = next((c for c in audio.channels if c.role == "agent"), None)
    if agent is not None:
        samples, note = agent.samples, "agent channel"
        turns = [(s.t, s.t_end) for s in speech_regions(samples)]
    else:
        samples = audio.channels[0].samples
        d = make_diarizer("embedding").diarize(samples)
        speech = d.speech_seconds()
        if not speech:
            raise EnrolmentError("no speech found in the recording")
        label = max(speech, key=lambda k: speech[k])
        turns = [(t.start, t.end) for t in d.turns if t.speaker == label]
        note = (
            "one voice"
            if len(speech) == 1
            else f"{len(speech)} voices heard; used the one with most speech ({speech[label]:.0f} s)"
        )
    speech_s = sum(b - a for a, b in turns)
    if speech_s < MIN_ENROL_S:
        raise EnrolmentError(
            f"only {speech_s:.1f} s of the agent's speech; at least {MIN_ENROL_S:.0f} s is needed "
            f"({GOOD_ENROL_S:.0f} s or more recommended)"
        )
    voice = speaker_voice(samples, turns, encoder)
    if voice is None:
        raise EnrolmentError("no speech turn long enough to embed (0.5 s or more)")
    if speech_s < GOOD_ENROL_S:
        note += f"; only {speech_s:.0f} s of speech, {GOOD_ENROL_S:.0f} s or more is more reliable"
    return Enrolment(voice, speech_s, note)
