"""Training's handlers: a command is handled once however often it is delivered and ends in
an outcome on models.trained (ModelTrained, or TrainingFailed refused/failed with the reason),
and every N labels of a dataset set off one retraining.

Runs and label counts live in a real SQLite database in memory (the service's own stores);
the trainer is a stand-in that counts its calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from services.training.adapters.database import create_training_engine
from services.training.adapters.errors import DependencyUnavailable
from services.training.adapters.labels import SqlLabelCounter
from services.training.adapters.leases import SqlLeases
from services.training.adapters.runs import SqlRuns
from services.training.domain.errors import DataNotArrived, EstimatorRefused
from services.training.exclusive import ExclusionConfig, ModelExclusion
from services.training.handlers import (
    COMMANDS,
    TRAINED,
    Deps,
    count_label,
    train_model,
)
from shared.events.envelope import Event
from shared.events.models import (
    ArtifactRef,
    Evaluation,
    ModelTrained,
    TrainingFailed,
    TrainingLineage,
    TrainingTrigger,
    TrainModel,
)
from shared.events.records import LabelRecorded
from shared.kafka.consumer import MessageInfo

LABELS_TOPIC = "ns.data.labels"


def trained(run_id: str) -> ModelTrained:
    return ModelTrained(
        model_name="loans",
        run_id=run_id,
        estimator="sklearn.ensemble.HistGradientBoostingClassifier",
        params={},
        seed=0,
        artifact=ArtifactRef(uri=f"s3://m/{run_id}.skops", sha256="a" * 64, size_bytes=10),
        evaluation=Evaluation(metrics={"roc_auc": 0.9}, primary_metric="roc_auc", holdout="20%"),
        lineage=TrainingLineage(
            dataset="loans",
            spec_version=1,
            spec_fingerprint="f",
            offsets=[],
            training_set_sha256="b" * 64,
            rows=10,
            holdout_rows=2,
            feature_columns=["x"],
            code_version="unknown",
            trigger=TrainingTrigger(kind="manual"),
        ),
        trained_at=datetime.now(UTC),
    )


@dataclass
class CountingTrainer:
    calls: int = 0
    refuse: bool = False
    errors: list[Exception] = field(default_factory=list)
    """Raised by the first calls, one each."""

    def train(self, command: Event[TrainModel]) -> ModelTrained:
        self.calls += 1
        if self.refuse:
            raise EstimatorRefused("estimator 'os.system' is not a scikit-learn class")
        if self.errors:
            raise self.errors.pop(0)
        return trained(command.id)


def exclusion(engine: Engine, namespace: str) -> ModelExclusion:
    """The service's own leases, in the same SQLite database."""
    return ModelExclusion(SqlLeases(engine, namespace, ttl_s=60), ExclusionConfig(wait_s=0))


def deps(
    trainer: CountingTrainer, namespace: str = "ns", every: int = 3, attempts: int = 3
) -> Deps:
    engine = create_training_engine("sqlite://")
    return Deps(
        trainer=trainer,
        runs=SqlRuns(engine, namespace),
        labels=SqlLabelCounter(engine, namespace),
        exclusion=exclusion(engine, namespace),
        retrain_every_labels=every,
        model_name_for=lambda dataset: {"loans": "loans-hgb"}.get(dataset, dataset),
        attempts=attempts,
        sleep=lambda seconds: None,
    )


def info(offset: int = 0, topic: str = "ns.training.requests", partition: int = 0) -> MessageInfo:
    return MessageInfo(topic, partition, offset, b"loans", None)


def train_command() -> Event[TrainModel]:
    payload = TrainModel(
        model_name="loans", dataset="loans", trigger=TrainingTrigger(kind="manual")
    )
    return Event.create(payload, source="test", subject="loans")


def test_a_redelivered_command_is_trained_once_and_re_emits_the_same_event() -> None:
    trainer = CountingTrainer()
    handle = train_model(deps(trainer))
    command = train_command()
    first = handle(command, info(0))
    again = handle(command, info(0))
    assert trainer.calls == 1
    assert [e.topic for e in first] == [TRAINED]
    assert first[0].event.to_json_bytes() == again[0].event.to_json_bytes()
    assert first[0].key == "loans"
    emitted = first[0].event
    assert emitted.causationid == command.id
    assert emitted.correlationid == command.id
    assert emitted.data.run_id == command.id


def test_the_model_trained_id_is_derived_from_the_command() -> None:
    command = train_command()
    one = train_model(deps(CountingTrainer()))(command, info())[0].event
    other = train_model(deps(CountingTrainer()))(command, info())[0].event
    assert one.id == other.id != command.id  # a retrain after a crash emits the same id


def test_runs_are_kept_per_namespace() -> None:
    trainer = CountingTrainer()
    engine = create_training_engine("sqlite://")
    command = train_command()
    for namespace in ("prod", "replay"):
        runs = SqlRuns(engine, namespace)
        labels = SqlLabelCounter(engine, namespace)
        handle = train_model(Deps(trainer, runs, labels, exclusion(engine, namespace)))
        handle(command, info())
    assert trainer.calls == 2


