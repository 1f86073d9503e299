"""Audio in: codecs, file readers, resampling and voice activity detection.

Everything downstream works on mono float32 PCM at 16 kHz (``SAMPLE_RATE``).
"""

SAMPLE_RATE = 16_000
