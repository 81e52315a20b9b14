"""The /predict use case: pick the model, get the records' features, score, log.

A model not in memory is loaded first (lazy.py; a request waits for its load, bounded),
and the model is held while the request is in flight, so it is never evicted under it.

Requests are scored in batches (see Batcher): the requests that arrive while a batch is
scored make the next one (at most `max_batch_rows` rows), so under load one predict call
serves many requests, and a lone request waits for nobody. Each request keeps the model
object it read from its slot when it started, whatever swap happens after.

Logging and shadow scoring happen behind the answer: predictions go to the prediction log's
queue, and the challenger (shadow mode) scores the same rows on its own thread.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from threadpoolctl import threadpool_limits

from services.serving import metrics
from services.serving.adapters.feature_store import OnlineFeatures
from services.serving.domain.answers import Answer, prediction_body
from services.serving.domain.jobs import InvalidRecords, Job, Outcome, score_jobs
from services.serving.domain.records import ReadRecord, read_stored
from services.serving.domain.served import ServedModel
from services.serving.domain.slots import CHALLENGER, ModelSlots
from services.serving.handlers import LoggedPrediction
from services.serving.lazy import ChampionSource, LoadedChampions
from shared.events.records import FieldError, FieldValue

log = logging.getLogger(__name__)

ScoreJobs = Callable[[Sequence[Job]], list[Outcome | Exception]]


def limit_native_threads(threads: int | None) -> None:
    """Caps the native threads (OpenMP, BLAS) predict calls of the current thread may use.

    OpenMP's limit is per calling thread, so each thread that scores sets its own. On a small
    machine, a predict call that fans out to OpenMP threads for a handful of rows mostly waits
    for those threads to be scheduled beside the HTTP loop (hundreds of ms under load)."""
    if threads is not None:
        threadpool_limits(limits=threads)


def count_out_of_range(model: str, reads: Sequence[ReadRecord]) -> None:
    """Counts the accepted values outside their feature's expected range, per feature."""
    for read in reads:
        for feature in read.out_of_range:
            metrics.OUT_OF_EXPECTED_RANGE.labels(model, feature).inc()


class UnknownEntities(LookupError):
    def __init__(self, dataset: str, missing: list[str]) -> None:
        shown = ", ".join(missing[:20]) + (", ..." if len(missing) > 20 else "")
        super().__init__(f"the online store has no features of {dataset} for: {shown}")
        self.missing = missing


class FeatureStore(Protocol):
    async def lookup(self, dataset: str, entities: list[str]) -> dict[str, OnlineFeatures]: ...


class Recorder(Protocol):
    def record(self, entries: Sequence[LoggedPrediction]) -> None: ...


def logged(
    job: Job, outcome: Outcome, served: ServedModel, now: datetime, shadow: bool = False
) -> list[LoggedPrediction]:
    latency_ms = max(0.0, (time.perf_counter() - job.started) * 1000)
    return [
        LoggedPrediction(
            request_id=job.request_id,
            model=served.name,
            version=served.version,
            dataset=served.card.dataset,
            record_id=read.record_id,
            entity=read.entity,
            features=read.values,
            scored=answer.scored,
            latency_ms=latency_ms,
            served_at=now,
            shadow=shadow,
        )
        for read, answer in zip(outcome.reads, outcome.answers, strict=True)
    ]


