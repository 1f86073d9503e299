"""Sample-rate conversion to the 16 kHz the models expect (polyphase, anti-aliased)."""

from __future__ import annotations

from math import gcd

import numpy as np
from scipy.signal import resample_poly

from audio import SAMPLE_RATE
from audio.codecs import Float32Array

MIN_RATE = 8_000
MAX_RATE = 192_000


def check_rate(rate: int) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ValueError(
            f"unsupported sample rate {rate} Hz; callwatch accepts {MIN_RATE}-{MAX_RATE} Hz"
        )


def to_16k(samples: Float32Array, rate: int) -> Float32Array:
    """Resample one channel to 16 kHz; a no-op when it already is."""
    check_rate(rate)
    if rate == SAMPLE_RATE or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    g = gcd(rate, SAMPLE_RATE)
    out = resample_poly(samples, SAMPLE_RATE // g, rate // g)
    return np.asarray(out, dtype=np.float32)
