import warnings

import numpy as np
import pytest

from audio import codecs

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the CPython G.711 reference (removed in 3.13; we target 3.11)

ALL_PCM = np.arange(-32768, 32768, dtype=np.int16)


def test_ulaw_encode_is_bit_exact_with_reference() -> None:
    assert codecs.pcm16_to_ulaw(ALL_PCM) == audioop.lin2ulaw(ALL_PCM.tobytes(), 2)


def test_alaw_encode_is_bit_exact_with_reference() -> None:
    assert codecs.pcm16_to_alaw(ALL_PCM) == audioop.lin2alaw(ALL_PCM.tobytes(), 2)


@pytest.mark.parametrize(
    ("decode", "ref"),
    [(codecs.ulaw_to_pcm16, audioop.ulaw2lin), (codecs.alaw_to_pcm16, audioop.alaw2lin)],
)
def test_decode_tables_match_reference(decode, ref) -> None:  # type: ignore[no-untyped-def]
    every_code = bytes(range(256))
    expected = np.frombuffer(ref(every_code, 2), dtype="<i2")
    assert np.array_equal(decode(every_code), expected)


def test_decode_by_name_and_bad_inputs() -> None:
    pcm = np.array([0, 1000, -1000], dtype=np.int16)
    assert np.allclose(codecs.decode(pcm.tobytes(), "pcm16"), pcm / 32768.0)
    with pytest.raises(ValueError, match="odd number of bytes"):
        codecs.decode(b"\x00\x01\x02", "pcm16")
    with pytest.raises(ValueError, match="unsupported encoding 'opus'"):
        codecs.decode(b"\x00", "opus")
