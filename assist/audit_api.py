"""Audits on request: the board's Audits page runs recordings through the audit pipeline.

Routes (see /tmp/contract.md, "audits"):
    GET  /v1/audits/folders          the server-side recording folders and their audio files
    POST /v1/audits                  JSON {"folder", "files"?, "pattern"?, "agent_id"?,
                                     "agent_channel"?} or multipart ``files`` uploads -> 202 Job
    GET  /v1/audits, GET /v1/audits/{job_id}, POST /v1/audits/{job_id}/cancel
    GET  /v1/calls/{call_id}/audio   a stored call's recording, from the folders or uploads only

Jobs run one at a time on one background thread: live calls share the CPU and the model, and
one audit already keeps a core busy. Jobs live in memory only (the last ``KEEP_JOBS``); what
lasts is the stored calls each finished file becomes. Only files inside the configured folders
(by folder *name* and relative path) or uploaded into ``$CALLWATCH_HOME/uploads/<job_id>/``
are ever read or served.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import os
import queue
import re
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from assist.audit import AuditOptions, audit_file
from assist.auth import guard
from assist.board_api import request_user
from assist.diarization import DiarizeOptions
from assist.store import StoreError, callwatch_home
from audio.errors import AudioError

if TYPE_CHECKING:
    from assist.server import App

log = logging.getLogger("callwatch.audits")

MEDIA_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
}
AUDIO_EXTS = tuple(MEDIA_TYPES)
KEEP_JOBS = 50  # finished jobs beyond this are forgotten (their stored calls stay)
MAX_PENDING = 20  # queued or running jobs; more is refused (429) rather than piling up
MAX_FILES = 5000  # per folder listing and per job
MAX_FIELD_BYTES = 4096  # a multipart form field (agent_id, agent_channel)
DRAIN_BYTES = 64 * 1024 * 1024  # at least this much of a refused upload is read and dropped
CLOSE_WAIT_S = 15.0  # close() waits this long for the current block to finish
CHANNELS = ("left", "right")


class _Cancelled(Exception):
    """Raised from the progress callback to stop an audit after the current block."""


class BadRequest(ValueError):
    """A request the caller must change (422); the message says what and how."""


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class AuditFile:
    name: str  # what the caller knows it by: the relative path, or the uploaded name
    path: Path  # resolved, inside a folder or the uploads folder
    status: str = "queued"  # queued | running | done | failed | skipped
    duration_s: float = 0.0  # from the header at job start; 0 when unknown
    processed_s: float = 0.0  # audio seconds the pipeline has been through
    call_id: str | None = None
    score: float | None = None
    alerts: int | None = None
    error: str | None = None

    @property
    def progress(self) -> float:
        if self.status in ("done", "failed"):
            return 1.0
        if self.duration_s <= 0:
            return 0.0
        return min(self.processed_s / self.duration_s, 0.99)  # 1.0 only once stored

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "progress": round(self.progress, 3),
            "duration_s": round(self.duration_s, 2) if self.duration_s else None,
            "call_id": self.call_id,
            "score": self.score,
            "alerts": self.alerts,
            "error": self.error,
        }


@dataclass
class Job:
    job_id: str
    files: list[AuditFile]
    created_by: str
    agent_id: str | None
    agent_channel: str
    folder: str | None  # None: uploaded files
    created_at: float = field(default_factory=time.time)
    status: str = "queued"  # queued | running | done | failed | cancelled
    cancel: bool = False
    run_started: float | None = None  # monotonic
    finished_at: float | None = None

    @property
    def ended(self) -> bool:
        return self.status in ("done", "failed", "cancelled")

    def _weights(self) -> list[float]:
        """Each file's share of the job: its duration (the mean one when unknown)."""
        known = [f.duration_s for f in self.files if f.duration_s > 0]
        fallback = sum(known) / len(known) if known else 1.0
        return [f.duration_s if f.duration_s > 0 else fallback for f in self.files]

    def progress(self) -> float:
        if self.status in ("done", "failed"):
            return 1.0
        weights = self._weights()
        total = sum(weights)
        if total <= 0:
            return 0.0
        return sum(w * f.progress for w, f in zip(weights, self.files, strict=True)) / total

    def eta_s(self) -> float | None:
        """Remaining audio over the audio-seconds-per-second this job has managed so far."""
        if self.status != "running" or self.run_started is None:
            return None
        processed = sum(f.processed_s for f in self.files)
        elapsed = time.monotonic() - self.run_started
        if processed <= 0 or elapsed <= 0:
            return None
        remaining = sum(
            max(w - f.processed_s, 0.0)
            for w, f in zip(self._weights(), self.files, strict=True)
            if f.status in ("queued", "running")
        )
        return round(remaining / (processed / elapsed), 1)

    def to_dict(self) -> dict[str, Any]:
        current = next((f.name for f in self.files if f.status == "running"), None)
        return {
            "job_id": self.job_id,
            "status": self.status,
            "created_at": _iso(self.created_at),
            "created_by": self.created_by,
            "agent_id": self.agent_id,
            "agent_channel": self.agent_channel,
            "folder": self.folder,
            "total": len(self.files),
            "done": sum(f.status == "done" for f in self.files),
            "failed": sum(f.status == "failed" for f in self.files),
            "skipped": sum(f.status == "skipped" for f in self.files),
            "progress": round(self.progress(), 3),
            "eta_s": self.eta_s(),
            "current": current,
            "cancel_requested": self.cancel and not self.ended,
            "finished_at": _iso(self.finished_at) if self.finished_at else None,
            "files": [f.to_dict() for f in self.files],
        }


