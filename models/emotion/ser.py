"""A trained speech-emotion model (wav2vec2 / HuBERT / WavLM audio classifier) from a local folder.

No weights ship with callwatch and nothing is downloaded: point ``--emotion-model`` at a
folder saved with ``save_pretrained`` (``config.json``, weights, ``preprocessor_config.json``).
The model's own label names decide which output means anger ("ang", "angry", "anger", ...).
Needs the optional ``ser`` extra (``transformers``); torch is already a dependency.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np

from audio import SAMPLE_RATE
from audio.codecs import Float32Array
from models.locator import ModelNotFoundError

ANGER_NAMES = ("ang", "angry", "anger", "annoyed", "frustrated", "frustration")


def check_model_folder(path: str | Path) -> Path:
    """Fail early, with what to do, when a configured model cannot be loaded at all."""
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(
            f"no speech-emotion model at {folder}: expected a folder saved with "
            "save_pretrained (config.json, model weights, preprocessor_config.json)"
        )
    if importlib.util.find_spec("transformers") is None:
        raise ModelNotFoundError(
            "a speech-emotion model needs the 'ser' extra: pip install 'callwatch[ser]'"
        )
    return folder


class SerModel:
    """Probability of anger per utterance from a local audio-classification checkpoint."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        folder = check_model_folder(path)
        import torch
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        self._torch = torch
        torch.set_num_threads(threads)
        self.extractor = AutoFeatureExtractor.from_pretrained(folder, local_files_only=True)
        self.model = AutoModelForAudioClassification.from_pretrained(
            folder, local_files_only=True
        ).eval()
        labels: dict[int, str] = dict(self.model.config.id2label)
        self.labels = [labels[i] for i in range(len(labels))]
        self.anger_ids = [i for i, n in enumerate(self.labels) if n.lower() in ANGER_NAMES]
        if not self.anger_ids:
            raise ModelNotFoundError(
                f"speech-emotion model at {folder} has no anger class among its labels "
                f"{self.labels}; expected one of {list(ANGER_NAMES)}"
            )
        self.name = f"ser:{folder.name}"
        self._lock = threading.Lock()  # one forward pass at a time per model

    def probabilities(self, samples: Float32Array) -> dict[str, float]:
        inputs: Any = self.extractor(
            np.asarray(samples, dtype=np.float32), sampling_rate=SAMPLE_RATE, return_tensors="pt"
        )
        with self._lock, self._torch.inference_mode():
            logits = self.model(**inputs).logits[0]
        probs = self._torch.softmax(logits, dim=-1).tolist()
        return {n: float(p) for n, p in zip(self.labels, probs, strict=True)}

    def angry_probability(self, samples: Float32Array) -> float:
        probs = self.probabilities(samples)
        return float(sum(probs[self.labels[i]] for i in self.anger_ids))
