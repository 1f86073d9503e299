"""Sample-rate conversion to the 16 kHz the models expect.

One stateful polyphase resampler serves both paths: a live stream converts chunk by chunk,
a file converts in one go, and the output is the same either way (the filter state carries
across chunks). That keeps live and offline results identical for the same audio.
"""

from __future__ import annotations

from math import gcd

import numpy as np
from scipy.signal import firwin, lfilter, lfilter_zi, resample_poly

from audio import SAMPLE_RATE
from audio.codecs import Float32Array

MIN_RATE = 8_000
MAX_RATE = 192_000
_TAPS_PER_PHASE = 24


def check_rate(rate: int) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ValueError(
            f"unsupported sample rate {rate} Hz; callwatch accepts {MIN_RATE}-{MAX_RATE} Hz"
        )


def streamable(rate: int) -> bool:
    """Integer up- or down-sampling to 16 kHz (8, 16, 32, 48 kHz ...): the live rates."""
    return rate % SAMPLE_RATE == 0 or SAMPLE_RATE % rate == 0


class StreamResampler:
    """Integer-ratio resampler (zero-stuff, FIR low-pass, decimate) with carried state."""

    def __init__(self, rate_in: int, rate_out: int = SAMPLE_RATE) -> None:
        check_rate(rate_in)
        g = gcd(rate_in, rate_out)
        self.up = rate_out // g
        self.down = rate_in // g
        if self.up > 1 and self.down > 1:
            raise ValueError(
                f"streaming input must be a multiple or divisor of {rate_out} Hz "
                f"(8000, 16000, 32000 or 48000), got {rate_in} Hz"
            )
        self.passthrough = self.up == self.down
        if self.passthrough:
            return
        n_taps = _TAPS_PER_PHASE * max(self.up, self.down) + 1
        cutoff = 0.95 / max(self.up, self.down)  # of Nyquist at the upsampled rate
        self._taps = (firwin(n_taps, cutoff) * self.up).astype(np.float64)
        self._zi = lfilter_zi(self._taps, [1.0]) * 0.0
        self._pos = 0  # upsampled samples consumed before the current chunk
        self._in = 0  # input samples seen
        self._out = 0  # output samples produced
        self._delay = (n_taps - 1) // 2  # group delay in upsampled samples

    def process(self, samples: Float32Array) -> Float32Array:
        if self.passthrough:
            return samples.astype(np.float32, copy=False)
        if samples.size == 0:
            return np.zeros(0, dtype=np.float32)
        self._in += samples.size
        out = self._filter(samples)
        self._out += out.size
        return out

    def _filter(self, samples: Float32Array) -> Float32Array:
        stuffed = np.zeros(samples.size * self.up, dtype=np.float64)
        stuffed[:: self.up] = samples
        filtered, self._zi = lfilter(self._taps, [1.0], stuffed, zi=self._zi)
        # Output k is upsampled sample k*down + delay (the filter's delay compensated).
        if self._pos >= self._delay:
            first = (self._delay - self._pos) % self.down
        else:
            first = self._delay - self._pos
        picked = filtered[first :: self.down]
        self._pos += stuffed.size
        return picked.astype(np.float32)

    def flush(self) -> Float32Array:
        """Push out the filter's delayed tail (end of stream): exactly enough samples that
        the whole output is ``round(input * rate_out / rate_in)`` long."""
        if self.passthrough:
            return np.zeros(0, dtype=np.float32)
        tail_in = int(np.ceil((self._delay + self.down) / self.up)) + 1
        tail = self._filter(np.zeros(tail_in, dtype=np.float32))
        want = max(0, round(self._in * self.up / self.down) - self._out)
        self._out += min(want, tail.size)
        return tail[:want]


def to_16k(samples: Float32Array, rate: int) -> Float32Array:
    """Resample one whole channel to 16 kHz (same filter as the streaming path)."""
    check_rate(rate)
    if rate == SAMPLE_RATE or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    if not streamable(rate):  # 44.1 kHz and friends only come from files
        g = gcd(rate, SAMPLE_RATE)
        return np.asarray(resample_poly(samples, SAMPLE_RATE // g, rate // g), dtype=np.float32)
    rs = StreamResampler(rate)
    return np.concatenate([rs.process(samples), rs.flush()])
