"""Render audit reports for people (table, printable HTML), programs (json) and
spreadsheets (csv); one call's exports (``call_to_*``) back GET /v1/calls/{id}/export."""

from __future__ import annotations

import csv
import html
import importlib.metadata
import io
import json
import re
from datetime import UTC, datetime
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


def counts_characters(report: dict[str, Any]) -> bool:
    """Whether the call's "words" are characters: a Chinese (or Japanese) transcript has one
    word per character, so its stats' ``wpm`` is characters per minute."""
    lang = str(report.get("language") or "").lower().split("-")[0]
    return lang in ("zh", "yue", "ja")


def to_table(reports: list[dict[str, Any]], transcript: bool = True) -> str:
    lines: list[str] = []
    for r in reports:
        lines.append("=" * 78)
        lines.append(f"call {r['call_id']}  ({', '.join(r['sources'])})")
        st = r["stats"]
        talk = ", ".join(f"{k} {v:.1f} s" for k, v in st["talk_s"].items())
        wpm = ", ".join(f"{k} {v:.0f}" for k, v in st["wpm"].items())
        rate = "cpm" if counts_characters(r) else "wpm"
        lines.append(
            f"duration {r['duration_s']:.1f} s | talk: {talk or '-'} | silence {st['silence_s']:.1f} s "
            f"(longest {st['longest_silence_s']:.1f} s) | {rate}: {wpm or '-'} | model {r['model']}"
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


# -- one call, for exports (GET /v1/calls/{id}/export) and `callwatch audit --format html` --


def call_to_json(report: dict[str, Any]) -> str:
    """The whole report (events included when present), readable and UTF-8 as-is."""
    return json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n"


TIMELINE_COLUMNS = [
    "kind",
    "t",
    "t_end",
    "speaker",
    "rule_id",
    "intent",
    "severity",
    "text",
    "detail",
]
_KIND_ORDER = {"transcript": 0, "alert": 1, "suggestion": 2}
# A cell starting with one of these is a formula to Excel and LibreOffice: transcripts are
# untrusted speech, so such text is prefixed with an apostrophe (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def timeline_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """What happened on the call, one row per transcript line, alert and suggestion,
    in time order (at the same moment: the line first, then what it caused)."""
    rows: list[dict[str, Any]] = []
    for tr in report.get("transcript") or []:
        rows.append(
            {
                "kind": "transcript",
                "t": tr.get("t"),
                "t_end": tr.get("t_end"),
                "speaker": tr.get("speaker"),
                "text": tr.get("text"),
            }
        )
    for a in report.get("alerts") or []:
        rows.append(
            {
                "kind": "alert",
                "t": a.get("t"),
                "speaker": a.get("speaker"),
                "rule_id": a.get("rule_id"),
                "severity": a.get("severity"),
                "text": a.get("message"),
                "detail": evidence_text(a.get("evidence")),
            }
        )
    for s in report.get("suggestions") or []:
        rows.append(
            {
                "kind": "suggestion",
                "t": s.get("t"),
                "rule_id": s.get("rule_id"),
                "intent": s.get("intent"),
                "severity": s.get("severity"),
                "text": s.get("title"),
                "detail": s.get("reason"),
            }
        )
    rows.sort(key=lambda r: (_num(r.get("t")), _KIND_ORDER[r["kind"]]))
    return rows


def call_to_csv(report: dict[str, Any]) -> str:
    """The call timeline for spreadsheets: a header row, then `timeline_rows`."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=TIMELINE_COLUMNS, lineterminator="\r\n")
    w.writeheader()
    for row in timeline_rows(report):
        w.writerow({k: _cell(row.get(k)) for k in TIMELINE_COLUMNS})
    head = (report.get("audit_chain") or {}).get("head")
    if head:
        w.writerow({"kind": "audit_chain", "text": head.get("hash"), "detail": _chain_line(head)})
    return buf.getvalue()


def _chain_line(head: dict[str, Any]) -> str:
    return (
        f"audit chain head: record {head.get('id')} of {head.get('records')}, "
        f"{head.get('at')}, sha256 {head.get('hash')}"
    )


def _num(v: Any, default: float = 0.0) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else default


def _fmt_num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


# evidence keys that are noise in one line of text (times are shown on their own)
_EVIDENCE_SKIP = {"t", "t_end", "speaker", "words", "phrases", "score", "utterance", "matched"}


def evidence_text(ev: Any, limit: int = 400) -> str:
    """An alert's evidence as one readable line: the words that triggered it, else the
    measurements (plain text; the HTML renderer escapes it)."""
    if not isinstance(ev, dict) or not ev:
        return "" if ev in (None, {}, "") else str(ev)[:limit]
    parts: list[str] = []
    if ev.get("utterance"):
        quoted = f"“{ev['utterance']}”"
        if ev.get("matched"):
            quoted += f" (matched “{ev['matched']}”)"
        parts.append(quoted)
    elif ev.get("matched"):
        parts.append(f"matched “{ev['matched']}”")
    for k, v in ev.items():
        if k in _EVIDENCE_SKIP or v is None or isinstance(v, dict | list):
            continue
        if k == "window_s" and ev.get("window"):
            continue  # "within the first 30 s" says it in words
        if k.endswith("_s") and isinstance(v, int | float):
            parts.append(f"{k[:-2].replace('_', ' ')}: {_fmt_num(v)} s")
        else:
            parts.append(f"{k.replace('_', ' ')}: {_fmt_num(v)}")
    text = "; ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- HTML: one self-contained, printable document --------------------------------------------
# Every value from a report goes through _h(): transcripts, messages and even ids are
# untrusted text. Class names come from fixed tables, never from report values.

_CSS = """
:root{--ink:#1f2933;--muted:#5f6b7a;--line:#d9e2ec;--soft:#f5f7fa;--agent:#1d4ed8;
--agent-bg:#eef4ff;--cust:#0f766e;--cust-bg:#ecfdf8;--crit:#b42318;--crit-bg:#fef3f2;
--warn:#b54708;--warn-bg:#fffaeb;--info:#175cd3;--info-bg:#eff8ff;--ok:#067647;--ok-bg:#ecfdf3}
*{box-sizing:border-box}
html{-webkit-print-color-adjust:exact;print-color-adjust:exact}
body{margin:0;background:#eef1f5;color:var(--ink);font:14px/1.45 system-ui,-apple-system,
"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans","Noto Sans CJK SC","PingFang SC",
"Microsoft YaHei",sans-serif}
:lang(zh){font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"PingFang SC",
"Noto Sans CJK SC","Noto Sans SC","Source Han Sans SC","Source Han Sans CN","Hiragino Sans GB",
"Microsoft YaHei","WenQuanYi Micro Hei",sans-serif;line-break:strict;word-break:normal;
overflow-wrap:anywhere;font-style:normal}
main{max-width:980px;margin:24px auto;padding:0 16px}
.call,.index{background:#fff;border:1px solid var(--line);border-radius:8px;padding:28px 32px;
margin-bottom:24px}
.doc-title{font-size:22px;margin:0 0 12px}
.call-head{display:flex;justify-content:space-between;align-items:flex-start;gap:24px;
border-bottom:2px solid var(--ink);padding-bottom:14px;margin-bottom:16px}
.kicker{text-transform:uppercase;letter-spacing:.08em;font-size:11px;color:var(--muted);
font-weight:600}
h1{font-size:22px;margin:2px 0 4px;word-break:break-all}
.sub{color:var(--muted)}
.score{min-width:120px;text-align:center;border-radius:8px;padding:10px 14px;border:1px solid}
.score .num{font-size:34px;font-weight:700;line-height:1}
.score .of{font-size:14px;color:var(--muted)}
.score .lbl{display:block;font-size:11px;text-transform:uppercase;letter-spacing:.08em;
margin-top:4px;color:var(--muted)}
.score-good{color:var(--ok);background:var(--ok-bg);border-color:#abefc6}
.score-fair{color:var(--warn);background:var(--warn-bg);border-color:#fedf89}
.score-poor{color:var(--crit);background:var(--crit-bg);border-color:#fecdca}
.score-none{color:var(--muted);background:var(--soft);border-color:var(--line)}
dl.meta{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:8px 20px;margin:0 0 8px}
dl.meta div{min-width:0}
dl.meta dt{font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted)}
dl.meta dd{margin:0;overflow-wrap:anywhere}
h2{font-size:16px;margin:26px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h2 .count{color:var(--muted);font-weight:400}
p.none{color:var(--muted);font-style:italic;margin:6px 0}
p.note{color:var(--muted);margin:6px 0}
table{width:100%;border-collapse:collapse;font-size:13px}
th{text-align:left;font-size:11px;text-transform:uppercase;letter-spacing:.05em;
color:var(--muted);border-bottom:1px solid var(--ink);padding:6px 8px;font-weight:600}
td{border-bottom:1px solid var(--line);padding:6px 8px;vertical-align:top;overflow-wrap:break-word}
td.num,th.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td.time{white-space:nowrap;font-variant-numeric:tabular-nums;color:var(--muted);width:1%}
.desc{display:block;color:var(--muted);font-size:12px}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
table.alerts code,table.scorecard code,table.suggestions code{white-space:nowrap}
table.kv th{width:24%;border-bottom:1px solid var(--line);vertical-align:top}
.pill{display:inline-block;border-radius:999px;padding:1px 8px;font-size:11px;font-weight:700;
text-transform:uppercase;letter-spacing:.04em;border:1px solid;white-space:nowrap}
.pass{color:var(--ok);background:var(--ok-bg);border-color:#abefc6}
.fail,.critical{color:var(--crit);background:var(--crit-bg);border-color:#fecdca}
.warning,.pending{color:var(--warn);background:var(--warn-bg);border-color:#fedf89}
.info{color:var(--info);background:var(--info-bg);border-color:#b2ddff}
tr.failed td{background:#fffbfa}
.evidence{color:var(--muted);font-size:12px}
table.transcript td{border-bottom:none;padding:3px 6px}
table.transcript th.agent{color:var(--agent)}
table.transcript th.customer{color:var(--cust)}
table.transcript col.side{width:49%}
.bubble{border-radius:6px;padding:6px 10px}
td.agent .bubble{background:var(--agent-bg);border-left:3px solid var(--agent)}
td.customer .bubble{background:var(--cust-bg);border-right:3px solid var(--cust)}
td.other .bubble{background:var(--soft);border-left:3px solid var(--muted)}
.who{display:block;font-size:10px;font-weight:700;text-transform:uppercase;letter-spacing:.06em}
td.agent .who{color:var(--agent)}
td.customer .who{color:var(--cust);text-align:right}
td.other .who{color:var(--muted)}
tr.mark td{font-size:12px;padding:2px 6px}
tr.mark .flag{border-left:3px solid;padding:2px 8px;display:block}
tr.mark .flag.critical{border-color:var(--crit)}
tr.mark .flag.warning{border-color:var(--warn)}
tr.mark .flag.info{border-color:var(--info)}
ul.facts{margin:6px 0;padding-left:18px}
footer{max-width:980px;margin:0 auto 32px;padding:0 16px;color:var(--muted);font-size:12px}
@page{size:A4;margin:14mm 12mm}
@media print{
 body{background:#fff;font-size:10.5pt}
 main{max-width:none;margin:0;padding:0}
 .call,.index{border:none;border-radius:0;padding:0;margin:0}
 .call+.call,.index+.call{break-before:page}
 h2{break-after:avoid}
 tr,.bubble,.score,dl.meta div{break-inside:avoid}
 thead{display:table-header-group}
 footer{margin:16px 0 0;padding:0}
}
"""

_SEVERITY_CLASS = {"critical": "critical", "warning": "warning", "info": "info"}
_STATUS_CLASS = {"passed": "pass", "failed": "fail", "pending": "pending"}
_SIDES = ("agent", "customer")
_LANG_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


def _h(value: Any) -> str:
    """HTML-escaped text of any value (None: an em dash)."""
    if value is None or value == "":
        return "—"
    return html.escape(value if isinstance(value, str) else _fmt_num(value), quote=True)


_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")


def text_lang(text: Any) -> str | None:
    """The language tag a piece of text needs for the right glyphs: "zh-Hans" for Chinese
    (Han characters; callwatch's Mandarin transcripts are simplified), "ja" or "ko" when kana
    or hangul say so; None for anything else (the document's English)."""
    s = str(text or "")
    if _KANA.search(s):
        return "ja"
    if _HANGUL.search(s):
        return "ko"
    return "zh-Hans" if _HAN.search(s) else None


def _ht(value: Any) -> str:
    """``_h`` for text from the call or the rules, in a span with its language when it has
    Chinese in it (so a Chinese alert message on an English page gets Chinese glyphs)."""
    lang = text_lang(value) if isinstance(value, str) else None
    return f'<span lang="{lang}">{_h(value)}</span>' if lang else _h(value)


def _mmss(t: Any) -> str:
    """Call time as mm:ss (h:mm:ss past an hour)."""
    if not isinstance(t, int | float) or isinstance(t, bool):
        return "—"
    s = int(max(float(t), 0.0))  # floor, like a media player
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


def _date(epoch: Any) -> str | None:
    if not isinstance(epoch, int | float) or isinstance(epoch, bool):
        return None
    try:
        return datetime.fromtimestamp(float(epoch), UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return None


def _secs(v: Any) -> str:
    return f"{_num(v):.1f} s"


def _score_block(score: Any) -> str:
    if not isinstance(score, int | float) or isinstance(score, bool):
        return (
            '<div class="score score-none"><span class="num">n/a</span>'
            '<span class="lbl">QA score</span></div>'
        )
    cls = "score-good" if score >= 80 else "score-fair" if score >= 60 else "score-poor"
    return (
        f'<div class="score {cls}"><span class="num">{_h(f"{score:.0f}")}</span>'
        f'<span class="of">/100</span><span class="lbl">QA score</span></div>'
    )


def _joined(v: Any) -> str | None:
    if isinstance(v, list | tuple):
        return ", ".join(str(x) for x in v) or None
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt_num(x)}" for k, x in v.items()) or None
    return None if v is None or v == "" else str(v)


def _meta(report: dict[str, Any]) -> str:
    status = report.get("status")
    if status and report.get("ended_reason"):
        status = f"{status} ({report['ended_reason']})"
    items = [
        ("Agent", report.get("agent_id") or "not recorded"),
        ("Date", _date(report.get("started_at")) or "not recorded"),
        ("Duration", f"{_mmss(report.get('duration_s'))} ({_secs(report.get('duration_s'))})"),
        ("Mode", report.get("mode")),
        ("Status", status),
        ("Protocol", report.get("protocol")),
        ("Language", report.get("language")),
        ("Model", report.get("model")),
        ("Rule packs", _joined(report.get("rule_packs"))),
        ("Channels", _joined(report.get("channels"))),
        ("Sources", _joined(report.get("sources"))),
    ]
    cells = "".join(
        f"<div><dt>{name}</dt><dd>{_h(value)}</dd></div>"
        for name, value in items
        if value is not None and value != ""
    )
    return f'<dl class="meta">{cells}</dl>'


def _scorecard(report: dict[str, Any]) -> str:
    rules = (report.get("scorecard") or {}).get("rules") or []
    if not rules:
        return '<h2>Scorecard</h2><p class="none">No QA rules were scored on this call.</p>'
    failed = [r for r in rules if _status(r) == "failed"]
    total_w = sum(_num(r.get("weight")) for r in rules)
    failed_w = sum(_num(r.get("weight")) for r in failed)
    rows = []
    for r in rules:
        status = _status(r)
        cls = _STATUS_CLASS.get(status, "info")
        rows.append(
            f'<tr class="{"failed" if status == "failed" else ""}">'
            f"<td><code>{_h(r.get('rule_id'))}</code>"
            f'<span class="desc">{_ht(r.get("description") or "")}</span></td>'
            f'<td><span class="pill {cls}">{_h(status)}</span></td>'
            f'<td class="num">{_h(r.get("weight"))}</td>'
            f'<td class="num">{_h(r.get("alerts", 0))}</td></tr>'
        )
    return (
        f'<h2>Scorecard</h2><p class="note">{len(failed)} of {len(rules)} rules failed '
        f"(weight {_h(failed_w)} of {_h(total_w)}).</p>"
        '<table class="scorecard"><thead><tr><th>Rule</th><th>Result</th>'
        '<th class="num">Weight</th><th class="num">Alerts</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _status(rule: dict[str, Any]) -> str:
    """A scorecard line's result ("status", or a boolean "passed" in older shapes)."""
    if isinstance(rule.get("status"), str):
        return str(rule["status"])
    if isinstance(rule.get("passed"), bool):
        return "passed" if rule["passed"] else "failed"
    return "unknown"


def _alerts(report: dict[str, Any]) -> str:
    alerts = sorted(report.get("alerts") or [], key=lambda a: _num(a.get("t")))
    head = f'<h2>Alerts <span class="count">({len(alerts)})</span></h2>'
    if not alerts:
        return head + '<p class="none">No alerts were raised on this call.</p>'
    rows = []
    for a in alerts:
        sev = _SEVERITY_CLASS.get(str(a.get("severity")), "info")
        evidence = evidence_text(a.get("evidence"))
        rows.append(
            f'<tr><td class="time">{_mmss(a.get("t"))}</td>'
            f'<td><span class="pill {sev}">{_h(a.get("severity"))}</span></td>'
            f"<td><code>{_h(a.get('rule_id'))}</code></td>"
            f"<td>{_h(a.get('speaker'))}</td>"
            f"<td>{_ht(a.get('message'))}"
            + (f'<span class="evidence desc">{_ht(evidence)}</span>' if evidence else "")
            + "</td></tr>"
        )
    return (
        head + '<table class="alerts"><thead><tr><th>Time</th><th>Severity</th><th>Rule</th>'
        "<th>Speaker</th><th>Message and evidence</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _transcript(report: dict[str, Any], lang: str | None) -> str:
    lines = report.get("transcript") or []
    head = f'<h2>Transcript <span class="count">({len(lines)} lines)</span></h2>'
    if not lines:
        return head + '<p class="none">Nothing was transcribed on this call.</p>'
    note = ""
    if "mixed" in (report.get("channels") or []) and all(
        tr.get("speaker") not in _SIDES for tr in lines
    ):
        note = '<p class="note">Mono recording: the speakers are not separated.</p>'
    # (time, order, html): lines first, then alerts raised at the same moment
    items: list[tuple[float, int, str]] = []
    for i, tr in enumerate(lines):
        speaker = str(tr.get("speaker") or "")
        line_lang = _line_lang(tr.get("text"), lang)
        lang_attr = f' lang="{_h(line_lang)}"' if line_lang else ""
        text = f'<div class="bubble"{lang_attr}>'
        if speaker in _SIDES:
            cell = f'<span class="who">{_h(speaker)}</span>{_h(tr.get("text"))}</div>'
            empty = "<td></td>"
            body = (
                f'<td class="agent">{text}{cell}</td>{empty}'
                if speaker == "agent"
                else f'{empty}<td class="customer">{text}{cell}</td>'
            )
        else:
            body = (
                f'<td class="other" colspan="2">{text}<span class="who">{_h(speaker or "unknown")}'
                f"</span>{_h(tr.get('text'))}</div></td>"
            )
        items.append(
            (
                _num(tr.get("t")),
                i,
                f'<tr class="line"><td class="time">{_mmss(tr.get("t"))}</td>{body}</tr>',
            )
        )
    for j, a in enumerate(report.get("alerts") or []):
        sev = _SEVERITY_CLASS.get(str(a.get("severity")), "info")
        items.append(
            (
                _num(a.get("t")),
                len(lines) + j,
                f'<tr class="mark"><td class="time">{_mmss(a.get("t"))}</td>'
                f'<td colspan="2"><span class="flag {sev}">▲ {_h(a.get("severity"))} · '
                f"<code>{_h(a.get('rule_id'))}</code> — {_ht(a.get('message'))}</span></td></tr>",
            )
        )
    items.sort(key=lambda x: (x[0], x[1]))
    return (
        head + note + '<table class="transcript"><colgroup><col><col class="side">'
        '<col class="side"></colgroup><thead><tr><th>Time</th><th class="agent">Agent</th>'
        '<th class="customer">Customer</th></tr></thead>'
        f"<tbody>{''.join(x[2] for x in items)}</tbody></table>"
    )


def _line_lang(text: Any, call_lang: str | None) -> str | None:
    """A transcript line's language: the call's, unless the line's own script says another
    (a Chinese line on a call recorded as English, or with no language)."""
    own = text_lang(text)
    if own is None or (call_lang or "").lower().split("-")[0] == own.split("-")[0]:
        return call_lang
    return own


def _emotion(report: dict[str, Any]) -> str:
    emo = report.get("emotion") or {}
    head = "<h2>Emotion</h2>"
    if not isinstance(emo, dict) or not emo:
        return head + (
            '<p class="none">No emotion readings for this call '
            "(emotion analysis was off, or nobody spoke long enough to measure).</p>"
        )
    rows = []
    for speaker, s in emo.items():
        s = s if isinstance(s, dict) else {}
        labels = s.get("labels") or {}
        label_text = ", ".join(
            f"{k} {v}" for k, v in sorted(labels.items(), key=lambda kv: -_num(kv[1]))
        )
        last = s.get("last") or {}
        last_text = f"{last.get('label', '—')} at {_mmss(last.get('t'))}" if last else "—"
        rows.append(
            f"<tr><td>{_h(speaker)}</td><td>{_h(label_text)}</td>"
            f'<td class="num">{_h(round(_num(s.get("peak_anger_index")), 2))}</td>'
            f'<td class="num">{_h(s.get("escalations", 0))}</td><td>{_h(last_text)}</td></tr>'
        )
    return (
        head + "<table><thead><tr><th>Speaker</th><th>Readings</th>"
        '<th class="num">Peak anger</th><th class="num">Escalations</th><th>Last</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _silences(report: dict[str, Any]) -> list[dict[str, Any]]:
    found = report.get("silences")
    if not isinstance(found, list):
        found = [e for e in report.get("events") or [] if e.get("type") == "silence"]
    return sorted(found, key=lambda s: _num(s.get("t")))


def _stats(report: dict[str, Any]) -> str:
    st = report.get("stats")
    head = "<h2>Talk statistics</h2>"
    if not isinstance(st, dict) or not st:
        return head + '<p class="none">No talk statistics in this report.</p>'
    talk = st.get("talk_s") or {}
    wpm = st.get("wpm") or {}
    rate_label = "Characters/min" if counts_characters(report) else "Words/min"
    duration = _num(report.get("duration_s"))
    rows = []
    for speaker in list(talk) + [k for k in wpm if k not in talk]:
        t = _num(talk.get(speaker))
        share = f"{100 * t / duration:.0f} %" if duration > 0 else "—"
        rate = wpm.get(speaker)
        rows.append(
            f'<tr><td>{_h(speaker)}</td><td class="num">{_h(_secs(t))}</td>'
            f'<td class="num">{_h(share)}</td>'
            f'<td class="num">{_h(f"{_num(rate):.0f}" if rate is not None else None)}</td></tr>'
        )
    table = (
        '<table><thead><tr><th>Speaker</th><th class="num">Talk time</th>'
        f'<th class="num">Share</th><th class="num">{rate_label}</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else '<p class="none">Nobody spoke on this call.</p>'
    )
    silences = _silences(report)
    facts = [
        f"Silence: {_h(_secs(st.get('silence_s')))} in total, longest "
        f"{_h(_secs(st.get('longest_silence_s')))}"
    ]
    if silences:
        spans = ", ".join(
            f"{_mmss(s.get('t'))} ({_secs(s.get('duration'))})" for s in silences[:12]
        )
        more = f" and {len(silences) - 12} more" if len(silences) > 12 else ""
        facts.append(f"{len(silences)} silence(s) at {_h(spans)}{more}")
    return head + table + '<ul class="facts">' + "".join(f"<li>{f}</li>" for f in facts) + "</ul>"


_DIARIZATION_NAMES = {
    "backend": "Method",
    "speakers": "Speakers",
    "roles": "Roles",
    "evidence": "Evidence",
    "confidence": "Confidence",
    "detail": "Detail",
}


def _diarization(report: dict[str, Any]) -> str:
    d = report.get("diarization")
    head = "<h2>Speakers</h2>"
    if not isinstance(d, dict) or not d:
        return head + '<p class="none">No speaker separation details in this report.</p>'
    rows = []
    for k, v in d.items():
        value = _joined(v)
        if isinstance(v, float):
            value = f"{v:.2f}"
        rows.append(
            f"<tr><th>{_h(_DIARIZATION_NAMES.get(k, k.replace('_', ' ').capitalize()))}</th>"
            f"<td>{_h(value)}</td></tr>"
        )
    return head + f'<table class="kv"><tbody>{"".join(rows)}</tbody></table>'


def _suggestions(report: dict[str, Any]) -> str:
    found = report.get("suggestions")
    if found is None:  # a live call's detail: they are in the events
        found = [e for e in report.get("events") or [] if e.get("type") == "suggestion"]
    head = f'<h2>Suggestions to the agent <span class="count">({len(found)})</span></h2>'
    if not found:
        return head + '<p class="none">No suggestions were made to the agent on this call.</p>'
    rows = []
    for s in sorted(found, key=lambda s: _num(s.get("t"))):
        why = s.get("reason") or ""
        if s.get("blocked_by"):
            why = f"{why} (blocked by {_joined(s['blocked_by'])})".strip()
        rows.append(
            f'<tr><td class="time">{_mmss(s.get("t"))}</td><td>{_h(s.get("source"))}</td>'
            f"<td><code>{_h(s.get('intent') or s.get('rule_id'))}</code></td>"
            f"<td>{_ht(s.get('title'))}</td><td>{_ht(why)}</td></tr>"
        )
    return (
        head
        + '<table class="suggestions"><thead><tr><th>Time</th><th>Source</th><th>Intent / rule</th>'
        "<th>Suggestion</th><th>Why</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _call_section(report: dict[str, Any], index: int) -> str:
    lang = report.get("language")
    lang = lang if isinstance(lang, str) and _LANG_TAG.match(lang) else None
    when = _date(report.get("started_at"))
    sub = " · ".join(
        x
        for x in (
            _h(when) if when else "",
            _h(f"{_mmss(report.get('duration_s'))} long"),
            _h(f"{report['mode']} call") if report.get("mode") else "",
            _h(f"agent {report['agent_id']}") if report.get("agent_id") else "",
        )
        if x
    )
    score = (report.get("scorecard") or {}).get("score")
    live = (
        '<p class="note">This call was still in progress when the report was made.</p>'
        if report.get("status") == "active"
        else ""
    )
    return (
        f'<section class="call" id="call-{index}"><header class="call-head"><div>'
        f'<div class="kicker">Call QA report</div><h1>{_h(report.get("call_id"))}</h1>'
        f'<div class="sub">{sub}</div></div>{_score_block(score)}</header>'
        f"{live}{_meta(report)}{_scorecard(report)}{_alerts(report)}"
        f"{_transcript(report, lang)}"
        f"{_stats(report)}{_emotion(report)}"
        f"{_diarization(report)}{_suggestions(report)}</section>"
    )


def _index(reports: list[dict[str, Any]]) -> str:
    rows = "".join(
        f'<tr><td><a href="#call-{i}">{_h(r.get("call_id"))}</a></td>'
        f"<td>{_h(_date(r.get('started_at')))}</td>"
        f'<td class="num">{_mmss(r.get("duration_s"))}</td>'
        f"<td>{_h(r.get('agent_id'))}</td>"
        f'<td class="num">{_h(_score_text((r.get("scorecard") or {}).get("score")))}</td>'
        f'<td class="num">{len(r.get("alerts") or [])}</td></tr>'
        for i, r in enumerate(reports)
    )
    return (
        f'<section class="index"><h1 class="doc-title">Call QA reports '
        f'<span class="count">({len(reports)} calls)</span></h1>'
        '<table><thead><tr><th>Call</th><th>Date</th><th class="num">Duration</th>'
        '<th>Agent</th><th class="num">Score</th><th class="num">Alerts</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></section>"
    )


def _score_text(score: Any) -> str:
    if isinstance(score, int | float) and not isinstance(score, bool):
        return f"{score:.0f}/100"
    return "n/a"


def callwatch_version() -> str:
    try:
        return importlib.metadata.version("callwatch")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def to_html(reports: list[dict[str, Any]], generated_at: datetime | None = None) -> str:
    """Reports as one printable HTML file (print to PDF from a browser): one section per
    call, an index first when there are several. Self-contained: inline CSS, no scripts,
    and a CSP that forbids loading or running anything, since transcripts are untrusted."""
    now = (generated_at or datetime.now(UTC)).astimezone(UTC)
    if len(reports) == 1:
        title = f"Call QA report: {reports[0].get('call_id')}"
    else:
        title = f"Call QA reports ({len(reports)} calls)"
    body = "".join(_call_section(r, i) for i, r in enumerate(reports))
    heads = {
        r["audit_chain"]["head"].get("hash"): r["audit_chain"]["head"]
        for r in reports
        if (r.get("audit_chain") or {}).get("head")
    }
    chain = "".join(f" {_h(_chain_line(h))}." for h in heads.values())
    if len(reports) > 1:
        body = _index(reports) + body
    elif not reports:
        body = '<section class="index"><p class="none">No calls in this report.</p></section>'
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="callwatch {_h(callwatch_version())}">\n'
        f"<title>{_h(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<main>{body}</main>\n"
        f"<footer>Generated {_h(now.strftime('%Y-%m-%d %H:%M UTC'))} by callwatch "
        f"{_h(callwatch_version())}. Times are mm:ss from the start of the call. "
        f"Contains call content: handle as confidential.{chain}</footer>\n</body>\n</html>\n"
    )


def call_to_html(report: dict[str, Any], generated_at: datetime | None = None) -> str:
    return to_html([report], generated_at)
