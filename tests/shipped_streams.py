"""Stationary live streams of every shipped dataset, as monitoring sees them: the validated
records (labels inside them when the spec says so), the predictions of a model trained on an
earlier stretch of the same stream, the late labels (when the spec says feedback) and that
model's holdout metrics (what the registry's lineage would carry)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import accuracy_score, mean_absolute_error

from shared.datasets.sources import (
    agrawal_records,
    breast_cancer_records,
    friedman_records,
    phishing_records,
)
from shared.datasets.spec import DatasetSpec, FeatureType, shipped_specs
from shared.datasets.values import outside_expected
from shared.events.models import PredictionServed
from shared.events.records import LabelRecorded, RecordValidated, SourcePosition

START = datetime(2026, 1, 1, tzinfo=UTC)
TRAINING_ROWS = 2000
HOLDOUT_ROWS = 500

Source = Callable[..., Iterator[tuple[dict[str, Any], Any]]]
SOURCES: dict[str, Source] = {
    "loans": agrawal_records,
    "breast_cancer": breast_cancer_records,
    "phishing": phishing_records,
    "friedman": friedman_records,
}


@dataclass(frozen=True)
class ShippedStream:
    spec: DatasetSpec
    records: list[RecordValidated]
    predictions: list[PredictionServed]
    labels: list[LabelRecorded]
    holdout: dict[str, float]


def shipped_spec(name: str) -> DatasetSpec:
    return next(spec for spec in shipped_specs() if spec.name == name)


def _rows(name: str, count: int, seed: int, start: datetime) -> list[tuple[dict[str, Any], Any]]:
    return list(SOURCES[name](count, seed=seed, start=start))


def _matrix(spec: DatasetSpec, records: list[dict[str, Any]]) -> pd.DataFrame:
    """Numbers for the model: categorical codes of the shipped specs are integers in text."""
    return pd.DataFrame(
        {f.name: [float(r[f.name]) for r in records] for f in spec.features}, dtype=float
    )


def stationary_stream(name: str, count: int, seed: int = 2) -> ShippedStream:
    spec = shipped_spec(name)
    assert spec.label is not None and spec.record_id is not None
    regression = spec.task == "regression"
    seen = _rows(name, TRAINING_ROWS + HOLDOUT_ROWS, seed=1, start=START)
    x = _matrix(spec, [r for r, _ in seen])
    y = np.array([label for _, label in seen])
    model = (HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier)(
        random_state=0
    ).fit(x[:TRAINING_ROWS], y[:TRAINING_ROWS])
    guessed = model.predict(x[TRAINING_ROWS:])
    holdout = (
        {"mae": float(mean_absolute_error(y[TRAINING_ROWS:], guessed))}
        if regression
        else {"accuracy": float(accuracy_score(y[TRAINING_ROWS:], guessed))}
    )
    live = _rows(name, count, seed=seed, start=START + timedelta(days=30))
    predicted = model.predict(_matrix(spec, [r for r, _ in live]))
    with_record = spec.label.arrival == "with_record"
    records, predictions, labels = [], [], []
    for index, ((row, label), guess) in enumerate(zip(live, predicted, strict=True)):
        record_id = str(row[spec.record_id])
        at = datetime.fromisoformat(str(row[spec.event_time]))
        values = {f.name: _typed(f.type, row[f.name]) for f in spec.features}
        records.append(
            RecordValidated(
                dataset=name,
                spec_version=1,
                record_id=record_id,
                entity=str(row[spec.entity_key]),
                event_time=at,
                values=values,
                label=label if with_record else None,
                source=SourcePosition(topic="raw", partition=0, offset=index),
                out_of_range=[f.name for f in spec.features if outside_expected(f, values[f.name])],
            )
        )
        predictions.append(
            PredictionServed(
                request_id=f"req-{record_id}",
                model_name=name,
                version=1,
                dataset=name,
                record_id=record_id,
                features=values,
                prediction=float(guess) if regression else int(guess),
                latency_ms=1.0,
                served_at=at,
            )
        )
        if not with_record:
            labels.append(
                LabelRecorded(dataset=name, record_id=record_id, label=label, labelled_at=at)
            )
    return ShippedStream(spec, records, predictions, labels, holdout)


def _typed(kind: FeatureType, value: Any) -> Any:
    if kind == FeatureType.CATEGORICAL:
        return str(value)
    if kind == FeatureType.INTEGER:
        return int(value)
    return float(value)
