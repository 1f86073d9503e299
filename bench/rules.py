"""Rule evaluation cost: microseconds per final transcript with N rules active.

The rules and the utterances are built from real contact-center text (ABCD dialogues and
Banking77 customer queries under ../shared/data), so phrases hit and miss the way they do on
calls. Every rule kind is in the mix. Target (issue 6): p95 <= 1 ms per final with 200 rules.

    python -m bench.rules [--rules 200] [--calls 20] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

import yaml

from qa_rules.engine import RuleEngine
from qa_rules.events import EmotionObserved, SilenceEnded, SilenceStarted, Utterance, WordTime
from qa_rules.loader import load_texts
from qa_rules.schema import RulePack

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def corpus(data: Path) -> tuple[list[str], list[str]]:
    """Agent lines and customer lines of real support conversations and queries."""
    agent: list[str] = []
    customer: list[str] = []
    for convo in json.loads((data / "dialogs/abcd/abcd_sample.json").read_text()):
        for who, text in convo["original"]:
            (agent if who == "agent" else customer if who == "customer" else []).append(text)
    with open(data / "intents/banking77/train.csv", newline="") as f:
        customer += [row["text"] for row in csv.DictReader(f)][:3000]
    return agent, customer


def ngrams(lines: list[str], rnd: random.Random, n: int) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        words = rnd.choice(lines).split()
        if len(words) < 3:
            continue
        k = rnd.randint(2, min(5, len(words)))
        i = rnd.randint(0, len(words) - k)
        out.append(" ".join(w.strip(",.?!:") for w in words[i : i + k]))
    return out


def make_rules(n: int, agent: list[str], customer: list[str], seed: int = 7) -> RulePack:
    """``n`` rules of every kind, in realistic proportions (mostly phrases)."""
    rnd = random.Random(seed)
    phrases = ngrams(agent + customer, rnd, 8 * n)
    rules: list[dict[str, object]] = []
    kinds = (
        ["phrase"] * 55
        + ["speech_rate", "silence", "emotion", "hold", "talk_ratio"] * 4
        + ["talk_over"] * 5
        + ["pii"] * 5
        + ["composite"] * 15
    )
    for i in range(n):
        kind = kinds[i % len(kinds)]
        rid = f"r{i:03d}_{kind}"
        r: dict[str, object] = {"id": rid, "kind": kind, "cooldown_s": 0}
        if kind == "phrase":
            r["mode"] = rnd.choice(["required", "forbidden"])
            r["speaker"] = rnd.choice(["agent", "customer", "any"])
            r["phrases"] = [phrases.pop() for _ in range(rnd.randint(2, 5))]
            style = i % 11
            if style == 1:
                r["match"] = "all"
                r["within_words"] = 10
            elif style == 2:
                r["match"] = "in_order"
            elif style == 3:
                r["regex"] = [r"\b(refund|cancel)\w*\b"]
            elif style == 4:
                r["ignore_negated"] = True
            elif style == 5:
                r["unless_near"] = [phrases.pop()]
            elif style == 6:
                r["window"] = {"first_s": 30}
        elif kind == "speech_rate":
            r["max_wpm"] = 220
        elif kind == "silence":
            r["min_s"] = 5 + i % 10
        elif kind == "emotion":
            r["index_above"] = 0.6
        elif kind == "hold":
            r["max_s"] = 45
        elif kind == "talk_ratio":
            r["max_share"] = 0.7
        elif kind == "pii":
            r["types"] = ["card_number", "ssn", "date_of_birth"]
        elif kind == "composite":
            r["after"] = {"emotion": ["angry"], "speaker": "customer"}
            r["within_s"] = 30
            r["when"] = {"not": {"said": [phrases.pop(), "sorry"], "speaker": "agent"}}
        rules.append(r)
    text = yaml.safe_dump({"pack": "bench", "rules": rules}, sort_keys=False)
    (pack,) = load_texts({"bench.yaml": text})
    return pack


def call_inputs(
    agent: list[str], customer: list[str], rnd: random.Random, turns: int = 60
) -> list[Utterance | SilenceStarted | SilenceEnded | EmotionObserved]:
    """One call: alternating turns with realistic word timing, pauses and emotions."""
    out: list[Utterance | SilenceStarted | SilenceEnded | EmotionObserved] = []
    t = 0.0
    for k in range(turns):
        who = "agent" if k % 2 == 0 else "customer"
        text = rnd.choice(agent if who == "agent" else customer)
        if rnd.random() < 0.3:
            text += " " + rnd.choice(agent if who == "agent" else customer)
        words = text.split()
        rate = rnd.uniform(2.0, 3.5)
        ws = tuple(
            WordTime(w, round(t + j / rate, 3), round(t + (j + 1) / rate, 3))
            for j, w in enumerate(words)
        )
        end = ws[-1].t_end
        out.append(Utterance(who, t, end, text, ws))
        if who == "customer":
            label = rnd.choice(["neutral", "neutral", "frustrated", "angry"])
            out.append(EmotionObserved(who, t, end, label, 0.8, rnd.random()))
        gap = rnd.choice([0.4, 0.8, 1.5, 3.0, 12.0])
        out.append(SilenceStarted(end))
        out.append(SilenceEnded(end, end + gap))
        t = end + gap
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rules", type=int, default=200)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument(
        "--data", type=Path, default=Path(os.environ.get("CALLWATCH_SHARED_DATA", DEFAULT_DATA))
    )
    args = ap.parse_args()
    agent, customer = corpus(args.data)
    pack = make_rules(args.rules, agent, customer)
    rnd = random.Random(11)
    per_final: list[float] = []
    per_other: list[float] = []
    alerts = 0
    for _ in range(args.calls):
        eng = RuleEngine([pack])
        items = call_inputs(agent, customer, rnd)
        for x in items:
            start = time.perf_counter()
            got = eng.advance(x.t_end if isinstance(x, SilenceEnded) else x.t)
            got += eng.feed(x)
            took = time.perf_counter() - start
            (per_final if isinstance(x, Utterance) else per_other).append(took * 1e6)
            alerts += len(got)
        alerts += len(eng.finish(items[-1].t + 1 if hasattr(items[-1], "t") else 0))

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    kinds: dict[str, int] = {}
    for r in pack.rules:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    print(
        f"# python -m bench.rules --rules {args.rules} --calls {args.calls}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 thread, "
        f"Python {platform.python_version()}"
    )
    print(f"rules: {len(pack.rules)} ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})")
    print(f"finals: {len(per_final)}, other inputs: {len(per_other)}, alerts: {alerts}")
    for name, xs in (("per final transcript", per_final), ("per other input", per_other)):
        print(
            f"{name}: mean {statistics.fmean(xs):.0f} µs, p50 {pct(xs, 0.5):.0f} µs, "
            f"p95 {pct(xs, 0.95):.0f} µs, p99 {pct(xs, 0.99):.0f} µs, max {max(xs):.0f} µs"
        )
    p95 = pct(per_final, 0.95)
    print(f"target p95 <= 1000 µs per final: {'met' if p95 <= 1000 else 'MISSED'} ({p95:.0f} µs)")


if __name__ == "__main__":
    main()