def _duration(path: Path) -> float:
    """Seconds of audio from the header alone (0 when the header cannot be read)."""
    import soundfile as sf

    try:
        return float(sf.info(str(path)).duration)
    except Exception:  # unreadable here: the audit reports the real reason
        return 0.0


def _stat(path: Path) -> list[tuple[int, float]]:
    """[(size, mtime)], or [] for a file that went away while listing."""
    try:
        st = path.stat()
    except OSError:
        return []
    return [(st.st_size, st.st_mtime)]


def _unique_names(dirs: list[Path]) -> dict[str, Path]:
    """Folder name -> folder; two folders with one basename become ``name`` and ``name-2``."""
    out: dict[str, Path] = {}
    for d in dirs:
        name = d.name or "recordings"
        n = 2
        while name in out:
            name = f"{d.name}-{n}"
            n += 1
        out[name] = d
    return out


class AuditJobs:
    """The audit queue of one server: jobs in memory, one worker thread, stored results."""

    def __init__(self, cw: App) -> None:
        self.cw = cw
        home = callwatch_home()  # fixed now: the folders must not move while the server runs
        dirs = [Path(d).expanduser().resolve() for d in cw.config.audit_dirs]
        if not dirs:
            default = home / "recordings"
            with contextlib.suppress(OSError):  # a read-only home just lists nothing
                default.mkdir(parents=True, exist_ok=True)
            dirs = [default.resolve()]
        for d in dirs:
            if not d.is_dir():
                log.warning("audit folder %s does not exist (yet): it lists no recordings", d)
        self.folders = _unique_names(dirs)
        self.uploads = (home / "uploads").resolve()
        self.max_upload_bytes = cw.config.max_upload_mb * 1024 * 1024
        self.diarize = DiarizeOptions("embedding" if cw.config.diarize else "none")
        self._jobs: dict[str, Job] = {}  # insertion order = creation order
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- folders -------------------------------------------------------------------------
    def list_folders(self) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "files": [
                    {"path": rel, "size": size, "mtime": _iso(mtime)}
                    for rel, real in self._audio_in(root)
                    for size, mtime in _stat(real)
                ],
            }
            for name, root in self.folders.items()
        ]

    @staticmethod
    def _audio_in(root: Path) -> list[tuple[str, Path]]:
        """(relative path, real path) of the audio files under ``root``; links out are left
        out, hidden files and folders too."""
        found: list[tuple[str, Path]] = []
        if not root.is_dir():
            return found
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fname in sorted(filenames):
                if fname.startswith(".") or not fname.lower().endswith(AUDIO_EXTS):
                    continue
                full = Path(dirpath) / fname
                try:
                    real = full.resolve()
                except (OSError, RuntimeError):  # a link loop
                    continue
                if real.is_relative_to(root) and real.is_file():
                    found.append((full.relative_to(root).as_posix(), real))
                if len(found) >= MAX_FILES:
                    return found
        return found

    def select(
        self, folder: str, files: list[str] | None, pattern: str | None
    ) -> list[tuple[str, Path]]:
        """The recordings a JSON request names, each checked to lie inside the folder."""
        root = self.folders.get(folder)
        if root is None:
            known = ", ".join(repr(n) for n in self.folders)
            raise BadRequest(f"no audit folder named {folder!r} (known: {known})")
        if files is None:
            picked = self._audio_in(root)
        else:
            picked = []
            for rel in dict.fromkeys(files):  # same order, no repeats
                picked.append((PurePosixPath(rel).as_posix(), self._inside(root, folder, rel)))
        if pattern:
            picked = [
                (rel, real)
                for rel, real in picked
                if fnmatch.fnmatch(rel, pattern)
                or fnmatch.fnmatch(PurePosixPath(rel).name, pattern)
            ]
        if not picked:
            raise BadRequest(f"no recordings matched in folder {folder!r}")
        if len(picked) > MAX_FILES:
            raise BadRequest(f"{len(picked)} recordings; at most {MAX_FILES} per job")
        return picked

    @staticmethod
    def _inside(root: Path, folder: str, rel: str) -> Path:
        """``rel`` resolved inside ``root``, or BadRequest; only names are looked at, never
        the file's content."""
        if not rel or not rel.strip() or "\x00" in rel:
            raise BadRequest("empty or invalid file path")
        if rel.startswith(("/", "\\")) or PureWindowsPath(rel).drive:
            raise BadRequest(
                f"{rel!r}: absolute paths are not allowed; give a path relative "
                f"to folder {folder!r}"
            )
        if ".." in PurePosixPath(rel.replace("\\", "/")).parts:
            raise BadRequest(f"{rel!r}: '..' is not allowed in a file path")
        try:
            real = (root / rel).resolve()
        except (OSError, RuntimeError):
            raise BadRequest(f"{rel!r}: cannot be resolved (a symbolic link loop?)") from None
        if not real.is_relative_to(root):
            raise BadRequest(f"{rel!r}: leads outside folder {folder!r} (a symbolic link?)")
        if real.suffix.lower() not in AUDIO_EXTS:
            raise BadRequest(f"{rel!r}: not an audio file ({' '.join(AUDIO_EXTS)})")
        if not real.is_file():
            raise BadRequest(f"{rel!r}: no such recording in folder {folder!r}")
        return real

    def audio_path(self, report: dict[str, Any]) -> Path | None:
        """A stored call's first source when it really lies in a folder or the uploads."""
        sources = report.get("sources") or []
        if not sources or not isinstance(sources[0], str):
            return None
        try:
            real = Path(sources[0]).resolve(strict=True)
        except (OSError, RuntimeError, ValueError):
            return None
        roots = [*self.folders.values(), self.uploads]
        if not any(real.is_relative_to(r) for r in roots):
            return None
        if real.suffix.lower() not in AUDIO_EXTS or not real.is_file():
            return None
        return real

    # -- jobs ----------------------------------------------------------------------------
    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:12]

    def check_capacity(self) -> None:
        """Refuse new work when closing or when too many jobs already wait (HTTPException)."""
        with self._lock:
            if self._closed:
                raise HTTPException(status_code=503, detail="the server is shutting down")
            pending = sum(not j.ended for j in self._jobs.values())
        if pending >= MAX_PENDING:
            raise HTTPException(
                status_code=429,
                detail=f"{pending} audit jobs already queued or running; try again later",
            )

    def submit(
        self,
        files: list[tuple[str, Path]],
        created_by: str,
        agent_id: str | None = None,
        agent_channel: str = "left",
        folder: str | None = None,
        job_id: str | None = None,
    ) -> dict[str, Any]:
        job = Job(
            job_id=job_id or self.new_id(),
            files=[AuditFile(name, path) for name, path in files],
            created_by=created_by,
            agent_id=agent_id,
            agent_channel=agent_channel,
            folder=folder,
        )
        with self._lock:
            if self._closed:
                raise HTTPException(status_code=503, detail="the server is shutting down")
            self._jobs[job.job_id] = job
            self._forget_old()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="callwatch-audits", daemon=True
                )
                self._thread.start()
            self._queue.put(job)
            return job.to_dict()

    def _forget_old(self) -> None:
        extra = len(self._jobs) - KEEP_JOBS
        for jid in [j.job_id for j in self._jobs.values() if j.ended][: max(extra, 0)]:
            del self._jobs[jid]

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return job.to_dict() if job else None

    def jobs(self) -> list[dict[str, Any]]:
        with self._lock:
            return [j.to_dict() for j in reversed(self._jobs.values())]

    def cancel(self, job_id: str) -> dict[str, Any] | None:
        """A queued job ends now; a running one after its current block (see ``ended``)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            self._cancel(job)
            return job.to_dict()

    def _cancel(self, job: Job) -> None:  # holding the lock
        if job.ended:
            return
        job.cancel = True
        for f in job.files:
            if f.status == "queued":
                f.status = "skipped"
        if job.status == "queued":
            job.status = "cancelled"
            job.finished_at = time.time()

    def ended(self, job_id: str) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            return job is None or job.ended

    def close(self) -> None:
        """Cancel everything and wait (bounded) for the worker to stop."""
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                self._cancel(job)
            thread = self._thread
        self._queue.put(None)
        if thread is not None:
            thread.join(CLOSE_WAIT_S)
            if thread.is_alive():
                log.warning("audit worker still busy after %.0f s; leaving it", CLOSE_WAIT_S)

    # -- the worker ----------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._run_job(job)
            except Exception:  # a bug here must not kill the queue
                log.exception("audit job %s crashed", job.job_id)
                with self._lock:
                    for f in job.files:
                        if f.status in ("queued", "running"):
                            f.status, f.error = "failed", "internal error (see the server log)"
                    job.status, job.finished_at = "failed", time.time()

    def _run_job(self, job: Job) -> None:
        with self._lock:
            if job.status != "queued":  # cancelled while it waited
                return
            job.status = "running"
        durations = [_duration(f.path) for f in job.files]
        with self._lock:
            for f, d in zip(job.files, durations, strict=True):
                f.duration_s = d
            job.run_started = time.monotonic()
        voiceprints = self._voiceprints(job.agent_id)
        for f in job.files:
            with self._lock:
                if job.cancel:
                    break
                f.status = "running"
            self._run_file(job, f, voiceprints)
        with self._lock:
            for f in job.files:
                if f.status in ("queued", "running"):
                    f.status = "skipped"
            done = sum(f.status == "done" for f in job.files)
            if job.cancel and any(f.status == "skipped" for f in job.files):
                job.status = "cancelled"
            else:
                job.status = "done" if done or not job.files else "failed"
            job.finished_at = time.time()
        log.info(
            "audit job %s %s: %d of %d file(s) done", job.job_id, job.status, done, len(job.files)
        )

    def _voiceprints(self, agent_id: str | None) -> dict[str, Any]:
        """The job's agent if enrolled, else every enrolled agent (roles on mono files)."""
        store = self.cw.store
        if store is None:
            return {}
        try:
            prints = store.voiceprints()
        except StoreError as exc:
            log.warning("audits run without voiceprints: %s", exc)
            return {}
        if agent_id and agent_id in prints:
            return {agent_id: prints[agent_id]}
        return prints

    def _run_file(self, job: Job, f: AuditFile, voiceprints: dict[str, Any]) -> None:
        cw = self.cw

        def progress(seconds: float) -> None:
            with self._lock:
                f.processed_s += seconds
                if job.cancel:
                    raise _Cancelled

        def finish(status: str, error: str | None = None) -> None:
            with self._lock:
                f.status, f.error = status, error

        opts = AuditOptions(
            agent_channel="right" if job.agent_channel == "right" else "left",
            vad=cw.config.live.vad,
            diarize=self.diarize,
            voiceprints=voiceprints,
            agent_id=job.agent_id,
        )
        try:
            report = audit_file(
                str(f.path),
                cw.packs,
                cw.languages,
                options=opts,
                progress=progress,
                emotion=cw.emotion,
                assist=cw.assist,
            )
        except _Cancelled:
            finish("skipped")
            return
        except AudioError as exc:  # the message names the server path: show the file's name
            finish("failed", str(exc).replace(str(f.path), f.name))
            return
        except Exception as exc:
            log.exception("audit of %s failed", f.path)
            finish("failed", f"audit failed: {type(exc).__name__}: {exc}")
            return
        with self._lock:
            f.score = report.get("scorecard", {}).get("score")
            f.alerts = len(report.get("alerts", []))
        try:
            if cw.store is None:
                raise StoreError("this server runs without a store")
            cw.store.save_report(report, mode="audit")
        except StoreError as exc:
            finish("failed", f"audited but not stored: {exc}")
            return
        with self._lock:
            f.call_id = report["call_id"]
            f.status = "done"


