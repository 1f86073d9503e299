#!/usr/bin/env python3
"""Generate synthetic contact-center demo calls for callwatch.

Reads the dialogue in ``demo/scripts.yaml`` and, for every call in it, writes

* ``<out>/<name>.wav``: stereo, 8 kHz, G.711 mu-law (soundfile subtype ULAW),
  left channel = agent, right channel = customer;
* ``<out>/<name>.timeline.json``: ground truth for tests (turn times, texts and
  the named "marks" the QA tests check).

Each turn is synthesised with festival (or espeak-ng), resampled to 8 kHz, trimmed of the
silence espeak adds (about 50 ms is kept on each side) and placed on its
channel on a running timeline. ``pause_before_s`` is the silence between the
end of the previous turn's speech (whichever speaker) and the start of this
turn's speech; it may be negative for a slight overlap. Each channel is
peak-normalised to about -3 dBFS and very low Gaussian noise (-60 dBFS RMS,
fixed seed) is added so silence is not digital zero.

The output is deterministic for given synthesiser versions and seed. Festival's voices are
the default because tiny.en recognises them well through 8 kHz µ-law; espeak-ng's voices
lost key phrases ("date of birth", "calm down") at 18-25 % WER in our tests.

Usage::

    python scripts/make_demo_calls.py [--out demo/calls] [--scripts demo/scripts.yaml]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml
from scipy.signal import resample_poly

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCRIPTS = REPO_ROOT / "demo" / "scripts.yaml"
DEFAULT_OUT = REPO_ROOT / "demo" / "calls"

SAMPLE_RATE = 8000
CHANNELS = ("agent", "customer")  # channel 0 = left = agent, 1 = right = customer
PEAK_DBFS = -3.0
NOISE_DBFS = -60.0
DEFAULT_SEED = 20240611
TRIM_KEEP_S = 0.05  # silence kept before/after the speech of each turn
TRIM_THRESHOLD_DB = -40.0  # relative to the clip's own peak
TAIL_S = 1.0  # silence after the last turn
MIN_DURATION_S = 60.0
MAX_DURATION_S = 120.0


class GenerationError(RuntimeError):
    pass


FESTIVAL_NATURAL_WPM = 210.0  # festival's voices speak about this fast (incl. short pauses)


def find_tools() -> dict[str, str]:
    """The synthesisers this script can drive; festival is preferred (see demo/scripts.yaml)."""
    tools = {name: shutil.which(name) for name in ("text2wave", "espeak-ng", "sox")}
    return {k: v for k, v in tools.items() if v}


def require(tools: dict[str, str], name: str, package: str) -> str:
    if name not in tools:
        raise GenerationError(
            f"{name} was not found on PATH. It is needed to synthesise the demo calls; "
            f"install it with e.g. `sudo apt-get install -y {package}` and re-run."
        )
    return tools[name]


def tool_versions(tools: dict[str, str]) -> dict[str, str]:
    out = {}
    if "espeak-ng" in tools:
        text = subprocess.run(
            [tools["espeak-ng"], "--version"], capture_output=True, text=True
        ).stdout
        out["espeak_ng"] = text.split("Data at")[0].strip()
    if "text2wave" in tools:
        text = subprocess.run(["festival", "--version"], capture_output=True, text=True).stdout
        out["festival"] = text.strip()
    return out


def synthesize(
    tools: dict[str, str], text: str, voice: str, wpm: int, pitch: int | None, workdir: Path
) -> np.ndarray:
    """Synthesise one turn; return mono float audio at SAMPLE_RATE, trimmed.

    ``voice`` is ``festival:<voice>`` (e.g. festival:cmu_us_slt_arctic_hts) or an espeak-ng
    voice name (optionally ``espeak:<voice>``).
    """
    txt = workdir / "turn.txt"
    wav = workdir / "turn.wav"
    txt.write_text(text + "\n", encoding="utf-8")
    engine, _, name = voice.partition(":") if ":" in voice else ("espeak", "", voice)
    if engine == "festival":
        exe = require(tools, "text2wave", "festival festvox-us-slt-hts festvox-kallpc16k")
        cmd = [exe, "-eval", f"(voice_{name})", str(txt), "-o", str(wav)]
    elif engine == "espeak":
        exe = require(tools, "espeak-ng", "espeak-ng")
        cmd = [exe, "-v", name, "-s", str(int(wpm))]
        if pitch is not None:
            cmd += ["-p", str(int(pitch))]
        cmd += ["-w", str(wav), "-f", str(txt)]
    else:
        raise GenerationError(f"unknown synthesiser {engine!r} in voice {voice!r}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not wav.exists():
        raise GenerationError(f"{engine} failed ({' '.join(cmd)}): {proc.stderr.strip()}")
    if engine == "festival" and abs(wpm / FESTIVAL_NATURAL_WPM - 1.0) > 0.03:
        # festival's HTS voices ignore Duration_Stretch: change the tempo, keep the pitch
        sox = require(tools, "sox", "sox")
        fast = workdir / "turn_tempo.wav"
        tempo = f"{wpm / FESTIVAL_NATURAL_WPM:.3f}"
        # -R -D: repeatable and no dither, so the output is byte-identical run to run
        cmd = [sox, "-R", "-D", str(wav), str(fast), "tempo", "-s", tempo]
        subprocess.run(cmd, check=True, capture_output=True)
        wav.unlink()
        wav = fast
    audio, sr = sf.read(str(wav), dtype="float64", always_2d=True)
    wav.unlink()
    audio = audio.mean(axis=1)
    if sr != SAMPLE_RATE:
        ratio = Fraction(SAMPLE_RATE, sr)
        audio = resample_poly(audio, ratio.numerator, ratio.denominator)
    return trim(audio)


def trim(audio: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak <= 0:
        raise GenerationError("espeak-ng produced silent audio")
    thr = peak * 10 ** (TRIM_THRESHOLD_DB / 20)
    idx = np.flatnonzero(np.abs(audio) > thr)
    speech = audio[idx[0] : idx[-1] + 1]
    pad = np.zeros(round(TRIM_KEEP_S * SAMPLE_RATE))
    return np.concatenate([pad, speech, pad])


def resolve_voice(defaults: dict, call: dict, turn: dict) -> tuple[str, int, int | None]:
    spk = turn["speaker"]
    base = dict(defaults.get(spk, {}))
    base.update((call.get("voices") or {}).get(spk, {}))
    voice = turn.get("voice", base.get("voice"))
    wpm = int(turn.get("words_per_minute") or base.get("words_per_minute") or 160)
    pitch = turn.get("pitch", base.get("pitch"))
    if not voice:
        raise GenerationError(f"no voice configured for speaker {spk!r}")
    return voice, wpm, pitch


def render_call(
    tools: dict[str, str], defaults: dict, call: dict, seed: int, workdir: Path
) -> tuple[np.ndarray, dict]:
    name = call["name"]
    pad = round(TRIM_KEEP_S * SAMPLE_RATE)
    placed = []  # (channel, start_sample, clip)
    turns_out = []
    marks: dict[str, float] = {}
    cursor = 0  # sample index where the previous turn's speech ended
    for i, turn in enumerate(call["turns"]):
        spk = turn.get("speaker")
        if spk not in CHANNELS:
            raise GenerationError(
                f"{name} turn {i}: speaker must be one of {CHANNELS}, got {spk!r}"
            )
        voice, wpm, pitch = resolve_voice(defaults, call, turn)
        # "say" is an optional respelling fed to espeak (pronunciation hint);
        # "text" is what is actually said and is the ground truth.
        clip = synthesize(tools, turn.get("say", turn["text"]), voice, wpm, pitch, workdir)
        speech_start = cursor + round(float(turn.get("pause_before_s", 0.8)) * SAMPLE_RATE)
        speech_start = max(speech_start, pad)
        speech_end = speech_start + len(clip) - 2 * pad
        placed.append((CHANNELS.index(spk), speech_start - pad, clip))
        t, t_end = speech_start / SAMPLE_RATE, speech_end / SAMPLE_RATE
        turns_out.append(
            {
                "speaker": spk,
                "t": round(t, 3),
                "t_end": round(t_end, 3),
                "text": turn["text"],
                "voice": voice,
                "words_per_minute": wpm,
                "pitch": pitch,
            }
        )
        turn_marks = dict(turn.get("marks") or {})
        if "mark" in turn:
            turn_marks[turn["mark"]] = "start"
        for mark, where in turn_marks.items():
            if where not in ("start", "end"):
                raise GenerationError(f"{name} turn {i}: mark {mark!r} must be 'start' or 'end'")
            if mark in marks:
                raise GenerationError(f"{name}: mark {mark!r} defined twice")
            marks[mark] = round(t if where == "start" else t_end, 3)
        cursor = max(cursor, speech_end)

    n = max(start + len(clip) for _, start, clip in placed) + int(TAIL_S * SAMPLE_RATE)
    audio = np.zeros((n, len(CHANNELS)))
    for ch, start, clip in placed:
        audio[start : start + len(clip), ch] += clip

    peak_target = 10 ** (PEAK_DBFS / 20)
    for ch in range(len(CHANNELS)):
        peak = np.max(np.abs(audio[:, ch]))
        if peak > 0:
            audio[:, ch] *= peak_target / peak
    rng = np.random.default_rng(seed)
    audio += rng.normal(0.0, 10 ** (NOISE_DBFS / 20), size=audio.shape)
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)

    timeline = {
        "call": name,
        "duration_s": round(n / SAMPLE_RATE, 3),
        "sample_rate": SAMPLE_RATE,
        "channels": list(CHANNELS),
        "turns": turns_out,
        "marks": marks,
    }
    return audio, timeline


def longest_silence(turns: list[dict], duration: float) -> tuple[float, float]:
    """Longest stretch (seconds, start) in which neither side speaks, incl. call start."""
    best, best_at, covered = 0.0, 0.0, 0.0
    for tr in sorted(turns, key=lambda x: x["t"]):
        if tr["t"] - covered > best:
            best, best_at = tr["t"] - covered, covered
        covered = max(covered, tr["t_end"])
    if duration - covered > best:
        best, best_at = duration - covered, covered
    return best, best_at


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output directory (default demo/calls)"
    )
    ap.add_argument(
        "--scripts",
        type=Path,
        default=DEFAULT_SCRIPTS,
        help="dialogue YAML (default demo/scripts.yaml)",
    )
    ap.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="noise seed (default %(default)s)"
    )
    ap.add_argument("--only", nargs="*", help="generate only these call names")
    args = ap.parse_args(argv)

    try:
        tools = find_tools()
        versions = tool_versions(tools)
        spec = yaml.safe_load(args.scripts.read_text(encoding="utf-8"))
        defaults = spec.get("defaults", {})
        calls = spec["calls"]
        if args.only:
            unknown = set(args.only) - {c["name"] for c in calls}
            if unknown:
                raise GenerationError(f"unknown call name(s): {', '.join(sorted(unknown))}")
            calls = [c for c in calls if c["name"] in args.only]
        args.out.mkdir(parents=True, exist_ok=True)
        print(f"using {versions}")
        with tempfile.TemporaryDirectory(prefix="make_demo_calls_") as tmp:
            for call in calls:
                # the seed follows the call's place in the script, so --only reproduces it
                k = [c["name"] for c in spec["calls"]].index(call["name"])
                audio, timeline = render_call(tools, defaults, call, args.seed + k, Path(tmp))
                dur = timeline["duration_s"]
                if not MIN_DURATION_S <= dur <= MAX_DURATION_S:
                    raise GenerationError(
                        f"{call['name']}: duration {dur:.1f} s is outside "
                        f"{MIN_DURATION_S:.0f}-{MAX_DURATION_S:.0f} s; adjust demo/scripts.yaml"
                    )
                timeline["generator"] = {**versions, "seed": args.seed + k}
                wav_path = args.out / f"{call['name']}.wav"
                json_path = args.out / f"{call['name']}.timeline.json"
                sf.write(str(wav_path), audio, SAMPLE_RATE, format="WAV", subtype="ULAW")
                json_path.write_text(json.dumps(timeline, indent=2) + "\n", encoding="utf-8")
                rms = np.sqrt(np.mean(audio.astype(np.float64) ** 2, axis=0))
                gap, gap_at = longest_silence(timeline["turns"], dur)
                print(
                    f"wrote {wav_path} ({dur:.1f} s, {len(timeline['turns'])} turns, "
                    f"RMS agent {20 * np.log10(rms[0]):.1f} dBFS / customer {20 * np.log10(rms[1]):.1f} dBFS, "
                    f"longest silence {gap:.1f} s at {gap_at:.1f} s)"
                )
                print(f"wrote {json_path} (marks: {timeline['marks']})")
    except GenerationError as exc:
        print(f"make_demo_calls: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
