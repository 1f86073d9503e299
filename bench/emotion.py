"""Emotion accuracy on acted speech: angry vs not-angry, and the 4-class confusion matrix.

    python -m bench.emotion [--data ../shared/data/emotion/ravdess_dev] [--phone]

DIR holds WAV clips and a ``labels.tsv`` (file, emotion, intensity, actor, ..., transcript).
Each clip is cut to its speech by the pipeline's VAD and scored by the product's own
``EmotionTracker`` with the clip's words, against a baseline of the same speaker, two ways:

- ``settled``: the baseline holds the speaker's other clips (a call already under way);
- ``call_order``: the speaker's clips arrive in a random order as utterances of one call and
  each is scored against the ones before it, cold start included (mean over 20 orders).

No per-speaker or per-dataset tuning: thresholds come from calm speech (docs/emotion.md).
``--phone`` first puts every clip through an 8 kHz mu-law phone line. ``--calm FILE...``
also scores recordings of calm calls (stereo, or ``agent.wav+caller.wav``) utterance by
utterance from the voice alone: how often a calm speaker is labelled angry, and whether
their anger index ever escalates.
"""

from __future__ import annotations

import argparse
import csv
import platform
import time
from pathlib import Path

import numpy as np

from audio.codecs import float_to_int16, int16_to_float, pcm16_to_ulaw, ulaw_to_pcm16
from audio.reader import read_call
from audio.resample import to_16k
from audio.vad import detect_segments
from models.emotion import LABELS, EmotionTracker, VoiceAnalyzer, VoiceFeatures

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "emotion" / "ravdess_dev"
)
TRUE_CLASSES = ("neutral", "happy", "sad", "angry")


def phone_line(x: np.ndarray) -> np.ndarray:
    """16 kHz -> 8 kHz mu-law -> 16 kHz, as a call would arrive."""
    from scipy.signal import resample_poly

    narrow = resample_poly(x, 1, 2).astype(np.float32)
    coded = int16_to_float(ulaw_to_pcm16(pcm16_to_ulaw(float_to_int16(narrow))))
    return to_16k(coded, 8000)


def speech_only(x: np.ndarray) -> np.ndarray:
    segs = detect_segments(x)
    if not segs:
        return x
    return x[int(segs[0].t * 16000) : int(segs[-1].t_end * 16000)]


def balanced_accuracy(truth: np.ndarray, pred: np.ndarray) -> float:
    return float((np.mean(pred[truth]) + np.mean(~pred[~truth])) / 2)


def score(
    rows: list[dict[str, str]],
    feats: list[VoiceFeatures | None],
    order: list[int],
    prior: list[int],
) -> dict[int, str]:
    """Label the clips in ``order`` with one tracker, after a baseline of ``prior`` clips."""
    tracker = EmotionTracker()
    for i in prior:
        tracker.observe_voice("s", feats[i])
    out: dict[int, str] = {}
    for i in order:
        f = feats[i]
        d = f.duration_s if f else 1.0
        r = tracker.observe("s", 0.0, d, rows[i]["transcript"], "en", f)
        out[i] = r.label
    return out


def report(name: str, rows: list[dict[str, str]], labels: dict[int, str]) -> None:
    idx = sorted(labels)
    truth = np.array([rows[i]["emotion"] == "angry" for i in idx])
    pred = np.array([labels[i] == "angry" for i in idx])
    print(f"# {name}: rows = true class, columns = predicted label")
    print("#            " + " ".join(f"{p:>10}" for p in LABELS))
    for c in TRUE_CLASSES:
        counts = [sum(1 for i in idx if rows[i]["emotion"] == c and labels[i] == p) for p in LABELS]
        print(f"# {c:>10} " + " ".join(f"{n:>10}" for n in counts))
    print(f"{name}_angry_recall: {np.mean(pred[truth]):.3f}")
    print(f"{name}_not_angry_specificity: {np.mean(~pred[~truth]):.3f}")
    print(f"{name}_balanced_accuracy: {balanced_accuracy(truth, pred):.3f}")


def calm_rates(specs: list[str], analyzer: VoiceAnalyzer) -> tuple[int, int, int, int]:
    """(utterances, with a voice reading, labelled angry, speakers escalated) over calm
    recordings, voice only."""
    n = voiced = angry = escalated = 0
    for spec in specs:
        agent, _, customer = spec.partition("+")
        audio = read_call(agent, customer or None)
        for ch in audio.channels:
            tracker = EmotionTracker()
            went_up = False
            for seg in detect_segments(ch.samples):
                x = ch.samples[int(seg.t * 16000) : int(seg.t_end * 16000)]
                f = analyzer.analyze(x)
                r = tracker.observe(ch.role, seg.t, seg.t_end, "", "en", f)
                n += 1
                voiced += tracker.usable(f)
                angry += r.label == "angry"
                went_up |= r.escalated
            escalated += went_up
    return n, voiced, angry, escalated


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--phone", action="store_true", help="simulate an 8 kHz mu-law phone line")
    ap.add_argument("--orders", type=int, default=20, help="random call orders per speaker")
    ap.add_argument(
        "--calm", nargs="*", default=[], metavar="FILE", help="calm call recordings (A.wav+B.wav)"
    )
    args = ap.parse_args()
    with (args.data / "labels.tsv").open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows:
        raise SystemExit(f"no rows in {args.data / 'labels.tsv'}")
    analyzer = VoiceAnalyzer()
    feats: list[VoiceFeatures | None] = []
    audio_s = 0.0
    t_feat = 0.0
    for r in rows:
        x = read_call(args.data / r["file"]).channels[0].samples
        if args.phone:
            x = phone_line(x)
        x = speech_only(x)
        audio_s += x.size / 16000
        t0 = time.perf_counter()
        feats.append(analyzer.analyze(x))
        t_feat += time.perf_counter() - t0

    speakers: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        speakers.setdefault(r["actor"], []).append(i)

    settled: dict[int, str] = {}
    for members in speakers.values():
        for i in members:
            settled.update(score(rows, feats, [i], [j for j in members if j != i]))

    rng = np.random.default_rng(0)
    bas = []
    last: dict[int, str] = {}
    for _ in range(args.orders):
        labels: dict[int, str] = {}
        for members in speakers.values():
            order = list(rng.permutation(members))
            labels.update(score(rows, feats, order, []))
        idx = sorted(labels)
        truth = np.array([rows[i]["emotion"] == "angry" for i in idx])
        pred = np.array([labels[i] == "angry" for i in idx])
        bas.append(balanced_accuracy(truth, pred))
        last = labels

    print(
        f"# {len(rows)} clips, {len(speakers)} speakers, {audio_s:.1f} s speech, "
        f"{'8 kHz mu-law phone line' if args.phone else '16 kHz'}, "
        f"{platform.processor() or platform.machine()}"
    )
    report("settled", rows, settled)
    report("call_order_last", rows, last)
    print(f"call_order_balanced_accuracy_mean: {np.mean(bas):.3f}")
    print(f"call_order_balanced_accuracy_min: {np.min(bas):.3f}")
    print(f"voice_features_s_per_audio_s: {t_feat / audio_s:.4f}")
    if args.calm:
        n, voiced, angry, escalated = calm_rates(args.calm, analyzer)
        print(f"# calm calls: {', '.join(args.calm)}")
        print(f"calm_utterances: {n}")
        print(f"calm_utterances_with_voice_reading: {voiced}")
        print(f"calm_angry_label_rate: {angry / max(voiced, 1):.3f}")
        print(f"calm_speakers_escalated: {escalated}")


if __name__ == "__main__":
    main()
