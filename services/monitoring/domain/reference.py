"""Live feature values next to the training reference recorded in the model's lineage.

Pure: the lineage is looked up through the function it is given, which never waits.

Training records, per numeric feature of the training set, its mean, standard deviation,
minimum and maximum (lineage `data_quality.numeric`). Monitoring keeps River's running mean
and variance of the same features over the values each model version was asked to predict on,
and reports per feature: the shift of the live mean in training standard deviations, the ratio
of the standard deviations, and the share of live values outside the training range.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from river import stats

from services.monitoring.domain.detectors import as_number


@dataclass(frozen=True)
class FeatureReference:
    mean: float
    std: float
    min: float
    max: float


def training_reference(lineage: Mapping[str, Any]) -> dict[str, FeatureReference]:
    """The per-feature reference of a ModelTrained lineage (features lacking a figure are left
    out: nothing to compare them with)."""
    numeric = (lineage.get("data_quality") or {}).get("numeric") or {}
    found: dict[str, FeatureReference] = {}
    for name, figures in numeric.items():
        try:
            found[name] = FeatureReference(
                mean=float(figures["mean"]),
                std=float(figures["std"]),
                min=float(figures["min"]),
                max=float(figures["max"]),
            )
        except (KeyError, TypeError, ValueError):
            continue
    return found


@dataclass
class LiveFeature:
    """River's running mean and variance of one feature, and how many values left the
    training range."""

    reference: FeatureReference
    mean: stats.Mean = field(default_factory=stats.Mean)
    var: stats.Var = field(default_factory=stats.Var)
    outside: int = 0

    def update(self, value: float) -> None:
        self.mean.update(value)
        self.var.update(value)
        if value < self.reference.min or value > self.reference.max:
            self.outside += 1

    def compare(self) -> dict[str, Any]:
        count = int(self.mean.n)
        live_std = math.sqrt(self.var.get()) if count > 1 else None
        reference = self.reference
        shift = (self.mean.get() - reference.mean) / reference.std if reference.std > 0 else None
        return {
            "training": {
                "mean": reference.mean,
                "std": reference.std,
                "min": reference.min,
                "max": reference.max,
            },
            "live": {"count": count, "mean": self.mean.get() if count else None, "std": live_std},
            "mean_shift_in_std": shift if count else None,
            "std_ratio": live_std / reference.std if live_std is not None and reference.std > 0
            else None,
            "outside_training_range": self.outside / count if count else None,
        }  # fmt: skip


class ReferenceComparison:
    """Live values of one model version against its training reference."""

    def __init__(self, reference: Mapping[str, FeatureReference]) -> None:
        self._features = {name: LiveFeature(figures) for name, figures in reference.items()}

    def observe(self, features: Mapping[str, Any]) -> None:
        for name, live in self._features.items():
            number = as_number(features.get(name))
            if number is not None and math.isfinite(number):
                live.update(number)

    def report(self) -> dict[str, dict[str, Any]]:
        return {name: live.compare() for name, live in sorted(self._features.items())}


class TrainingReferences:
    """The comparison of every model version served, each against its own lineage's reference.

    `lineage(model, version)` answers with the version's lineage once it is known and None
    until then, without waiting (the adapters fetch it in the background). The values a
    version is asked about while its lineage is awaited are kept (the last `waiting_limit`)
    and compared once it arrives; until then the version has no comparison."""

    def __init__(
        self,
        lineage: Callable[[str, int], Mapping[str, Any] | None],
        waiting_limit: int = 10_000,
    ) -> None:
        self._lineage = lineage
        self._waiting_limit = waiting_limit
        self._comparisons: dict[tuple[str, int], ReferenceComparison] = {}
        self._waiting: dict[tuple[str, int], deque[Mapping[str, Any]]] = {}

    def observe(self, model: str, version: int, features: Mapping[str, Any]) -> None:
        comparison = self._comparison((model, version))
        if comparison is not None:
            comparison.observe(features)
        else:
            waiting = self._waiting.setdefault((model, version), deque(maxlen=self._waiting_limit))
            waiting.append(features)

    def report(self) -> dict[str, dict[str, Any]]:
        for key in list(self._waiting):
            self._comparison(key)
        reports: dict[str, dict[str, Any]] = {}
        for (model, version), comparison in sorted(self._comparisons.items()):
            reports.setdefault(model, {})[str(version)] = comparison.report()
        return reports

    def _comparison(self, key: tuple[str, int]) -> ReferenceComparison | None:
        found = self._comparisons.get(key)
        if found is None:
            lineage = self._lineage(*key)
            if lineage is not None:
                found = self._comparisons[key] = ReferenceComparison(training_reference(lineage))
                for features in self._waiting.pop(key, ()):
                    found.observe(features)
        return found
