import numpy as np
import pytest
from scipy.signal import resample_poly

from audio.resample import StreamResampler, to_16k


@pytest.mark.parametrize("rate", [8000, 32000, 48000])
def test_streaming_equals_whole_file_and_keeps_length(rate: int) -> None:
    x = np.random.default_rng(rate).standard_normal(rate * 3 + 37).astype(np.float32) * 0.1
    whole = to_16k(x, rate)
    rs = StreamResampler(rate)
    chunks = [rs.process(x[i : i + 160]) for i in range(0, x.size, 160)] + [rs.flush()]
    streamed = np.concatenate(chunks)
    assert whole.size == streamed.size == round(x.size * 16000 / rate)
    assert np.allclose(whole, streamed, atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 48000, 44100])
def test_tone_survives_resampling(rate: int) -> None:
    t = np.arange(rate) / rate
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    y = to_16k(x, rate)
    ref = resample_poly(x, 16000, rate)
    assert np.max(np.abs(y[200:-200] - ref[200:-200])) < 0.01


def test_live_rates_only_for_streams() -> None:
    with pytest.raises(ValueError, match="multiple or divisor of 16000"):
        StreamResampler(44100)
    with pytest.raises(ValueError, match="unsupported sample rate 4000"):
        to_16k(np.zeros(10, np.float32), 4000)
