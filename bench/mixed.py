"""English and Mandarin live calls on one server: right language, and how fast.

    python -m bench.mixed [--levels 1+1,2+2,3+3] [--seconds 90] [--data ../shared/data]
                          [--metadata]

Starts ``callwatch serve --languages en,zh`` (tiny.en for English, the bundled multilingual
base for Mandarin, two ASR workers shared by both) in its own process and replays, at real-time
pace and all at once, N English calls (the first ``--seconds`` of the stereo car-repair call)
and M Mandarin calls (a call assembled from the Magic Data and AISHELL recordings, as in
``bench.zh_demo``). Without ``--metadata`` no call names its language: each is identified on
its first utterance. Per level it prints, per language: calls identified right, seconds of call
audio until the language was decided, final latency p50/p95 (end of utterance -> final
received), and the server's CPU and peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import soundfile as sf

from assist.replay import ReplayResult, replay
from bench.live import _clip, _cpu_s, _peak_rss_mb, pct, server_process
from bench.zh_demo import build_call, corpus

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def zh_call(data: Path, seconds: float, out: Path, seed: int = 3) -> str:
    """A stereo Mandarin call about ``seconds`` long from the shared recordings."""
    rng = random.Random(seed)
    magic = corpus(data, "magicdata_cs_scene")
    aishell = corpus(data, "aishell_dev")
    script = []
    t = 0.0
    for a, c in zip(rng.sample(sorted(magic), 60), rng.sample(sorted(aishell), 60), strict=True):
        if t > seconds:
            break
        for speaker, (path, text), utt in (("agent", magic[a], a), ("customer", aishell[c], c)):
            script.append((speaker, path, utt, text))
            t += sf.info(str(path)).duration + 1.2
    build_call(script, out)
    return str(out)


async def run_level(
    url: str, n_en: int, n_zh: int, en: tuple[str, str], zh: str, metadata: bool
) -> tuple[list[tuple[str, ReplayResult]], float]:
    calls = []
    for i in range(n_en):
        calls.append(
            (
                "en",
                replay(
                    url,
                    en[0],
                    customer=en[1],
                    protocol="twilio",
                    speed=1.0,
                    call_id=f"mix-en-{n_en}-{i}",
                    agent_id=f"en-{i}",
                    language="en" if metadata else None,
                    settle_s=90,
                ),
            )
        )
    for i in range(n_zh):
        calls.append(
            (
                "zh",
                replay(
                    url,
                    zh,
                    protocol="raw",
                    speed=1.0,
                    call_id=f"mix-zh-{n_zh}-{i}",
                    agent_id=f"zh-{i}",
                    language="zh" if metadata else None,
                    settle_s=90,
                ),
            )
        )
    t0 = time.monotonic()
    results = await asyncio.gather(*(c for _, c in calls))
    return [(lang, r) for (lang, _), r in zip(calls, results, strict=True)], time.monotonic() - t0


def summarise(lang: str, results: list[tuple[str, ReplayResult]]) -> dict[str, Any]:
    mine = [r for k, r in results if k == lang]
    right = 0
    decided_at: list[float] = []
    finals: list[float] = []
    for r in mine:
        started = next(e for e in r.events if e["type"] == "call.started")
        decided = [e for e in r.events if e["type"] == "call.language"]
        language = decided[0]["language"] if decided else started.get("language")
        right += language == lang
        if decided:
            decided_at.append(decided[0]["t"])
        finals += r.latency.get("transcript.final", [])
    return {
        "calls": len(mine),
        "right": right,
        "decided_p50": pct(decided_at, 50),
        "final_p50": pct(finals, 50),
        "final_p95": pct(finals, 95),
        "finals": len(finals),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--levels", default="1+1,2+2,3+3", help="EN+ZH concurrent calls per level")
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--metadata", action="store_true", help="calls name their language")
    args = ap.parse_args()
    levels = [tuple(int(x) for x in lv.split("+")) for lv in args.levels.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        en = _clip(args.data / "stereo" / "aws_lca_auto_repairs_40", args.seconds, Path(tmp))
        zh = zh_call(args.data, args.seconds, Path(tmp) / "zh.wav")
        flags = ("--languages", "en,zh", "--language", "auto", "--no-assist")
        with server_process("tiny.en", args.workers, tmp, flags) as (url, pid):
            for n_en, n_zh in levels:
                cpu0 = _cpu_s(pid)
                results, wall = asyncio.run(run_level(url, n_en, n_zh, en, zh, args.metadata))
                rows.append(
                    (
                        (n_en, n_zh),
                        summarise("en", results),
                        summarise("zh", results),
                        (_cpu_s(pid) - cpu0) / wall,
                    )
                )
            rss = _peak_rss_mb(pid)
    print(
        f"# {platform.machine()} {os.cpu_count()} cores, serve --languages en,zh "
        f"(tiny.en + base), {args.workers} ASR workers, {args.seconds:.0f} s calls, real-time pace, "
        f"language {'from metadata' if args.metadata else 'identified'}"
    )
    print("level  lang calls right decided_s final_p50 final_p95 cpu_cores")
    for (n_en, n_zh), en_row, zh_row, cpu in rows:
        for lang, r in (("en", en_row), ("zh", zh_row)):
            print(
                f"{n_en}+{n_zh:<4d} {lang:4s} {r['calls']:5d} {r['right']:5d} "
                f"{r['decided_p50']:9.2f} {r['final_p50']:9.2f} {r['final_p95']:9.2f} {cpu:9.2f}"
            )
    print(f"server_peak_rss_mb: {rss:.0f}")
    for (n_en, n_zh), en_row, zh_row, _ in rows:
        for lang, r in (("en", en_row), ("zh", zh_row)):
            print(f"language_right_{lang}_at_{n_en}+{n_zh}: {r['right']}/{r['calls']}")
            print(f"final_p95_{lang}_at_{n_en}+{n_zh}: {r['final_p95']:.2f}")


if __name__ == "__main__":
    main()
