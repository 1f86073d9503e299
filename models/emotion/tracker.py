"""Per-call emotion: each speaker's voice against their own baseline, fused with the words.

Per utterance: an arousal score (how far loudness and unvoiced spectral flux sit above this
speaker's baseline so far, in units of how much those features wander between a calm
speaker's utterances on real calls), a valence score from the words, and a label with a
confidence. Per speaker, a rolling anger index with hysteresis: it moves toward each
utterance's anger score in proportion to how long that utterance was, and decays while the
speaker is quiet, so one shout does not escalate and a calm minute brings it back down.

Everything here is a pure function of the utterances in time order, so a live call and an
audit of the same audio produce the same readings.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from models.emotion.lexicon import Valence, text_valence
from models.emotion.voice import VoiceFeatures

Label = Literal["neutral", "positive", "frustrated", "angry"]
LABELS: tuple[Label, ...] = ("neutral", "positive", "frustrated", "angry")


@dataclass(frozen=True)
class EmotionConfig:
    # Baseline: a low quantile of the speaker's recent utterances, so a stretch of anger
    # does not become "normal" for them at once.
    baseline_quantile: float = 0.35
    baseline_window: int = 30  # utterances
    warmup_utterances: int = 3  # before this many, acoustic evidence is scaled down
    # Shorter utterances ("yes", "mm", a cough) carry no voice reading and stay out of the
    # baseline: on real calls such fragments sit far below the speaker's level and one of
    # them in a young baseline makes the next normal sentence look like a shout.
    min_voice_s: float = 1.0
    # While escalated, aroused utterances stay out of the baseline, but only this many per
    # escalation: a lasting change of level (a speakerphone, a louder line) must not keep a
    # speaker escalated for the rest of the call.
    max_frozen: int = 8
    # How much each feature wanders between a calm speaker's utterances (90th percentile
    # of |utterance - running median| on real calls, see docs/emotion.md).
    loudness_scale: float = 0.24
    flux_unvoiced_scale: float = 0.47
    # Fusion: anger score = sigmoid(arousal_gain * (arousal - arousal_pivot) - valence_gain * valence)
    arousal_pivot: float = 1.0  # calm speech exceeds this on about 5 % of utterances
    arousal_gain: float = 1.5
    valence_gain: float = 3.0
    frustrated_valence: float = -0.25
    positive_valence: float = 0.3
    # Anger index: moves toward each utterance's anger score with a time constant of this
    # many seconds of the speaker's own speech; decays while they are quiet.
    index_speech_tau_s: float = 6.0
    index_quiet_tau_s: float = 60.0
    escalate_at: float = 0.6
    clear_below: float = 0.35


@dataclass(frozen=True)
class EmotionReading:
    speaker: str
    t: float
    t_end: float
    label: Label
    confidence: float
    arousal: float  # speaker-relative, 0 = their baseline, ~1 = unusually aroused
    valence: float  # -1 .. +1 from the words
    anger: float  # this utterance's anger score, 0 .. 1
    anger_index: float  # rolling, 0 .. 1
    escalated: bool  # anger index above escalate_at (and not yet below clear_below)
    baseline_n: int  # utterances in the speaker's baseline when this one was scored
    cues: tuple[str, ...] = ()
    features: dict[str, float] = field(default_factory=dict)
    backend: str = "prosody"

    def to_dict(self) -> dict[str, Any]:
        return {
            "speaker": self.speaker,
            "t_end": round(self.t_end, 3),
            "label": self.label,
            "confidence": round(self.confidence, 3),
            "arousal": round(self.arousal, 3),
            "valence": round(self.valence, 3),
            "anger": round(self.anger, 3),
            "anger_index": round(self.anger_index, 3),
            "escalated": self.escalated,
            "baseline_n": self.baseline_n,
            "cues": list(self.cues),
            "features": self.features,
            "backend": self.backend,
        }


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class _Speaker:
    def __init__(self, window: int) -> None:
        self.history: deque[np.ndarray] = deque(maxlen=window)
        self.index = 0.0
        self.escalated = False
        self.frozen = 0  # aroused utterances kept out of the baseline in this escalation
        self.last_t_end: float | None = None


class EmotionTracker:
    """One per call. ``observe`` each final utterance in time order."""

    def __init__(self, config: EmotionConfig | None = None) -> None:
        self.config = config or EmotionConfig()
        self._speakers: dict[str, _Speaker] = {}
        self._scale = np.array([self.config.loudness_scale, self.config.flux_unvoiced_scale])

    def observe_voice(self, speaker: str, voice: VoiceFeatures | None) -> tuple[float, int]:
        """Speaker-relative arousal of one utterance and the baseline size it used; the
        utterance then joins the speaker's baseline (so call this once per utterance)."""
        cfg = self.config
        st = self._speakers.setdefault(speaker, _Speaker(cfg.baseline_window))
        if not self.usable(voice):
            return 0.0, len(st.history)
        assert voice is not None
        v = np.array([voice.loudness, voice.flux_unvoiced])
        n = len(st.history)
        if not n:
            st.history.append(v)
            return 0.0, 0
        hist = np.stack(st.history)
        base = np.quantile(hist, cfg.baseline_quantile, axis=0)
        z = float(np.mean((v - base) / self._scale))
        # While the speaker is escalated their anger must not become their baseline.
        # After max_frozen such utterances in one escalation, take them as the new normal.
        if st.escalated and z >= cfg.arousal_pivot and st.frozen < cfg.max_frozen:
            st.frozen += 1
        else:
            st.history.append(v)
        if not st.escalated:
            st.frozen = 0
        return z, n

    def usable(self, voice: VoiceFeatures | None) -> bool:
        """Long enough and voiced (no pitch found = noise, not speech)."""
        return (
            voice is not None and voice.duration_s >= self.config.min_voice_s and voice.pitch_st > 0
        )

    def observe(
        self,
        speaker: str,
        t: float,
        t_end: float,
        text: str,
        language: str = "en",
        voice: VoiceFeatures | None = None,
        angry_probability: float | None = None,
        backend: str = "prosody",
    ) -> EmotionReading:
        cfg = self.config
        st = self._speakers.setdefault(speaker, _Speaker(cfg.baseline_window))
        arousal, n = self.observe_voice(speaker, voice)
        val: Valence = text_valence(text, language)
        # Trust the voice in proportion to how well we know this speaker's baseline.
        trust = min(n, cfg.warmup_utterances) / cfg.warmup_utterances if self.usable(voice) else 0.0
        if angry_probability is not None and self.usable(voice):  # a trained model speaks
            p = min(max(angry_probability, 1e-4), 1 - 1e-4)
            acoustic = math.log(p / (1 - p))
            trust = 1.0
        else:
            acoustic = cfg.arousal_gain * (arousal - cfg.arousal_pivot)
        # Without voice evidence the acoustic term sits at "calm" and only words can tip it.
        acoustic_term = trust * acoustic + (1 - trust) * (-cfg.arousal_gain * cfg.arousal_pivot)
        anger = _sigmoid(acoustic_term - cfg.valence_gain * val.valence)

        label: Label
        if anger >= 0.5:
            label, confidence = "angry", anger
        elif val.valence <= cfg.frustrated_valence:
            label, confidence = "frustrated", min(1.0, 0.5 + abs(val.valence) / 2)
        elif val.valence >= cfg.positive_valence:
            label, confidence = "positive", min(1.0, 0.5 + val.valence / 2)
        else:
            label, confidence = "neutral", 1.0 - anger

        # Rolling index: decay over the quiet gap, then move toward this utterance.
        if st.last_t_end is not None and t > st.last_t_end:
            st.index *= math.exp(-(t - st.last_t_end) / cfg.index_quiet_tau_s)
        dur = max(t_end - t, 0.0)
        alpha = 1.0 - math.exp(-dur / cfg.index_speech_tau_s)
        st.index += alpha * (anger - st.index)
        st.last_t_end = t_end
        if not st.escalated and st.index >= cfg.escalate_at:
            st.escalated = True
        elif st.escalated and st.index < cfg.clear_below:
            st.escalated = False

        return EmotionReading(
            speaker=speaker,
            t=t,
            t_end=t_end,
            label=label,
            confidence=confidence,
            arousal=arousal,
            valence=val.valence,
            anger=anger,
            anger_index=st.index,
            escalated=st.escalated,
            baseline_n=n,
            cues=val.cues,
            features=voice.to_dict() if voice else {},
            backend=backend,
        )
