"""Diarization error rate and cost of the diarization backends.

    python -m bench.diarization [--data ../shared/data] [--backend embedding] [--threads 1]

* ``diarization/pyannote_sample``: a 30 s two-speaker telephone call (sample.rttm);
* ``diarization/ami_dev``: twelve 30 s AMI meeting clips, 1-4 speakers (debug.*.rttm + .uem);
* ``stereo/aws_lca_auto_repairs_40``: a 4 min two-channel call. The channel backend's turns
  (one VAD per channel) are the reference, and the embedding backend diarizes the mono mix,
  which is what a compliance team gets from a mono recorder.

DER is pyannote.metrics' with a 0.25 s collar, overlapped speech scored; missed speech, false
alarm and speaker confusion are printed separately. Cost is CPU seconds per audio second with
torch limited to ``--threads`` threads (the encoder is the only multi-threaded part).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from audio.reader import read_call
from bench.der import DerParts, read_rttm, read_uem, score, to_annotation, whole
from models.diarize import Diarization, make_diarizer
from models.diarize.channel import ChannelDiarizer
from models.diarize.encoder import shared_encoder

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _run(diarizer_name: str, samples: np.ndarray) -> tuple[Diarization, float]:
    diarizer = make_diarizer(diarizer_name)
    t0 = time.process_time()
    result = diarizer.diarize(samples)
    return result, time.process_time() - t0


def _line(name: str, parts: DerParts, extra: str = "") -> str:
    r = parts.rates()
    return (
        f"{name:<22} DER {r['der']:6.1%}  missed {r['missed']:5.1%}  "
        f"false alarm {r['false_alarm']:5.1%}  confusion {r['confusion']:5.1%}  {extra}"
    )


def online_accuracy(agent: np.ndarray, customer: np.ndarray) -> tuple[float, float, int]:
    """Replay the mono mix utterance by utterance through the online diarizer.

    Returns (share of utterance speech given the right role, CPU ms per audio second,
    utterances). The truth of an utterance is the channel with more energy over it.
    """
    from audio.vad import detect_segments
    from models.diarize.online import OnlineDiarizer

    n = min(len(agent), len(customer))
    mono = (agent[:n] + customer[:n]) / 2
    online = OnlineDiarizer()
    right = total = 0.0
    cpu = 0.0
    segments = detect_segments(mono)
    for seg in segments:
        a, b = int(seg.t * 16000), int(seg.t_end * 16000)
        t0 = time.process_time()
        role = online.assign(mono[a:b])
        cpu += time.process_time() - t0
        truth = "agent" if np.sum(agent[a:b] ** 2) > np.sum(customer[a:b] ** 2) else "customer"
        total += seg.duration
        right += seg.duration * (role == truth)
    return right / max(total, 1e-9), cpu / (n / 16000) * 1000, len(segments)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--backend", default="embedding")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--verbose", action="store_true", help="per-file lines for the meetings")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shared_encoder()  # load outside the timed part
    print(
        f"# python -m bench.diarization --backend {args.backend} --threads {args.threads}  "
        f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"
    )
    audio_s = cpu_s = 0.0

    sample_dir = args.data / "diarization" / "pyannote_sample"
    ref = read_rttm(sample_dir / "sample.rttm")["sample"]
    samples = read_call(sample_dir / "sample.wav").channels[0].samples
    hyp, cost = _run(args.backend, samples)
    audio_s += len(samples) / 16000
    cpu_s += cost
    parts = score(ref, to_annotation(hyp, "sample"), whole(samples))
    print(_line("telephone (sample)", parts, f"speakers {len(hyp.speakers)}/2"))

    ami = args.data / "diarization" / "ami_dev"
    refs = read_rttm(ami / "debug.development.rttm") | read_rttm(ami / "debug.train.rttm")
    uems = read_uem(ami / "debug.development.uem") | read_uem(ami / "debug.train.uem")
    total = DerParts()
    count_ok = 0
    for uri in sorted(refs):
        samples = read_call(ami / f"{uri}.wav").channels[0].samples
        hyp, cost = _run(args.backend, samples)
        audio_s += len(samples) / 16000
        cpu_s += cost
        parts = score(refs[uri], to_annotation(hyp, uri), uems.get(uri))
        total.add(parts)
        n_ref = len(refs[uri].labels())
        count_ok += len(hyp.speakers) == n_ref
        if args.verbose:
            print("  " + _line(uri, parts, f"speakers {len(hyp.speakers)}/{n_ref}"))
    print(
        _line(f"meetings ({len(refs)} clips)", total, f"speaker count right {count_ok}/{len(refs)}")
    )

    call = args.data / "stereo" / "aws_lca_auto_repairs_40"
    if call.is_dir():
        audio = read_call(call / "agent.wav", customer_path=call / "caller.wav")
        t0 = time.process_time()
        channel_ref = ChannelDiarizer().diarize_channels(
            {ch.role: ch.samples for ch in audio.channels}
        )
        channel_cost = time.process_time() - t0
        n = min(len(ch.samples) for ch in audio.channels)
        mono = (audio.channels[0].samples[:n] + audio.channels[1].samples[:n]) / 2
        hyp, cost = _run(args.backend, mono)
        parts = score(to_annotation(channel_ref, "call"), to_annotation(hyp, "call"), whole(mono))
        print(
            _line(
                f"call mono mix ({n / 16000 / 60:.0f} min)",
                parts,
                f"speakers {len(hyp.speakers)}/2",
            )
            + f" vs channel turns; channel backend {channel_cost / (n / 16000) * 1000:.1f} ms/audio s"
        )
        audio_s += n / 16000
        cpu_s += cost
        acc, ms, n_utt = online_accuracy(audio.channels[0].samples, audio.channels[1].samples)
        print(
            f"online (live mono)     {acc:6.1%} of utterance speech given the right role "
            f"({n_utt} utterances, roles by order of speaking), {ms:.1f} ms/audio s"
        )
    print(
        f"cost: {cpu_s / audio_s * 1000:.1f} ms CPU per audio second "
        f"= {audio_s / cpu_s:.0f}x real time ({audio_s:.0f} s of audio)"
    )


if __name__ == "__main__":
    main()