# -- multipart uploads ---------------------------------------------------------------------
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(raw: str) -> str:
    """A client's file name reduced to a plain name: no folders, no dots in front, no
    characters a shell or a URL would trip on."""
    base = re.split(r"[/\\]", raw)[-1].strip()
    name = _UNSAFE.sub("_", base).lstrip("._-")
    stem, ext = os.path.splitext(name)
    return (stem[:100] or "upload") + ext.lower()


class UploadTooLarge(Exception):
    """A file part went over the per-file limit."""


class _Upload:
    """Stream a multipart body to ``dest``: ``files`` parts to disk, small fields to memory."""

    def __init__(self, dest: Path, max_bytes: int) -> None:
        self.dest = dest
        self.max_bytes = max_bytes
        self.files: list[tuple[str, Path]] = []
        self.fields: dict[str, str] = {}
        self._name = b""
        self._value = b""
        self._disposition = b""
        self._field: str | None = None  # current form field (not a file)
        self._data = bytearray()
        self._file: IO[bytes] | None = None
        self._size = 0
        self._pending: list[tuple[IO[bytes], bytes]] = []
        self._to_close: list[IO[bytes]] = []

    # python-multipart callbacks (called from parser.write)
    def on_part_begin(self) -> None:
        self._disposition = b""
        self._field, self._file, self._size = None, None, 0
        self._data = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        if self._name.lower() == b"content-disposition":
            self._disposition = self._value
        self._name, self._value = b"", b""

    def on_headers_finished(self) -> None:
        _, opts = parse_options_header(self._disposition)
        field_name = opts.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in opts:
            self._field = field_name
            return
        if field_name != "files":
            raise BadRequest(f"unexpected file field {field_name!r}: send recordings as 'files'")
        raw = opts[b"filename"].decode("utf-8", "replace")
        name = safe_name(raw)
        if not name.lower().endswith(AUDIO_EXTS):
            raise BadRequest(f"{raw!r}: not an audio file ({' '.join(AUDIO_EXTS)})")
        taken = {n for n, _ in self.files}
        stem, ext = os.path.splitext(name)
        n = 2
        while name in taken:
            name = f"{stem}-{n}{ext}"
            n += 1
        if len(self.files) >= MAX_FILES:
            raise BadRequest(f"at most {MAX_FILES} files per upload")
        path = self.dest / name
        self._file = open(path, "wb")  # noqa: SIM115 - closed in on_part_end or close()
        self._to_close.append(self._file)
        self.files.append((name, path))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._file is not None:
            self._size += len(chunk)
            if self._size > self.max_bytes:
                raise UploadTooLarge(self.files[-1][0])
            self._pending.append((self._file, chunk))
        elif self._field is not None:
            self._data.extend(chunk)
            if len(self._data) > MAX_FIELD_BYTES:
                raise BadRequest(
                    f"form field {self._field!r} is longer than {MAX_FIELD_BYTES} bytes"
                )

    def on_part_end(self) -> None:
        if self._file is not None:
            self._pending.append((self._file, b""))  # b"": close after the writes before it
        elif self._field is not None:
            self.fields[self._field] = self._data.decode("utf-8", "replace")

    def flush(self) -> None:
        """Write what the parser produced (run off the event loop)."""
        for f, chunk in self._pending:
            if chunk:
                f.write(chunk)
            else:
                f.close()
        self._pending.clear()

    def close(self) -> None:
        for f in self._to_close:
            f.close()

    async def read(self, request: Request, boundary: bytes) -> None:
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self.on_part_begin,
                "on_part_data": self.on_part_data,
                "on_part_end": self.on_part_end,
                "on_header_field": self.on_header_field,
                "on_header_value": self.on_header_value,
                "on_header_end": self.on_header_end,
                "on_headers_finished": self.on_headers_finished,
            },
        )
        stream = request.stream()
        try:
            async for chunk in stream:
                parser.write(chunk)
                if self._pending:
                    await asyncio.to_thread(self.flush)
            parser.finalize()
            await asyncio.to_thread(self.flush)
        except (UploadTooLarge, BadRequest):
            await _drain(stream, max(4 * self.max_bytes, DRAIN_BYTES))
            raise
        finally:
            self.close()


