"""Read call recordings into per-channel 16 kHz float32 audio with speaker roles.

Accepted: WAV (PCM, float, µ-law, A-law), FLAC, MP3, OGG through libsndfile; anything else
that PyAV can decode as a fallback. Layouts: one stereo file (agent on the left or right),
one mono file (a mixed recording: role ``mixed`` until diarization assigns speakers), or an
agent file plus a customer file recorded side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from audio import SAMPLE_RATE
from audio.codecs import Float32Array
from audio.errors import AudioError
from audio.resample import check_rate, to_16k

AgentChannel = Literal["left", "right"]
MIN_DURATION_S = 0.1


@dataclass(frozen=True)
class Channel:
    """One speaker's side of a call (or the whole mix for mono recordings)."""

    role: str  # "agent", "customer" or "mixed"
    samples: Float32Array  # mono, 16 kHz


@dataclass(frozen=True)
class CallAudio:
    sources: tuple[str, ...]
    source_rate: int
    channels: tuple[Channel, ...]

    @property
    def duration(self) -> float:
        return max((c.samples.size for c in self.channels), default=0) / SAMPLE_RATE


def _decode_file(path: Path) -> tuple[np.ndarray, int]:
    """Return (frames x channels float32, rate). Raises AudioError with the reason."""
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if not path.is_file():
        raise AudioError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return data, int(rate)
    except sf.LibsndfileError as sf_err:
        sf_reason = str(sf_err)
    except RuntimeError as sf_err:  # older soundfile raises RuntimeError
        sf_reason = str(sf_err)
    return _decode_with_av(path, sf_reason)


def _decode_with_av(path: Path, sf_reason: str) -> tuple[np.ndarray, int]:
    import av  # shipped with faster-whisper; decodes formats libsndfile does not

    try:
        with av.open(str(path)) as container:
            streams = container.streams.audio
            if not streams:
                raise AudioError(f"{path}: not an audio file (no audio stream)")
            stream = streams[0]
            rate = int(stream.rate or 0)
            chunks = [frame.to_ndarray().astype(np.float32) for frame in container.decode(stream)]
    except AudioError:
        raise
    except Exception as exc:  # PyAV raises many types; all mean "cannot decode"
        raise AudioError(f"{path}: not a readable audio file ({sf_reason}; {exc})") from exc
    if not chunks or rate <= 0:
        raise AudioError(f"{path}: no audio could be decoded (truncated or empty stream)")
    data = np.concatenate(chunks, axis=1).T  # planar (channels, n) -> (n, channels)
    if np.issubdtype(data.dtype, np.integer):
        data = data / float(np.iinfo(data.dtype.type).max)  # type: ignore[type-var]
    return np.ascontiguousarray(data, dtype=np.float32), rate


def _load(path: Path) -> tuple[np.ndarray, int]:
    data, rate = _decode_file(path)
    try:
        check_rate(rate)
    except ValueError as exc:
        raise AudioError(f"{path}: {exc}") from exc
    if data.shape[0] < int(MIN_DURATION_S * rate):
        raise AudioError(
            f"{path}: only {data.shape[0] / rate:.3f} s of audio; need at least {MIN_DURATION_S} s"
        )
    if not np.all(np.isfinite(data)):
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    return data, rate


def _is_dual_mono(data: np.ndarray) -> bool:
    """Both sides carry the same signal (residual 30 dB below the signal)."""
    left = data[:, 0].astype(np.float64)
    right = data[:, 1].astype(np.float64)
    energy = float(np.dot(left, left) + np.dot(right, right))
    if energy == 0.0:
        return True
    diff = left - right
    return float(np.dot(diff, diff)) / energy < 1e-3


def read_call(
    path: str | Path,
    customer_path: str | Path | None = None,
    agent_channel: AgentChannel = "left",
) -> CallAudio:
    """Read a recording. With ``customer_path``, ``path`` is the agent's own leg."""
    path = Path(path)
    data, rate = _load(path)
    if customer_path is not None:
        cpath = Path(customer_path)
        cdata, crate = _load(cpath)
        if data.shape[1] != 1 or cdata.shape[1] != 1:
            raise AudioError(f"{path} + {cpath}: agent and customer files must each be mono")
        if crate != rate:
            raise AudioError(f"{path} + {cpath}: sample rates differ ({rate} vs {crate} Hz)")
        return CallAudio(
            sources=(str(path), str(cpath)),
            source_rate=rate,
            channels=(
                Channel("agent", to_16k(data[:, 0], rate)),
                Channel("customer", to_16k(cdata[:, 0], rate)),
            ),
        )
    n_channels = data.shape[1]
    if n_channels == 1:
        return CallAudio((str(path),), rate, (Channel("mixed", to_16k(data[:, 0], rate)),))
    if n_channels == 2 and _is_dual_mono(data):
        # One voice copied to both sides (a mono recording saved as stereo): not two legs.
        return CallAudio((str(path),), rate, (Channel("mixed", to_16k(data[:, 0], rate)),))
    if n_channels == 2:
        agent_idx = 0 if agent_channel == "left" else 1
        return CallAudio(
            sources=(str(path),),
            source_rate=rate,
            channels=(
                Channel("agent", to_16k(data[:, agent_idx], rate)),
                Channel("customer", to_16k(data[:, 1 - agent_idx], rate)),
            ),
        )
    raise AudioError(f"{path}: {n_channels} channels; expected mono or stereo")
