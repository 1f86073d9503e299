"""A call's report rebuilt from its stored events alone.

A call live on another instance, or one whose instance died (``interrupted``), has no final
report yet; everything it published is in the store as events. This turns those events
into the shape ``assist.audit.build_report`` gives (and ``Store.get_report`` returns), so
the board's Call page and the exports work on it: transcript from ``transcript.final``,
alerts, silences, the last scorecard, emotion, talk statistics, duration up to the last
event, and the call's agent, protocol, language and start from ``call.started``.
"""

from __future__ import annotations

from typing import Any

from assist.language import language_fields

ALERT_FIELDS = (  # what a report keeps of each alert (built or rebuilt)
    "seq",
    "rule_id",
    "severity",
    "t",
    "speaker",
    "message",
    "audience",
    "evidence",
    "emitted_at",
)
STARTED_FIELDS = (
    "mode",
    "agent_id",
    "protocol",
    "language",
    "started_at",
    "model",
    "diarization",
)


def report_from_events(
    events: list[dict[str, Any]], row: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The report of a call from its events; ``row`` (its ``calls`` row, if stored) fills in
    what the events do not say (status, instance, sources)."""
    row = row or {}
    evs = sorted(events, key=lambda e: e["seq"])
    started = next((e for e in evs if e["type"] == "call.started"), {})
    ended = next((e for e in reversed(evs) if e["type"] == "call.ended"), None)
    card = next((e for e in reversed(evs) if e["type"] == "scorecard"), None)
    transcripts = sorted(
        (e for e in evs if e["type"] == "transcript.final"), key=lambda e: (e["t"], e["seq"])
    )
    silences = [e for e in evs if e["type"] == "silence"]
    emotions = [e for e in evs if e["type"] == "emotion"]
    suggestions = [e for e in evs if e["type"] == "suggestion"]
    status = row.get("status") or ("ended" if ended else "active")
    report: dict[str, Any] = {
        "call_id": row.get("call_id") or (evs[0]["call_id"] if evs else None),
        **{k: started.get(k, row.get(k)) for k in STARTED_FIELDS},
        "sources": started.get("sources") or row.get("sources") or [],
        "rule_packs": started.get("rule_packs", []),
        **{k: v for k, v in language_fields(evs).items() if v is not None},
        "channels": started.get("channels") or row.get("channels") or [],
        "status": status,
        "ended_reason": row.get("ended_reason") or (ended or {}).get("reason"),
        "instance_id": row.get("instance_id"),
        "duration_s": round(max((_end_of(e) for e in evs), default=0.0), 2),
        "transcript": [
            {k: e.get(k) for k in ("speaker", "t", "t_end", "text", "words")} for e in transcripts
        ],
        "alerts": [{k: a.get(k) for k in ALERT_FIELDS} for a in evs if a["type"] == "alert"],
        "scorecard": {"score": card.get("score"), "rules": card.get("rules", [])}
        if card
        else {"score": None, "rules": []},
        "silences": silences,
        "suggestions": _suggestions(suggestions),
        "emotion": _emotion(emotions),
        "stats": _stats(transcripts, silences),
        "rebuilt_from_events": True,
    }
    if report["mode"] is None:
        report["mode"] = row.get("mode")
    return report


def _end_of(e: dict[str, Any]) -> float:
    t = e.get("t_end", e.get("t"))
    return float(t) if isinstance(t, int | float) else 0.0


def _stats(transcripts: list[dict[str, Any]], silences: list[dict[str, Any]]) -> dict[str, Any]:
    """Talk time and words per minute per speaker, silence (as ``build_report`` counts)."""
    talk: dict[str, float] = {}
    words: dict[str, int] = {}
    for tr in transcripts:
        spk = str(tr.get("speaker"))
        talk[spk] = talk.get(spk, 0.0) + float(tr.get("t_end", tr["t"])) - float(tr["t"])
        words[spk] = words.get(spk, 0) + len(tr.get("words") or [])
    lengths = [float(s.get("duration", 0.0)) for s in silences]
    return {
        "talk_s": {k: round(v, 2) for k, v in talk.items()},
        "silence_s": round(sum(lengths), 2),
        "longest_silence_s": round(max(lengths, default=0.0), 2),
        "wpm": {k: round(60 * words[k] / v, 1) for k, v in talk.items() if v > 0},
    }


def _suggestions(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not evs:
        return []
    from assist.audit import SUGGESTION_FIELDS  # loaded already wherever calls run

    return [{k: s.get(k) for k in SUGGESTION_FIELDS if s.get(k) not in (None, [], "")} for s in evs]


def _emotion(evs: list[dict[str, Any]]) -> dict[str, Any]:
    if not evs:
        return {}
    from assist.audit import emotion_summary

    return emotion_summary(evs)
