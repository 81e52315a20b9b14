"""One training run, from TrainModel to ModelTrained: the service layer that drives the
adapters (feature store, MinIO, registry) and the domain (frames, split, pipeline, metrics).

    dataset spec, estimator checked (refused at once when wrong)
    -> wait until the offline store holds every record labelled before the command's time
    -> training set (feature store) -> Parquet (MinIO) -> sorted, typed frame + content hash
    -> time split -> Pipeline(ColumnTransformer, estimator) fitted with the seed
    -> metrics on the holdout -> the champion (registry) scored on the same holdout
    -> skops artifact (MinIO) -> ModelTrained with the complete lineage
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import pandas as pd
from opentelemetry import trace

from services.training.adapters.errors import DependencyRefused
from services.training.adapters.feature_store import TrainingSetRef
from services.training.adapters.registry import Champion
from services.training.domain.errors import TrainingRefused
from services.training.domain.estimators import configure_estimator
from services.training.domain.fitting import (
    evaluate,
    fit_pipeline,
    promotion_metric,
    split_frame,
)
from services.training.domain.frames import TrainingFrame
from services.training.domain.lineage import (
    data_quality,
    feature_definitions,
    library_versions,
)
from services.training.domain.metrics import score
from services.training.domain.split import TimeSplit
from services.training.domain.waiting import Positions, Waiting, at_least
from shared.artifacts import ArtifactRefused
from shared.datasets.registry import UnknownDataset
from shared.datasets.spec import VersionedSpec
from shared.events.envelope import Event
from shared.events.models import (
    ArtifactRef,
    BaselineEvaluation,
    DataWait,
    ModelTrained,
    TrainingLineage,
    TrainModel,
)

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)
_SAFE_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class Specs(Protocol):
    def refresh(self, timeout_s: float = 10.0) -> None: ...
    def latest(self, name: str) -> VersionedSpec: ...
    def get(self, name: str, version: int) -> VersionedSpec: ...


class TrainingSets(Protocol):
    def training_set(self, dataset: str, until: datetime | None = None) -> TrainingSetRef: ...
    def coverage(self) -> Positions: ...


class TopicPositions(Protocol):
    def at(self, moment: datetime) -> Positions: ...

    def upstream_at(self, moment: datetime) -> Positions:
        """Where the topic validation reads (data.raw) stood at the moment."""
        ...

    def upstream_handled(self) -> Positions:
        """How far validation has handled data.raw (its committed offsets)."""
        ...

    def downstream_now(self) -> Positions:
        """Where the topic validation writes (data.validated) stands now."""
        ...


class Champions(Protocol):
    def champion(self, model_name: str) -> Champion | None: ...


class Objects(Protocol):
    def read_parquet(self, uri: str) -> pd.DataFrame: ...
    def store_model(self, model: Any, bucket: str, key: str) -> ArtifactRef: ...
    def load_model(self, ref: ArtifactRef) -> Any: ...


@dataclass(frozen=True)
class TrainerConfig:
    namespace: str
    bucket: str = "mlops-models"
    default_seed: int = 0
    holdout_fraction: float = 0.2
    pin_training_set_to_command_time: bool = True
    min_training_rows: int = 10
    code_version: str = "unknown"
    library_versions: dict[str, str] = field(default_factory=library_versions)
    waiting: Waiting = field(default_factory=lambda: Waiting(wait_s=120.0))


def run_id_of(command_id: str) -> str:
    """The run of a command is named after it (a hash when the id is not a safe object name)."""
    if _SAFE_RUN_ID.match(command_id):
        return command_id
    return hashlib.sha256(command_id.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class _Inputs:
    versioned: VersionedSpec
    ref: TrainingSetRef
    training: TrainingFrame
    split: TimeSplit
    until: datetime | None
    data_wait: DataWait | None


class Trainer:
    def __init__(
        self,
        config: TrainerConfig,
        specs: Specs,
        training_sets: TrainingSets,
        champions: Champions,
        objects: Objects,
        positions: TopicPositions | None = None,
    ) -> None:
        """Without `positions` a run reads the training set at once, without waiting."""
        self.config = config
        self._positions = positions
        self._specs = specs
        self._training_sets = training_sets
        self._champions = champions
        self._objects = objects

    def train(self, command: Event[TrainModel]) -> ModelTrained:
        request: TrainModel = command.data
        seed = request.seed if request.seed is not None else self.config.default_seed
        inputs = self._inputs(command, seed)
        training, split = inputs.training, inputs.split
        rule = inputs.versioned.spec.model
        with _tracer.start_as_current_span("fit", attributes={"rows": len(split.train)}):
            fitted = fit_pipeline(rule, request.params, seed, training, split)
        configured, pipeline = fitted.configured, fitted.pipeline
        with _tracer.start_as_current_span("evaluate", attributes={"rows": len(split.holdout)}):
            metric = promotion_metric(rule, training.task)
            evaluation = evaluate(pipeline, training, split, metric, rule)
        baseline = self._baseline(request.model_name, training, split)
        run_id = run_id_of(command.id)
        key = f"{self.config.namespace}/{request.model_name}/{run_id}.skops"
        with _tracer.start_as_current_span("store artifact"):
            artifact = self._objects.store_model(pipeline, self.config.bucket, key)
        return ModelTrained(
            model_name=request.model_name,
            run_id=run_id,
            estimator=configured.path,
            params=configured.params,
            seed=seed,
            artifact=artifact,
            evaluation=evaluation,
            baseline=baseline,
            lineage=self._lineage(request, inputs),
            trained_at=datetime.now(UTC),
        )

    def _inputs(self, command: Event[TrainModel], seed: int) -> _Inputs:
        dataset = command.data.dataset
        versioned = self._spec(command, seed)
        until = command.time if self.config.pin_training_set_to_command_time else None
        data_wait = self._wait_for_data(command)
        with _tracer.start_as_current_span("training set", attributes={"dataset": dataset}):
            ref = self._training_sets.training_set(dataset, until)
            raw = self._objects.read_parquet(ref.uri)
        if len(raw) != ref.rows:
            raise DependencyRefused(
                f"the feature store announced {ref.rows} rows, {ref.uri} holds {len(raw)}"
            )
        if ref.spec_version is not None and ref.spec_version != versioned.version:
            versioned = self._specs.get(dataset, ref.spec_version)
        # A window the command asked for (e.g. since a drift): the holdout, and so the
        # champion's baseline on it, then come from that window too.
        cut = split_frame(
            raw,
            versioned.spec,
            command.data.trigger.since,
            self.config.min_training_rows,
            self.config.holdout_fraction,
        )
        return _Inputs(versioned, ref, cut.training, cut.split, until, data_wait)

    def _spec(self, command: Event[TrainModel], seed: int) -> VersionedSpec:
        """The dataset's latest spec, its label, metric and estimator checked before any data
        is waited for: a command that cannot be trained is refused at once."""
        dataset = command.data.dataset
        self._specs.refresh()
        try:
            versioned = self._specs.latest(dataset)
        except UnknownDataset as unknown:
            raise TrainingRefused(str(unknown)) from None
        task = versioned.spec.task
        if task not in ("classification", "regression"):
            raise TrainingRefused(f"dataset {dataset!r} declares no label: nothing to train on")
        promotion_metric(versioned.spec.model, task)
        configure_estimator(versioned.spec.model, command.data.params, seed, task)
        return versioned

    def _wait_for_data(self, command: Event[TrainModel]) -> DataWait | None:
        """Waits until the offline store holds every message of data.validated and
        data.labels written before the command's time, and every record accepted before it:
        a record uploaded just before the command may still be in validation, so training
        first waits for validation to pass data.raw's position at the command's time, then
        needs data.validated as far as it reached by then (DataNotArrived when either
        does not come)."""
        if self._positions is None:
            return None
        with _tracer.start_as_current_span("wait for data") as span:
            needed = self._positions.at(command.time)
            upstream = self._positions.upstream_at(command.time)
            validation_s = 0.0
            if upstream:
                validation_s = self.config.waiting.until_covered(
                    upstream, self._positions.upstream_handled, writer="validation"
                ).waited_s
                needed = at_least(needed, self._positions.downstream_now())
            waited = self.config.waiting.until_covered(needed, self._training_sets.coverage)
            waited = waited.model_copy(update={"waited_s": waited.waited_s + validation_s})
            span.set_attribute("waited_s", waited.waited_s)
        if waited.waited_s > 0:
            log.info("command %s waited %.1fs for the offline store", command.id, waited.waited_s)
        return waited

    def _baseline(
        self, model_name: str, training: TrainingFrame, split: TimeSplit
    ) -> BaselineEvaluation | None:
        """The current champion scored on this run's holdout, when there is one to score."""
        with _tracer.start_as_current_span("baseline", attributes={"model": model_name}):
            champion = self._champions.champion(model_name)
            if champion is None:
                return None
            try:
                model = self._objects.load_model(champion.artifact)
            except ArtifactRefused as refused:
                log.warning(
                    "champion v%d of %s not loaded: %s", champion.version, model_name, refused
                )
                return None
            missing = sorted(set(champion.feature_columns) - set(split.holdout.columns))
            if missing:
                log.warning(
                    "champion v%d of %s needs columns this training set lacks: %s",
                    champion.version,
                    model_name,
                    missing,
                )
                return None
            x = split.holdout[champion.feature_columns]
            try:
                scores = score(model, x, training.y(split.holdout), training.task)
            except Exception as error:  # a champion that cannot score must not block training
                log.warning(
                    "champion v%d of %s could not score: %s", champion.version, model_name, error
                )
                return None
        return BaselineEvaluation(version=champion.version, metrics=scores.metrics)

    def _lineage(self, request: TrainModel, inputs: _Inputs) -> TrainingLineage:
        training, split, versioned = inputs.training, inputs.split, inputs.versioned
        return TrainingLineage(
            dataset=request.dataset,
            spec_version=versioned.version,
            spec_fingerprint=versioned.fingerprint,
            offsets=inputs.ref.offsets,
            training_set_uri=inputs.ref.uri,
            training_set_sha256=training.sha256,
            rows=len(training.frame),
            holdout_rows=len(split.holdout),
            feature_columns=training.features,
            feature_definitions=feature_definitions(versioned.spec, training.features),
            data_quality=data_quality(training, split),
            library_versions=self.config.library_versions,
            code_version=self.config.code_version,
            trigger=request.trigger,
            cut_off=inputs.until,
            holdout_fraction=self.config.holdout_fraction,
            data_wait=inputs.data_wait,
        )
