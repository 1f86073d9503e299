"""ASR accuracy through the product's own path (VAD-cut clips, short-window Whisper).

English (the default): word error rate on the shared English recordings.

    python -m bench.accuracy [--model tiny.en|base|PATH] [--data ../shared/data]

Scored per item with lower-case, punctuation-stripped words; prints per-item and corpus WER.

Mandarin: character error rate (CER) on corpora laid out as a folder with the audio and a
``transcripts.tsv`` whose header names at least ``utt_id``, ``audio`` (path relative to the
folder) and ``text`` (../shared/data/asr_zh/aishell_dev has utt_id, audio, duration_s,
speaker, text; magicdata_cs_scene has domain, text_prosody and pinyin instead of speaker).

    python -m bench.accuracy --lang zh [--data DIR ...] [--model base] [--rate 16000|8000|both]
                             [--limit N] [--beam-size N] [--detect] [--clips vad|whole] [-v]

``--data`` may be given several times; a folder without a ``transcripts.tsv`` stands for each
of its sub-folders that has one (default: ../shared/data/asr_zh, i.e. both corpora).
``--limit N`` takes N utterances per corpus spread evenly over it. ``--prompt`` and
``--min-window`` override ``AsrConfig.prompts`` / ``min_window_s`` (for experiments).

Path: each utterance file is read at 16 kHz and cut by the product's VAD
(``audio.vad.detect_segments``, as the live and offline pipelines cut a channel; most files
give one clip, a pause of 0.4 s or more splits one), and the file's clips are transcribed in
one ``transcribe_batch`` with the language given as ``zh`` (``--detect``: language None,
identified per clip among en/zh as on a call whose language is not configured;
``--clips whole``: the whole file as one clip, no VAD). At ``--rate 8000`` the audio first goes
down the line a Twilio call goes through: 16 kHz -> 8 kHz (``audio.resample.StreamResampler``)
-> µ-law encode (``audio.codecs.pcm16_to_ulaw``) -> decode -> 16 kHz (``audio.resample.to_16k``).

CER normalisation (reference and hypothesis alike; ``char_units``): ``qa_rules.text.tokens``
(NFKC, traditional -> simplified, case folded, punctuation and spaces removed, Chinese number
words and digits made equal: 三千 = 3000, 幺三八 = 138, 二十 = 20), after a decimal point
between digits is read as 点, a range "70-90" as 七十到九十, a percentage "60%" as 百分之六十
and digits before 十百千万亿 in Chinese ("1.2万" = 一点二万, "150万" = 一百五十万). The tokens
are joined and compared character by character (a Latin word counts one unit per letter, a
number one per digit). CER = character edits / reference characters, over the corpus.
RTF = seconds spent in ``transcribe_batch`` / seconds of audio (int8, 1 thread by default).

Figures are printed last as ``name: value`` lines: per corpus and rate
(``aishell_dev.CER_16k: 0.150``; ``--detect`` adds ``zh_detected``, the share of utterances
whose every clip was identified as zh), then for all corpora together (``CER_16k``,
``CER_8k``, ``RTF_16k``, ``RTF_8k``).
"""

from __future__ import annotations

import argparse
import csv
import platform
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rapidfuzz.distance import Levenshtein

from audio import SAMPLE_RATE
from audio.codecs import Float32Array, decode, float_to_int16, pcm16_to_ulaw
from audio.reader import read_call
from audio.resample import StreamResampler, to_16k
from audio.vad import detect_segments
from bench.metrics import corpus_wer, wer
from models.asr import AsrConfig, WhisperAsr
from qa_rules.text import tokens

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_DATA = SHARED
DEFAULT_ZH = SHARED / "asr_zh"
PHONE_RATE = 8000


# ---------------------------------------------------------------------------------------
# English
# ---------------------------------------------------------------------------------------
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


def vad_clips(samples: Float32Array) -> list[tuple[Float32Array, float]]:
    """The clips the pipeline would hand to ASR: one per VAD segment, with its offset."""
    return [
        (samples[int(s.t * SAMPLE_RATE) : int(s.t_end * SAMPLE_RATE)], s.t)
        for s in detect_segments(samples)
    ]


