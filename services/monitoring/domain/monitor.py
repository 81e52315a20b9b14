"""The monitor: detectors per dataset and model version, the label join, live performance.

Pure (time is passed in): the handlers feed it events and turn what it returns into Kafka
events and SQL rows. Shadow predictions count toward performance only, never toward drift.

The dataset's task (from its spec, passed in as `task_for`) decides the signals:

- classification: the error signal is the 0/1 loss; the prediction signal is the rate of the
  class the version predicted most over its first `MODE_REFERENCE` predictions (binary and
  multi-class alike); performance is accuracy.
- regression: the error signal is the absolute residual |prediction - label| and the
  prediction signal the predicted value, both as mid-ranks against a reference sample (so one
  detector setting works in any unit); performance is MAE and RMSE.

Per dataset, besides its numeric features: the rate of records with a value outside the
spec's expected range (`out_of_range`) and the rate of rejected records (`rejection_rate`).
Per version, the live error against its training holdout's (`error_vs_holdout`).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.monitoring.domain.detectors import (
    DetectorSpec,
    Drift,
    SignalDetector,
    as_number,
    same_label,
)
from services.monitoring.domain.holdout import HoldoutCheck, HoldoutRule, holdout_error
from services.monitoring.domain.join import JoinPart, LabelJoin

WINDOWS = (100, 1000)
MODE_REFERENCE = 100
OUT_OF_RANGE = "out_of_range"
REJECTION_RATE = "rejection_rate"


@dataclass(frozen=True)
class DatasetDetectors:
    """The detectors of one dataset; `features` None means every numeric feature."""

    feature: DetectorSpec = field(default_factory=DetectorSpec)
    prediction: DetectorSpec = field(default_factory=DetectorSpec)
    error: DetectorSpec = field(default_factory=DetectorSpec)
    features: tuple[str, ...] | None = None
    residual: DetectorSpec = field(
        default_factory=lambda: DetectorSpec(
            params={"delta": 0.005, "clock": 8}, rank_reference=200
        )
    )
    predicted_value: DetectorSpec = field(
        default_factory=lambda: DetectorSpec(params={"delta": 0.002}, rank_reference=500)
    )
    rate: DetectorSpec = field(default_factory=lambda: DetectorSpec(params={"delta": 0.002}))
    """The out-of-range and rejection rates (0/1 per record)."""


@dataclass(frozen=True)
class Served:
    """What the monitor keeps of a prediction while its label is awaited."""

    dataset: str
    model_name: str
    version: int
    record_id: str | None
    prediction: Any
    shadow: bool
    served_at: datetime


@dataclass(frozen=True)
class Found:
    drift: Drift
    dataset: str
    model_name: str
    model_version: int | None
    event_time: datetime | None


class Scores:
    """Live performance of one model version: accuracy (classification) or MAE and RMSE
    (regression), overall and over the last 100 and 1000 labelled predictions."""

    def __init__(self, task: str = "classification") -> None:
        self.task = task
        self.total = 0
        self.loss_sum = 0.0
        self.squared_sum = 0.0
        self.unscored = 0
        self._recent: deque[float] = deque(maxlen=max(WINDOWS))

    def add(self, prediction: Any, label: Any) -> float | None:
        """The prediction's loss (0/1, or its absolute residual); None when it cannot be
        scored (a regression label or prediction that is not a number)."""
        if self.task == "regression":
            predicted, actual = as_number(_number(prediction)), as_number(_number(label))
            if predicted is None or actual is None or not math.isfinite(predicted - actual):
                self.unscored += 1
                return None
            loss = abs(predicted - actual)
        else:
            loss = 0.0 if same_label(prediction, label) else 1.0
        self.total += 1
        self.loss_sum += loss
        self.squared_sum += loss * loss
        self._recent.append(loss)
        return loss

    def summary(self) -> dict[str, Any]:
        recent = list(self._recent)
        windows = {}
        for size in WINDOWS:
            last = recent[-size:]
            mean = sum(last) / len(last) if last else None
            if self.task == "regression":
                windows[f"last_{size}_mae"] = mean
            else:
                windows[f"last_{size}"] = 1.0 - mean if mean is not None else None
        if self.task == "regression":
            n = self.total
            return {
                "task": "regression",
                "labelled": n,
                "count": n,
                "unscored": self.unscored,
                "mae": self.loss_sum / n if n else None,
                "rmse": math.sqrt(self.squared_sum / n) if n else None,
                **windows,
            }
        accuracy = 1.0 - self.loss_sum / self.total if self.total else None
        return {"task": "classification", "labelled": self.total, "accuracy": accuracy, **windows}


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


class _ModeIndicator:
    """1.0 when a prediction is the class predicted most over the first `size` ones."""

    def __init__(self, size: int = MODE_REFERENCE) -> None:
        self._size = size
        self._counts: Counter[str] = Counter()
        self.mode: str | None = None

    def update(self, prediction: Any) -> float | None:
        key = str(_number(prediction))
        if self.mode is None:
            self._counts[key] += 1
            if sum(self._counts.values()) >= self._size:
                self.mode = self._counts.most_common(1)[0][0]
            return None
        return 1.0 if key == self.mode else 0.0


@dataclass
class MonitorPart:
    """Everything the monitor holds of some datasets: their detectors, the state of their
    model versions' signals and scores, and what waits in the join for their records."""

    datasets: frozenset[str]
    signals: dict[tuple[str, str, int | None, str], SignalDetector]
    modes: dict[tuple[str, int], _ModeIndicator]
    holdout: dict[tuple[str, int], HoldoutCheck]
    scores: dict[tuple[str, int], Scores]
    served: dict[tuple[str, int], int]
    expired: dict[tuple[str, int], int]
    tasks: dict[tuple[str, int], str]
    version_datasets: dict[tuple[str, int], str]
    served_datasets: set[str]
    join: JoinPart[Served]


