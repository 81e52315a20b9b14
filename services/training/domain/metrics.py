"""Scoring a fitted model on the holdout.

Classification: accuracy, f1 (of the positive class when binary, macro-averaged otherwise),
roc_auc (binary; macro one-vs-rest for several classes), log_loss, and precision, recall, f1
and support per class. Regression: rmse, mae, r2. A metric that the holdout cannot define
(roc_auc with a single class in it, log_loss without probabilities) is left out rather than
reported as a number it is not.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
    r2_score,
    roc_auc_score,
)

from services.training.domain.estimators import Task

LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss"})


@dataclass(frozen=True)
class Scores:
    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def score(model: Any, x: pd.DataFrame, y: pd.Series, task: Task) -> Scores:
    """The metrics of `model` on (x, y)."""
    if task == "regression":
        return Scores(regression_metrics(y, model.predict(x)))
    return classification_scores(model, x, y)


def regression_metrics(y: pd.Series, predicted: np.ndarray) -> dict[str, float]:
    return _finite(
        {
            "rmse": lambda: math.sqrt(mean_squared_error(y, predicted)),
            "mae": lambda: mean_absolute_error(y, predicted),
            "r2": lambda: r2_score(y, predicted),
        }
    )


def classification_scores(model: Any, x: pd.DataFrame, y: pd.Series) -> Scores:
    classes = list(model.classes_)
    predicted = model.predict(x)
    probabilities = model.predict_proba(x) if hasattr(model, "predict_proba") else None
    ranking = probabilities if probabilities is not None else _decision(model, x)
    binary = len(classes) == 2
    metrics = _finite(
        {
            "accuracy": lambda: accuracy_score(y, predicted),
            "f1": lambda: (
                f1_score(y, predicted, pos_label=classes[1], zero_division=0)
                if binary
                else f1_score(y, predicted, labels=classes, average="macro", zero_division=0)
            ),
            "roc_auc": lambda: _roc_auc(y, ranking, classes),
            "log_loss": lambda: log_loss(y, probabilities, labels=classes),
        }
    )
    return Scores(metrics, per_class_metrics(y, predicted, classes))


def _decision(model: Any, x: pd.DataFrame) -> np.ndarray | None:
    return model.decision_function(x) if hasattr(model, "decision_function") else None


def _roc_auc(y: pd.Series, ranking: np.ndarray | None, classes: list[Any]) -> float:
    if ranking is None:
        raise ValueError("the model gives no scores to rank by")
    if len(classes) == 2:
        positive = ranking[:, 1] if ranking.ndim == 2 else ranking
        return float(roc_auc_score(y == classes[1], positive))
    return float(roc_auc_score(y, ranking, multi_class="ovr", average="macro", labels=classes))


def per_class_metrics(
    y: pd.Series, predicted: np.ndarray, classes: list[Any]
) -> dict[str, dict[str, float]]:
    precision, recall, f1, support = precision_recall_fscore_support(
        y, predicted, labels=classes, zero_division=0
    )
    return {
        str(label): {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": float(support[i]),
        }
        for i, label in enumerate(classes)
    }


def _finite(metrics: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Each metric that can be computed and is a finite number."""
    values = {}
    for name, compute in metrics.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                value = float(compute())
        except (ValueError, TypeError, IndexError):
            continue
        if math.isfinite(value):
            values[name] = value
    return values