def run_english(args: argparse.Namespace) -> None:
    data = args.data[0] if args.data else DEFAULT_DATA
    beam = 1 if args.beam_size is None else args.beam_size
    asr = WhisperAsr(AsrConfig(model=args.model or "tiny.en", beam_size=beam, threads=args.threads))
    pairs = []
    audio_s = 0.0
    t0 = time.perf_counter()
    for name, path, ch, ref in items(data):
        samples = read_call(path).channels[ch].samples
        audio_s += samples.size / SAMPLE_RATE
        hyp = " ".join(t.text for t in asr.transcribe_batch(vad_clips(samples)))
        pairs.append((ref, hyp))
        print(f"{name}: WER {wer(ref, hyp):.3f} | {hyp[:90]}")
    wall = time.perf_counter() - t0
    print(
        f"# model {asr.model_id}, beam {beam}, {audio_s:.1f} s audio in {wall:.1f} s, "
        f"{platform.machine()}, {args.threads} thread(s)"
    )
    print(f"WER: {corpus_wer(pairs):.3f}")


# ---------------------------------------------------------------------------------------
# Mandarin
# ---------------------------------------------------------------------------------------
_ZH_DIGITS = "零一二三四五六七八九"
# Digits a Chinese unit character multiplies ("1.2万", "150万", "3千"), and percentages.
_SCALED = re.compile(r"([0-9]+)(?:\.([0-9]+))?(?=[十百千万亿])|([0-9]+)(?:\.([0-9]+))?[%％]")
_DECIMAL = re.compile(r"(?<=[0-9])\.(?=[0-9])")
_RANGE = re.compile(r"(?<![0-9])([0-9]{1,3})\s*[-~～–—]\s*([0-9]{1,3})(?![0-9])")


def zh_number(n: int) -> str:
    """0 <= n < 10**8 read in Chinese (150 -> 一百五十, 12 -> 十二, 3005 -> 三千零五)."""
    if n >= 10**4:
        high, low = divmod(n, 10**4)
        rest = zh_number(low) if low else ""
        return zh_number(high) + "万" + ("零" + rest if 0 < low < 1000 else rest)
    if n == 0:
        return "零"
    out = ""
    zero = False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d, n = divmod(n, value)
        if d:
            if zero:
                out += "零"
            out += ("" if d == 1 and unit == "十" and not out else _ZH_DIGITS[d]) + unit
            zero = False
        elif out:
            zero = True
    return out


def _read_scaled(m: re.Match[str]) -> str:
    whole, frac = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    said = zh_number(int(whole)) if len(whole) <= 8 else whole
    if frac:
        said += "点" + "".join(_ZH_DIGITS[int(c)] for c in frac)
    return said if m.group(1) else "百分之" + said


def char_units(text: str) -> str:
    """Text as compared for CER (module docstring): normalised tokens, joined."""
    text = _RANGE.sub(r"\1到\2", text)
    text = _DECIMAL.sub("点", _SCALED.sub(_read_scaled, text))
    return "".join(tokens(text))


