"""Render audit reports for people (table), programs (json) and spreadsheets (csv)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any


def _clock(t: float) -> str:
    m, s = divmod(max(t, 0.0), 60)
    return f"{int(m):02d}:{s:04.1f}"


def to_json(reports: list[dict[str, Any]], with_events: bool = False) -> str:
    out = [r if with_events else {k: v for k, v in r.items() if k != "events"} for r in reports]
    return json.dumps(out, indent=2, ensure_ascii=False)


CSV_COLUMNS = [
    "call_id",
    "source",
    "duration_s",
    "score",
    "rule_id",
    "status",
    "severity",
    "t",
    "speaker",
    "message",
    "evidence",
]


def to_csv(reports: list[dict[str, Any]]) -> str:
    """One row per call and rule: pass/fail, and for failures the first alert as evidence."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in reports:
        first_alert: dict[str, dict[str, Any]] = {}
        for a in r["alerts"]:
            first_alert.setdefault(a["rule_id"], a)
        for line in r["scorecard"]["rules"]:
            a = first_alert.get(line["rule_id"], {})
            ev = a.get("evidence", {})
            w.writerow(
                {
                    "call_id": r["call_id"],
                    "source": ";".join(r["sources"]),
                    "duration_s": r["duration_s"],
                    "score": r["scorecard"]["score"],
                    "rule_id": line["rule_id"],
                    "status": line["status"],
                    "severity": a.get("severity", ""),
                    "t": a.get("t", ""),
                    "speaker": a.get("speaker") or "",
                    "message": a.get("message", ""),
                    "evidence": ev.get("matched")
                    or ev.get("utterance")
                    or (json.dumps(ev, ensure_ascii=False) if ev else ""),
                }
            )
    return buf.getvalue()


def _diarization_line(d: dict[str, Any] | None) -> str | None:
    """How the speakers were found; None where the mono note below says it all."""
    if not d or d.get("backend") == "none":
        return None
    if d.get("backend") == "channel":
        return f"speakers: {d.get('detail', 'one channel per speaker')}"
    roles = ", ".join(f"{k}={v}" for k, v in d.get("roles", {}).items())
    conf = d.get("confidence")
    return (
        f"speakers: {d['backend']} diarization, {len(d.get('speakers', []))} found, "
        f"confidence {'n/a' if conf is None else f'{conf:.2f}'}; "
        f"roles {roles or '-'} by {d.get('evidence', '-')}"
        f" ({d.get('detail', '')})"
    )


def to_table(reports: list[dict[str, Any]], transcript: bool = True) -> str:
    lines: list[str] = []
    for r in reports:
        lines.append("=" * 78)
        lines.append(f"call {r['call_id']}  ({', '.join(r['sources'])})")
        st = r["stats"]
        talk = ", ".join(f"{k} {v:.1f} s" for k, v in st["talk_s"].items())
        wpm = ", ".join(f"{k} {v:.0f}" for k, v in st["wpm"].items())
        lines.append(
            f"duration {r['duration_s']:.1f} s | talk: {talk or '-'} | silence {st['silence_s']:.1f} s "
            f"(longest {st['longest_silence_s']:.1f} s) | wpm: {wpm or '-'} | model {r['model']}"
        )
        speakers = _diarization_line(r.get("diarization"))
        if speakers:
            lines.append(speakers)
        if "mixed" in r.get("channels", []):
            lines.append(
                "note: mono recording, speakers are not separated (rules for agent/customer "
                "do not apply)"
            )
        if transcript:
            lines.append("-- transcript")
            for tr in r["transcript"]:
                lines.append(f"  [{_clock(tr['t'])}] {tr['speaker']:>8}: {tr['text']}")
        lines.append(f"-- alerts ({len(r['alerts'])})")
        for a in r["alerts"]:
            lines.append(
                f"  [{_clock(a['t'])}] {a['severity'].upper():8} {a['rule_id']}: {a['message']}"
            )
        if not r["alerts"]:
            lines.append("  none")
        lines.append(f"-- scorecard: {r['scorecard']['score']:.0f}/100")
        for line in r["scorecard"]["rules"]:
            mark = {"passed": "PASS", "failed": "FAIL"}.get(line["status"], line["status"].upper())
            lines.append(
                f"  {mark:4}  {line['rule_id']:<24} (weight {line['weight']:g})  {line['description']}"
            )
    return "\n".join(lines) + "\n"
