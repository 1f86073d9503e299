"""What the board aggregates about one call, small enough to list thousands of calls.

Computed from a call report (``assist.audit.build_report`` or a live call's report) when the
call is stored, and on the fly for live calls, so Insights and the Audits filters never have
to load transcripts.
"""

from __future__ import annotations

from collections import Counter
from typing import Any


def call_facts(report: dict[str, Any]) -> dict[str, Any]:
    card = report.get("scorecard") or {}
    stats = report.get("stats") or {}
    alerts = report.get("alerts") or []
    emotion = report.get("emotion") or {}
    intents = Counter(
        s["intent"]
        for s in report.get("suggestions") or []
        if s.get("intent") and not s.get("replaces")  # a released card is the same intent
    )
    return {
        "failed_rules": [
            r["rule_id"] for r in card.get("rules", []) if r.get("status") == "failed"
        ],
        "fired_rules": dict(Counter(a["rule_id"] for a in alerts)),
        "critical_alerts": sum(1 for a in alerts if a.get("severity") == "critical"),
        "talk_s": dict(stats.get("talk_s") or {}),
        "silence_s": stats.get("silence_s", 0.0),
        "longest_silence_s": stats.get("longest_silence_s", 0.0),
        "wpm": dict(stats.get("wpm") or {}),
        "intents": dict(intents),
        "peak_anger": {spk: s.get("peak_anger_index", 0.0) for spk, s in emotion.items()},
        "escalations": sum(int(s.get("escalations", 0)) for s in emotion.values()),
    }
