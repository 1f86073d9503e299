"""Where someone is speaking in a recording, for diarization: Silero VAD from faster-whisper.

The live pipeline's webrtcvad is tuned to end utterances fast on phone lines. Diarization of a
whole recording wants a VAD that also hears quiet, far-field speech (meeting rooms, speaker-
phones): on the AMI clips webrtcvad mode 3 misses 22 % of speech frames, Silero at 0.25 misses
17 % with 1 % false alarm (docs/benchmarks.md). Silero's ONNX model ships inside faster-whisper
and costs ~2 ms per audio second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps

from audio import SAMPLE_RATE
from audio.vad import Segment


@dataclass(frozen=True)
class SpeechConfig:
    threshold: float = 0.25  # Silero speech probability that opens speech
    min_silence_ms: int = 250  # pauses shorter than this do not split a region
    pad_ms: int = 30
    min_speech_ms: int = 200


def speech_regions(samples: np.ndarray, config: SpeechConfig | None = None) -> list[Segment]:
    config = config or SpeechConfig()
    stamps = get_speech_timestamps(
        np.asarray(samples, dtype=np.float32),
        VadOptions(
            threshold=config.threshold,
            min_silence_duration_ms=config.min_silence_ms,
            speech_pad_ms=config.pad_ms,
            min_speech_duration_ms=config.min_speech_ms,
        ),
    )
    return [
        Segment(round(s["start"] / SAMPLE_RATE, 3), round(s["end"] / SAMPLE_RATE, 3))
        for s in stamps
    ]
