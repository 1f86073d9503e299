"""Rule hits on a Mandarin demo call: are the alerts on real Mandarin speech the right ones?

    python -m bench.zh_demo [--data ../shared/data] [--lines 30] [--phrases 12] [--seed 7]
                            [--rate 16000|8000|both]

The call is assembled from real recordings (nothing of them is kept): the agent reads Magic
Data customer-service lines, the caller AISHELL prompts, turn by turn on two channels. The
rules are the built-in Mandarin pack plus phrase rules made from the script: for ``--phrases``
agent lines, a four-character phrase found in that line's reference text and in no other line
of either corpus (it must fire there), and as many decoys taken from lines that are not in
the call (they must never fire); both are written in traditional characters half of the time.

The reference is the same pipeline with a perfect transcript (each line's reference text, its
characters spread over its time): what the rules would say if ASR made no error. An alert on
the recognised call is a hit when the reference has the same rule firing within 1 s; precision
= hits / alerts, recall = hits / reference alerts. At 8000 Hz the call goes through the phone
line first (8 kHz, µ-law, back to 16 kHz) as a Twilio call would.
"""

from __future__ import annotations

import argparse
import csv
import platform
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from assist.audit import AuditOptions, audit_file
from assist.language import LanguageModels
from audio import SAMPLE_RATE
from audio.codecs import Float32Array
from bench.accuracy import phone_line
from models.asr import AsrConfig, Transcript, WhisperAsr, Word
from qa_rules.loader import load_packs
from qa_rules.schema import PhraseRule, RulePack
from qa_rules.text import is_cjk, to_simplified

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GAP_S = 1.2
LEAD_S = 0.6
MATCH_S = 1.0
_NUMBER_CHARS = frozenset("零〇一二三四五六七八九十百千万亿两幺")


@dataclass(frozen=True)
class Line:
    speaker: str
    utt_id: str
    t: float
    t_end: float
    text: str


