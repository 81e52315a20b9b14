"""A training run end to end, without I/O: the feature store, MinIO and the registry are
replaced by in-memory stand-ins (the integration tests use the real ones)."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from services.training.adapters.feature_store import TrainingSetRef
from services.training.adapters.registry import Champion
from services.training.domain.errors import DataNotArrived, EstimatorRefused, TrainingRefused
from services.training.domain.frames import prepare
from services.training.domain.split import time_split
from services.training.domain.waiting import Positions, Waiting
from services.training.trainer import Trainer, TrainerConfig, run_id_of
from shared.artifacts import deserialize, serialize
from shared.datasets.registry import UnknownDataset
from shared.datasets.sources import agrawal_records
from shared.datasets.spec import DatasetSpec, ModelSpec, VersionedSpec, shipped_specs
from shared.events.envelope import Event
from shared.events.models import ArtifactRef, OffsetRange, TrainingTrigger, TrainModel

START = datetime(2024, 1, 1, tzinfo=UTC)
LOANS = next(spec for spec in shipped_specs() if spec.name == "loans")
URI = "s3://offline/loans/set-1.parquet"
OFFSETS = [
    OffsetRange(topic="t.data.features", partition=p, first_offset=0, last_offset=99)
    for p in range(3)
]


def loans_set() -> pd.DataFrame:
    return _loans_set().copy()


@functools.cache
def _loans_set() -> pd.DataFrame:
    rows = [
        {**r, "approved": y, "applications_1h": 1, "loan_sum_1h": r["loan"], "loan_mean_1d": 1.0}
        for r, y in agrawal_records(400, seed=8, start=START, function_before=1)
    ]
    return pd.DataFrame(rows)


class SpecsInMemory:
    def __init__(self, *specs: DatasetSpec) -> None:
        self.versions = {
            s.name: VersionedSpec(version=1, fingerprint=s.fingerprint(), spec=s) for s in specs
        }

    def refresh(self, timeout_s: float = 10.0) -> None:
        pass

    def latest(self, name: str) -> VersionedSpec:
        if name not in self.versions:
            raise UnknownDataset(name, sorted(self.versions))
        return self.versions[name]

    def get(self, name: str, version: int) -> VersionedSpec:
        return self.latest(name)


@dataclass
class OneTrainingSet:
    frame: pd.DataFrame
    asked: list[tuple[str, datetime | None]] = field(default_factory=list)

    covered: list[Positions] = field(default_factory=list)
    """What the offline store answers to successive coverage questions (the last repeats)."""
    coverage_asked: int = 0

    def training_set(self, dataset: str, until: datetime | None = None) -> TrainingSetRef:
        self.asked.append((dataset, until))
        return TrainingSetRef(URI, len(self.frame), list(self.frame.columns), OFFSETS)

    def coverage(self) -> Positions:
        self.coverage_asked += 1
        return self.covered[min(self.coverage_asked, len(self.covered)) - 1]


@dataclass
class PositionsAt:
    """Kafka's offsets at a moment, as the training service's KafkaPositions reads them."""

    positions: Positions
    asked: list[datetime] = field(default_factory=list)
    raw_at_command: Positions = field(default_factory=dict)
    raw_handled: list[Positions] = field(default_factory=lambda: [{}])
    validated_now: Positions = field(default_factory=dict)
    handled_asked: int = 0

    def at(self, moment: datetime) -> Positions:
        self.asked.append(moment)
        return self.positions

    def upstream_at(self, moment: datetime) -> Positions:
        return self.raw_at_command

    def upstream_handled(self) -> Positions:
        self.handled_asked += 1
        return self.raw_handled[min(self.handled_asked, len(self.raw_handled)) - 1]

    def downstream_now(self) -> Positions:
        return self.validated_now


@dataclass
class ObjectsInMemory:
    frame: pd.DataFrame
    stored: dict[str, bytes] = field(default_factory=dict)

    def read_parquet(self, uri: str) -> pd.DataFrame:
        assert uri == URI
        return self.frame.copy()

    def store_model(self, model: Any, bucket: str, key: str) -> ArtifactRef:
        data, trusted = serialize(model)
        self.stored[f"s3://{bucket}/{key}"] = data
        sha = hashlib.sha256(data).hexdigest()
        return ArtifactRef(
            uri=f"s3://{bucket}/{key}", sha256=sha, size_bytes=len(data), trusted_types=trusted
        )

    def load_model(self, ref: ArtifactRef) -> Any:
        return deserialize(self.stored[ref.uri], ref.sha256)


@dataclass
class ChampionOrNone:
    champion_: Champion | None = None

    def champion(self, model_name: str) -> Champion | None:
        return self.champion_


def command(
    seed: int | None = 3,
    params: dict[str, Any] | None = None,
    trigger: TrainingTrigger | None = None,
) -> Event[TrainModel]:
    return Event.create(
        TrainModel(
            model_name="loans",
            dataset="loans",
            trigger=trigger or TrainingTrigger(kind="manual", reason="test", requested_by="alice"),
            params={"max_iter": 20} if params is None else params,
            seed=seed,
        ),
        source="test",
    )


def trainer(
    spec: DatasetSpec = LOANS, champion: Champion | None = None
) -> tuple[Trainer, ObjectsInMemory, OneTrainingSet]:
    frame = loans_set()
    objects = ObjectsInMemory(frame)
    sets = OneTrainingSet(frame)
    config = TrainerConfig(namespace="ns", bucket="models", code_version="abc123")
    run = Trainer(config, SpecsInMemory(spec), sets, ChampionOrNone(champion), objects)
    return run, objects, sets


def holdout_x() -> pd.DataFrame:
    training = prepare(loans_set(), LOANS)
    return training.x(time_split(training, 0.2).holdout)


def test_a_run_stores_its_pipeline_and_records_the_complete_lineage() -> None:
    run, objects, sets = trainer()
    request = command()
    trained = run.train(request)
    assert trained.model_name == "loans" and trained.seed == 3
    assert trained.run_id == run_id_of(request.id) == request.id
    assert trained.artifact.uri == f"s3://models/ns/loans/{request.id}.skops"
    assert trained.estimator == "sklearn.ensemble.HistGradientBoostingClassifier"
    assert trained.params == {"max_iter": 20, "random_state": 3}  # the command's over the spec's
    assert trained.evaluation.primary_metric == "roc_auc" and trained.evaluation.higher_is_better
    assert {"accuracy", "f1", "roc_auc", "log_loss"} <= set(trained.evaluation.metrics)
    assert set(trained.evaluation.per_class) == {"0", "1"}
    assert trained.evaluation.holdout.startswith("last 20% by event time: 80 rows")
    assert trained.baseline is None
    lineage = trained.lineage
    assert (lineage.dataset, lineage.spec_version) == ("loans", 1)
    assert lineage.spec_fingerprint == LOANS.fingerprint()
    assert lineage.offsets == OFFSETS
    assert lineage.training_set_uri == URI
    assert lineage.training_set_sha256 == prepare(loans_set(), LOANS).sha256
    assert (lineage.rows, lineage.holdout_rows) == (400, 80)
    assert lineage.feature_columns[:3] == ["salary", "commission", "age"]
    assert lineage.feature_definitions["loan_sum_1h"]["function"] == "sum"
    assert lineage.data_quality["label_counts"].keys() == {"0", "1"}
    assert {"python", "scikit-learn", "numpy", "pandas", "skops"} <= set(lineage.library_versions)
    assert lineage.code_version == "abc123"
    assert lineage.trigger == request.data.trigger
    assert sets.asked == [("loans", request.time)]  # the set as of the command's time
    assert list(objects.stored) == [trained.artifact.uri]


def test_the_same_command_inputs_train_a_model_with_the_same_predictions() -> None:
    first_run, first_objects, _ = trainer()
    second_run, second_objects, _ = trainer()
    first = first_run.train(command(seed=21))
    second = second_run.train(command(seed=21))
    x = holdout_x()
    first_model = first_objects.load_model(first.artifact)
    second_model = second_objects.load_model(second.artifact)
    assert (first_model.predict_proba(x) == second_model.predict_proba(x)).all()
    assert first.evaluation == second.evaluation


def test_without_a_seed_the_default_seed_is_used() -> None:
    run, _, _ = trainer()
    assert run.train(command(seed=None)).seed == 0


def test_the_champion_is_scored_on_the_same_holdout() -> None:
    run, objects, _ = trainer()
    first = run.train(command(seed=5))
    champion = Champion(
        version=4, artifact=first.artifact, feature_columns=first.lineage.feature_columns
    )
    challenger_run, challenger_objects, _ = trainer(champion=champion)
    challenger_objects.stored.update(objects.stored)
    second = challenger_run.train(command(seed=5))
    assert second.baseline is not None
    assert second.baseline.version == 4
    # same data, same seed: the champion scores exactly what the new model scores
    assert second.baseline.metrics == second.evaluation.metrics


def test_a_window_since_a_drift_trains_and_scores_the_champion_on_that_window_only() -> None:
    run, objects, _ = trainer()
    first = run.train(command(seed=5))
    champion = Champion(
        version=4, artifact=first.artifact, feature_columns=first.lineage.feature_columns
    )
    challenger_run, challenger_objects, _ = trainer(champion=champion)
    challenger_objects.stored.update(objects.stored)
    frame = prepare(loans_set(), LOANS).frame
    start = frame["applied_at"].iloc[200].to_pydatetime()
    trigger = TrainingTrigger(kind="drift", event_id="drift-1", since=start)
    second = challenger_run.train(command(seed=5, trigger=trigger))
    assert (second.lineage.rows, second.lineage.holdout_rows) == (200, 40)
    assert second.lineage.data_quality["rows_before_window"] == 200
    assert second.lineage.data_quality["first_event_time"] == start.isoformat()
    assert second.lineage.trigger.since == start
    assert second.evaluation.holdout.startswith("last 20% by event time: 40 rows")
    assert second.baseline is not None and second.baseline.version == 4


def test_a_champion_that_cannot_be_loaded_gives_no_baseline() -> None:
    run, _, _ = trainer()
    bogus = ArtifactRef(uri="s3://models/missing.skops", sha256="0" * 64, size_bytes=1)
    objects_without = ObjectsInMemory(loans_set(), {bogus.uri: b"not a model"})
    config = TrainerConfig(namespace="ns")
    champion = Champion(version=2, artifact=bogus, feature_columns=["salary"])
    run = Trainer(
        config, SpecsInMemory(LOANS), OneTrainingSet(loans_set()), ChampionOrNone(champion),
        objects_without,
    )  # fmt: skip
    assert run.train(command()).baseline is None


def test_a_spec_naming_a_non_sklearn_estimator_is_refused() -> None:
    spec = LOANS.model_copy(update={"model": ModelSpec(estimator="os.system")})
    run, objects, _ = trainer(spec=spec)
    with pytest.raises(EstimatorRefused, match="only sklearn"):
        run.train(command())
    assert objects.stored == {}


def test_an_unknown_dataset_is_refused() -> None:
    run, _, _ = trainer()
    request = Event.create(
        TrainModel(model_name="nope", dataset="nope", trigger=TrainingTrigger(kind="manual")),
        source="test",
    )
    with pytest.raises(TrainingRefused, match="unknown dataset 'nope'"):
        run.train(request)


def test_run_ids_are_the_command_id_or_a_hash_of_it() -> None:
    assert run_id_of("6f1d3c52-8a47-4f0e") == "6f1d3c52-8a47-4f0e"
    hashed = run_id_of("a/../b c")
    assert len(hashed) == 32 and "/" not in hashed


NEEDED = {("ns.data.validated", 0): 300, ("ns.data.labels", 0): 120}


def waiting_trainer(
    covered: list[Positions], spec: DatasetSpec = LOANS, frame: pd.DataFrame | None = None
) -> tuple[Trainer, OneTrainingSet, PositionsAt, list[float]]:
    frame = loans_set() if frame is None else frame
    slept: list[float] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    waiting = Waiting(wait_s=10, poll_s=2, clock=lambda: clock[0], sleep=sleep)
    config = TrainerConfig(namespace="ns", waiting=waiting)
    sets = OneTrainingSet(frame, covered=covered)
    positions = PositionsAt(NEEDED)
    run = Trainer(
        config, SpecsInMemory(spec), sets, ChampionOrNone(), ObjectsInMemory(frame), positions
    )
    return run, sets, positions, slept


def test_a_run_waits_for_the_offline_store_then_says_so_in_its_lineage() -> None:
    behind = {("ns.data.validated", 0): 250, ("ns.data.labels", 0): 120}
    run, sets, positions, slept = waiting_trainer([behind, behind, NEEDED])
    request = command()
    trained = run.train(request)
    assert positions.asked == [request.time]
    assert slept == [2, 2] and sets.coverage_asked == 3
    assert sets.asked == [("loans", request.time)]
    wait = trained.lineage.data_wait
    assert wait is not None and wait.waited_s == 4 and wait.source == "offline_store"
    assert {(o.topic, o.partition, o.offset) for o in wait.needed} == {
        (topic, partition, offset) for (topic, partition), offset in NEEDED.items()
    }
    assert wait.covered == wait.needed


def test_a_record_still_in_validation_at_the_command_s_time_is_waited_for() -> None:
    raw = {("ns.data.raw", 0): 400}
    later = {**NEEDED, ("ns.data.validated", 0): 390}
    run, sets, positions, slept = waiting_trainer([NEEDED, later])
    positions.raw_at_command = raw
    positions.raw_handled = [{("ns.data.raw", 0): 350}, raw]
    positions.validated_now = {("ns.data.validated", 0): 390}
    trained = run.train(command())
    assert positions.handled_asked == 2 and sets.coverage_asked == 2
    wait = trained.lineage.data_wait
    assert wait is not None and wait.waited_s == 4 and slept == [2, 2]
    assert ("ns.data.validated", 0, 390) in {(o.topic, o.partition, o.offset) for o in wait.needed}


def test_validation_that_never_catches_up_fails_the_run_naming_it() -> None:
    run, sets, positions, _ = waiting_trainer([NEEDED])
    positions.raw_at_command = {("ns.data.raw", 0): 400}
    positions.raw_handled = [{("ns.data.raw", 0): 350}]
    with pytest.raises(DataNotArrived, match=r"validation did not reach .* ns\.data\.raw\[0\] "
                       r"up to offset 400 \(written up to 350\)"):  # fmt: skip
        run.train(command())
    assert sets.asked == [] and sets.coverage_asked == 0


def test_a_run_whose_data_never_arrives_fails_without_asking_for_a_training_set() -> None:
    behind = {("ns.data.validated", 0): 250, ("ns.data.labels", 0): 120}
    run, sets, _, slept = waiting_trainer([behind])
    with pytest.raises(DataNotArrived, match=r"ns\.data\.validated\[0\] up to offset 300 "
                       r"\(written up to 250\)"):  # fmt: skip
        run.train(command())
    assert sum(slept) == 10 and sets.asked == []


def test_a_command_that_cannot_be_trained_is_refused_before_any_wait() -> None:
    spec = LOANS.model_copy(update={"model": ModelSpec(estimator="sklearn.linear_model.Ridge")})
    run, sets, positions, _ = waiting_trainer([{}], spec=spec)
    with pytest.raises(EstimatorRefused, match="not a classifier"):
        run.train(command(params={}))
    bad_params = waiting_trainer([{}])[0]
    with pytest.raises(EstimatorRefused, match="no_such_param"):
        bad_params.train(command(params={"no_such_param": 1}))
    assert positions.asked == [] and sets.coverage_asked == 0


def test_the_spec_chooses_the_metric_margin_and_minimum_rows_the_registry_applies() -> None:
    rule = ModelSpec(primary_metric="accuracy", promotion_margin=0.02, min_evaluation_rows=100)
    run, _, _ = trainer(spec=LOANS.model_copy(update={"model": rule}))
    evaluation = run.train(command()).evaluation
    assert (evaluation.primary_metric, evaluation.higher_is_better) == ("accuracy", True)
    assert (evaluation.margin, evaluation.min_rows, evaluation.rows) == (0.02, 100, 80)
    lower = ModelSpec(primary_metric="log_loss")
    run, _, _ = trainer(spec=LOANS.model_copy(update={"model": lower}))
    evaluation = run.train(command()).evaluation
    assert (evaluation.primary_metric, evaluation.higher_is_better) == ("log_loss", False)
    assert (evaluation.margin, evaluation.min_rows) == (None, None)


def regression_spec() -> DatasetSpec:
    """LOANS' columns with a numeric label: the salary-like target of a regression."""
    data = LOANS.model_dump()
    data["name"] = "loan_amounts"
    data["label"] = {"name": "approved", "type": "numeric", "task": "regression"}
    data["model"] = {}  # no estimator declared
    return DatasetSpec.model_validate(data)


def test_a_regression_spec_without_an_estimator_trains_a_regressor_on_rmse() -> None:
    spec = regression_spec()
    frame = loans_set()
    frame["approved"] = frame["loan"] / 1000 + frame["approved"]
    run, _, _, _ = waiting_trainer([NEEDED], spec=spec, frame=frame)
    request = Event.create(
        TrainModel(
            model_name="loan_amounts", dataset="loan_amounts",
            trigger=TrainingTrigger(kind="manual"), params={"max_iter": 20},
        ),
        source="test",
    )  # fmt: skip
    trained = run.train(request)
    assert trained.estimator == "sklearn.ensemble.HistGradientBoostingRegressor"
    assert (trained.evaluation.primary_metric, trained.evaluation.higher_is_better) == (
        "rmse", False,
    )  # fmt: skip
    assert {"rmse", "mae", "r2"} <= set(trained.evaluation.metrics)
