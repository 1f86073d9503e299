"""Label the speaker of each utterance of a live mono stream, as the stream goes.

Each finished utterance is embedded once (a few ms per second of speech). The first few are
placed by raw cosine to the running mean voice of each speaker (a new speaker when nothing
is close enough). From ``recluster_after`` utterances on, the offline clustering is re-run on
every utterance so far (centred, automatic count): it sees the whole call's voices, so it
separates better than a greedy threshold. Its labels are matched to the ones already given
out (largest agreement), so speakers keep their names; labels already emitted never change.

Roles are decided the first time a speaker is heard: an enrolled agent voiceprint if the call
names its agent, else agent/customer phrases in that first utterance, else the first voice is
the agent and the second the customer. The decision and its evidence are kept for the report.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from audio import SAMPLE_RATE
from models.diarize.clustering import ClusterConfig, cluster_embeddings, unit
from models.diarize.encoder import SpeakerEncoder, shared_encoder
from models.diarize.roles import VOICEPRINT_MATCH, cue_score

MIN_EMBED_S = 0.5
MIN_NEW_SPEAKER_S = 1.5  # shorter utterances ("um", "okay") join the closest known voice


@dataclass(frozen=True)
class OnlineConfig:
    new_speaker_cos: float = 0.80  # greedy phase: below this to every known voice = new voice
    recluster_after: int = 6  # utterances before the offline clustering takes over
    recluster_window: int = 400  # utterances it looks at (the most recent)
    max_speakers: int = 4
    clustering: ClusterConfig = field(default_factory=lambda: ClusterConfig(max_speakers=4))

    def __post_init__(self) -> None:
        if self.recluster_window <= self.recluster_after:
            raise ValueError("recluster_window must be larger than recluster_after")


@dataclass
class SpeakerRole:
    role: str
    evidence: str  # voiceprint | content | first_speaker | order
    detail: str


class OnlineDiarizer:
    """Thread-safe: ASR workers call ``assign`` as utterances finish."""

    def __init__(
        self,
        config: OnlineConfig | None = None,
        encoder: SpeakerEncoder | None = None,
        agent_voiceprint: tuple[str, np.ndarray] | None = None,
    ) -> None:
        self.config = config or OnlineConfig()
        self._encoder = encoder
        self._agent_print = agent_voiceprint
        self._lock = threading.Lock()
        self._embeddings: list[np.ndarray] = []
        self._seconds: list[float] = []
        self._labels: list[int] = []  # label given to each embedded utterance
        self.roles: dict[int, SpeakerRole] = {}

    @property
    def encoder(self) -> SpeakerEncoder:
        if self._encoder is None:
            self._encoder = shared_encoder()
        return self._encoder

    def assign(self, samples: np.ndarray, text: str = "") -> str:
        """The role of whoever spoke this utterance (16 kHz mono samples, its transcript)."""
        seconds = samples.size / SAMPLE_RATE
        emb = None
        if seconds >= MIN_EMBED_S:
            emb = self.encoder.embed_utterance(samples)
        with self._lock:
            if emb is None:  # too short to tell: the last speaker, or the first voice
                label = self._labels[-1] if self._labels else 0
            else:
                label = self._label_for(emb, seconds)
            return self._role_for(label, emb, text).role

    def summary(self) -> dict[str, object]:
        with self._lock:
            return {
                "backend": "embedding-online",
                "speakers": [r.role for r in self.roles.values()],
                "roles": {f"S{k + 1}": r.role for k, r in self.roles.items()},
                "evidence": {r.role: r.evidence for r in self.roles.values()},
                "detail": "; ".join(r.detail for r in self.roles.values()),
                "utterances": len(self._labels),
            }

    # -- internals (called with the lock held) ---------------------------------------------
    def _label_for(self, emb: np.ndarray, seconds: float) -> int:
        self._embeddings.append(emb)
        self._seconds.append(seconds)
        if len(self._embeddings) > self.config.recluster_after:
            label = self._recluster()
        else:
            label = self._greedy(emb, seconds)
        self._labels.append(label)
        return label

    def _means(self) -> dict[int, np.ndarray]:
        if not self._labels:
            return {}
        known = np.array(self._labels)
        embs = np.stack(self._embeddings[: len(known)])
        return {k: unit(embs[known == k].mean(axis=0)) for k in sorted(set(self._labels))}

    def _greedy(self, emb: np.ndarray, seconds: float) -> int:
        means = self._means()
        if not means:
            return 0
        label, best = max(((k, float(m @ emb)) for k, m in means.items()), key=lambda x: x[1])
        if (
            best >= self.config.new_speaker_cos
            or len(means) >= self.config.max_speakers
            or seconds < MIN_NEW_SPEAKER_S
        ):
            return label
        return max(means) + 1

    def _recluster(self) -> int:
        # The most recent utterances only: the eigen-decomposition grows with n^3, and the
        # voices of a call are well represented by its last few hundred utterances.
        keep = self.config.recluster_window
        emb = np.stack(self._embeddings[-keep:])
        seconds = self._seconds[-keep:]
        result = cluster_embeddings(emb, np.array(seconds), self.config.clustering)
        new = result.labels
        old = np.array(self._labels[-(len(emb) - 1) :])  # the newest has no label yet
        k_new, k_old = result.n_speakers, max(self._labels) + 1
        agreement = np.zeros((k_new, k_old))
        for n_lab, o_lab, s in zip(new[:-1], old, seconds[:-1], strict=True):
            agreement[n_lab, o_lab] += s
        rows, cols = linear_sum_assignment(-agreement)
        mapping = {int(r): int(c) for r, c in zip(rows, cols, strict=True) if agreement[r, c] > 0}
        next_label = k_old
        for r in range(k_new):
            if r not in mapping:
                mapping[r] = next_label
                next_label += 1
        return mapping[int(new[-1])]

    def _role_for(self, label: int, emb: np.ndarray | None, text: str) -> SpeakerRole:
        if label in self.roles:
            return self.roles[label]
        taken = {r.role for r in self.roles.values()}
        role = self._decide(label, emb, text, taken)
        self.roles[label] = role
        return role

    def _decide(
        self, label: int, emb: np.ndarray | None, text: str, taken: set[str]
    ) -> SpeakerRole:
        name = f"S{label + 1}"
        if self._agent_print is not None and emb is not None and "agent" not in taken:
            agent_id, vp = self._agent_print
            cos = float(vp @ emb)
            if cos >= VOICEPRINT_MATCH:
                return SpeakerRole(
                    "agent", "voiceprint", f"{name} matches agent {agent_id} ({cos:.2f})"
                )
            if cos < VOICEPRINT_MATCH - 0.1 and "customer" not in taken:
                return SpeakerRole(
                    "customer", "voiceprint", f"{name} is not agent {agent_id} ({cos:.2f})"
                )
        agent_cues, customer_cues, hits = cue_score([text])
        if agent_cues > customer_cues and "agent" not in taken:
            return SpeakerRole("agent", "content", f'{name} said "{hits[0]}"')
        if customer_cues > agent_cues and "customer" not in taken:
            return SpeakerRole("customer", "content", f'{name} said "{hits[0]}"')
        for role in ("agent", "customer"):
            if role not in taken:
                evidence = "first_speaker" if not taken else "order"
                return SpeakerRole(role, evidence, f"{name} was the {role} by order of speaking")
        return SpeakerRole(f"speaker_{len(taken) + 1}", "order", f"{name}: another voice")
