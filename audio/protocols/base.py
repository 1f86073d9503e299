"""What every protocol adapter produces, and the shared decode/resample step."""

from __future__ import annotations

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


class ChannelDecoder:
    """Wire payload (one channel) -> 16 kHz float32, keeping resampler state per channel."""

    def __init__(self, encoding: str, rate: int) -> None:
        self.encoding = encoding
        self.rate = rate
        self._resampler = StreamResampler(rate)
        self.samples_in = 0  # source-rate samples received (the channel's clock)

    def decode(self, payload: bytes) -> Float32Array:
        pcm = decode(payload, self.encoding)
        self.samples_in += pcm.size
        return self._resampler.process(pcm)

    def silence(self, n_source_samples: int) -> Float32Array:
        """Fill a gap (lost packets) so the channel stays aligned with the call clock."""
        self.samples_in += n_source_samples
        return self._resampler.process(np.zeros(n_source_samples, dtype=np.float32))

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
