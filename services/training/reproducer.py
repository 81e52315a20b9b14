"""Reproductions of registered versions: the service layer behind POST /reproductions.

    the version's record and lineage (registry, read when the reproduction is asked)
    -> the training set of exactly the lineage's Kafka ranges (feature store, rebuilt from
       Kafka alone) -> training's own frame, window, split, fit and evaluation with the
       recorded estimator, params and seed (domain.reproduction) -> the registered artifact
       (MinIO, sha256 checked) -> the comparison

They run in one worker thread of their own, one at a time, with a bounded queue: never in
the consumer loops, so a reproduction neither blocks nor interleaves with training runs. Each
replica runs those it was asked for; they are kept in SQL, so any replica answers for them,
and a heartbeat thread says this replica still has them (one that dies has its reproductions
failed once their lease passes).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd
from opentelemetry import trace

from services.training.adapters.errors import DependencyRefused, DependencyUnavailable
from services.training.adapters.feature_store import RebuiltSet
from services.training.adapters.reproductions import SqlReproductions
from services.training.domain.errors import TrainingRefused
from services.training.domain.lineage import library_versions
from services.training.domain.reproduction import (
    Check,
    RecordedRun,
    Retrained,
    checks_of,
    compare_sources,
    environment_notes,
    retrain,
)
from shared.artifacts import ArtifactRefused
from shared.datasets.registry import SpecRegistry
from shared.datasets.spec import VersionedSpec
from shared.events.models import ArtifactRef, OffsetRange, TrainingLineage

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

SpecsFor = Callable[[str], SpecRegistry]


class ReproductionFailed(Exception):
    """Why a reproduction could not be compared (data gone, a dependency down, ...)."""


class QueueFull(RuntimeError):
    """As many reproductions as allowed are waiting."""


class Rebuilds(Protocol):
    def rebuild_training_set(
        self,
        dataset: str,
        offsets: list[OffsetRange],
        cut_off: Any,
        timeout_s: float,
    ) -> RebuiltSet: ...


class Artifacts(Protocol):
    def load_model(self, ref: ArtifactRef) -> Any: ...


@dataclass(frozen=True)
class Job:
    id: str
    model: str
    version: int
    record: dict[str, Any]
    """The registry's record of the version (run, evaluation, artifact)."""
    lineage: TrainingLineage
    """What to rebuild: the version's lineage, or one given instead."""


@dataclass(frozen=True)
class Compared:
    checks: list[Check]
    notes: list[str]
    summary: dict[str, Any]


@dataclass(frozen=True)
class ReproducerConfig:
    holdout_fraction: float = 0.2
    classification_metric: str = "roc_auc"
    regression_metric: str = "rmse"
    rebuild_timeout_s: float = 600.0


