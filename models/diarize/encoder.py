"""Speaker embeddings from the bundled resemblyzer encoder, without librosa.

The ``resemblyzer`` wheel ships a GE2E voice encoder (3-layer LSTM over 40 mel bands, 1.6 s
windows, 256-d output). Importing the package pulls in librosa and numba, whose first call costs
~15 s of JIT warm-up (STACK.md). Only its weights are needed: the network is re-declared here
and the mel filterbank is computed with numpy, matching librosa's defaults (Slaney mel scale and
area normalisation, centred frames, constant padding, periodic Hann window, power spectrum).
"""

from __future__ import annotations

import importlib.util
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audio import SAMPLE_RATE  # the encoder was trained at 16 kHz, the pipeline's rate

N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
WINDOW_FRAMES = 160  # 1.6 s, what the encoder was trained on
EMBEDDING_DIM = 256
TARGET_DBFS = -30.0  # resemblyzer normalises loudness to this before embedding


class EncoderNotFoundError(RuntimeError):
    """The resemblyzer weights are not installed; the message says how to install them."""


def weights_path() -> Path:
    """Where ``resemblyzer``'s ``pretrained.pt`` lies, found without importing the package."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise EncoderNotFoundError(
            "speaker encoder weights are missing: pip install --no-deps resemblyzer==0.1.4"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not path.is_file():
        raise EncoderNotFoundError(f"{path} is missing: reinstall resemblyzer==0.1.4")
    return path


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's default)."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    mel = hz / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_region = hz >= min_log_hz
    mel[log_region] = min_log_mel + np.log(hz[log_region] / min_log_hz) / logstep
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3
    hz = f_sp * mel
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_region = mel >= min_log_mel
    hz[log_region] = min_log_hz * np.exp(logstep * (mel[log_region] - min_log_mel))
    return hz


@lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """(N_MELS, N_FFT//2+1) triangular filters with Slaney area normalisation."""
    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    mel_points = _mel_to_hz(
        np.linspace(
            _hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([SAMPLE_RATE / 2]))[0], N_MELS + 2
        )
    )
    fdiff = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_points[2:] - mel_points[:-2]))[:, None]
    return weights.astype(np.float32)


def mel_spectrogram(samples: np.ndarray) -> np.ndarray:
    """(frames, 40) mel power spectrogram of 16 kHz float audio, one frame per 10 ms."""
    samples = np.asarray(samples, dtype=np.float32)
    padded = np.pad(samples, N_FFT // 2, mode="constant")
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    if n_frames <= 0:
        return np.zeros((0, N_MELS), dtype=np.float32)
    frames = np.lib.stride_tricks.as_strided(
        padded,
        shape=(n_frames, N_FFT),
        strides=(padded.strides[0] * HOP, padded.strides[0]),
        writeable=False,
    )
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    return (power.astype(np.float32) @ mel_filterbank().T).astype(np.float32)


def loudness_gain(speech: np.ndarray) -> float:
    """Gain that brings speech up to -30 dBFS (never down), as the encoder expects."""
    rms = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64)))) if len(speech) else 0.0
    if rms <= 1e-6:
        return 1.0
    dbfs = 20 * np.log10(rms)
    return float(10 ** ((TARGET_DBFS - dbfs) / 20)) if dbfs < TARGET_DBFS else 1.0


class _Network(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, EMBEDDING_DIM)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / torch.clamp(torch.norm(raw, dim=1, keepdim=True), min=1e-8)


class SpeakerEncoder:
    """Embeds 1.6 s windows of 16 kHz speech into unit-length 256-d speaker vectors.

    Thread-safe: torch modules are re-entrant for inference, and loading is guarded.
    """

    def __init__(self, path: Path | None = None) -> None:
        checkpoint = torch.load(path or weights_path(), map_location="cpu", weights_only=True)
        state = {
            k: v for k, v in checkpoint["model_state"].items() if not k.startswith("similarity")
        }
        self._net = _Network()
        self._net.load_state_dict(state)
        self._net.eval()

    def embed_mels(self, windows: np.ndarray, batch: int = 64) -> np.ndarray:
        """(n, frames, 40) mel windows -> (n, 256) embeddings."""
        if len(windows) == 0:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        out = []
        with torch.inference_mode():
            for i in range(0, len(windows), batch):
                chunk = torch.from_numpy(np.ascontiguousarray(windows[i : i + batch]))
                out.append(self._net(chunk).numpy())
        return np.concatenate(out).astype(np.float32)

    def embed_utterance(self, samples: np.ndarray, hop_frames: int = 40) -> np.ndarray:
        """One unit vector for a stretch of one speaker's speech (mean of its windows)."""
        windows = self.embed_windows(samples * loudness_gain(samples), hop_frames)[1]
        mean = windows.mean(axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-8)).astype(np.float32)

    def embed_windows(
        self, samples: np.ndarray, hop_frames: int = 40
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sliding 1.6 s windows every ``hop_frames`` x 10 ms.

        Returns (centre times in seconds, embeddings). Audio shorter than a window is
        zero-padded to one window, as resemblyzer does.
        """
        mel = mel_spectrogram(samples)
        if len(mel) < WINDOW_FRAMES:
            mel = np.pad(mel, ((0, WINDOW_FRAMES - len(mel)), (0, 0)))
            starts = np.array([0])
        else:
            starts = np.arange(0, len(mel) - WINDOW_FRAMES + 1, hop_frames)
            if starts[-1] + WINDOW_FRAMES < len(mel) - hop_frames // 2:
                starts = np.append(starts, len(mel) - WINDOW_FRAMES)
        windows = np.stack([mel[s : s + WINDOW_FRAMES] for s in starts])
        centres = (starts + WINDOW_FRAMES / 2) * HOP / SAMPLE_RATE
        n = len(samples) / SAMPLE_RATE
        return np.minimum(centres, n).astype(np.float64), self.embed_mels(windows)


_shared: SpeakerEncoder | None = None
_shared_lock = threading.Lock()


def shared_encoder() -> SpeakerEncoder:
    """One encoder per process: the weights are 17 MB and loading takes ~0.1 s."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SpeakerEncoder()
        return _shared
