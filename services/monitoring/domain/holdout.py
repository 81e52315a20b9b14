"""Live error against the training holdout's: a model wrong from its first labelled prediction.

Change detectors compare a stream with its own past, so a model that is bad from the start
never alarms. This check compares each served version's live error with the error its
training run measured on its holdout (the lineage's evaluation metrics):

- classification: the live error rate (1 - accuracy) against the holdout's. It alarms when
  the one-sided Wilson lower bound of the live rate (z = 3.09, 0.1 %) exceeds the holdout's
  error plus `classification_margin` (absolute).
- regression: the live mean absolute residual against the holdout's MAE. It alarms when the
  mean's one-sided lower bound (mean - z * std / sqrt(n)) exceeds the holdout's MAE times
  `regression_ratio`.

Both wait for `min_count` labelled predictions and alarm once per version. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.monitoring.domain.detectors import Drift, RunningStats

SIGNAL = "error_vs_holdout"


@dataclass(frozen=True)
class HoldoutRule:
    min_count: int = 30
    z: float = 3.09
    classification_margin: float = 0.05
    regression_ratio: float = 1.25

    def params(self) -> dict[str, Any]:
        return {
            "min_count": self.min_count,
            "z": self.z,
            "classification_margin": self.classification_margin,
            "regression_ratio": self.regression_ratio,
        }


def holdout_error(task: str, metrics: Mapping[str, Any] | None) -> float | None:
    """The holdout's error in the live signal's unit: 1 - accuracy, or the MAE."""
    if not metrics:
        return None
    try:
        if task == "regression":
            return float(metrics["mae"]) if "mae" in metrics else None
        return 1.0 - float(metrics["accuracy"]) if "accuracy" in metrics else None
    except (TypeError, ValueError):
        return None


def wilson_lower(errors: int, n: int, z: float) -> float:
    if n == 0:
        return 0.0
    p = errors / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


class HoldoutCheck:
    """One version's live losses (0/1 or absolute residual) against its holdout error."""

    def __init__(self, task: str, rule: HoldoutRule) -> None:
        self.task = task
        self.rule = rule
        self.stats = RunningStats()
        self.fired = False

    def update(self, loss: float, holdout: float | None) -> Drift | None:
        self.stats.add(loss)
        if self.fired or holdout is None or self.stats.count < self.rule.min_count:
            return None
        n = self.stats.count
        summary = self.stats.summary()
        if self.task == "regression":
            bound = summary["mean"] - self.rule.z * summary["std"] / math.sqrt(n)
            threshold = holdout * self.rule.regression_ratio
        else:
            bound = wilson_lower(round(summary["mean"] * n), n, self.rule.z)
            threshold = holdout + self.rule.classification_margin
        if bound <= threshold:
            return None
        self.fired = True
        return Drift(
            signal=SIGNAL,
            signal_kind="error",
            detector="holdout_bound",
            detector_params=self.rule.params(),
            position=n,
            reference={"holdout_error": holdout, "threshold": threshold},
            current={**summary, "lower_bound": bound},
        )
