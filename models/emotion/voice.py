"""Voice features of one utterance, from openSMILE's eGeMAPS (the standard affect set).

Two summaries carry the arousal score (see docs/emotion.md): loudness, and spectral flux
in unvoiced frames (how fast the spectrum changes in consonants and breath; it rises with
vocal effort). Of the eGeMAPS set they separate acted anger best relative to how much they
wander between a calm speaker's utterances on real calls. Pitch and voice quality are kept
for evidence and coaching: in calm conversation they move between utterances about as much
as acted anger moves them, so in the score they would mostly add false alarms.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from audio import SAMPLE_RATE
from audio.codecs import Float32Array

MIN_SPEECH_S = 0.5  # shorter clips give unstable statistics: no acoustic reading


@dataclass(frozen=True)
class VoiceFeatures:
    loudness: float  # log mean loudness (openSMILE's auditory loudness, log-scaled)
    flux: float  # log mean spectral flux over all frames (evidence only)
    flux_unvoiced: float  # log mean spectral flux in unvoiced frames
    pitch_st: float  # median F0 in semitones above 27.5 Hz (0 when no voicing found)
    pitch_range_st: float  # 20th-80th percentile F0 range in semitones
    hnr_db: float  # harmonics-to-noise ratio, voiced frames
    voiced_per_s: float  # voiced segments per second (a syllable-rate proxy)
    duration_s: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def _log(v: float) -> float:
    return math.log(max(float(v), 1e-3))


class VoiceAnalyzer:
    """eGeMAPS functionals per utterance. Thread-safe: one openSMILE instance per thread."""

    def __init__(self) -> None:
        import opensmile  # a native library: import only when voice analysis is wanted

        self._opensmile = opensmile
        self._local = threading.local()

    def _smile(self) -> Any:
        smile = getattr(self._local, "smile", None)
        if smile is None:
            smile = self._opensmile.Smile(
                feature_set=self._opensmile.FeatureSet.eGeMAPSv02,
                feature_level=self._opensmile.FeatureLevel.Functionals,
            )
            self._local.smile = smile
        return smile

    def analyze(self, samples: Float32Array) -> VoiceFeatures | None:
        """Features of a 16 kHz utterance, or None when it is too short or silent."""
        duration = samples.size / SAMPLE_RATE
        if duration < MIN_SPEECH_S or not np.any(samples):
            return None
        row = self._smile().process_signal(samples, SAMPLE_RATE).iloc[0]
        f = {str(k): float(v) for k, v in row.items()}
        if not all(math.isfinite(v) for v in f.values()):
            return None
        return VoiceFeatures(
            loudness=_log(f["loudness_sma3_amean"]),
            flux=_log(f["spectralFlux_sma3_amean"]),
            flux_unvoiced=_log(f["spectralFluxUV_sma3nz_amean"]),
            pitch_st=f["F0semitoneFrom27.5Hz_sma3nz_percentile50.0"],
            pitch_range_st=f["F0semitoneFrom27.5Hz_sma3nz_pctlrange0-2"],
            hnr_db=f["HNRdBACF_sma3nz_amean"],
            voiced_per_s=f["VoicedSegmentsPerSec"],
            duration_s=round(duration, 3),
        )
