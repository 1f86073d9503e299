"""Audit throughput: audio seconds processed per wall second, end to end (read, VAD, ASR,
rules), one thread for the model.

    python -m bench.throughput [--model tiny.en|base] [FILE ...]

Default input: the 4-minute two-leg support call in ../shared/data/stereo/aws_lca_auto_repairs_40
plus the bundled demo calls.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from pathlib import Path

from assist.audit import audit_file
from models.asr import AsrConfig, WhisperAsr
from qa_rules.loader import load_packs

REPO = Path(__file__).resolve().parents[1]
AWS = REPO.parent / "shared" / "data" / "stereo" / "aws_lca_auto_repairs_40"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    t_load = time.perf_counter()
    asr = WhisperAsr(AsrConfig(model=args.model, threads=args.threads))
    load_s = time.perf_counter() - t_load
    packs = load_packs()
    jobs: list[tuple[str, str | None]] = [(f, None) for f in args.files]
    if not jobs:
        jobs = [(str(AWS / "agent.wav"), str(AWS / "caller.wav"))]
        jobs += [(str(p), None) for p in sorted((REPO / "demo" / "calls").glob("*.wav"))]
    audio_s = 0.0
    t0 = time.perf_counter()
    for path, customer in jobs:
        t1 = time.perf_counter()
        report = audit_file(path, packs, asr, customer)
        dt = time.perf_counter() - t1
        audio_s += report["duration_s"]
        print(
            f"{Path(path).name}: {report['duration_s']:.1f} s audio in {dt:.1f} s "
            f"({report['duration_s'] / dt:.1f}x), {len(report['alerts'])} alerts"
        )
    wall = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"# model {asr.model_id} int8, {args.threads} thread(s), load {load_s:.1f} s, "
        f"{platform.machine()} {os.cpu_count()} cores"
    )
    print(f"audio_s: {audio_s:.1f}")
    print(f"wall_s: {wall:.1f}")
    print(f"throughput_x_realtime: {audio_s / wall:.1f}")
    print(f"peak_rss_mb: {rss_mb:.0f}")


if __name__ == "__main__":
    main()