def test_a_refused_command_ends_at_once_in_training_failed_refused_with_the_reason() -> None:
    trainer = CountingTrainer(refuse=True)
    handle = train_model(deps(trainer))
    command = train_command()
    [emit] = handle(command, info())
    assert (emit.topic, emit.key) == (TRAINED, "loans")
    failed = emit.event.data
    assert isinstance(failed, TrainingFailed)
    assert (failed.outcome, failed.error) == ("refused", "EstimatorRefused")
    assert "os.system" in failed.reason
    assert (failed.command_id, failed.dataset, failed.trigger) == (
        command.id, "loans", command.data.trigger,
    )  # fmt: skip
    assert emit.event.causationid == command.id
    [again] = handle(command, info())
    assert again.event.to_json_bytes() == emit.event.to_json_bytes()
    assert trainer.calls == 1, "a refused command was tried again"


def test_a_dependency_that_keeps_failing_ends_in_training_failed_after_the_attempts() -> None:
    down = [DependencyUnavailable(f"feature store down ({n})") for n in range(3)]
    trainer = CountingTrainer(errors=down)
    handle = train_model(deps(trainer, attempts=3))
    command = train_command()
    [emit] = handle(command, info())
    failed = emit.event.data
    assert isinstance(failed, TrainingFailed)
    assert (failed.outcome, failed.error) == ("failed", "DependencyUnavailable")
    assert failed.reason == "feature store down (2)"
    assert trainer.calls == 3
    [again] = handle(command, info())
    assert again.event.id == emit.event.id and trainer.calls == 3


def test_a_dependency_that_comes_back_within_the_attempts_trains() -> None:
    trainer = CountingTrainer(errors=[DependencyUnavailable("MinIO down")])
    [emit] = train_model(deps(trainer, attempts=2))(train_command(), info())
    assert isinstance(emit.event.data, ModelTrained) and trainer.calls == 2


def test_data_that_did_not_arrive_fails_at_once_without_more_attempts() -> None:
    late = DataNotArrived("missing ns.data.labels[0] up to offset 9 (written up to 4)")
    trainer = CountingTrainer(errors=[late])
    [emit] = train_model(deps(trainer, attempts=5))(train_command(), info())
    failed = emit.event.data
    assert isinstance(failed, TrainingFailed)
    assert (failed.outcome, failed.error) == ("failed", "DataNotArrived")
    assert "ns.data.labels[0] up to offset 9" in failed.reason
    assert trainer.calls == 1


def test_a_command_is_running_only_while_it_is_handled() -> None:
    seen: list[object] = []
    service = deps(CountingTrainer())
    command = train_command()

    class Watching(CountingTrainer):
        def train(self, command: Event[TrainModel]) -> ModelTrained:
            seen.append(service.running.started(command.id))
            return super().train(command)

    service.trainer = Watching()
    train_model(service)(command, info())
    assert isinstance(seen[0], datetime)
    assert service.running.started(command.id) is None


def label(record: int, dataset: str = "loans") -> Event[LabelRecorded]:
    payload = LabelRecorded(
        dataset=dataset, record_id=f"r{record}", label=1, labelled_at=datetime.now(UTC)
    )
    return Event.create(payload, source="test", subject=f"r{record}")


def test_every_n_labels_of_a_dataset_publish_one_data_volume_command() -> None:
    handle = count_label(deps(CountingTrainer(), every=3))
    emitted = []
    for offset in range(7):
        emitted += handle(label(offset), info(offset, LABELS_TOPIC))
    assert [e.topic for e in emitted] == [COMMANDS, COMMANDS]
    commands = [e.event for e in emitted]
    assert all(c.data.trigger.kind == "data_volume" for c in commands)
    assert [c.data.model_name for c in commands] == ["loans-hgb", "loans-hgb"]
    assert commands[0].data.dataset == "loans"
    assert commands[0].data.trigger.reason.startswith("3 labels of loans")
    assert commands[1].data.trigger.reason.startswith("6 labels of loans")
    assert emitted[0].key == "loans-hgb"


def test_labels_are_counted_per_dataset() -> None:
    handle = count_label(deps(CountingTrainer(), every=2))
    emitted = []
    for offset, dataset in enumerate(["loans", "breast_cancer", "loans", "breast_cancer", "x"]):
        emitted += handle(label(offset, dataset), info(offset, LABELS_TOPIC))
    assert [e.event.data.dataset for e in emitted] == ["loans", "breast_cancer"]
    assert emitted[1].event.data.model_name == "breast_cancer"


def test_a_redelivered_label_is_not_counted_twice_and_re_emits_its_command() -> None:
    service = deps(CountingTrainer(), every=3)
    handle = count_label(service)
    events = [label(i) for i in range(3)]
    first = [handle(e, info(i, LABELS_TOPIC)) for i, e in enumerate(events)]
    assert first[:2] == [[], []] and len(first[2]) == 1
    replayed = [handle(e, info(i, LABELS_TOPIC)) for i, e in enumerate(events)]
    assert replayed[:2] == [[], []]
    assert replayed[2][0].event.to_json_bytes() == first[2][0].event.to_json_bytes()
    assert service.labels.labels("loans") == 3  # type: ignore[attr-defined]


def test_offsets_are_tracked_per_partition() -> None:
    service = deps(CountingTrainer(), every=100)
    handle = count_label(service)
    handle(label(0), info(5, LABELS_TOPIC, partition=0))
    handle(label(1), info(5, LABELS_TOPIC, partition=1))
    handle(label(2), info(3, LABELS_TOPIC, partition=1))  # an older offset: a redelivery
    assert service.labels.labels("loans") == 2  # type: ignore[attr-defined]


def test_a_dataset_without_a_valid_model_name_sets_off_nothing() -> None:
    handle = count_label(deps(CountingTrainer(), every=1))
    assert handle(label(0, dataset="Not A Model"), info(0, LABELS_TOPIC)) == []
