"""Group speaker embeddings into speakers, choosing how many speakers there are.

d-vectors from the GE2E encoder all live in one narrow cone (raw cosine 0.87-0.96 between any
two people, STACK.md), so the shared direction is removed first: embeddings are centred on
their mean and re-normalised. Spectral clustering on a pruned cosine affinity (Wang et al.,
"Speaker diarization with LSTM", 2018) then picks the speaker count from the largest eigengap.
Spectral clustering cannot say "one speaker", and centring makes two halves of one voice look
different, so a last step merges clusters whose *uncentred* mean voices are as close as two
stretches of one person's speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.vq import kmeans2


@dataclass(frozen=True)
class ClusterConfig:
    min_speakers: int = 1
    max_speakers: int = 8
    prune_keep: float = 0.3  # each row of the affinity keeps its strongest 30 % links
    # Uncentred cosine between two clusters' mean voices above which they are one person.
    # Going below two speakers takes more (most recordings here are two-party calls).
    same_speaker_cos: float = 0.76
    single_speaker_cos: float = 0.83
    min_cluster_share: float = 0.03  # clusters with less speech are folded into their nearest


@dataclass(frozen=True)
class Clustering:
    labels: np.ndarray  # one integer per embedding, 0..n_speakers-1, by first appearance
    n_speakers: int
    margin: float  # mean of (own-centroid cosine - best other-centroid cosine), centred space
    eigengap: float


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


def centred(embeddings: np.ndarray) -> np.ndarray:
    return unit(embeddings - embeddings.mean(axis=0, keepdims=True))


def _affinity(x: np.ndarray, keep: float) -> np.ndarray:
    sim = np.clip(x @ x.T, 0.0, None)
    n = len(sim)
    k = max(2, int(np.ceil(keep * n)))
    if k < n:
        cutoff = np.partition(sim, n - k, axis=1)[:, n - k][:, None]
        sim = np.where(sim >= cutoff, sim, 0.0)
    return np.maximum(sim, sim.T)


def _spectral(x: np.ndarray, config: ClusterConfig) -> tuple[np.ndarray, int, float]:
    n = len(x)
    aff = _affinity(x, config.prune_keep)
    degree = aff.sum(axis=1)
    d = 1.0 / np.sqrt(np.maximum(degree, 1e-10))
    laplacian = np.eye(n) - d[:, None] * aff * d[None, :]
    evals, evecs = np.linalg.eigh(laplacian)
    hi = min(config.max_speakers, n - 1)
    lo = max(config.min_speakers, 2)
    if hi < lo:
        return np.zeros(n, dtype=int), 1, 0.0
    gaps = np.diff(evals[: hi + 1])  # gaps[i] = evals[i+1] - evals[i]
    k = lo + int(np.argmax(gaps[lo - 1 : hi]))
    spectral_x = unit(evecs[:, :k])
    _, labels = kmeans2(spectral_x, k, minit="++", seed=0)
    return labels.astype(int), k, float(gaps[k - 1])


def _centroids(emb: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    return unit(np.stack([emb[labels == c].mean(axis=0) for c in range(k)]))


def _renumber(labels: np.ndarray) -> tuple[np.ndarray, int]:
    order: dict[int, int] = {}
    for lab in labels:
        order.setdefault(int(lab), len(order))
    return np.array([order[int(lab)] for lab in labels], dtype=int), len(order)


def _core_centroids(raw: np.ndarray, x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Mean voice of each cluster from its most typical half (windows that straddle a turn
    change pull raw centroids of different people together)."""
    cent_x = _centroids(x, labels, k)
    out = []
    for c in range(k):
        idx = np.flatnonzero(labels == c)
        fit = x[idx] @ cent_x[c]
        core = idx[fit >= np.median(fit)]
        out.append(raw[core].mean(axis=0))
    return unit(np.stack(out))


def _merge_same_voice(
    raw: np.ndarray, labels: np.ndarray, weights: np.ndarray, config: ClusterConfig
) -> np.ndarray:
    """Fold tiny clusters into their nearest and join clusters that are one voice."""
    labels, k = _renumber(labels)
    x = centred(raw)
    while k > max(1, config.min_speakers):
        share = np.array([weights[labels == c].sum() for c in range(k)]) / weights.sum()
        cent = _core_centroids(raw, x, labels, k)
        sim = cent @ cent.T
        np.fill_diagonal(sim, -1.0)
        small = int(np.argmin(share))
        if share[small] < config.min_cluster_share:
            a, b = small, int(np.argmax(sim[small]))
        else:
            a, b = (int(v) for v in np.unravel_index(int(np.argmax(sim)), sim.shape))
            needed = config.single_speaker_cos if k == 2 else config.same_speaker_cos
            if sim[a, b] < needed:
                break
        labels = np.where(labels == max(a, b), min(a, b), labels)
        labels, k = _renumber(labels)
    return labels


def cluster_embeddings(
    embeddings: np.ndarray, weights: np.ndarray | None = None, config: ClusterConfig | None = None
) -> Clustering:
    """Label each embedding with a speaker index; ``weights`` are seconds of speech each covers."""
    config = config or ClusterConfig()
    n = len(embeddings)
    weights = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    if n < 3:
        return Clustering(np.zeros(n, dtype=int), 1 if n else 0, 0.0, 0.0)
    x = centred(embeddings)
    labels, _, gap = _spectral(x, config)
    # Two k-means refinements in the centred space sharpen spectral's partition.
    for _ in range(2):
        labels, k = _renumber(labels)
        labels = np.argmax(x @ _centroids(x, labels, k).T, axis=1)
    labels = _merge_same_voice(embeddings, labels, weights, config)
    labels, k = _renumber(labels)
    return Clustering(labels, k, _margin(x, labels, k), gap)


def _margin(x: np.ndarray, labels: np.ndarray, k: int) -> float:
    if k < 2:
        return 0.0
    sims = x @ _centroids(x, labels, k).T
    own = sims[np.arange(len(x)), labels]
    sims[np.arange(len(x)), labels] = -np.inf
    return float(np.mean(own - sims.max(axis=1)))