async def _drain(stream: AsyncIterator[bytes], limit: int) -> None:
    """Read and drop the rest of a refused body, so the client (still sending) gets to read
    the 4xx reply instead of a reset connection; past ``limit`` the body is cut off."""
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            return


async def _receive_upload(
    cw: App, request: Request, job_id: str
) -> tuple[list[tuple[str, Path]], dict[str, str]]:
    """Stream the uploaded files into ``uploads/<job_id>/``; on any refusal nothing stays."""
    audits = cw.audits
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise HTTPException(status_code=400, detail="multipart body without a boundary")
    dest = audits.uploads / job_id
    await asyncio.to_thread(dest.mkdir, parents=True, exist_ok=True)
    upload = _Upload(dest, audits.max_upload_bytes)
    try:
        await upload.read(request, boundary)
    except UploadTooLarge as exc:
        await asyncio.to_thread(shutil.rmtree, dest, True)
        mb = cw.config.max_upload_mb
        raise HTTPException(
            status_code=413,
            detail=f"{exc}: larger than the {mb} MB per-file upload limit "
            "(the server's --max-upload-mb)",
        ) from None
    except BadRequest as exc:
        await asyncio.to_thread(shutil.rmtree, dest, True)
        raise HTTPException(status_code=422, detail=str(exc)) from None
    except (FormParserError, ValueError) as exc:
        await asyncio.to_thread(shutil.rmtree, dest, True)
        raise HTTPException(status_code=400, detail=f"malformed multipart body: {exc}") from None
    except BaseException:  # client gone, disk full, cancelled: no partial files stay
        await asyncio.to_thread(shutil.rmtree, dest, True)
        raise
    if not upload.files:
        await asyncio.to_thread(shutil.rmtree, dest, True)
        raise HTTPException(
            status_code=422, detail="no recordings matched: send one or more 'files' parts"
        )
    return upload.files, upload.fields


