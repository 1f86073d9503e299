"""Who spoke when: speaker turns for mono recordings and live streams, and speaker roles.

Backends share one result type (``base.Diarization``):

* ``channel``   - one speaker per channel (stereo files, per-leg live audio);
* ``embedding`` - the default for mono: bundled resemblyzer encoder + spectral clustering;
* ``pyannote``  - pyannote.audio's pipeline from a local folder (optional extra).

``online.OnlineDiarizer`` labels a live mono stream utterance by utterance, and ``roles`` maps
speakers to agent / customer.
"""

from __future__ import annotations

from models.diarize.base import Diarization, Diarizer, SpeakerTurn

MONO_BACKENDS = ("embedding", "pyannote")


def make_diarizer(name: str = "embedding", pyannote_dir: str | None = None) -> Diarizer:
    """A mono backend by name; ``pyannote`` needs the folder of a local pipeline."""
    if name == "embedding":
        from models.diarize.embedding import EmbeddingDiarizer

        return EmbeddingDiarizer()
    if name == "pyannote":
        from models.diarize.pyannote_backend import PyannoteDiarizer

        if not pyannote_dir:
            raise ValueError("the pyannote backend needs --pyannote-dir: a local pipeline folder")
        return PyannoteDiarizer(pyannote_dir)
    raise ValueError(f"unknown diarization backend {name!r}: use one of {', '.join(MONO_BACKENDS)}")


__all__ = ["MONO_BACKENDS", "Diarization", "Diarizer", "SpeakerTurn", "make_diarizer"]
