"""VAD frame-level precision/recall/F1 against manual speech labels.

    python -m bench.vad [--data ../shared/data/vad/ten_vad_dev] [--aggressiveness 2]

Scores both the raw webrtcvad decisions and the smoothed segments the pipeline uses
(20 ms frames; a frame is speech when the label covers its centre).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from audio.reader import read_call
from audio.vad import FRAME_MS, VadConfig, detect_segments, frame_flags
from bench.metrics import f1

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "vad" / "ten_vad_dev"
)


def read_labels(scv: Path, n_frames: int) -> np.ndarray:
    parts = scv.read_text().strip().split(",")[1:]
    truth = np.zeros(n_frames, dtype=bool)
    centres = (np.arange(n_frames) + 0.5) * FRAME_MS / 1000
    for i in range(0, len(parts) - 2, 3):
        start, end, label = float(parts[i]), float(parts[i + 1]), int(float(parts[i + 2]))
        if label == 1:
            truth |= (centres >= start) & (centres < end)
    return truth


def _counts(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.array(
        [np.sum(pred & truth), np.sum(pred & ~truth), np.sum(~pred & truth)], dtype=float
    )


def score_clip(wav: Path, scv: Path, cfg: VadConfig, raw: bool = False) -> np.ndarray:
    """(tp, fp, fn) frame counts for one clip."""
    samples = read_call(wav).channels[0].samples
    n = samples.size * 1000 // (16000 * FRAME_MS)
    truth = read_labels(scv, n)
    if raw:
        pred = frame_flags(samples, cfg.aggressiveness)[:n]
    else:
        pred = np.zeros(n, dtype=bool)
        centres = (np.arange(n) + 0.5) * FRAME_MS / 1000
        for s in detect_segments(samples, cfg):
            pred |= (centres >= s.t) & (centres < s.t_end)
    return _counts(pred[:n], truth[: pred.size])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--aggressiveness", type=int, default=3)
    args = ap.parse_args()
    cfg = VadConfig(aggressiveness=args.aggressiveness)
    clips = sorted(args.data.glob("*.wav"))
    if not clips:
        raise SystemExit(f"no *.wav in {args.data}")
    seg_tot = np.zeros(3)
    raw_tot = np.zeros(3)
    audio_s = 0.0
    t0 = time.perf_counter()
    for wav in clips:
        scv = wav.with_suffix(".scv")
        seg_tot += score_clip(wav, scv, cfg)
        raw_tot += score_clip(wav, scv, cfg, raw=True)
        audio_s += read_call(wav).duration
    wall = time.perf_counter() - t0
    print(
        f"# {len(clips)} clips, {audio_s:.1f} s audio, aggressiveness {args.aggressiveness}, "
        f"{platform.processor() or platform.machine()}, {wall:.1f} s wall"
    )
    for name, tot in (("raw", raw_tot), ("segments", seg_tot)):
        p, r, f = f1(*tot.astype(int))
        print(f"{name}_precision: {p:.3f}")
        print(f"{name}_recall: {r:.3f}")
        print(f"{name}_F1: {f:.3f}")


if __name__ == "__main__":
    main()
