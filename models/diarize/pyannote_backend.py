"""The pyannote backend: pyannote.audio's diarization pipeline from a local folder, never a hub.

Optional (``pip install -e .[pyannote]``): pyannote.audio 4 needs torchaudio, and PyPI's
torchaudio beside torch 2.13 CPU is a CUDA build that fails to load (STACK.md), so this
backend only runs where a working torchaudio is installed. No PyPI package ships pyannote
weights either: the folder must hold ``config.yaml`` and the segmentation, embedding and PLDA
models it names, as ``Pipeline.from_pretrained(folder)`` expects.

The folder is checked before pyannote is imported, so a wrong path or a hub id in
``config.yaml`` is reported as such, not as a download failure.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from audio import SAMPLE_RATE
from models.diarize.base import Diarization, SpeakerTurn

MODEL_KEYS = ("segmentation", "embedding", "plda")


class PyannoteUnavailableError(RuntimeError):
    """The pipeline folder is wrong or pyannote.audio cannot run here; the message says which."""


def check_pipeline_folder(folder: str | Path) -> dict[str, Any]:
    """Parse ``config.yaml`` and make sure every model it names is a local path."""
    root = Path(folder).expanduser()
    config_path = root / "config.yaml"
    if not root.is_dir():
        raise PyannoteUnavailableError(f"pyannote pipeline folder {root} does not exist")
    if not config_path.is_file():
        raise PyannoteUnavailableError(f"{root} has no config.yaml (a pyannote pipeline folder)")
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise PyannoteUnavailableError(f"{config_path} is not valid YAML: {exc}") from exc
    params = (config.get("pipeline") or {}).get("params") or {}
    if not isinstance(params, dict) or "segmentation" not in params:
        raise PyannoteUnavailableError(
            f"{config_path}: pipeline.params.segmentation is missing (not a diarization pipeline)"
        )
    for key in MODEL_KEYS:
        value = params.get(key)
        if value is None:
            if key == "plda" and "community" not in str(config.get("pipeline", {}).get("name", "")):
                continue  # only pyannote 4's community pipeline needs PLDA
            raise PyannoteUnavailableError(f"{config_path}: pipeline.params.{key} is missing")
        if not isinstance(value, str):
            continue
        path = Path(value) if Path(value).is_absolute() else root / value
        if not path.exists():
            raise PyannoteUnavailableError(
                f"{config_path}: pipeline.params.{key} = {value!r} is not a local path under "
                f"{root} (callwatch never downloads models: copy the model folder there)"
            )
    return config


class PyannoteDiarizer:
    name = "pyannote"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()
        check_pipeline_folder(self.folder)
        os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")  # telemetry is on by default
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from pyannote.audio import Pipeline
        except Exception as exc:  # ImportError, or OSError from a CUDA-only torchaudio
            raise PyannoteUnavailableError(
                f"pyannote.audio cannot be imported ({type(exc).__name__}: {exc}). Install the "
                "'pyannote' extra with a CPU torchaudio that matches torch, or use the "
                "embedding backend"
            ) from exc
        try:
            self._pipeline = Pipeline.from_pretrained(self.folder)
        except Exception as exc:
            raise PyannoteUnavailableError(
                f"pyannote could not load the pipeline in {self.folder}: {exc}"
            ) from exc
        if self._pipeline is None:
            raise PyannoteUnavailableError(f"pyannote found no pipeline in {self.folder}")

    def diarize(self, samples: np.ndarray) -> Diarization:
        import torch

        waveform = torch.from_numpy(np.asarray(samples, dtype=np.float32))[None]
        output = self._pipeline({"waveform": waveform, "sample_rate": SAMPLE_RATE})
        annotation = getattr(output, "speaker_diarization", output)  # pyannote 4 wraps it
        return from_annotation(annotation)


def from_annotation(annotation: Any) -> Diarization:
    """pyannote Annotation -> our turns, speakers renamed S1, S2... by first appearance."""
    names: dict[str, str] = {}
    turns = []
    for segment, _, label in sorted(
        annotation.itertracks(yield_label=True), key=lambda x: x[0].start
    ):
        name = names.setdefault(str(label), f"S{len(names) + 1}")
        turns.append(SpeakerTurn(round(segment.start, 3), round(segment.end, 3), name))
    # pyannote gives no confidence of its own; None says "not estimated" rather than a guess.
    return Diarization("pyannote", turns, None, {"n_speakers": len(names)})
