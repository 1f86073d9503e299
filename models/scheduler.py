"""Share one Whisper model between many live channels without blocking anyone.

Jobs come from the event loop (socket readers) and run on worker threads. Finals always go
first and are never dropped; partials are best effort: a channel has at most one queued
partial (a newer one replaces it), and a partial that waited too long is skipped. Several
jobs of the same model, language and encoder-width bucket are batched into one model call.
``lag_s`` (age of the oldest waiting final) is the back-pressure signal exposed as a metric.

One pool serves several models (English calls on ``tiny.en``, Mandarin ones on ``base``): a
job names its model, and the workers take the oldest final whatever its model, so a busy
language cannot starve the other.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from audio import SAMPLE_RATE
from audio.codecs import Float32Array
from models.asr import Transcript, WhisperAsr

log = logging.getLogger(__name__)

Callback = Callable[[Transcript | None, BaseException | None], None]


@dataclass(eq=False)  # identity, not array comparison
class _Job:
    audio: Float32Array
    offset: float
    callback: Callback
    final: bool
    language: str | None
    asr: WhisperAsr
    key: Hashable | None = None
    enqueued: float = field(default_factory=time.monotonic)
    order: int = 0


@dataclass
class SchedulerStats:
    finals_done: int = 0
    partials_done: int = 0
    partials_replaced: int = 0
    partials_stale: int = 0
    batches: int = 0
    busy_s: float = 0.0
    audio_s: float = 0.0


class AsrScheduler:
    def __init__(
        self,
        asr: WhisperAsr,
        max_batch: int = 4,
        partial_max_age_s: float = 1.5,
        workers: int = 1,
    ) -> None:
        self.asr = asr
        self.max_batch = max_batch
        self.partial_max_age_s = partial_max_age_s
        self.stats = SchedulerStats()
        self._finals: deque[_Job] = deque()
        self._partials: dict[Hashable, _Job] = {}
        self._cv = threading.Condition()
        self._order = itertools.count()
        self._stop = False
        # Partials may occupy at most workers-1 threads, so a final never waits for a partial.
        self._partial_slots = max(1, workers - 1)
        self._partials_running = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"asr-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    # -- submit (any thread) -------------------------------------------------------------
    def submit_final(
        self,
        audio: Float32Array,
        offset: float,
        callback: Callback,
        language: str | None = None,
        asr: WhisperAsr | None = None,
    ) -> None:
        """``asr``: the model for this clip (default: the scheduler's own)."""
        with self._cv:
            self._finals.append(
                _Job(
                    audio,
                    offset,
                    callback,
                    True,
                    language,
                    asr or self.asr,
                    order=next(self._order),
                )
            )
            self._cv.notify()

    def submit_partial(
        self,
        key: Hashable,
        audio: Float32Array,
        offset: float,
        callback: Callback,
        language: str | None = None,
        asr: WhisperAsr | None = None,
    ) -> None:
        with self._cv:
            if key in self._partials:
                self.stats.partials_replaced += 1
            self._partials[key] = _Job(
                audio,
                offset,
                callback,
                False,
                language,
                asr or self.asr,
                key,
                order=next(self._order),
            )
            self._cv.notify()

    def cancel_partial(self, key: Hashable) -> None:
        with self._cv:
            self._partials.pop(key, None)

    @property
    def lag_s(self) -> float:
        """How long the oldest waiting final has been queued (0 when none waits)."""
        with self._cv:
            return time.monotonic() - self._finals[0].enqueued if self._finals else 0.0

    @property
    def queued(self) -> tuple[int, int]:
        with self._cv:
            return len(self._finals), len(self._partials)

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        for t in self._threads:
            t.join(timeout=30)

    # -- workers -------------------------------------------------------------------------
    def _take(self) -> list[_Job]:
        """Next batch: finals of one model/bucket/language first, else the freshest partials."""
        if self._finals:
            head = self._finals[0]
            batch = [j for j in self._finals if self._same_batch(j, head)]
            batch = batch[: self.max_batch]
            for j in batch:
                self._finals.remove(j)
            return batch
        if self._partials_running >= self._partial_slots:
            return []
        now = time.monotonic()
        for key, job in list(self._partials.items()):
            if now - job.enqueued > self.partial_max_age_s:
                del self._partials[key]
                self.stats.partials_stale += 1
        if not self._partials:
            return []
        jobs = sorted(self._partials.values(), key=lambda j: j.order)
        head = jobs[0]
        batch = [j for j in jobs if self._same_batch(j, head)]
        batch = batch[: self.max_batch]
        for j in batch:
            del self._partials[j.key]
        self._partials_running += 1
        return batch

    def _same_batch(self, job: _Job, head: _Job) -> bool:
        """Jobs that can share one model call with ``head``."""
        return (
            job.asr is head.asr
            and job.language == head.language
            and self._bucket(job) == self._bucket(head)
        )

    @staticmethod
    def _bucket(job: _Job) -> int:
        pad = int(job.asr.config.pad_s * SAMPLE_RATE)
        return job.asr.window_frames((job.audio.size + pad) // 160)

    def _work(self) -> None:
        while True:
            with self._cv:
                batch = self._take()
                while not batch and not self._stop:
                    self._cv.wait(timeout=0.5)
                    batch = self._take()
                if not batch and self._stop:
                    return
            t0 = time.monotonic()
            try:
                results = batch[0].asr.transcribe_batch(
                    [(j.audio, j.offset) for j in batch], batch[0].language
                )
                error: BaseException | None = None
            except Exception as exc:  # a bad clip must not kill the worker
                log.exception("ASR batch failed")
                results, error = [], exc
            busy = time.monotonic() - t0
            with self._cv:
                if not batch[0].final:
                    self._partials_running -= 1
                    self._cv.notify_all()
                self.stats.batches += 1
                self.stats.busy_s += busy
                for j in batch:
                    self.stats.audio_s += j.audio.size / SAMPLE_RATE
                    if j.final:
                        self.stats.finals_done += 1
                    else:
                        self.stats.partials_done += 1
            for i, j in enumerate(batch):
                try:
                    j.callback(results[i] if results else None, error)
                except Exception:
                    log.exception("ASR callback failed")
