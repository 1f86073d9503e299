"""Match what a customer says to playbook intents: meaning (sentence embeddings) and words (BM25).

Each playbook intent has a handful of example customer utterances. An utterance (a partial or
final transcript) gets, per intent, three signals in [0, 1]:

- ``semantic``: the highest cosine similarity between the utterance and one of the intent's
  examples (all-MiniLM-L6-v2 vectors, ``models.embed``); that example is shown to the agent;
- ``head``: a one-vs-rest logistic regression per intent on the example vectors (sigmoid),
  fitted at construction (~0.3 s for 770 examples). It learns which directions of the
  embedding separate close intents ("card not working" / "card swallowed"), which plain
  nearest-neighbour cannot. One-vs-rest rather than softmax, and capped at ``semantic``:
  with few intents a classifier has little to contrast and is confident about anything
  (3 intents: uncapped, 20 % of off-topic queries passed the threshold; capped, 2 %),
  so the head may sharpen the choice between intents but never claims more than the meaning;
- ``lexical``: BM25 between the utterance's content words and the intent's examples
  concatenated into one document (better than one document per example: 67 % vs 60 %
  top-1 alone), normalised by what the utterance's words could score at most,
  ``bm25 / ((k1 + 1) * sum of the utterance's idf)``, words unknown to the playbook counted
  at the highest idf: 1 = every word is frequent in the intent's examples, 0 = none occurs.

``score = 0.4 semantic + 0.4 min(head, semantic) + 0.2 lexical`` ranks the intents and is
what the threshold applies to. Weights, head and BM25 choices were picked on Banking77
development draws (10 examples per intent, held-out queries, CLINC150's oos_train/oos_val;
``python -m bench.assist``, docs/benchmarks.md): ~85 % top-1 where nearest-neighbour alone
gets ~81 %, with a threshold that keeps ~97 % of off-topic queries silent.

Language: tokens come from ``qa_rules.text.tokens`` (lower case, spoken numbers as digits,
traditional -> simplified Chinese, one token per Han character); stopwords are dropped and
adjacent Han characters also form bigram terms (Chinese words are mostly two characters:
取消 "cancel" is not 消费 "spending"). The embedding model is English-centric, so for an
utterance that is mostly Chinese the weight moves to the words: the lexical weight is
``0.2 + 0.7 * (share of Han characters among its non-digit tokens)``, semantic and head
share the rest 4:4 (a Chinese sentence: 0.9 lexical, 0.05 + 0.05). MiniLM puts any two
Chinese sentences at cosine ~0.5-0.95, so its meaning barely separates Chinese intents.

Without an embedder the matcher is lexical only (``score = lexical``) with its own threshold.
Thread-safety: nothing is mutated after construction, so ``embed`` may run on a worker thread
while ``match`` runs on the event loop.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.embed import SentenceEmbedder
from qa_rules.text import STOPWORDS, is_cjk, tokens

# Operating thresholds on ``score`` (docs/benchmarks.md, "Agent assist: intent matching").
HYBRID_THRESHOLD = 0.30
LEXICAL_THRESHOLD = 0.25

W_SEMANTIC = 0.4
W_HEAD = 0.4
W_LEXICAL = 0.2
W_LEXICAL_CJK = 0.9  # lexical weight for an utterance made only of Han characters
HEAD_C = 30.0  # inverse L2 strength of the logistic regressions
BM25_K1 = 1.2
BM25_B = 0.75
# A query's words weigh at least this many unseen words, so one or two shared words ("card",
# "卡") cannot make a strong lexical match on their own.
MIN_QUERY_IDF = 1.5
# Chinese characters of asking and wanting that every intent's examples share ("我想问一下",
# "请帮我看看怎么"), dropped like stopwords: a few intents give idf too little to learn it.
_ZH_FILLERS = frozenset("想要请问帮能可以么怎什样下")
_STOP = STOPWORDS | _ZH_FILLERS


@dataclass(frozen=True)
class IntentExample:
    intent: str
    text: str


@dataclass(frozen=True)
class IntentMatch:
    intent: str
    score: float  # hybrid score in [0, 1]; the one thresholds apply to
    semantic: float  # best cosine similarity to one of the intent's examples (0 if lexical only)
    lexical: float  # normalised BM25 in [0, 1]
    example: str  # the intent's example closest to the utterance
    terms: tuple[str, ...]  # utterance words found in the intent's examples

    def reason(self) -> str:
        """Why, for the agent: 'like "I want to cancel" (meaning 0.82; words: cancel)'."""
        parts = []
        if self.semantic > 0:
            parts.append(f"meaning {self.semantic:.2f}")
        if self.terms:
            parts.append("words: " + ", ".join(self.terms))
        detail = f" ({'; '.join(parts)})" if parts else ""
        return f'like "{self.example}"{detail}'


def _terms(toks: Sequence[str]) -> list[str]:
    """Content tokens in order, then bigrams of adjacent Han characters (neither a stopword)."""
    out = [t for t in toks if t not in _STOP]
    for a, b in itertools.pairwise(toks):
        if is_cjk(a) and is_cjk(b) and a not in _STOP and b not in _STOP:
            out.append(a + b)
    return out


class _BM25:
    """BM25 over a few documents (intents or examples), scores normalised per query."""

    def __init__(self, docs: Sequence[Sequence[str]]) -> None:
        n = len(docs)
        lengths = [len(d) for d in docs]
        avg = (sum(lengths) / n) if n and sum(lengths) else 1.0
        df = Counter(t for d in docs for t in set(d))
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        self.idf_unknown = math.log(1 + (n + 0.5) / 0.5)
        self.n = n
        # term -> (doc indices, saturated term frequencies)
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        acc: dict[str, tuple[list[int], list[float]]] = {}
        for i, d in enumerate(docs):
            norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths[i] / avg)
            for t, f in Counter(d).items():
                ids, tfs = acc.setdefault(t, ([], []))
                ids.append(i)
                tfs.append(f * (BM25_K1 + 1) / (f + norm))
        for t, (ids, tfs) in acc.items():
            self.postings[t] = (np.array(ids), np.array(tfs))

    def scores(self, terms: Sequence[str]) -> np.ndarray:
        """Per document, in [0, 1]: BM25 / ((k1 + 1) * the query's total idf)."""
        out = np.zeros(self.n)
        uniq = set(terms)
        total = 0.0
        for t in uniq:
            idf = self.idf.get(t)
            if idf is None:
                total += self.idf_unknown
                continue
            total += idf
            ids, tfs = self.postings[t]
            out[ids] += idf * tfs
        out /= max(total, MIN_QUERY_IDF * self.idf_unknown) * (BM25_K1 + 1)
        return np.clip(out, 0.0, 1.0)


def _fit_head(x: np.ndarray, labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest logistic regressions: weights (n, dim) and biases (n,)."""
    from sklearn.linear_model import LogisticRegression

    w = np.zeros((n, x.shape[1]), dtype=np.float32)
    b = np.zeros(n, dtype=np.float32)
    for c in range(n):
        y = labels == c
        lr = LogisticRegression(C=HEAD_C, max_iter=2000).fit(x, y)
        w[c] = lr.coef_[0]
        b[c] = lr.intercept_[0]
    return w, b


class IntentMatcher:
    """Ranks playbook intents for one utterance; built once per playbook, shared by calls."""

    def __init__(
        self,
        examples: Sequence[IntentExample],
        embedder: SentenceEmbedder | None = None,
        threshold: float | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        seen: dict[tuple[str, str], None] = {}
        for ex in examples:
            if not ex.intent.strip() or not ex.text.strip():
                raise ValueError(f"intent example needs an intent and a text: {ex!r}")
            seen[(ex.intent, ex.text.strip())] = None
        if not seen:
            raise ValueError("an intent matcher needs at least one example")
        self.intents: list[str] = list(dict.fromkeys(i for i, _ in seen))
        index = {name: k for k, name in enumerate(self.intents)}
        # Examples grouped by intent, so a per-intent maximum is one reduceat.
        pairs = sorted(seen, key=lambda p: index[p[0]])
        self._texts = [t for _, t in pairs]
        self._labels = np.array([index[i] for i, _ in pairs])
        self._starts = np.searchsorted(self._labels, np.arange(len(self.intents)))
        self._example_terms = [_terms(tokens(t)) for t in self._texts]
        docs: list[list[str]] = [[] for _ in self.intents]
        for lab, terms in zip(self._labels, self._example_terms, strict=True):
            docs[lab].extend(terms)
        self._docs = [frozenset(d) for d in docs]
        self._bm25 = _BM25(docs)
        self.embedder = embedder
        self._vectors: np.ndarray | None = None
        self._head: tuple[np.ndarray, np.ndarray] | None = None
        if embedder is not None:
            self._vectors = self._embed_examples(embedder, cache_dir)
            if len(self.intents) > 1:
                self._head = _fit_head(self._vectors, self._labels, len(self.intents))
        default = HYBRID_THRESHOLD if embedder is not None else LEXICAL_THRESHOLD
        self.threshold: float = default if threshold is None else threshold

    def _embed_examples(
        self, embedder: SentenceEmbedder, cache_dir: str | Path | None
    ) -> np.ndarray:
        """Example vectors, from ``cache_dir`` when this model already embedded these texts."""
        if cache_dir is None:
            return embedder.encode(self._texts)
        key = hashlib.sha256(embedder.fingerprint.encode())
        for t in self._texts:
            key.update(t.encode() + b"\0")
        path = Path(cache_dir) / f"intent-examples-{key.hexdigest()[:24]}.npy"
        if path.is_file():
            vecs = np.load(path)
            if vecs.shape == (len(self._texts), embedder.dim):
                return vecs.astype(np.float32, copy=False)
        vecs = embedder.encode(self._texts)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            np.save(fh, vecs)
        os.replace(tmp, path)
        return vecs

    def embed(self, text: str) -> np.ndarray | None:
        """The utterance's vector (the slow part: run it off the event loop); None when the
        matcher is lexical only or the text has no words."""
        if self.embedder is None or not tokens(text):
            return None
        vec: np.ndarray = self.embedder.encode([text])[0]
        return vec

    def match(
        self, text: str, vector: np.ndarray | None = None, top_k: int = 3
    ) -> list[IntentMatch]:
        """The ``top_k`` intents, best first, not thresholded; [] for blank text."""
        toks = tokens(text)
        if not toks:
            return []
        terms = _terms(toks)
        lexical = self._bm25.scores(terms)
        n = len(self.intents)
        sims: np.ndarray | None = None
        if self._vectors is None:
            semantic = np.zeros(n)
            score = lexical
        else:
            if vector is None:
                assert self.embedder is not None  # example vectors come from it
                vector = self.embedder.encode([text])[0]
            sims = self._vectors @ vector
            semantic = np.clip(np.maximum.reduceat(sims, self._starts), 0.0, 1.0)
            if self._head is not None:
                w, b = self._head
                head = np.minimum(1.0 / (1.0 + np.exp(-(w @ vector + b))), semantic)
            else:
                head = semantic
            words = [t for t in toks if not t.isdigit()]  # digits belong to no language
            cjk = sum(1 for t in words if is_cjk(t)) / len(words) if words else 0.0
            w_lex = W_LEXICAL + (W_LEXICAL_CJK - W_LEXICAL) * cjk
            w_other = (1.0 - w_lex) / (W_SEMANTIC + W_HEAD)
            score = w_other * (W_SEMANTIC * semantic + W_HEAD * head) + w_lex * lexical
        order = np.argsort(-score, kind="stable")[: max(top_k, 0)]
        out = []
        for c in order:
            hits = self._hits(terms, int(c))
            lo, hi = self._span(int(c))
            if sims is not None:
                example = self._texts[lo + int(np.argmax(sims[lo:hi]))]
            else:
                example = self._lexical_example(hits, lo, hi)
            out.append(
                IntentMatch(
                    intent=self.intents[c],
                    score=float(np.clip(score[c], 0.0, 1.0)),
                    semantic=float(semantic[c]),
                    lexical=float(lexical[c]),
                    example=example,
                    terms=hits,
                )
            )
        return out

    def best(
        self, text: str, vector: np.ndarray | None = None, threshold: float | None = None
    ) -> IntentMatch | None:
        """The top intent if its score reaches the threshold (the matcher's by default)."""
        top = self.match(text, vector, top_k=1)
        limit = self.threshold if threshold is None else threshold
        return top[0] if top and top[0].score >= limit else None

    def _hits(self, terms: Sequence[str], c: int) -> tuple[str, ...]:
        """Utterance terms in intent ``c``'s examples; a Han character inside a matched
        bigram is not repeated on its own."""
        doc = self._docs[c]
        hits = list(dict.fromkeys(t for t in terms if t in doc))
        covered = {ch for t in hits if len(t) == 2 and is_cjk(t[0]) for ch in t}
        return tuple(t for t in hits if not (len(t) == 1 and t in covered))

    def _span(self, c: int) -> tuple[int, int]:
        """Indices [lo, hi) of intent ``c``'s examples."""
        hi = int(self._starts[c + 1]) if c + 1 < len(self.intents) else len(self._texts)
        return int(self._starts[c]), hi

    def _lexical_example(self, hits: Sequence[str], lo: int, hi: int) -> str:
        """The example in [lo, hi) sharing the most idf weight with the utterance's hits."""
        idf = self._bm25.idf

        def weight(i: int) -> float:
            ex = set(self._example_terms[i])
            return sum(idf.get(t, 0.0) for t in hits if t in ex)

        return self._texts[max(range(lo, hi), key=weight)]
