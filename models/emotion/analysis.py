"""What the pipeline asks of the emotion models for one utterance's audio.

Runs where the audio is (the ASR worker thread when live, inline when auditing), so the
event loop never spends time on it. The result travels with the transcript into the
call's ``EmotionTracker``, which fuses it with the words in time order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from audio.codecs import Float32Array
from models.emotion.voice import VoiceAnalyzer, VoiceFeatures

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VoiceMeasure:
    features: VoiceFeatures | None
    angry_probability: float | None = None  # only with a trained model
    backend: str = "prosody"


class EmotionAnalyzer:
    """Prosody features always; a trained speech-emotion model too when one is configured."""

    def __init__(self, ser_model: str | Path | None = None, threads: int = 1) -> None:
        self.voice = VoiceAnalyzer()
        self.ser = None
        if ser_model is not None:
            from models.emotion.ser import SerModel

            self.ser = SerModel(ser_model, threads=threads)

    @property
    def backend(self) -> str:
        return self.ser.name if self.ser else "prosody"

    def measure(self, samples: Float32Array) -> VoiceMeasure:
        features = self.voice.analyze(samples)
        usable = features is not None and features.pitch_st > 0
        p = self.ser.angry_probability(samples) if self.ser and usable else None
        return VoiceMeasure(features, p, self.backend)

    def measure_or_none(self, samples: Float32Array, where: str) -> VoiceMeasure | None:
        """``measure``, but a voice that cannot be measured only loses its reading (logged):
        the words still count and the call goes on."""
        try:
            return self.measure(samples)
        except Exception as exc:
            log.warning("%s: voice analysis failed: %s", where, exc)
            return None
