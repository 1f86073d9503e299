"""Retention: delete what was said on old calls, keep how they were scored.

For every call that started more than ``days`` ago and has ended, ``run_retention``:

- deletes its ``transcript.*`` events, and the spoken words other events carry (an alert's
  evidence ``utterance`` and ``words``, a suggestion's ``trigger`` text); search no longer
  finds the call;
- empties the stored report's transcript and the same evidence, keeping the scorecard,
  score, alerts (rule ids, messages, times), silences, emotion and statistics;
- deletes the call's recordings (``sources``) that lie inside ``audio_roots``; a path
  outside them is never touched, whatever the report says (it belongs to someone else);
- records one ``retention`` record on the audit chain per call (what was deleted, by whom,
  under which policy), so ``callwatch verify`` stays intact and shows the deletion.

Calls still active, or with no known start time, are left alone. A call is purged once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assist.store import Store

log = logging.getLogger(__name__)

DAY_S = 86_400.0
SPOKEN_EVIDENCE = ("utterance", "words")  # what an alert's evidence quotes of the call


@dataclass
class CallPurge:
    call_id: str
    started_at: float
    transcript_events: int  # transcript.* events deleted
    events_rewritten: int  # other events stripped of spoken words
    audio: list[str] = field(default_factory=list)  # files deleted
    audio_kept: list[str] = field(default_factory=list)  # sources not deleted, and why

    def __str__(self) -> str:
        when = datetime.fromtimestamp(self.started_at, UTC).strftime("%Y-%m-%d %H:%M")
        audio = f", {len(self.audio)} audio file(s)" if self.audio else ""
        return (
            f"{self.call_id} (started {when} UTC): {self.transcript_events} transcript "
            f"event(s), {self.events_rewritten} event(s) stripped of words{audio}"
        )


@dataclass
class RetentionSummary:
    days: float
    before: float  # calls that started before this (epoch s) were purged
    by: str
    dry_run: bool
    calls: list[CallPurge] = field(default_factory=list)

    @property
    def transcript_events(self) -> int:
        return sum(c.transcript_events for c in self.calls)

    @property
    def audio_files(self) -> int:
        return sum(len(c.audio) for c in self.calls)

    def __str__(self) -> str:
        cutoff = datetime.fromtimestamp(self.before, UTC).strftime("%Y-%m-%d %H:%M")
        verb = "would purge" if self.dry_run else "purged"
        return (
            f"{verb} {len(self.calls)} call(s) started before {cutoff} UTC "
            f"({self.days:g} days): {self.transcript_events} transcript event(s), "
            f"{self.audio_files} audio file(s)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "before": self.before,
            "by": self.by,
            "dry_run": self.dry_run,
            "calls": [c.__dict__ for c in self.calls],
            "transcript_events": self.transcript_events,
            "audio_files": self.audio_files,
        }


def run_retention(
    store: Store,
    days: float,
    *,
    audio_roots: list[Path],
    by: str,
    now: float | None = None,
    dry_run: bool = False,
) -> RetentionSummary:
    """Purge transcripts and audio of calls older than ``days`` (see the module doc)."""
    if days < 0:
        raise ValueError(f"retention days must be 0 or more, not {days}")
    roots = [Path(r).expanduser().resolve() for r in audio_roots]
    before = (time.time() if now is None else now) - days * DAY_S
    summary = RetentionSummary(days, before, by, dry_run)
    for call in store.retention_candidates(before):
        audio, kept = _audio_of(call.get("sources") or [], roots)
        purge = CallPurge(call["call_id"], float(call["started_at"]), 0, 0, audio, kept)
        if dry_run:
            purge.transcript_events = store.count_events(call["call_id"], TRANSCRIPT_TYPES)
        else:
            detail = {
                "policy_days": days,
                "by": by,
                "audio": audio,
                "started_at": call["started_at"],
            }
            deleted, rewritten = store.purge_call(
                call["call_id"], strip_event, strip_report, detail
            )
            purge.transcript_events, purge.events_rewritten = len(deleted), len(rewritten)
            failed = _delete_files(audio, roots)
            purge.audio = [a for a in audio if a not in failed]
            purge.audio_kept += [f"{p}: {why}" for p, why in failed.items()]
        summary.calls.append(purge)
    return summary


TRANSCRIPT_TYPES = ("transcript.final", "transcript.partial")


def strip_event(ev: dict[str, Any]) -> dict[str, Any] | None:
    """An event without what was said: None for a transcript, the rest stripped of words."""
    if ev.get("type", "").startswith("transcript."):
        return None
    if ev.get("type") == "alert" and isinstance(ev.get("evidence"), dict):
        return {**ev, "evidence": _strip_evidence(ev["evidence"])}
    if ev.get("type") == "suggestion" and isinstance(ev.get("trigger"), dict):
        return {**ev, "trigger": {k: v for k, v in ev["trigger"].items() if k != "text"}}
    return ev


def strip_report(report: dict[str, Any]) -> dict[str, Any]:
    """A stored report without its transcript or the words quoted in alerts and cards."""
    out = dict(report)
    out["transcript"] = []
    out["alerts"] = [
        {**a, "evidence": _strip_evidence(a["evidence"])}
        if isinstance(a.get("evidence"), dict)
        else a
        for a in report.get("alerts") or []
    ]
    out["suggestions"] = [
        {**s, "trigger": {k: v for k, v in s["trigger"].items() if k != "text"}}
        if isinstance(s.get("trigger"), dict)
        else s
        for s in report.get("suggestions") or []
    ]
    out["retention"] = {"transcript_deleted": True}
    return out


def _strip_evidence(evidence: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in evidence.items() if k not in SPOKEN_EVIDENCE}
    if isinstance(out.get("parts"), list):
        out["parts"] = [_strip_evidence(p) if isinstance(p, dict) else p for p in out["parts"]]
    return out


def _audio_of(sources: list[Any], roots: list[Path]) -> tuple[list[str], list[str]]:
    """(files to delete, sources left alone with the reason) among a call's sources."""
    delete: list[str] = []
    kept: list[str] = []
    for src in sources:
        if not isinstance(src, str) or not src:
            continue
        path = Path(src)
        if not path.is_absolute():
            kept.append(f"{src}: not an absolute path")
            continue
        try:
            real = path.resolve(strict=True)
        except OSError:
            continue  # gone already
        if not any(real.is_relative_to(r) for r in roots):
            kept.append(f"{src}: outside the audio folders")
        elif not real.is_file():
            kept.append(f"{src}: not a file")
        else:
            delete.append(str(real))
    return delete, kept


def _delete_files(paths: list[str], roots: list[Path]) -> dict[str, str]:
    """Delete files (checked inside ``roots`` again, at the last moment); those that could
    not be deleted, with why. An emptied folder under a root goes too (an upload's)."""
    failed: dict[str, str] = {}
    for p in paths:
        path = Path(p)
        if not any(path.resolve().is_relative_to(r) for r in roots):
            failed[p] = "outside the audio folders"
            continue
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.error("retention: cannot delete %s: %s", p, exc)
            failed[p] = str(exc.strerror or exc)
            continue
        parent = path.parent
        if parent not in roots and any(parent.is_relative_to(r) for r in roots):
            with contextlib.suppress(OSError):
                parent.rmdir()  # only if empty
    return failed
