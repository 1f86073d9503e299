"""The channel backend: one speaker per audio channel (stereo recordings, per-leg live audio).

Nothing is inferred: the channel is the speaker, so confidence is 1. Turns come from the VAD on
each channel, so two people talking at once show up as overlapping turns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from audio.vad import VadConfig, detect_segments
from models.diarize.base import Diarization, SpeakerTurn


class ChannelDiarizer:
    name = "channel"

    def __init__(self, vad: VadConfig | None = None) -> None:
        self.vad = vad or VadConfig(end_silence_ms=200, pad_ms=60, min_segment_ms=200)

    @staticmethod
    def describe(roles: list[str]) -> dict[str, Any]:
        """Report entry for audio that arrived one speaker per channel."""
        return {
            "backend": "channel",
            "confidence": 1.0,
            "speakers": roles,
            "roles": {r: r for r in roles},
            "evidence": "channel",
            "detail": "one channel per speaker: " + ", ".join(roles),
        }

    def diarize_channels(self, channels: dict[str, np.ndarray]) -> Diarization:
        turns = [
            SpeakerTurn(seg.t, seg.t_end, role)
            for role, samples in channels.items()
            for seg in detect_segments(samples, self.vad)
        ]
        turns.sort(key=lambda t: (t.start, t.end))
        return Diarization(self.name, turns, 1.0, {"n_speakers": len(channels)})