class Reproducer:
    def __init__(
        self,
        config: ReproducerConfig,
        specs_for: SpecsFor,
        rebuilds: Rebuilds,
        artifacts: Artifacts,
    ) -> None:
        self.config = config
        self._specs_for = specs_for
        self._rebuilds = rebuilds
        self._artifacts = artifacts

    def run(self, job: Job) -> Compared:
        attributes = {"model": job.model, "version": job.version, "reproduction": job.id}
        with _tracer.start_as_current_span("reproduce", attributes=attributes):
            return self._run(job)

    def _run(self, job: Job) -> Compared:
        lineage = job.lineage
        try:
            run = RecordedRun.of(job.record)
            artifact = ArtifactRef.model_validate(job.record["artifact"])
        except (KeyError, TypeError, ValueError) as error:
            raise ReproductionFailed(f"the registry's record of the version: {error}") from None
        versioned = self._spec(lineage)
        started = time.monotonic()
        with _tracer.start_as_current_span("rebuild training set"):
            rebuilt = self._rebuild(lineage)
        read_s = time.monotonic() - started
        with _tracer.start_as_current_span("retrain", attributes={"rows": len(rebuilt.frame)}):
            retrained = self._retrain(rebuilt.frame, versioned, lineage, run)
        registered = self._registered(artifact)
        summary = rebuilt.summary
        checks = [
            compare_sources(summary.get("validated_records", 0), summary.get("mismatched", 0)),
            *checks_of(lineage, run, versioned, retrained, registered),
        ]
        notes = environment_notes(
            lineage.library_versions,
            library_versions(),
            summary.get("undecodable", 0),
            summary.get("validated_records", 0) - summary.get("records_with_features", 0),
        )
        return Compared(
            checks,
            notes,
            {
                **summary,
                "read_s": round(read_s, 3),
                "retrain_s": round(time.monotonic() - started - read_s, 3),
            },
        )

    def _spec(self, lineage: TrainingLineage) -> VersionedSpec:
        if not lineage.offsets:
            raise ReproductionFailed("the lineage names no offset range to rebuild from")
        namespace = lineage.offsets[0].topic.partition(".")[0]
        try:
            return self._specs_for(namespace).get(lineage.dataset, lineage.spec_version)
        except LookupError as unknown:
            raise ReproductionFailed(f"namespace {namespace!r}: {unknown}") from None
        except Exception as error:  # Kafka down while reading the specs
            raise ReproductionFailed(
                f"the dataset specs of namespace {namespace!r} could not be read: {error}"
            ) from None

    def _rebuild(self, lineage: TrainingLineage) -> RebuiltSet:
        try:
            return self._rebuilds.rebuild_training_set(
                lineage.dataset, lineage.offsets, lineage.cut_off, self.config.rebuild_timeout_s
            )
        except (DependencyUnavailable, DependencyRefused) as error:
            raise ReproductionFailed(str(error)) from None

    def _retrain(
        self,
        raw: pd.DataFrame,
        versioned: VersionedSpec,
        lineage: TrainingLineage,
        run: RecordedRun,
    ) -> Retrained:
        fallback = (
            self.config.regression_metric
            if versioned.spec.task == "regression"
            else self.config.classification_metric
        )
        try:
            return retrain(raw, versioned, lineage, run, self.config.holdout_fraction, fallback)
        except TrainingRefused as refused:
            raise ReproductionFailed(
                f"the rebuilt training set cannot be trained on: {refused}"
            ) from None

    def _registered(self, artifact: ArtifactRef) -> Any:
        try:
            return self._artifacts.load_model(artifact)
        except ArtifactRefused as refused:
            raise ReproductionFailed(f"the registered artifact {artifact.uri}: {refused}") from None
        except (DependencyUnavailable, DependencyRefused) as error:
            raise ReproductionFailed(f"the registered artifact {artifact.uri}: {error}") from None
        except Exception as error:  # MinIO down or the object gone
            raise ReproductionFailed(
                f"MinIO: the registered artifact {artifact.uri}: {type(error).__name__}: {error}"
            ) from None


class Runs(Protocol):
    def run(self, job: Job) -> Compared: ...


class ReproductionWorker:
    """Runs reproductions one at a time in a thread of its own; at most `queue_limit` wait.
    Another thread renews their heartbeat every third of the lease."""

    def __init__(self, reproductions: SqlReproductions, reproducer: Runs, queue_limit: int) -> None:
        self.reproductions = reproductions
        self._reproducer = reproducer
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_limit)
        self._thread = threading.Thread(target=self._loop, name="reproductions", daemon=True)
        self._stopping = threading.Event()
        self._beating = threading.Thread(
            target=self._beat, name="reproduction-heartbeat", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        self._beating.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout_s)
        if self._beating.is_alive():
            self._beating.join(timeout_s)

    def _beat(self) -> None:
        every = self.reproductions.lease.total_seconds() / 3
        while not self._stopping.wait(every):
            try:
                self.reproductions.beat()
            except Exception as error:  # the database down: the next beat may get through
                log.warning("reproduction heartbeat: %s: %s", type(error).__name__, error)

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def submit(self, job: Job) -> None:
        """Queues the job (QueueFull when as many wait as allowed)."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull(
                f"{self._queue.maxsize} reproductions are waiting already: ask again when one "
                "has finished (MLOPS_TRAINING_REPRODUCTION_QUEUE)"
            ) from None

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self.reproductions.is_over(job.id):
                continue  # timed out while it waited
            self.run_one(job)

    def run_one(self, job: Job) -> None:
        try:
            compared = self._reproducer.run(job)
        except ReproductionFailed as failed:
            outcome = self.reproductions.failed(job.id, str(failed))
        except Exception as error:
            log.exception("reproduction %s of %s v%d", job.id, job.model, job.version)
            outcome = self.reproductions.failed(
                job.id, f"unexpected error: {type(error).__name__}: {error}"
            )
        else:
            outcome = self.reproductions.compared(
                job.id, compared.checks, compared.notes, compared.summary
            )
        if outcome is not None:
            log.info(
                "reproduction %s of %s v%d: %s%s",
                job.id,
                job.model,
                job.version,
                outcome.status,
                f" ({outcome.reason})" if outcome.reason else "",
            )
