"""The monitor: detectors per dataset and model version, the label join, live accuracy.

Pure (time is passed in): the handlers feed it events and turn what it returns into Kafka
events and SQL rows. Shadow predictions count toward performance only, never toward drift.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.monitoring.domain.detectors import (
    DetectorSpec,
    Drift,
    SignalDetector,
    as_number,
    is_positive,
    same_label,
)
from services.monitoring.domain.join import LabelJoin

WINDOWS = (100, 1000)


@dataclass(frozen=True)
class DatasetDetectors:
    """The detectors of one dataset; `features` None means every numeric feature."""

    feature: DetectorSpec = field(default_factory=DetectorSpec)
    prediction: DetectorSpec = field(default_factory=DetectorSpec)
    error: DetectorSpec = field(default_factory=DetectorSpec)
    features: tuple[str, ...] | None = None


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


class Accuracy:
    """Correct/incorrect flags of one model version over the last 100 and 1000 and overall."""

    def __init__(self) -> None:
        self.total = 0
        self.correct = 0
        self._recent: deque[int] = deque(maxlen=max(WINDOWS))

    def add(self, correct: bool) -> None:
        self.total += 1
        self.correct += int(correct)
        self._recent.append(int(correct))

    def summary(self) -> dict[str, Any]:
        windows = {}
        for size in WINDOWS:
            last = list(self._recent)[-size:]
            windows[f"last_{size}"] = sum(last) / len(last) if last else None
        overall = self.correct / self.total if self.total else None
        return {"labelled": self.total, "accuracy": overall, **windows}


class Monitor:
    def __init__(
        self,
        detectors_for: Callable[[str], DatasetDetectors],
        model_name_for: Callable[[str], str],
        join: LabelJoin[Served],
    ) -> None:
        self._detectors_for = detectors_for
        self._model_name_for = model_name_for
        self.join = join
        self._signals: dict[tuple[str, str, int | None, str], SignalDetector] = {}
        self.accuracy: dict[tuple[str, int], Accuracy] = {}
        self.served: dict[tuple[str, int], int] = {}
        self.expired: dict[tuple[str, int], int] = {}

    def observe_record(
        self, dataset: str, values: dict[str, Any], event_time: datetime | None
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
        return found

    def observe_prediction(self, served: Served, now: float) -> list[Found]:
        key = (served.model_name, served.version)
        self.served[key] = self.served.get(key, 0) + 1
        found = []
        if not served.shadow:
            config = self._detectors_for(served.dataset)
            detector = self._signal(
                served.dataset,
                served.model_name,
                served.version,
                "prediction",
                "prediction",
                config.prediction,
            )
            drift = detector.update(is_positive(served.prediction))
            if drift is not None:
                found.append(
                    Found(
                        drift, served.dataset, served.model_name, served.version, served.served_at
                    )
                )
        self._count_expired(now)
        if served.record_id is None:
            return found
        joined = self.join.add_prediction(self._join_key(served), served, now)
        if joined is not None:
            found.extend(self._score(joined.prediction, joined.label))
        return found

    def observe_label(
        self, dataset: str, record_id: str, label: Any, now: float
    ) -> tuple[list[Found], list[Served]]:
        """Drifts found on the error stream, and the (non-shadow) predictions just labelled."""
        self._count_expired(now)
        found: list[Found] = []
        labelled: list[Served] = []
        for key in self._label_keys(dataset, record_id):
            joined = self.join.add_label(key, label, now)
            if joined is not None:
                found.extend(self._score(joined.prediction, joined.label))
                if not joined.prediction.shadow:
                    labelled.append(joined.prediction)
                break
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
    def _join_key(served: Served) -> str:
        # One label serves the champion's prediction; shadows join under their own key.
        shadow = f"|shadow:{served.version}" if served.shadow else ""
        return f"{served.dataset}|{served.record_id}{shadow}"

    @staticmethod
    def _label_keys(dataset: str, record_id: str) -> list[str]:
        return [f"{dataset}|{record_id}"]

    def _score(self, served: Served, label: Any) -> list[Found]:
        correct = same_label(served.prediction, label)
        key = (served.model_name, served.version)
        self.accuracy.setdefault(key, Accuracy()).add(correct)
        if served.shadow:
            return []
        config = self._detectors_for(served.dataset)
        detector = self._signal(
            served.dataset, served.model_name, served.version, "error", "error", config.error
        )
        drift = detector.update(0.0 if correct else 1.0)
        if drift is None:
            return []
        return [Found(drift, served.dataset, served.model_name, served.version, served.served_at)]

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

    def detector_states(self) -> list[dict[str, Any]]:
        return [
            {"dataset": dataset, "model_name": model, "model_version": version, **d.state()}
            for (dataset, model, version, _), d in sorted(
                self._signals.items(), key=lambda item: str(item[0])
            )
        ]

    def performance(self) -> list[dict[str, Any]]:
        keys = sorted(set(self.served) | set(self.accuracy) | set(self.expired))
        return [
            {
                "model_name": model,
                "model_version": version,
                "served": self.served.get((model, version), 0),
                "expired": self.expired.get((model, version), 0),
                **self.accuracy.get((model, version), Accuracy()).summary(),
            }
            for model, version in keys
        ]
