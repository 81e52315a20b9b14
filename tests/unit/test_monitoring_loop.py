"""Issue 11's monitoring points, on the pure monitor, policy and handlers (fakes only):
one label path, outcomes that close the policy's loop, regression, error against the
training holdout, robust feature detectors, covariate-shift rates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from services.monitoring.adapters.history import History
from services.monitoring.adapters.specs import DatasetTasks
from services.monitoring.domain.detectors import DetectorSpec, SignalDetector
from services.monitoring.domain.join import LabelJoin
from services.monitoring.domain.monitor import Monitor, Served
from services.monitoring.domain.policy import PolicyConfig, RetrainPolicy
from services.monitoring.domain.retrains import RetrainResult
from services.monitoring.handlers import Deps
from services.monitoring.settings import MonitoringSettings
from shared.datasets.registry import UnknownDataset
from shared.events.envelope import Event
from shared.events.models import (
    ArtifactRef,
    Evaluation,
    ModelPromoted,
    ModelRegistered,
    ModelRejected,
    ModelTrained,
    TrainingFailed,
    TrainingLineage,
    TrainingTrigger,
)
from shared.events.records import FieldError, RecordRejected, RecordValidated, SourcePosition
from tests.unit.test_monitoring_handlers import (
    Clock,
    InMemoryHistory,
    feed_shift,
    handler,
    info,
    label,
    make,
    prediction,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = MonitoringSettings(_env_file=None)  # type: ignore[call-arg]
ARTIFACT = ArtifactRef(uri="s3://models/loans/x.skops", sha256="0" * 64, size_bytes=1)


def monitor(
    task: str = "classification", holdout: dict[str, float] | None = None, **settings: Any
) -> Monitor:
    config = MonitoringSettings(_env_file=None, **settings)  # type: ignore[call-arg]
    return Monitor(
        config.detectors_for,
        config.model_name_for,
        LabelJoin[Served](3600),
        task_for=lambda dataset: task,
        holdout_metrics=lambda model, version: holdout,
    )


def served(index: int, value: Any, dataset: str = "houses", version: int = 1) -> Served:
    return Served(
        dataset=dataset,
        model_name=dataset,
        version=version,
        record_id=f"r{index}",
        prediction=value,
        shadow=False,
        served_at=START + timedelta(seconds=index),
    )


def feed(m: Monitor, predictions: list[Any], labels: list[Any]) -> list[Any]:
    found = []
    for i, (p, y) in enumerate(zip(predictions, labels, strict=True)):
        found += m.observe_prediction(served(i, p), now=i)[0]
        found += m.observe_label("houses", f"r{i}", y, now=i)[0]
    return found


def with_record(index: int, salary: float, value: Any) -> Event[RecordValidated]:
    return Event[RecordValidated].create(
        RecordValidated(
            dataset="loans",
            spec_version=1,
            record_id=f"r{index}",
            entity="e",
            event_time=START + timedelta(seconds=index),
            values={"salary": salary},
            label=value,
            source=SourcePosition(topic="raw", partition=0, offset=index),
        ),
        source="test",
    )


# 1. One label path ------------------------------------------------------------------------


def test_a_label_carried_by_its_record_is_joined_like_a_late_label() -> None:
    deps, _, _ = make()
    serve, records = handler(deps, "serving.predictions"), handler(deps, "data.validated")
    for i in range(4):
        serve(prediction(i, 1), info("p", i))
        records(with_record(i, 1000.0, 1 if i < 3 else 0), info("v", i))
    (row,) = deps.monitor.performance()
    assert row["labelled"] == 4 and row["accuracy"] == 0.75
    assert deps.monitor.join.counts()["joined"] == 4


def test_labels_carried_by_records_complete_a_waiting_episode() -> None:
    deps, history, _ = make(min_labels=5)
    feed_shift(deps)
    assert history.decisions[0][0].action == "wait"
    serve, records = handler(deps, "serving.predictions"), handler(deps, "data.validated")
    emitted = []
    for i in range(5):
        serve(prediction(2000 + i, 1), info("p", 2000 + i))
        emitted += records(with_record(2000 + i, 1500.0, 1), info("v", 2000 + i))
    commands = [e for e in emitted if e.topic == "training.requests"]
    assert len(commands) == 1 and history.decisions[-1][0].labels_after_drift == 5


def test_a_record_carried_label_is_counted_once_when_redelivered() -> None:
    deps, _, _ = make()
    handler(deps, "serving.predictions")(prediction(0, 1), info("p", 0))
    records = handler(deps, "data.validated")
    records(with_record(0, 1000.0, 1), info("v", 0))
    records(with_record(0, 1000.0, 1), info("v", 0))  # the runner's redelivery, same offset
    assert deps.monitor.performance()[0]["labelled"] == 1


# 2. Outcomes close the policy's loop -------------------------------------------------------


def policy(**overrides: float) -> RetrainPolicy:
    config = {
        "debounce_s": 60.0,
        "cooldown_s": 1800.0,
        "min_labels_after_drift": 2,
        "max_retrains_per_hour": 1,
        "max_attempts": 3,
        **overrides,
    }
    return RetrainPolicy(PolicyConfig(**config))  # type: ignore[arg-type]


def trigger(rules: RetrainPolicy, drift_id: str, now: float) -> None:
    assert rules.on_drift("m", drift_id, now).action == "wait"
    rules.on_label("m", now)
    decision = rules.on_label("m", now)
    assert decision is not None and decision.action == "trigger"


def test_a_failed_retrain_starts_no_cooldown_nor_counts_for_the_breaker_and_re_arms() -> None:
    rules = policy()
    trigger(rules, "d1", now=0)
    assert rules.breaker("m", now=1)["retrains_last_hour"] == 1
    decision = rules.on_retrain_failed("m", "d1", "NotEnoughData: 0 rows", now=10)
    assert decision is not None and decision.action == "wait"
    assert "re-armed" in decision.reason and "NotEnoughData" in decision.reason
    assert rules.breaker("m", now=11)["retrains_last_hour"] == 0
    assert rules.breaker("m", now=11)["last_trigger"] is None
    assert rules.on_label("m", now=12) is None
    again = rules.on_label("m", now=13)
    assert again is not None and again.action == "trigger" and again.drift_id == "d1"
    assert "attempt 2/3" in again.reason


def test_a_successful_retrain_keeps_its_cooldown() -> None:
    rules = policy(debounce_s=1)
    trigger(rules, "d1", now=0)
    rules.on_retrain_done("m", "d1")
    assert rules.on_retrain_failed("m", "d1", "late", now=5) is None  # not in flight any more
    assert rules.on_drift("m", "d2", now=10).reason.startswith("cooldown")


def test_retries_of_a_failing_retrain_are_bounded() -> None:
    rules = policy(min_labels_after_drift=0, max_retrains_per_hour=10)
    assert rules.on_drift("m", "d1", now=0).action == "trigger"
    actions = []
    for attempt in range(3):
        decision = rules.on_retrain_failed("m", "d1", "MinIO down", now=10 + attempt)
        assert decision is not None
        actions.append(decision.action)
    assert actions == ["trigger", "trigger", "suppress"]
    assert decision.reason.startswith("gave_up")
    assert rules.breaker("m", now=20)["retrains_last_hour"] == 0


def failed(command_id: str, outcome: str = "failed") -> Event[TrainingFailed]:
    return Event[TrainingFailed].create(
        TrainingFailed(
            model_name="loans",
            dataset="loans",
            command_id=command_id,
            trigger=TrainingTrigger(kind="drift"),
            outcome=outcome,  # type: ignore[arg-type]
            reason="no labelled rows since the drift yet",
            error="NotEnoughData",
            failed_at=START,
        ),
        source="training",
    )


def trained(run_id: str) -> Event[ModelTrained]:
    return Event[ModelTrained].create(
        ModelTrained(
            model_name="loans",
            run_id=run_id,
            estimator="x",
            params={},
            seed=1,
            artifact=ARTIFACT,
            evaluation=Evaluation(
                metrics={"roc_auc": 0.9}, primary_metric="roc_auc", holdout="last 20%"
            ),
            lineage=TrainingLineage(
                dataset="loans",
                spec_version=1,
                spec_fingerprint="f",
                offsets=[],
                training_set_sha256="1" * 64,
                rows=10,
                holdout_rows=2,
                feature_columns=["salary"],
                code_version="unknown",
                trigger=TrainingTrigger(kind="drift"),
            ),
            trained_at=START,
        ),
        source="training",
    )


def drift_retrain(min_labels: int = 0) -> tuple[Deps, InMemoryHistory, Clock, str]:
    deps, history, clock = make(min_labels=min_labels)
    deps.policy = RetrainPolicy(
        PolicyConfig(
            debounce_s=60, cooldown_s=1800, min_labels_after_drift=min_labels,
            max_retrains_per_hour=1,
        )
    )  # fmt: skip
    [command] = [e for e in feed_shift(deps) if e.topic == "training.requests"]
    return deps, history, clock, command.event.id


def test_a_failed_drift_retrain_is_recorded_and_the_policy_triggers_again() -> None:
    deps, history, clock, command_id = drift_retrain()
    clock.now += 5
    emitted = handler(deps, "models.trained")(failed(command_id), info("t", 0))
    [result] = history.results
    assert result.command_id == command_id and result.outcome == "failed"
    assert result.summary.startswith("failed: NotEnoughData")
    retry = [e for e in emitted if e.topic == "training.requests"]
    assert len(retry) == 1 and retry[0].event.id != command_id  # breaker (1/h) was freed
    assert retry[0].event.data.trigger.event_id == history.drifts[0].id
    assert history.decisions[-1][0].action == "trigger" and "re-armed" in (
        history.decisions[-1][0].reason
    )
    assert deps.policy.breaker("loans", clock.now)["retrains_last_hour"] == 1


def test_a_refused_retrain_waits_for_new_labels_before_trying_again() -> None:
    deps, history, _, command_id = drift_retrain(min_labels=0)
    deps.policy.config = PolicyConfig(
        debounce_s=60, cooldown_s=1800, min_labels_after_drift=2, max_retrains_per_hour=1
    )
    emitted = handler(deps, "models.trained")(failed(command_id, "refused"), info("t", 0))
    assert not [e for e in emitted if e.topic == "training.requests"]
    assert history.decisions[-1][0].action == "wait"
    serve, labels = handler(deps, "serving.predictions"), handler(deps, "data.labels")
    emitted = []
    for i in range(2):
        serve(prediction(i, 1), info("p", i))
        emitted += labels(label(i, 1), info("l", i))
    assert len([e for e in emitted if e.topic == "training.requests"]) == 1


def test_a_retrain_s_outcome_follows_it_to_the_registry_s_verdict() -> None:
    deps, history, _, command_id = drift_retrain()
    handler(deps, "models.trained")(trained(command_id), info("t", 0))
    lifecycle = handler(deps, "models.lifecycle")
    registered = ModelRegistered(
        model_name="loans",
        version=4,
        run_id=command_id,
        artifact=ARTIFACT,
        evaluation=Evaluation(metrics={}, primary_metric="roc_auc", holdout="h"),
    )
    lifecycle(Event.create(registered, source="registry"), info("l", 0))
    promoted = ModelPromoted(
        model_name="loans", version=4, artifact=ARTIFACT, reason="better", decided_by="policy"
    )
    lifecycle(Event.create(promoted, source="registry"), info("l", 1))
    other = ModelRejected(model_name="loans", version=5, reason="unrelated")
    lifecycle(Event.create(other, source="registry"), info("l", 2))
    assert [r.summary for r in history.results] == [
        f"trained: run {command_id}, roc_auc 0.9",
        "registered v4",
        "promoted v4: better",
    ]
    assert deps.policy.on_retrain_failed("loans", history.drifts[0].id, "x", 0) is None


def test_outcomes_of_trainings_monitoring_did_not_ask_for_are_ignored() -> None:
    deps, history, _, _ = drift_retrain()
    handler(deps, "models.trained")(failed("someone-else"), info("t", 0))
    handler(deps, "models.trained")(trained("manual-run"), info("t", 1))
    assert history.results == []


def test_the_sql_decision_log_shows_trigger_then_outcome(tmp_path: Any) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'h.sqlite'}")
    with engine.begin() as connection:  # a decisions table from before outcomes existed
        connection.execute(
            text(
                "CREATE TABLE ns_monitoring_decisions (id INTEGER PRIMARY KEY, decision_id "
                "VARCHAR(200) UNIQUE NOT NULL, decided_at FLOAT NOT NULL, model_name VARCHAR(200) "
                "NOT NULL, action VARCHAR(20) NOT NULL, reason TEXT NOT NULL, drift_id "
                "VARCHAR(200) NOT NULL, breaker_open BOOLEAN NOT NULL, labels_after_drift "
                "INTEGER NOT NULL, command_id VARCHAR(200))"
            )
        )
    history = History(engine, "ns")
    _, memory, _, command_id = drift_retrain()
    decision = memory.decisions[0][0]
    history.record_decision("dec-1", decision, command_id)
    result = RetrainResult("ev-1", command_id, "loans", decision.drift_id, "failed", 1.0, None, "x")
    history.record_result(result)
    history.record_result(result)  # a redelivery writes nothing more
    [row] = history.recent_decisions(10)
    assert row["outcome"] == "failed: x" and [s["outcome"] for s in row["outcomes"]] == ["failed"]
    assert len(history.recent_results(10)) == 1


# 3. Regression ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_regression_residual_drift_is_detected_and_stationary_residuals_raise_none(
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.normal(50_000, 10_000, 3000)  # units of the label: large
    noise = rng.normal(0, 2_000, 3000)
    stationary = monitor("regression")
    assert not [f for f in feed(stationary, list(truth + noise), list(truth))]
    shifting = monitor("regression")
    predictions = truth + noise
    predictions[1500:] += rng.normal(0, 8_000, 1500)  # the model gets worse at 1500
    found = [f for f in feed(shifting, list(predictions), list(truth))]
    errors = [f for f in found if f.drift.signal == "error"]
    assert errors and 1500 < errors[0].drift.position < 1500 + 300


def test_regression_performance_shows_mae_and_rmse_not_accuracy() -> None:
    m = monitor("regression")
    feed(m, [1.0, 2.0, 5.0, "7.5"], [2.0, 2.0, 2.0, 7.5])
    (row,) = m.performance()
    assert row["task"] == "regression" and "accuracy" not in row
    assert row["count"] == 4 and row["mae"] == pytest.approx(1.0)
    assert row["rmse"] == pytest.approx(np.sqrt((1 + 0 + 9 + 0) / 4))
    assert row["last_100_mae"] == pytest.approx(1.0)


def test_the_regression_prediction_signal_is_the_predicted_value() -> None:
    m = monitor("regression")
    rng = np.random.default_rng(5)
    values = list(rng.normal(10, 1, 1200)) + list(rng.normal(13, 1, 300))
    found = []
    for i, value in enumerate(values):
        found += m.observe_prediction(served(i, float(value)), now=i)[0]
    assert [f.drift.signal for f in found][:1] == ["prediction"]
    assert found[0].drift.position > 1200


def test_a_multi_class_prediction_signal_is_the_rate_of_the_usual_class() -> None:
    m = monitor()
    rng = np.random.default_rng(2)
    before = rng.choice(["a", "b", "c"], 1500, p=[0.6, 0.3, 0.1])
    after = rng.choice(["a", "b", "c"], 500, p=[0.2, 0.3, 0.5])
    found = []
    for i, value in enumerate([*before, *after]):
        found += m.observe_prediction(served(i, str(value)), now=i)[0]
    assert found and all(f.drift.signal == "prediction" for f in found)
    assert found[0].drift.position > 1500


# 4. Error against the training holdout ------------------------------------------------------


def test_a_classifier_wrong_from_its_first_prediction_alarms_against_its_holdout() -> None:
    m = monitor(holdout={"accuracy": 0.9, "roc_auc": 0.95})
    rng = np.random.default_rng(0)
    labels = [int(v) for v in rng.integers(0, 2, 200)]
    wrong = [1 - y if rng.random() < 0.6 else y for y in labels]  # 60 % errors from the start
    found = [f for f in feed(m, wrong, labels) if f.drift.signal == "error_vs_holdout"]
    assert len(found) == 1  # once per version
    drift = found[0].drift
    assert drift.signal_kind == "error" and 30 <= drift.position <= 60
    assert drift.reference["holdout_error"] == pytest.approx(0.1)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_a_classifier_as_good_as_its_holdout_raises_no_holdout_alarm(seed: int) -> None:
    m = monitor(holdout={"accuracy": 0.8})
    rng = np.random.default_rng(seed)
    labels = [int(v) for v in rng.integers(0, 2, 2000)]
    good = [1 - y if rng.random() < 0.2 else y for y in labels]
    assert not [f for f in feed(m, good, labels) if f.drift.signal == "error_vs_holdout"]


def test_a_regressor_far_worse_than_its_holdout_alarms_and_a_good_one_does_not() -> None:
    rng = np.random.default_rng(4)
    truth = rng.normal(100, 20, 500)
    holdout = {"mae": 4.0, "rmse": 5.0}
    good = monitor("regression", holdout=holdout)
    assert not feed(good, list(truth + rng.normal(0, 5, 500)), list(truth))
    bad = monitor("regression", holdout=holdout)
    found = feed(bad, list(truth + rng.normal(0, 15, 500)), list(truth))
    assert [f.drift.signal for f in found][:1] == ["error_vs_holdout"]
    assert found[0].drift.position <= 40


def test_a_task_read_late_replaces_the_fallback_and_the_regressor_still_alarms() -> None:
    """The spec could not be read at the first predictions (the task fell back to
    classification): once it reads regression, the version is scored on its residuals."""
    answers = iter(["classification"] * 20)
    m = Monitor(
        SETTINGS.detectors_for,
        SETTINGS.model_name_for,
        LabelJoin[Served](3600),
        task_for=lambda dataset: next(answers, "regression"),
        holdout_metrics=lambda model, version: {"mae": 4.0, "rmse": 5.0},
    )
    rng = np.random.default_rng(4)
    truth = rng.normal(100, 20, 300)
    found = feed(m, list(truth + rng.normal(0, 15, 300)), list(truth))
    assert [f.drift.signal for f in found][:1] == ["error_vs_holdout"]
    assert m.performance()[0]["mae"] == pytest.approx(m.scores[("houses", 1)].summary()["mae"])
    assert m.scores[("houses", 1)].task == "regression"


def test_no_holdout_alarm_without_the_version_s_lineage() -> None:
    m = monitor(holdout=None)
    labels = [0, 1] * 100
    assert not [f for f in feed(m, [1 - y for y in labels], labels) if "holdout" in f.drift.signal]


# 5. Robust feature detectors ----------------------------------------------------------------


def stationary_streams(seed: int, n: int = 6000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    spikes = (rng.random(n) < 0.01) * rng.integers(50, 500, n)
    return {
        "poisson_with_spikes": rng.poisson(0.3, n) + spikes,
        "small_integers": rng.integers(0, 3, n),
        "cauchy": rng.standard_cauchy(n),
        "rounded_lognormal": rng.lognormal(0, 2, n).round(),
        "mostly_zero": (rng.random(n) < 0.02).astype(float) * rng.pareto(1.5, n) * 1000,
    }


def detections(values: np.ndarray, spec: DetectorSpec) -> list[int]:
    detector = SignalDetector("x", "feature", spec)
    return [i for i, v in enumerate(values) if detector.update(float(v)) is not None]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_stationary_discrete_and_heavy_tailed_features_raise_no_alarm(seed: int) -> None:
    spec = SETTINGS.detectors_for("any").feature
    for name, values in stationary_streams(seed).items():
        assert detections(values, spec) == [], name


def test_the_same_streams_fool_adwin_on_raw_values() -> None:
    raw = DetectorSpec("adwin", {"delta": 0.002})
    fooled = sum(
        bool(detections(values, raw))
        for seed in (1, 2, 3)
        for values in stationary_streams(seed).values()
    )
    assert fooled >= 3  # why the ranks: raw ADWIN alarms on spikes and ties


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_real_covariate_shift_is_caught_within_a_few_hundred_records(seed: int) -> None:
    rng = np.random.default_rng(seed)
    spec = SETTINGS.detectors_for("any").feature
    normal = rng.normal(50, 10, 2000)
    normal[1000:] += 10  # one standard deviation
    counts = rng.poisson(3, 2000).astype(float)
    counts[1000:] = rng.poisson(4.7, 1000)  # one standard deviation, discrete
    for values in (normal, counts):
        found = detections(values, spec)
        assert found and 1000 < found[0] < 1300


def test_a_feature_drift_before_any_model_served_is_recorded_not_a_retrain() -> None:
    deps, history, _ = make()
    emitted = feed_shift(deps, served=False)
    assert [e for e in emitted if e.topic == "monitoring.drift"]
    assert not [e for e in emitted if e.topic == "training.requests"]
    decision = history.decisions[0][0]
    assert decision.action == "ignore" and decision.reason.startswith("ignored: no model served")
    promoted = ModelPromoted(
        model_name="loans", version=1, artifact=ARTIFACT, reason="first", decided_by="policy"
    )
    handler(deps, "models.lifecycle")(Event.create(promoted, source="registry"), info("l", 0))
    assert deps.monitor.has_served("loans")


# 6. Covariate shift as a monitored signal ---------------------------------------------------


def test_a_rising_out_of_range_rate_raises_a_feature_drift() -> None:
    m = monitor()
    rng = np.random.default_rng(3)
    found = []
    for i in range(2000):
        flagged = rng.random() < (0.01 if i < 1200 else 0.3)
        found += m.observe_record("houses", {}, START, ["rooms"] if flagged else [])
    assert [f.drift.signal for f in found] == ["out_of_range"]
    assert found[0].drift.signal_kind == "feature" and found[0].drift.position > 1200


def test_rejections_raise_a_rejection_rate_drift() -> None:
    deps, _, _ = make()
    records, rejected = handler(deps, "data.validated"), handler(deps, "data.rejected")
    emitted = []
    for i in range(1500):
        if i >= 1000 and i % 2:
            event = RecordRejected(
                dataset="loans",
                values={"salary": -1},
                errors=[FieldError(field="salary", rule="range", message="below min")],
                source=SourcePosition(topic="raw", partition=0, offset=i),
            )
            emitted += rejected(Event.create(event, source="validation"), info("x", i))
        else:
            emitted += records(with_record(i, 1000.0 + i % 7, None), info("v", i))
    signals = [e.event.data.signal for e in emitted if e.topic == "monitoring.drift"]
    assert signals == ["rejection_rate"]


# The task comes from the spec ---------------------------------------------------------------


class FakeSpecs:
    def __init__(self) -> None:
        self.known: dict[str, str] = {}
        self.asked = 0

    def latest(self, name: str) -> Any:
        self.asked += 1
        if name not in self.known:
            raise UnknownDataset(name, sorted(self.known))

        class Spec:
            task = self.known[name]

        class Versioned:
            spec = Spec

        return Versioned


def test_the_task_comes_from_the_spec_and_unknown_datasets_are_asked_again_later() -> None:
    specs, now = FakeSpecs(), [0.0]
    tasks = DatasetTasks(specs, {"legacy": "regression"}, retry_s=30, clock=lambda: now[0])
    assert tasks.task("houses") == "classification" and tasks.task("legacy") == "regression"
    specs.known["houses"] = "regression"
    assert tasks.task("houses") == "classification" and specs.asked == 2  # not re-read yet
    now[0] = 31
    assert tasks.task("houses") == "regression"
    assert tasks.task("houses") == "regression" and specs.asked == 3
