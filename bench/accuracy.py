"""ASR word error rate on the shared English recordings, through the product's own path
(VAD-cut clips, short-window Whisper).

    python -m bench.accuracy [--model tiny.en|base|PATH] [--data ../shared/data]

Scored per item with lower-case, punctuation-stripped words; prints per-item and corpus WER.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from audio import SAMPLE_RATE
from audio.reader import read_call
from audio.vad import detect_segments
from bench.metrics import corpus_wer, wer
from models.asr import AsrConfig, WhisperAsr

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def items(data: Path) -> list[tuple[str, Path, int, str]]:
    """(name, audio, channel index, reference text)."""
    out = [
        ("jfk", data / "asr/jfk/jfk.flac", 0, (data / "asr/jfk/jfk.ref.txt").read_text()),
        (
            "osr_8k",
            data / "asr/osr_us_000_0034_8k/OSR_us_000_0034_8k.wav",
            0,
            (data / "asr/osr_us_000_0034_8k/OSR_us_000_0034_8k.ref.txt").read_text(),
        ),
    ]
    st = data / "stereo/fw_stereo_diarization"
    out.append(("stereo_left", st / "stereo_diarization.wav", 0, (st / "left.ref.txt").read_text()))
    out.append(
        ("stereo_right", st / "stereo_diarization.wav", 1, (st / "right.ref.txt").read_text())
    )
    stm = data / "diarization/pyannote_sample/sample.stm"
    if stm.exists():
        # STM columns: file channel speaker start end text
        ref = " ".join(
            line.split(None, 5)[5]
            for line in stm.read_text().splitlines()
            if line.strip() and not line.startswith(";;") and len(line.split(None, 5)) == 6
        )
        out.append(("pyannote_phone", data / "diarization/pyannote_sample/sample.wav", 0, ref))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--beam-size", type=int, default=1)
    args = ap.parse_args()
    asr = WhisperAsr(AsrConfig(model=args.model, beam_size=args.beam_size))
    pairs = []
    audio_s = 0.0
    t0 = time.perf_counter()
    for name, path, ch, ref in items(args.data):
        samples = read_call(path).channels[ch].samples
        audio_s += samples.size / SAMPLE_RATE
        clips = [
            (samples[int(s.t * SAMPLE_RATE) : int(s.t_end * SAMPLE_RATE)], s.t)
            for s in detect_segments(samples)
        ]
        hyp = " ".join(t.text for t in asr.transcribe_batch(clips))
        pairs.append((ref, hyp))
        print(f"{name}: WER {wer(ref, hyp):.3f} | {hyp[:90]}")
    wall = time.perf_counter() - t0
    print(
        f"# model {asr.model_id}, beam {args.beam_size}, {audio_s:.1f} s audio in {wall:.1f} s, "
        f"{platform.machine()}, 1 thread"
    )
    print(f"WER: {corpus_wer(pairs):.3f}")


if __name__ == "__main__":
    main()
