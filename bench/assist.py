"""Agent-assist intent matching: accuracy, out-of-scope rejection and latency per utterance.

    python -m bench.assist [--train ../shared/data/intents/banking77/train.csv] [--test FILE]
        [--per-intent 10] [--holdout 30] [--oos ../shared/data/intents/clinc150]
        [--oos-split oos_test] [--seed 0 [1 2 ...]] [--threshold X] [--lexical-threshold X]

A playbook of ``--per-intent`` examples per intent is sampled from ``--train`` (a CSV with
``text,category`` columns, seeded). Queries are ``--test`` (same layout) or, without it,
``--holdout`` other rows per intent of the train file (never playbook examples, seeded).
Out-of-scope queries (``--oos``: CLINC150's folder or ``data_full.json``, whose
``--oos-split`` lists are read, or a text file with one query per line) should get no
suggestion: their best score must stay under the threshold.

Each query is embedded and matched alone, as on a call (torch on one thread); latency is
that embed + match time. Figures are the mean over the seeds, ``_sd`` their standard
deviation. ``precision_at_threshold`` is the share of right intents among the in-scope
queries that get a suggestion. The same queries are also matched lexical-only (no embedder,
its own threshold): the ``lexical_`` lines. A sweep of thresholds is printed as comments to
pick an operating point; pick it on a development split (e.g. ``--oos-split
oos_train,oos_val`` and other seeds), never on the figures you report.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from assist.intents import IntentExample, IntentMatcher
from models.embed import SentenceEmbedder

DEFAULT_INTENTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "intents"
DEFAULT_TRAIN = DEFAULT_INTENTS / "banking77" / "train.csv"
DEFAULT_OOS = DEFAULT_INTENTS / "clinc150"
SWEEP = tuple(round(0.1 + 0.05 * k, 2) for k in range(11))  # 0.10 .. 0.60


def read_rows(path: Path) -> list[tuple[str, str]]:
    """(text, intent) rows of a ``text,category`` CSV."""
    with path.open(newline="", encoding="utf-8") as fh:
        return [(r["text"].strip(), r["category"].strip()) for r in csv.DictReader(fh)]


def read_oos(spec: Path, splits: Sequence[str]) -> list[str]:
    """Out-of-scope queries: CLINC150 (folder or data_full.json) lists, or one per line."""
    path = spec / "data_full.json" if spec.is_dir() else spec
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        return [text for s in splits for text, _ in data[s]]
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def split(
    rows: Sequence[tuple[str, str]], per_intent: int, holdout: int, seed: int
) -> tuple[list[IntentExample], list[tuple[str, str]]]:
    """Playbook (``per_intent`` rows per intent) and held-out queries (``holdout`` others)."""
    rng = np.random.default_rng(seed)
    by_intent: dict[str, list[str]] = {}
    for text, intent in rows:
        by_intent.setdefault(intent, []).append(text)
    playbook: list[IntentExample] = []
    held: list[tuple[str, str]] = []
    for intent in sorted(by_intent):
        texts = by_intent[intent]
        order = rng.permutation(len(texts))
        playbook += [IntentExample(intent, texts[i]) for i in order[:per_intent]]
        held += [(texts[i], intent) for i in order[per_intent : per_intent + holdout]]
    return playbook, held


@dataclass
class Run:
    """Per-query outcomes of one matcher on one seed."""

    top1: list[bool] = field(default_factory=list)
    top3: list[bool] = field(default_factory=list)
    best: list[float] = field(default_factory=list)  # in-scope best scores
    oos_best: list[float] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)  # embed + match, per query
    build_s: float = 0.0

    def at(self, threshold: float) -> tuple[float, float, float]:
        """(oos rejected, in-scope coverage, precision of in-scope suggestions)."""
        best = np.array(self.best)
        shown = best >= threshold
        right = np.array(self.top1)[shown]
        rejected = float(np.mean(np.array(self.oos_best) < threshold)) if self.oos_best else 0.0
        return rejected, float(shown.mean()), float(right.mean()) if right.size else 0.0


def evaluate(matcher: IntentMatcher, queries: Sequence[tuple[str, str]], oos: Sequence[str]) -> Run:
    run = Run()
    for text, intent in queries:
        t0 = time.perf_counter()
        got = matcher.match(text, matcher.embed(text), top_k=3)
        run.ms.append((time.perf_counter() - t0) * 1000)
        names = [m.intent for m in got]
        run.top1.append(bool(names) and names[0] == intent)
        run.top3.append(intent in names)
        run.best.append(got[0].score if got else 0.0)
    for text in oos:
        top = matcher.match(text, matcher.embed(text), top_k=1)
        run.oos_best.append(top[0].score if top else 0.0)
    return run


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def report(prefix: str, runs: Sequence[Run], threshold: float) -> None:
    """Threshold sweep (comments), then the ``name: value`` lines, mean over seeds."""
    print(f"# {prefix or 'hybrid '}sweep: threshold oos_rejected in_scope_coverage precision")
    for th in sorted({*SWEEP, threshold}):
        cols = np.array([r.at(th) for r in runs]).mean(axis=0)
        mark = "  <- operating" if th == threshold else ""
        print(f"#   {th:.3f} {cols[0]:.3f} {cols[1]:.3f} {cols[2]:.3f}{mark}")

    def line(name: str, values: Sequence[float], digits: int = 3) -> None:
        sd = statistics.pstdev(values) if len(values) > 1 else 0.0
        print(f"{prefix}{name}: {statistics.fmean(values):.{digits}f}")
        print(f"{prefix}{name}_sd: {sd:.{digits}f}")

    at = [r.at(threshold) for r in runs]
    print(f"{prefix}threshold: {threshold:.3f}")
    line("top1", [float(np.mean(r.top1)) for r in runs])
    line("top3", [float(np.mean(r.top3)) for r in runs])
    if runs[0].oos_best:
        line("oos_rejected", [a[0] for a in at])
    line("in_scope_coverage", [a[1] for a in at])
    line("precision_at_threshold", [a[2] for a in at])
    line("latency_p50_ms", [float(np.percentile(r.ms, 50)) for r in runs], 2)
    line("latency_p95_ms", [float(np.percentile(r.ms, 95)) for r in runs], 2)
    line("build_s", [r.build_s for r in runs], 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=Path, default=DEFAULT_TRAIN)
    ap.add_argument("--test", type=Path, help="queries (text,category CSV); default: held out")
    ap.add_argument("--per-intent", type=int, default=10, help="playbook examples per intent")
    ap.add_argument("--holdout", type=int, default=30, help="held-out queries per intent")
    ap.add_argument(
        "--oos", type=Path, default=DEFAULT_OOS, help="out-of-scope queries (CLINC150 or text file)"
    )
    ap.add_argument("--oos-split", default="oos_test", help="CLINC150 lists, comma-separated")
    ap.add_argument("--seed", type=int, nargs="+", default=[0])
    ap.add_argument("--threshold", type=float, help="default: the matcher's operating one")
    ap.add_argument("--lexical-threshold", type=float)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    rows = read_rows(args.train)
    tests = read_rows(args.test) if args.test else None
    skip_oos = args.oos == DEFAULT_OOS and not args.oos.exists()
    oos = [] if skip_oos else read_oos(args.oos, args.oos_split.split(","))
    t0 = time.perf_counter()
    embedder = SentenceEmbedder(threads=1)
    load_s = time.perf_counter() - t0
    embedder.encode(["warm up"])

    hybrid: list[Run] = []
    lexical: list[Run] = []
    threshold = lexical_threshold = 0.0
    playbook: list[IntentExample] = []
    queries: list[tuple[str, str]] = []
    for seed in args.seed:
        playbook, queries = split(rows, args.per_intent, args.holdout, seed)
        if tests is not None:
            queries = tests
        for emb, runs in ((embedder, hybrid), (None, lexical)):
            t0 = time.perf_counter()
            matcher = IntentMatcher(playbook, emb)
            build_s = time.perf_counter() - t0
            run = evaluate(matcher, queries, oos)
            run.build_s = build_s
            runs.append(run)
            if emb is None:
                lexical_threshold = (
                    matcher.threshold if args.lexical_threshold is None else args.lexical_threshold
                )
            else:
                threshold = matcher.threshold if args.threshold is None else args.threshold
        print(
            f"# seed {seed}: top1 {np.mean(hybrid[-1].top1):.3f}, "
            f"lexical top1 {np.mean(lexical[-1].top1):.3f}",
            flush=True,
        )

    import torch

    n_intents = len({e.intent for e in playbook})
    print(f"# command: python -m bench.assist {shlex.join(sys.argv[1:])}")
    print(
        f"# machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.get_num_threads()} "
        f"thread(s), Python {platform.python_version()}; "
        f"date {datetime.date.today().isoformat()}"
    )
    print(
        f"# playbook: {len(playbook)} examples, {n_intents} intents ({args.per_intent} per "
        f"intent); queries: {len(queries)} in scope ({'--test' if tests else 'held out'}), "
        f"{len(oos)} out of scope; seeds {' '.join(map(str, args.seed))}; "
        f"model {embedder.model_id} loaded in {load_s:.1f} s"
    )
    report("", hybrid, threshold)
    report("lexical_", lexical, lexical_threshold)


if __name__ == "__main__":
    main()