def corpus(data: Path, name: str) -> dict[str, tuple[Path, str]]:
    """utt_id -> (audio path, reference text) of one ``asr_zh`` folder."""
    folder = data / "asr_zh" / name
    with (folder / "transcripts.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {r["utt_id"]: (folder / r["audio"], r["text"]) for r in rows}


def build_call(script: Sequence[tuple[str, Path, str, str]], out: Path) -> list[Line]:
    """Write a stereo 16 kHz WAV (agent left, caller right) of ``(speaker, audio, utt_id,
    text)`` turns; returns who said what when."""
    lines: list[Line] = []
    clips: list[np.ndarray] = []
    t = LEAD_S
    for speaker, path, utt, text in script:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        if rate != SAMPLE_RATE:
            raise ValueError(f"{path}: {rate} Hz, expected {SAMPLE_RATE}")
        mono = audio[:, 0]
        lines.append(Line(speaker, utt, round(t, 3), round(t + mono.size / SAMPLE_RATE, 3), text))
        clips.append(mono)
        t += mono.size / SAMPLE_RATE + GAP_S
    stereo = np.zeros((int((t + 1.0) * SAMPLE_RATE), 2), dtype=np.float32)
    for line, mono in zip(lines, clips, strict=True):
        start = int(line.t * SAMPLE_RATE)
        stereo[start : start + mono.size, 0 if line.speaker == "agent" else 1] = mono
    sf.write(out, stereo, SAMPLE_RATE, subtype="PCM_16")
    return lines


class ReferenceAsr:
    """A perfect "ASR": each clip gets the reference text of the line whose middle it holds,
    its characters spread evenly over the line (the reference run of the benchmark)."""

    def __init__(self, lines: list[Line], model: WhisperAsr) -> None:
        self.lines = lines
        self.config = AsrConfig(model="reference", language="zh")
        self.multilingual = True
        self.model_id = "reference"
        self._pad = model.config.pad_s

    def transcribe_batch(
        self, clips: Sequence[tuple[Float32Array, float]], language: str | None = None
    ) -> list[Transcript]:
        out = []
        for audio, offset in clips:
            end = offset + audio.size / SAMPLE_RATE
            line = next((x for x in self.lines if offset <= (x.t + x.t_end) / 2 < end), None)
            if line is None:
                out.append(Transcript("", (), offset, end, "zh"))
                continue
            text = to_simplified(line.text)
            chars = [c for c in text if not c.isspace()]
            step = (line.t_end - line.t) / max(1, len(chars))
            words = tuple(
                Word(c, round(line.t + i * step, 3), round(line.t + (i + 1) * step, 3), 1.0)
                for i, c in enumerate(chars)
            )
            out.append(Transcript(text, words, line.t, line.t_end, "zh"))
        return out


def _phrase_in(text: str, rng: random.Random, avoid: Sequence[str]) -> str | None:
    """A four-Han-character phrase of ``text`` none of whose three-character parts is in
    ``avoid`` (the matcher forgives one character in four: a decoy must not be that close)."""
    han = "".join(c for c in to_simplified(text) if is_cjk(c))
    others = "\n".join(to_simplified(a) for a in avoid)
    starts = list(range(0, max(0, len(han) - 3)))
    rng.shuffle(starts)
    for i in starts:
        p = han[i : i + 4]
        if any(c in _NUMBER_CHARS for c in p):
            continue  # numbers are matched as digits: "七十到九" is not a phrase of "七十到九十"
        if not any(x in others for x in (p[:3], p[1:], p[0] + p[1] + p[3], p[0] + p[2:])):
            return p
    return None


def _traditional(phrase: str) -> str:
    """The phrase in traditional characters where OpenCC's table has them."""
    from qa_rules.text import _ts_table

    back: dict[str, str] = {}
    for trad, simp in _ts_table().items():
        back.setdefault(simp, chr(trad))
    return "".join(back.get(c, c) for c in phrase)


def script_rules(
    lines: list[Line], outside: list[str], n: int, rng: random.Random
) -> tuple[RulePack, dict[str, str]]:
    """Phrase rules from the script: ``expect[rule_id]`` is the utt_id it must fire on
    ("" for a decoy that must never fire)."""
    agent = [x for x in lines if x.speaker == "agent"]
    in_call = [x.text for x in lines]
    rules: list[Any] = []
    expect: dict[str, str] = {}
    for line in rng.sample(agent, min(n, len(agent))):
        others = [t for t in [*in_call, *outside] if t != line.text]
        p = _phrase_in(line.text, rng, others)
        if p is None:
            continue
        rid = f"script_{len(rules)}"
        written = _traditional(p) if len(rules) % 2 else p
        rules.append(_phrase_rule(rid, written))
        expect[rid] = line.utt_id
    for text in rng.sample(outside, len(outside)):
        if sum(1 for v in expect.values() if not v) >= n:
            break
        p = _phrase_in(text, rng, in_call)
        if p is None:
            continue
        rid = f"decoy_{len(rules)}"
        rules.append(_phrase_rule(rid, _traditional(p) if len(rules) % 2 else p))
        expect[rid] = ""
    return RulePack(pack="zh_script", language="zh", rules=rules), expect


def _phrase_rule(rule_id: str, phrase: str) -> PhraseRule:
    return PhraseRule.model_validate(
        {
            "id": rule_id,
            "kind": "phrase",
            "mode": "forbidden",
            "speaker": "agent",
            "phrases": [phrase],
            "severity": "info",
            "cooldown_s": 0,
        }
    )


def score(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> tuple[int, int, int, list[str]]:
    """(hits, alerts, reference alerts, misses/false alarms described)."""
    left = list(want)
    hits = 0
    wrong = []
    for a in got:
        m = next(
            (w for w in left if w["rule_id"] == a["rule_id"] and abs(w["t"] - a["t"]) <= MATCH_S),
            None,
        )
        if m is not None:
            left.remove(m)
            hits += 1
        else:
            wrong.append(f"false alarm {a['rule_id']} at {a['t']:.1f} s")
    wrong += [f"missed {w['rule_id']} at {w['t']:.1f} s" for w in left]
    return hits, len(got), len(want), wrong


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--lines", type=int, default=30, help="agent lines in the call")
    ap.add_argument("--phrases", type=int, default=12, help="script phrase rules (and decoys)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rate", choices=["16000", "8000", "both"], default="both")
    ap.add_argument("--model", default="base")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    magic = corpus(args.data, "magicdata_cs_scene")
    aishell = corpus(args.data, "aishell_dev")
    agent_ids = rng.sample(sorted(magic), args.lines)
    caller_ids = rng.sample(sorted(aishell), args.lines)
    script = []
    for a, c in zip(agent_ids, caller_ids, strict=True):
        script.append(("agent", magic[a][0], a, magic[a][1]))
        script.append(("customer", aishell[c][0], c, aishell[c][1]))
    outside = [magic[k][1] for k in magic if k not in agent_ids] + [
        aishell[k][1] for k in aishell if k not in caller_ids
    ]
    model = WhisperAsr(AsrConfig(model=args.model, language="zh"))
    packs = [p for p in load_packs() if p.language == "zh"]
    rates = [16000, 8000] if args.rate == "both" else [int(args.rate)]
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "zh_demo.wav"
        lines = build_call(script, wav)
        script_pack, expect = script_rules(lines, outside, args.phrases, rng)
        all_packs = [*packs, script_pack]
        call_s = lines[-1].t_end
        print(
            f"call: {call_s:.0f} s, {len(lines)} lines; packs: "
            + ", ".join(f"{p.pack} ({len(p.rules)} rules)" for p in all_packs)
        )
        ref_models = LanguageModels.single(ReferenceAsr(lines, model))  # type: ignore[arg-type]
        reference = audit_file(str(wav), all_packs, ref_models, options=AuditOptions())
        ref_alerts = [a for a in reference["alerts"] if a.get("rule_id")]
        # the reference itself must agree with the script (else the bench is broken)
        for rid, utt in expect.items():
            fired = [a for a in ref_alerts if a["rule_id"] == rid]
            line = next((x for x in lines if x.utt_id == utt), None)
            ok = (
                (not fired)
                if line is None
                else (len(fired) == 1 and line.t - MATCH_S <= fired[0]["t"] <= line.t_end + MATCH_S)
            )
            if not ok:
                rule = next(r for r in script_pack.rules if r.id == rid)
                raise SystemExit(
                    f"reference run disagrees with the script on {rid} "
                    f"{getattr(rule, 'phrases', '')} (line {line}): {fired}"
                )
        pack_ids = sorted({a["rule_id"] for a in ref_alerts} - set(expect))
        print(f"reference alerts: {len(ref_alerts)}; pack rules firing: {', '.join(pack_ids)}")
        results: dict[int, tuple[int, int, int]] = {}
        for rate in rates:
            path = wav
            if rate == 8000:
                audio, _ = sf.read(wav, dtype="float32", always_2d=True)
                phone = np.stack([phone_line(audio[:, i]) for i in range(2)], axis=1)
                path = Path(tmp) / "zh_demo_8k.wav"
                sf.write(path, phone, SAMPLE_RATE, subtype="PCM_16")
            t0 = time.perf_counter()
            report = audit_file(
                str(path), all_packs, LanguageModels.single(model), options=AuditOptions()
            )
            wall = time.perf_counter() - t0
            got = [a for a in report["alerts"] if a.get("rule_id")]
            hits, n_got, n_want, wrong = score(got, ref_alerts)
            results[rate] = (hits, n_got, n_want)
            print(
                f"\n{rate} Hz: {n_got} alerts, reference {n_want}, hits {hits} "
                f"(audit {wall:.1f} s, RTF {wall / call_s:.3f})"
            )
            for w in wrong:
                print(f"  {w}")
    print(
        f"\nmachine: {platform.machine()} {platform.processor() or ''} "
        f"{platform.python_version()}; model {model.model_id}; seed {args.seed}"
    )
    for rate, (hits, n_got, n_want) in results.items():
        k = "16k" if rate == 16000 else "8k"
        print(f"precision_{k}: {hits / n_got if n_got else 1.0:.3f}")
        print(f"recall_{k}: {hits / n_want if n_want else 1.0:.3f}")


if __name__ == "__main__":
    main()
