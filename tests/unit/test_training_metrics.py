"""Holdout metrics: classification (binary and multiclass) and regression, computed the way
scikit-learn defines them; undefined metrics left out."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.svm import LinearSVC

from services.training.domain.metrics import higher_is_better, score


def blobs(classes: int, rows: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, rows)
    x = pd.DataFrame({"a": labels + rng.normal(0, 0.8, rows), "b": rng.normal(0, 1, rows)})
    return x, pd.Series(labels)


def test_binary_classification_metrics() -> None:
    x, y = blobs(2)
    model = LogisticRegression().fit(x[:200], y[:200])
    scores = score(model, x[200:], y[200:], "classification")
    predicted = model.predict(x[200:])
    proba = model.predict_proba(x[200:])[:, 1]
    truth = y[200:].to_numpy()
    assert scores.metrics["accuracy"] == pytest.approx(np.mean(predicted == truth))
    assert set(scores.metrics) == {"accuracy", "f1", "roc_auc", "log_loss"}
    tp = np.sum((predicted == 1) & (truth == 1))
    precision, recall = tp / np.sum(predicted == 1), tp / np.sum(truth == 1)
    assert scores.metrics["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    expected_loss = -np.mean(truth * np.log(proba) + (1 - truth) * np.log(1 - proba))
    assert scores.metrics["log_loss"] == pytest.approx(expected_loss)
    assert 0.5 < scores.metrics["roc_auc"] <= 1.0
    assert scores.per_class["1"]["precision"] == pytest.approx(precision)
    assert scores.per_class["1"]["recall"] == pytest.approx(recall)
    assert scores.per_class["0"]["support"] + scores.per_class["1"]["support"] == 100


def test_multiclass_uses_macro_one_vs_rest_roc_auc_and_macro_f1() -> None:
    x, y = blobs(3)
    model = LogisticRegression().fit(x[:200], y[:200])
    scores = score(model, x[200:], y[200:], "classification")
    assert set(scores.per_class) == {"0", "1", "2"}
    macro_f1 = np.mean([scores.per_class[c]["f1"] for c in ("0", "1", "2")])
    assert scores.metrics["f1"] == pytest.approx(macro_f1)
    assert 0.5 < scores.metrics["roc_auc"] <= 1.0


def test_a_model_without_probabilities_ranks_by_its_decision_function() -> None:
    x, y = blobs(2)
    model = LinearSVC().fit(x[:200], y[:200])
    scores = score(model, x[200:], y[200:], "classification")
    assert "roc_auc" in scores.metrics
    assert "log_loss" not in scores.metrics


def test_a_holdout_with_one_class_has_no_roc_auc() -> None:
    x, y = blobs(2)
    model = LogisticRegression().fit(x, y)
    only_ones = y == 1
    scores = score(model, x[only_ones], y[only_ones], "classification")
    assert "roc_auc" not in scores.metrics
    assert "accuracy" in scores.metrics


def test_regression_metrics() -> None:
    rng = np.random.default_rng(1)
    x = pd.DataFrame({"a": rng.normal(size=200)})
    y = pd.Series(3 * x["a"] + rng.normal(0, 0.5, 200))
    model = LinearRegression().fit(x[:150], y[:150])
    scores = score(model, x[150:], y[150:], "regression")
    errors = y[150:].to_numpy() - model.predict(x[150:])
    assert scores.metrics["rmse"] == pytest.approx(math.sqrt(np.mean(errors**2)))
    assert scores.metrics["mae"] == pytest.approx(np.mean(np.abs(errors)))
    total = np.sum((y[150:] - y[150:].mean()) ** 2)
    assert scores.metrics["r2"] == pytest.approx(1 - np.sum(errors**2) / total)
    assert scores.per_class == {}


@pytest.mark.parametrize(
    ("metric", "higher"),
    [("roc_auc", True), ("accuracy", True), ("r2", True), ("rmse", False), ("log_loss", False)],
)
def test_which_direction_is_better(metric: str, higher: bool) -> None:
    assert higher_is_better(metric) is higher