# -- request checks ------------------------------------------------------------------------
def _options(body: dict[str, Any]) -> tuple[str | None, str]:
    """(agent_id, agent_channel) from a request body or form, checked."""
    agent_id = body.get("agent_id")
    if agent_id in ("", None):
        agent_id = None
    elif not isinstance(agent_id, str) or len(agent_id) > 200:
        raise BadRequest("agent_id must be a string of at most 200 characters")
    channel = body.get("agent_channel") or "left"
    if channel not in CHANNELS:
        raise BadRequest(f"agent_channel must be 'left' or 'right', not {channel!r}")
    return agent_id, channel


def _folder_request(body: Any) -> tuple[str, list[str] | None, str | None]:
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object: {"folder": NAME, ...}')
    folder = body.get("folder")
    if not isinstance(folder, str) or not folder:
        raise BadRequest(
            "'folder' (the name of an audit folder, see GET /v1/audits/folders) is required"
        )
    files = body.get("files")
    if files is not None and (
        not isinstance(files, list) or not all(isinstance(f, str) for f in files)
    ):
        raise BadRequest("'files' must be a list of paths relative to the folder")
    pattern = body.get("pattern")
    if pattern is not None and not isinstance(pattern, str):
        raise BadRequest("'pattern' must be a glob such as '*.wav'")
    return folder, files, pattern