class Batcher:
    """Scores submitted jobs on the event loop, many requests' records in one predict call.

    While a batch is scored the loop reads nothing, so the requests arriving meanwhile wait in
    their sockets and make the next batch. Requests also arrive spread out by a fraction of a
    millisecond, so a drain waits up to `max_wait_s` for as many jobs as the recent batches
    held (the largest of the last few): a lone client is never kept waiting (its batches hold
    one job), and concurrent clients are scored together instead of one by one. Scoring on
    the loop's own thread hands the GIL to no other thread, which on a small machine costs
    more than the scoring itself.
    """

    RECENT_BATCHES = 16

    def __init__(
        self,
        score: ScoreJobs,
        max_rows: int,
        after: Callable[[Sequence[Job], list[Outcome | Exception]], None] | None = None,
        native_threads: int | None = None,
        max_wait_s: float = 0.002,
    ) -> None:
        self._score = score
        self._after = after
        self._max_rows = max_rows
        self._max_wait_s = max_wait_s
        self._native_threads = native_threads
        self._threads_limited = False
        self._pending: list[tuple[Job, asyncio.Future[Outcome]]] = []
        self._pending_rows = 0
        self._recent = deque([1], maxlen=self.RECENT_BATCHES)
        self._drain_at: asyncio.TimerHandle | asyncio.Handle | None = None
        self._drain_now = False

    async def submit(self, job: Job) -> Outcome:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._pending.append((job, future))
        self._pending_rows += job.rows
        self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """A drain on the loop's next turn once the batch is as large as expected, else a
        timed one (brought forward when it fills)."""
        full = len(self._pending) >= max(self._recent) or self._pending_rows >= self._max_rows
        if full and not self._drain_now:
            if self._drain_at is not None:
                self._drain_at.cancel()
            self._drain_at, self._drain_now = loop.call_soon(self._drain, loop), True
        elif self._drain_at is None:
            self._drain_at = loop.call_later(self._max_wait_s, self._drain, loop)
            self._drain_now = False

    def _take(self) -> list[tuple[Job, asyncio.Future[Outcome]]]:
        rows, count = 0, 0
        for job, _ in self._pending:
            if count and rows + job.rows > self._max_rows:
                break
            rows += job.rows
            count += 1
        batch, self._pending = self._pending[:count], self._pending[count:]
        self._pending_rows -= rows
        self._recent.append(count)
        return batch

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """Scores one batch; what is left waits for the loop's next turn (reads in between)."""
        self._drain_at, self._drain_now = None, False
        batch = self._take()
        if self._pending:
            self._schedule(loop)
        live = [(job, future) for job, future in batch if not future.done()]  # clients gone
        if not live:
            return
        jobs = [job for job, _ in live]
        try:
            outcomes = self._run(jobs)
        except Exception as error:
            log.exception("scoring a batch failed")
            outcomes = [error] * len(jobs)
        for (_, future), outcome in zip(live, outcomes, strict=True):
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _run(self, jobs: Sequence[Job]) -> list[Outcome | Exception]:
        if not self._threads_limited:
            limit_native_threads(self._native_threads)
            self._threads_limited = True
        metrics.BATCH_ROWS.observe(sum(job.rows for job in jobs))
        outcomes = self._score(jobs)
        if self._after is not None:
            try:
                self._after(jobs, outcomes)
            except Exception:
                log.exception("logging predictions failed")
        return outcomes


class ShadowScorer:
    """Scores what the champion scored with the challenger, logs it with shadow=true; never
    answers. Runs on its own thread; when it falls behind, batches are skipped (counted)."""

    group_id = "shadow-scorer"

    def __init__(
        self, recorder: Recorder, max_pending: int = 64, native_threads: int | None = None
    ) -> None:
        self._recorder = recorder
        self._native_threads = native_threads
        self._queue: queue.Queue[tuple[ServedModel, list[tuple[Job, Outcome]]]] = queue.Queue(
            max_pending
        )

    def submit(self, challenger: ServedModel, scored: list[tuple[Job, Outcome]]) -> None:
        try:
            self._queue.put_nowait((challenger, scored))
        except queue.Full:
            metrics.SHADOW_SKIPPED.labels(challenger.name, "backlog").inc()

    def run(self, stop: threading.Event) -> None:
        limit_native_threads(self._native_threads)
        while not stop.is_set():
            try:
                challenger, scored = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.score(challenger, scored)

    def score(self, challenger: ServedModel, scored: list[tuple[Job, Outcome]]) -> None:
        reads = [read for _, outcome in scored for read in outcome.reads]
        try:
            answers = challenger.score([read.values for read in reads])
        except Exception as error:
            metrics.SHADOW_SKIPPED.labels(challenger.name, "error").inc()
            log.warning("challenger %s v%d failed: %s", challenger.name, challenger.version, error)
            return
        now = datetime.now(UTC)
        entries: list[LoggedPrediction] = []
        start = 0
        for job, outcome in scored:
            count = len(outcome.reads)
            shadow_answers = [
                Answer(score, answer.record_id, answer.entity)
                for answer, score in zip(
                    outcome.answers, answers[start : start + count], strict=True
                )
            ]
            shadow = Outcome(outcome.reads, shadow_answers)
            entries.extend(logged(job, shadow, challenger, now, shadow=True))
            start += count
        metrics.PREDICTIONS.labels(challenger.name, str(challenger.version), "true").inc(
            len(entries)
        )
        self._recorder.record(entries)