Task = str
HoldoutMetrics = Callable[[str, int], Mapping[str, Any] | None]


class Monitor:
    """`detectors_for` is asked on every event: it answers from a configuration built once
    (MonitoringSettings.detectors_for)."""

    def __init__(
        self,
        detectors_for: Callable[[str], DatasetDetectors],
        model_name_for: Callable[[str], str],
        join: LabelJoin[Served],
        task_for: Callable[[str], Task] = lambda dataset: "classification",
        holdout_metrics: HoldoutMetrics = lambda model, version: None,
        holdout_rule: HoldoutRule | None = None,
    ) -> None:
        self._detectors_for = detectors_for
        self._model_name_for = model_name_for
        self._task_for = task_for
        self._holdout_metrics = holdout_metrics
        self._holdout_rule = holdout_rule or HoldoutRule()
        self.join = join
        self._signals: dict[tuple[str, str, int | None, str], SignalDetector] = {}
        self._modes: dict[tuple[str, int], _ModeIndicator] = {}
        self._holdout: dict[tuple[str, int], HoldoutCheck] = {}
        self.scores: dict[tuple[str, int], Scores] = {}
        self.served: dict[tuple[str, int], int] = {}
        self.expired: dict[tuple[str, int], int] = {}
        self._tasks: dict[tuple[str, int], str] = {}
        self._version_datasets: dict[tuple[str, int], str] = {}
        self._served_datasets: set[str] = set()
        self._champions: set[str] = set()

    def has_served(self, dataset: str) -> bool:
        """Whether a model of the dataset served a prediction or was promoted: before that, a
        feature drift is data-quality information, not a reason to retrain."""
        return dataset in self._served_datasets or self._model_name_for(dataset) in self._champions

    def champion_known(self, model_name: str) -> None:
        self._champions.add(model_name)

    def observe_record(
        self,
        dataset: str,
        values: dict[str, Any],
        event_time: datetime | None,
        out_of_range: list[str] | None = None,
    ) -> list[Found]:
        config = self._detectors_for(dataset)
        model_name = self._model_name_for(dataset)
        found = []
        names = config.features if config.features is not None else sorted(values)
        for name in names:
            number = as_number(values.get(name))
            if number is None:
                continue
            detector = self._signal(dataset, model_name, None, name, "feature", config.feature)
            drift = detector.update(number)
            if drift is not None:
                found.append(Found(drift, dataset, model_name, None, event_time))
        rates = ((OUT_OF_RANGE, 1.0 if out_of_range else 0.0), (REJECTION_RATE, 0.0))
        for signal, value in rates:
            found += self._rate(dataset, signal, value, event_time)
        return found

    def observe_rejected(self, dataset: str, event_time: datetime | None) -> list[Found]:
        """A record of the dataset that failed validation (the rejection rate's 1)."""
        return self._rate(dataset, REJECTION_RATE, 1.0, event_time)

    def _rate(
        self, dataset: str, signal: str, value: float, event_time: datetime | None
    ) -> list[Found]:
        model_name = self._model_name_for(dataset)
        spec = self._detectors_for(dataset).rate
        drift = self._signal(dataset, model_name, None, signal, "feature", spec).update(value)
        return [Found(drift, dataset, model_name, None, event_time)] if drift else []

    def observe_prediction(self, served: Served, now: float) -> tuple[list[Found], list[Served]]:
        """Drifts found, and the prediction itself if its label was already there (labels and
        predictions join in either order)."""
        key = (served.model_name, served.version)
        self.served[key] = self.served.get(key, 0) + 1
        self._served_datasets.add(served.dataset)
        self._task(key, served.dataset)
        found = []
        if not served.shadow:
            drift = self._prediction_signal(served)
            if drift is not None:
                found.append(
                    Found(
                        drift, served.dataset, served.model_name, served.version, served.served_at
                    )
                )
        self._count_expired(now)
        if served.record_id is None:
            return found, []
        record = self._record_key(served.dataset, served.record_id)
        joined = self.join.add_prediction(record, served, now, slot=self._slot(served))
        if joined is None:
            return found, []
        found.extend(self._score(joined.prediction, joined.label))
        return found, [] if served.shadow else [served]

    def _task(self, key: tuple[str, int], dataset: str) -> str:
        """The dataset's task, asked each time: until its spec can be read, the answer is a
        fallback, and what a version scored under a wrong task is dropped once the right one
        is known (residuals are not 0/1 errors)."""
        task = self._task_for(dataset)
        self._version_datasets[key] = dataset
        if self._tasks.get(key, task) != task:
            self.scores.pop(key, None)
            self._holdout.pop(key, None)
            self._modes.pop(key, None)
            for signal_key in [k for k in self._signals if (k[1], k[2]) == key]:
                if signal_key[3] in ("error", "prediction"):
                    del self._signals[signal_key]
        self._tasks[key] = task
        return task

    def _prediction_signal(self, served: Served) -> Drift | None:
        config = self._detectors_for(served.dataset)
        key = (served.model_name, served.version)
        if self._tasks[key] == "regression":
            spec, value = config.predicted_value, as_number(_number(served.prediction))
        else:
            mode = self._modes.setdefault(key, _ModeIndicator())
            spec, value = config.prediction, mode.update(served.prediction)
        detector = self._signal(
            served.dataset, served.model_name, served.version, "prediction", "prediction", spec
        )
        if value is None:
            detector.skip()
            return None
        return detector.update(value)

    def observe_label(
        self, dataset: str, record_id: str, label: Any, now: float
    ) -> tuple[list[Found], list[Served]]:
        """Drifts found on the error stream, and the (non-shadow) predictions just labelled."""
        self._count_expired(now)
        found: list[Found] = []
        labelled: list[Served] = []
        for joined in self.join.add_label(self._record_key(dataset, record_id), label, now):
            found.extend(self._score(joined.prediction, joined.label))
            if not joined.prediction.shadow:
                labelled.append(joined.prediction)
        return found, labelled

    def expire(self, now: float) -> None:
        self._count_expired(now)

    def _count_expired(self, now: float) -> list[Served]:
        expired = self.join.expire(now)
        for served in expired:
            key = (served.model_name, served.version)
            self.expired[key] = self.expired.get(key, 0) + 1
        return expired

    @staticmethod
    def _record_key(dataset: str, record_id: str) -> str:
        return f"{dataset}|{record_id}"

    @staticmethod
    def _slot(served: Served) -> str:
        # A record's label is the ground truth of every model (and shadow) that scored it.
        return f"{served.model_name}|{served.version}|{'shadow' if served.shadow else 'live'}"

    def _score(self, served: Served, label: Any) -> list[Found]:
        key = (served.model_name, served.version)
        task = self._task(key, served.dataset)
        loss = self.scores.setdefault(key, Scores(task)).add(served.prediction, label)
        if served.shadow or loss is None:
            return []
        config = self._detectors_for(served.dataset)
        spec = config.residual if task == "regression" else config.error
        detector = self._signal(
            served.dataset, served.model_name, served.version, "error", "error", spec
        )
        drifts = [detector.update(loss)]
        check = self._holdout.setdefault(key, HoldoutCheck(task, self._holdout_rule))
        baseline = holdout_error(task, self._holdout_metrics(*key))
        drifts.append(check.update(loss, baseline))
        return [
            Found(drift, served.dataset, served.model_name, served.version, served.served_at)
            for drift in drifts
            if drift is not None
        ]

    def _signal(
        self,
        dataset: str,
        model_name: str,
        version: int | None,
        signal: str,
        kind: Any,
        spec: DetectorSpec,
    ) -> SignalDetector:
        key = (dataset, model_name, version, signal)
        detector = self._signals.get(key)
        if detector is None:
            detector = self._signals[key] = SignalDetector(signal, kind, spec)
        return detector

    def models_of(self, datasets: frozenset[str]) -> set[str]:
        """The model names the datasets' drifts are decided for (the policy's keys)."""
        served = {model for (model, _), d in self._version_datasets.items() if d in datasets}
        return served | {self._model_name_for(dataset) for dataset in datasets}

    def _owned_versions(self, datasets: frozenset[str]) -> list[tuple[str, int]]:
        return [key for key, dataset in self._version_datasets.items() if dataset in datasets]

    def _owned_record(self, datasets: frozenset[str]) -> Callable[[str], bool]:
        return lambda record: record.split("|", 1)[0] in datasets

    def export(self, datasets: frozenset[str]) -> MonitorPart:
        """The datasets' share of the monitor (live objects: pickle it at once)."""
        versions = self._owned_versions(datasets)

        def of(values: Mapping[tuple[str, int], Any]) -> dict[tuple[str, int], Any]:
            return {key: values[key] for key in versions if key in values}

        return MonitorPart(
            datasets=datasets,
            signals={k: v for k, v in self._signals.items() if k[0] in datasets},
            modes=of(self._modes),
            holdout=of(self._holdout),
            scores=of(self.scores),
            served=of(self.served),
            expired=of(self.expired),
            tasks=of(self._tasks),
            version_datasets=of(self._version_datasets),
            served_datasets=self._served_datasets & datasets,
            join=self.join.export(self._owned_record(datasets)),
        )

    def forget(self, datasets: frozenset[str]) -> None:
        """Drops the datasets' state (another replica owns them now)."""
        for key in [k for k in self._signals if k[0] in datasets]:
            del self._signals[key]
        for key in self._owned_versions(datasets):
            for kept in (self._modes, self._holdout, self.scores, self.served, self.expired):
                kept.pop(key, None)  # type: ignore[attr-defined]
            self._tasks.pop(key, None)
            del self._version_datasets[key]
        self._served_datasets -= datasets
        self.join.forget(self._owned_record(datasets))

    def restore(self, part: MonitorPart) -> None:
        """Takes back the datasets' state as `export` gave it, instead of what it held."""
        self.forget(part.datasets)
        self._signals.update(part.signals)
        self._modes.update(part.modes)
        self._holdout.update(part.holdout)
        self.scores.update(part.scores)
        self.served.update(part.served)
        self.expired.update(part.expired)
        self._tasks.update(part.tasks)
        self._version_datasets.update(part.version_datasets)
        self._served_datasets |= part.served_datasets
        self.join.restore(part.join)

    def detector_states(self) -> list[dict[str, Any]]:
        return [
            {"dataset": dataset, "model_name": model, "model_version": version, **d.state()}
            for (dataset, model, version, _), d in sorted(
                self._signals.items(), key=lambda item: str(item[0])
            )
        ]

    def performance(self) -> list[dict[str, Any]]:
        keys = sorted(set(self.served) | set(self.scores) | set(self.expired))
        return [
            {
                "model_name": model,
                "model_version": version,
                "served": self.served.get((model, version), 0),
                "expired": self.expired.get((model, version), 0),
                **self.scores.get(
                    (model, version), Scores(self._tasks.get((model, version), "classification"))
                ).summary(),
            }
            for model, version in keys
        ]