def char_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(character edits, reference characters) after ``char_units`` on both sides."""
    r = char_units(ref)
    return Levenshtein.distance(r, char_units(hyp)), len(r)


def cer(pairs: Sequence[tuple[str, str]]) -> float:
    """Corpus character error rate of (reference, hypothesis) pairs."""
    edits = chars = 0
    for ref, hyp in pairs:
        e, n = char_errors(ref, hyp)
        edits += e
        chars += n
    return edits / max(1, chars)


@dataclass(frozen=True)
class Utt:
    utt_id: str
    audio: Path
    duration_s: float
    text: str


def read_corpus(folder: Path, limit: int | None = None) -> list[Utt]:
    """Rows of ``folder/transcripts.tsv``; with ``limit``, that many spread evenly over the
    file (the corpora are sorted by domain or speaker, so the first N would be one kind)."""
    with (folder / "transcripts.tsv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    missing = {"utt_id", "audio", "text"} - set(rows[0] if rows else {})
    if missing:
        raise SystemExit(f"{folder}/transcripts.tsv lacks column(s) {', '.join(sorted(missing))}")
    utts = [
        Utt(r["utt_id"], folder / r["audio"], float(r.get("duration_s") or 0.0), r["text"])
        for r in rows
    ]
    if limit is not None and limit < len(utts):
        utts = [utts[i * len(utts) // limit] for i in range(limit)]
    return utts


def corpora(dirs: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for d in dirs:
        if (d / "transcripts.tsv").is_file():
            out.append(d)
        else:
            subs = sorted(p.parent for p in d.glob("*/transcripts.tsv"))
            if not subs:
                raise SystemExit(f"{d}: no transcripts.tsv in it or its sub-folders")
            out.extend(subs)
    return out


def phone_line(samples: Float32Array) -> Float32Array:
    """16 kHz audio as it arrives from a Twilio call: 8 kHz µ-law, back to 16 kHz."""
    down = StreamResampler(SAMPLE_RATE, PHONE_RATE)
    narrow = np.concatenate([down.process(samples), down.flush()])
    ulaw = pcm16_to_ulaw(float_to_int16(narrow))
    return to_16k(decode(ulaw, "mulaw"), PHONE_RATE)


def rate_tag(rate: int) -> str:
    return f"{rate // 1000}k"


def run_mandarin(args: argparse.Namespace) -> None:
    rates = {"16000": [16000], "8000": [8000], "both": [16000, 8000]}[args.rate]
    language = None if args.detect else "zh"
    cfg = AsrConfig(
        model=args.model or "base",
        language=language,
        detect_languages=("en", "zh"),
        threads=args.threads,
        min_window_s=args.min_window,
    )
    if args.beam_size is not None:
        cfg = replace(cfg, beam_size=args.beam_size, language_beam_sizes=())
    if args.prompt is not None:
        cfg = replace(cfg, prompts=(("zh", args.prompt),) if args.prompt else ())
    asr = WhisperAsr(cfg)
    figures: list[tuple[str, str]] = []
    totals: dict[int, list[tuple[str, str]]] = {r: [] for r in rates}
    total_audio = 0.0
    total_asr = {r: 0.0 for r in rates}
    for folder in corpora(args.data or [DEFAULT_ZH]):
        name = folder.name
        utts = read_corpus(folder, args.limit)
        audio_s = 0.0
        for rate in rates:
            pairs: list[tuple[str, str]] = []
            asr_s = 0.0
            audio_s = 0.0
            detected = 0
            for u in utts:
                samples = read_call(u.audio).channels[0].samples
                if rate == PHONE_RATE:
                    samples = phone_line(samples)
                audio_s += samples.size / SAMPLE_RATE
                clips = vad_clips(samples) if args.clips == "vad" else [(samples, 0.0)]
                t0 = time.perf_counter()
                trs = asr.transcribe_batch(clips)
                asr_s += time.perf_counter() - t0
                hyp = "".join(t.text for t in trs)
                detected += bool(trs) and all(t.language == "zh" for t in trs)
                pairs.append((u.text, hyp))
                if args.verbose:
                    e, n = char_errors(u.text, hyp)
                    langs = ",".join(f"{t.language}:{t.language_prob:.2f}" for t in trs)
                    print(f"{name}/{u.utt_id} {rate_tag(rate)}: {e}/{n} [{langs}] | {hyp}")
            tag = rate_tag(rate)
            figures.append((f"{name}.CER_{tag}", f"{cer(pairs):.3f}"))
            figures.append((f"{name}.RTF_{tag}", f"{asr_s / max(audio_s, 1e-9):.3f}"))
            if args.detect:
                figures.append((f"{name}.zh_detected_{tag}", f"{detected / len(utts):.3f}"))
            totals[rate].extend(pairs)
            total_asr[rate] += asr_s
            print(
                f"# {name} {tag}: {len(utts)} utterances, {audio_s:.1f} s audio, ASR {asr_s:.1f} s"
            )
        total_audio += audio_s
    print(
        f"# model {asr.model_id}, language {language or 'detected (en/zh)'}, "
        f"beam {asr.beam_size('zh')}, int8, {cfg.threads} thread(s), window >= {cfg.min_window_s} s, "
        f"prompt {dict(cfg.prompts).get('zh', '')!r}, {args.clips} clips, {platform.machine()}; "
        "CER after: punctuation and spaces removed, traditional -> simplified, "
        "number words = digits, case folded"
    )
    for key, value in figures:
        print(f"{key}: {value}")
    for rate in rates:
        tag = rate_tag(rate)
        print(f"CER_{tag}: {cer(totals[rate]):.3f}")
        print(f"RTF_{tag}: {total_asr[rate] / max(total_audio, 1e-9):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--lang", choices=("en", "zh"), default="en")
    ap.add_argument("--data", type=Path, action="append", help="repeatable for --lang zh")
    ap.add_argument("--model", default=None, help="tiny.en (en default), base (zh default), PATH")
    ap.add_argument(
        "--beam-size", type=int, default=None, help="default: the product's (en 1, zh 5)"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rate", choices=("16000", "8000", "both"), default="both")
    ap.add_argument("--limit", type=int, default=None, help="utterances per corpus (zh)")
    ap.add_argument("--prompt", default=None, help="zh: initial prompt ('' for none)")
    ap.add_argument("--min-window", type=float, default=AsrConfig.min_window_s)
    ap.add_argument(
        "--clips", choices=("vad", "whole"), default="vad", help="zh: VAD-cut or whole files"
    )
    ap.add_argument("--detect", action="store_true", help="zh: identify the language per clip")
    ap.add_argument("-v", "--verbose", action="store_true", help="zh: one line per utterance")
    args = ap.parse_args()
    if args.lang == "zh":
        run_mandarin(args)
    else:
        run_english(args)


if __name__ == "__main__":
    main()
