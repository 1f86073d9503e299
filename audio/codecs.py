"""G.711 µ-law / A-law and PCM16 conversions (ITU-T G.711), vectorised with numpy.

Telephony taps deliver 8-bit companded audio; we decode to float32 in [-1, 1).
Decode tables are built once from the G.711 bit layout, so decoding is a lookup.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Float32Array = npt.NDArray[np.float32]

_BIAS = 0x84


def _ulaw_table() -> npt.NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> npt.NDArray[np.int16]:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


_ULAW_TO_PCM16 = _ulaw_table()
_ALAW_TO_PCM16 = _alaw_table()


def ulaw_to_pcm16(data: bytes) -> npt.NDArray[np.int16]:
    return _ULAW_TO_PCM16[np.frombuffer(data, dtype=np.uint8)]


def alaw_to_pcm16(data: bytes) -> npt.NDArray[np.int16]:
    return _ALAW_TO_PCM16[np.frombuffer(data, dtype=np.uint8)]


def pcm16_to_ulaw(pcm: npt.NDArray[np.int16]) -> bytes:
    """Encode PCM16 to µ-law (bit-exact with the G.711 reference coder)."""
    x = pcm.astype(np.int32) >> 2  # 14-bit linear, as in the reference coder
    sign = np.where(x < 0, 0x00, 0x80)
    mag = np.minimum(np.abs(x), 8159) + 33
    exponent = np.clip(np.floor(np.log2(mag)).astype(np.int32) - 5, 0, 7)
    mantissa = np.where(mag >= 8192, 0x0F, (mag >> (exponent + 1)) & 0x0F)
    code = (sign | (exponent << 4) | mantissa) ^ 0x7F
    return bytes(code.astype(np.uint8).tobytes())


def pcm16_to_alaw(pcm: npt.NDArray[np.int16]) -> bytes:
    """Encode PCM16 to A-law."""
    x = pcm.astype(np.int32) >> 3  # A-law works on 13-bit magnitudes
    sign = np.where(x >= 0, 0x80, 0)
    mag = np.minimum(np.where(x < 0, -x - 1, x), 0x0FFF)
    exponent = np.where(mag >= 0x20, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 4, 0)
    exponent = np.clip(exponent, 0, 7)
    mantissa = np.where(exponent == 0, mag >> 1, mag >> exponent) & 0x0F
    code = (sign | (exponent << 4) | mantissa) ^ 0x55
    return bytes(code.astype(np.uint8).tobytes())


def pcm16_bytes_to_float(data: bytes) -> Float32Array:
    """Little-endian signed 16-bit PCM bytes to float32 in [-1, 1)."""
    if len(data) % 2:
        raise ValueError(f"PCM16 payload has an odd number of bytes ({len(data)})")
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0).astype(np.float32)


def int16_to_float(pcm: npt.NDArray[np.int16]) -> Float32Array:
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32)


def float_to_int16(x: npt.NDArray[np.floating]) -> npt.NDArray[np.int16]:
    return np.asarray(np.clip(np.round(x * 32768.0), -32768, 32767), dtype=np.int16)


def decode(data: bytes, encoding: str) -> Float32Array:
    """Decode a payload in one of the wire encodings we accept: pcm16, mulaw, alaw."""
    if encoding == "pcm16":
        return pcm16_bytes_to_float(data)
    if encoding in ("mulaw", "ulaw", "pcmu"):
        return int16_to_float(ulaw_to_pcm16(data))
    if encoding in ("alaw", "pcma"):
        return int16_to_float(alaw_to_pcm16(data))
    raise ValueError(f"unsupported encoding {encoding!r}; use pcm16, mulaw or alaw")