class Predictions:
    """Answers prediction requests for the served models."""

    def __init__(
        self,
        slots: ModelSlots,
        store: FeatureStore,
        recorder: Recorder,
        max_batch_rows: int,
        shadow: ShadowScorer | None = None,
        native_threads: int | None = None,
        max_wait_s: float = 0.002,
        champions: ChampionSource | None = None,
    ) -> None:
        self._slots = slots
        self._champions = champions or LoadedChampions(slots)
        self._store = store
        self._recorder = recorder
        self._shadow = shadow
        self.batcher = Batcher(score_jobs, max_batch_rows, self._after, native_threads, max_wait_s)

    async def predict(
        self,
        model: str,
        request_id: str,
        records: Sequence[Mapping[str, FieldValue]] | None = None,
        entities: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        started = time.perf_counter()
        served, held = await self._champions.hold(model)
        try:
            job = Job(served, request_id, started, records=records or ())
            if entities:
                job.found = await self._online(served, list(entities))
            outcome = await self.batcher.submit(job)
        finally:
            if held:
                self._champions.release(model)
        return prediction_body(request_id, served, outcome.answers)

    async def _online(self, served: ServedModel, entities: list[str]) -> list[ReadRecord]:
        dataset = served.card.dataset
        found = await self._store.lookup(dataset, entities)
        missing = [entity for entity in entities if entity not in found]
        if missing:
            raise UnknownEntities(dataset, missing)
        reads: list[ReadRecord] = []
        errors: list[tuple[int, list[FieldError]]] = []
        for index, entity in enumerate(entities):
            stored = found[entity]
            read = read_stored(served.schema, stored.features, entity, stored.record_id)
            if isinstance(read, list):
                errors.append((index, read))
            else:
                reads.append(read)
        if errors:
            raise InvalidRecords(errors, where="entities")
        return reads

    def _after(self, jobs: Sequence[Job], outcomes: list[Outcome | Exception]) -> None:
        """Once answers are ready (before they are sent): queue the logs and the shadow work."""
        now = datetime.now(UTC)
        entries: list[LoggedPrediction] = []
        shadowed: dict[int, tuple[ServedModel, list[tuple[Job, Outcome]]]] = {}
        for job, outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, Exception):
                continue
            entries.extend(logged(job, outcome, job.served, now))
            count_out_of_range(job.served.name, outcome.reads)
            metrics.PREDICTIONS.labels(job.served.name, str(job.served.version), "false").inc(
                len(outcome.answers)
            )
            challenger = self._challenger(job.served)
            if challenger is not None:
                shadowed.setdefault(id(challenger), (challenger, []))[1].append((job, outcome))
        self._recorder.record(entries)
        if self._shadow is not None:
            for challenger, scored in shadowed.values():
                self._shadow.submit(challenger, scored)

    def _challenger(self, champion: ServedModel) -> ServedModel | None:
        if self._shadow is None:
            return None
        challenger = self._slots.get(champion.name).current(CHALLENGER)
        if challenger is None or challenger.version == champion.version:
            return None
        return challenger