def add_audit_routes(app: FastAPI) -> None:
    def cw_of(request: Request) -> App:
        cw: App = request.app.state.cw
        return cw

    @app.get("/v1/audits/folders", dependencies=[guard("audits:run")])
    async def audit_folders(request: Request) -> dict[str, Any]:
        return {"folders": await asyncio.to_thread(cw_of(request).audits.list_folders)}

    @app.post("/v1/audits", status_code=202, dependencies=[guard("audits:run")])
    async def create_audit(request: Request) -> dict[str, Any]:
        cw = cw_of(request)
        if cw.store is None:
            raise HTTPException(
                status_code=503, detail="audits need the store (this server runs with --no-store)"
            )
        cw.audits.check_capacity()
        ctype = request.headers.get("content-type", "")
        if ctype.lower().startswith("multipart/form-data"):
            job_id = cw.audits.new_id()
            files, fields = await _receive_upload(cw, request, job_id)
            try:
                agent_id, channel = _options(fields)
            except BadRequest as exc:
                await asyncio.to_thread(shutil.rmtree, cw.audits.uploads / job_id, True)
                raise HTTPException(status_code=422, detail=str(exc)) from None
            return cw.audits.submit(
                files, request_user(request), agent_id, channel, folder=None, job_id=job_id
            )
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise HTTPException(
                status_code=422,
                detail='send JSON {"folder": NAME, "files"?: [...]} or multipart \'files\' uploads',
            ) from None
        try:
            folder, names, pattern = _folder_request(body)
            agent_id, channel = _options(body)
            picked = await asyncio.to_thread(cw.audits.select, folder, names, pattern)
        except BadRequest as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return cw.audits.submit(picked, request_user(request), agent_id, channel, folder=folder)

    @app.get("/v1/audits", dependencies=[guard("audits:run")])
    async def list_audits(request: Request) -> dict[str, Any]:
        return {"jobs": cw_of(request).audits.jobs()}

    @app.get("/v1/audits/{job_id}", dependencies=[guard("audits:run")])
    async def get_audit(request: Request, job_id: str) -> dict[str, Any]:
        job = cw_of(request).audits.get(job_id)
        if job is None:
            raise HTTPException(status_code=404, detail=f"no audit job {job_id!r}")
        return job

    @app.post("/v1/audits/{job_id}/cancel", dependencies=[guard("audits:run")])
    async def cancel_audit(request: Request, job_id: str) -> dict[str, Any]:
        audits = cw_of(request).audits
        job = audits.cancel(job_id)
        if job is None:
            raise HTTPException(status_code=404, detail=f"no audit job {job_id!r}")
        # the worker stops after its current block: give it a moment so the reply is final
        for _ in range(40):
            if audits.ended(job_id):
                break
            await asyncio.sleep(0.05)
        return audits.get(job_id) or job

    @app.get("/v1/calls/{call_id}/audio", dependencies=[guard("audio:read")])
    async def call_audio(request: Request, call_id: str) -> FileResponse:
        cw = cw_of(request)
        path: Path | None = None
        if cw.store is not None:
            report = await asyncio.to_thread(cw.store.get_report, call_id)
            if report is not None:
                path = await asyncio.to_thread(cw.audits.audio_path, report)
        if path is None:
            raise HTTPException(
                status_code=404, detail=f"no recording of call {call_id!r} on this server"
            )
        return FileResponse(
            path,
            media_type=MEDIA_TYPES[path.suffix.lower()],
            filename=path.name,
            content_disposition_type="inline",  # the board plays it in the page
        )
