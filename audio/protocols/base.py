"""What every protocol adapter produces, and the shared parse/decode/resample steps.

Every adapter reads frames a stranger controls, so the shared steps here are also the
guards: only ProtocolError leaves them, whatever the input (see bench/fuzz.py).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audio.codecs import Float32Array, decode
from audio.resample import StreamResampler


@dataclass
class CallInfo:
    call_id: str
    protocol: str
    channels: list[str]  # role per channel index: "agent" / "customer"
    agent_id: str | None = None
    language: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Feed:
    started: CallInfo | None = None
    audio: list[tuple[int, Float32Array]] = field(default_factory=list)
    replies: list[str | bytes] = field(default_factory=list)
    ended: str | None = None  # reason, when the call is over
    close: bool = False  # close the socket after sending replies
    warnings: list[str] = field(default_factory=list)


class ProtocolError(ValueError):
    """A message broke the protocol. ``fatal`` ends the call (after ``replies`` are sent)."""

    def __init__(
        self, message: str, fatal: bool = False, replies: list[str | bytes] | None = None
    ) -> None:
        super().__init__(message)
        self.fatal = fatal
        self.replies = replies or []


MAX_ID_CHARS = 128
MAX_FILL_S = 60.0  # longest gap filled with silence in one go; beyond it the clock jumps
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def parse_json(text: str) -> Any:
    """A wire message as JSON. NaN, Infinity and numbers past float range are refused: the
    store and the HTTP API serve these values back as strict JSON."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:  # 4300+ digit integers are a ValueError too
        raise ProtocolError(f"malformed JSON: {exc}") from exc


def identifier(value: Any, what: str) -> str:
    """A call or agent id from the wire: a string (or integer) of 1-128 printable characters."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS or not value.isprintable():
        raise ProtocolError(
            f"{what} must be a string of 1-{MAX_ID_CHARS} printable characters, got "
            f"{str(value)[:40]!r}"
        )
    return value


def language_code(value: Any) -> str | None:
    """'en-US' -> 'en'; None for anything that is not a language tag (Whisper gets no hint)."""
    if not isinstance(value, str) or not _LANGUAGE.fullmatch(value):
        return None
    return re.split(r"[-_]", value)[0].lower()


def strict_json(value: Any, depth: int = 4) -> Any:
    """``value`` with only what strict JSON can hold, to a bounded depth (call metadata)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth <= 0:
        return None
    if isinstance(value, dict):
        return {str(k): strict_json(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list):
        return [strict_json(v, depth - 1) for v in value]
    return str(value)


class ChannelDecoder:
    """Wire payload (one channel) -> 16 kHz float32, keeping resampler state per channel."""

    def __init__(self, encoding: str, rate: int) -> None:
        self.encoding = encoding
        self.rate = rate
        self._resampler = StreamResampler(rate)
        self.samples_in = 0  # source-rate samples decoded or filled (what the output covers)
        self.skipped = 0  # source-rate samples of clock jumps too long to fill

    @property
    def clock(self) -> int:
        """The channel's position on the call clock, in source-rate samples."""
        return self.samples_in + self.skipped

    def decode(self, payload: bytes) -> Float32Array:
        pcm = decode(payload, self.encoding)
        self.samples_in += pcm.size
        return self._resampler.process(pcm)

    def silence(self, n_source_samples: int) -> Float32Array:
        """Fill a gap (lost packets) so the channel stays aligned with the call clock.

        At most MAX_FILL_S is filled; the rest moves the clock on without audio, so a
        hostile timestamp cannot make us allocate hours of silence."""
        fill = max(0, min(n_source_samples, int(MAX_FILL_S * self.rate)))
        self.skipped += max(0, n_source_samples - fill)
        self.samples_in += fill
        return self._resampler.process(np.zeros(fill, dtype=np.float32))

    def flush(self) -> Float32Array:
        return self._resampler.flush()


def deinterleave(data: bytes, channels: int, sample_bytes: int) -> list[bytes]:
    frame = channels * sample_bytes
    if len(data) % frame:
        raise ProtocolError(
            f"binary frame of {len(data)} bytes is not a whole number of {channels}-channel samples"
        )
    if channels == 1:
        return [data]
    arr = np.frombuffer(data, dtype=np.uint8).reshape(-1, channels, sample_bytes)
    return [arr[:, c, :].tobytes() for c in range(channels)]


def decode_all(
    decoders: list[ChannelDecoder], parts: list[bytes]
) -> list[tuple[int, Float32Array]]:
    """One de-interleaved frame through each channel's decoder."""
    return [(i, d.decode(p)) for i, (d, p) in enumerate(zip(decoders, parts, strict=True))]


def flush_all(decoders: list[ChannelDecoder]) -> list[tuple[int, Float32Array]]:
    """End of stream: each channel's resampler tail."""
    return [(i, d.flush()) for i, d in enumerate(decoders)]
