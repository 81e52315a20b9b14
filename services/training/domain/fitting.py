"""The pure steps of a run once its training set is read: the typed frame and its window,
the time split, the fitted pipeline and its evaluation on the holdout.

Training runs them on the feature store's training set; a reproduction (POST /reproductions,
domain.reproduction) runs the very same functions on a training set the feature store rebuilt
from Kafka, so it retrains the way training did.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sklearn.pipeline import Pipeline

from services.training.domain.errors import TrainingRefused
from services.training.domain.estimators import ConfiguredEstimator, configure_estimator
from services.training.domain.frames import TrainingFrame, prepare, require_rows, since
from services.training.domain.metrics import higher_is_better, score
from services.training.domain.pipeline import build_pipeline
from services.training.domain.split import TimeSplit, time_split
from shared.datasets.spec import DatasetSpec, ModelSpec
from shared.events.models import Evaluation


@dataclass(frozen=True)
class SplitFrame:
    training: TrainingFrame
    split: TimeSplit


@dataclass(frozen=True)
class Fitted:
    configured: ConfiguredEstimator
    pipeline: Pipeline


def split_frame(
    raw: pd.DataFrame,
    spec: DatasetSpec,
    window_start: datetime | None,
    min_rows: int,
    holdout_fraction: float,
) -> SplitFrame:
    """The sorted, typed, hashed frame of a raw training set, cut to the window asked for
    (e.g. since a drift: the holdout then comes from that window too), and its time split."""
    training = since(prepare(raw, spec), window_start)
    require_rows(training, min_rows)
    return SplitFrame(training, time_split(training, holdout_fraction))


def fit_pipeline(
    model: ModelSpec,
    overrides: dict[str, Any],
    seed: int,
    training: TrainingFrame,
    split: TimeSplit,
) -> Fitted:
    """The model's pipeline, configured with the overrides and the seed, fitted on the split's
    training rows."""
    configured = configure_estimator(model, overrides, seed, training.task)
    pipeline = build_pipeline(configured.estimator, training.kinds, seed)
    pipeline.fit(training.x(split.train), training.y(split.train))
    return Fitted(configured, pipeline)


def evaluate(
    model: Any,
    training: TrainingFrame,
    split: TimeSplit,
    primary_metric: str,
    rule: ModelSpec | None = None,
) -> Evaluation:
    """The model's metrics on the holdout, `primary_metric` the one promotion compares; with
    the spec's promotion `rule`, its direction, margin and minimum rows go along to the
    registry."""
    scores = score(model, training.x(split.holdout), training.y(split.holdout), training.task)
    direction = higher_is_better(primary_metric)
    if rule is not None and rule.higher_is_better is not None:
        direction = rule.higher_is_better
    return Evaluation(
        metrics=scores.metrics,
        primary_metric=primary_metric,
        higher_is_better=direction,
        holdout=split.describe(),
        per_class=scores.per_class,
        rows=len(split.holdout),
        margin=rule.promotion_margin if rule is not None else None,
        min_rows=rule.min_evaluation_rows if rule is not None else None,
    )


def promotion_metric(rule: ModelSpec, task: str) -> str:
    """The metric the spec's promotion rule compares for its task (its default when none)."""
    try:
        return rule.metric_for(task)[0]
    except ValueError as error:
        raise TrainingRefused(f"the dataset's promotion rule: {error}") from None
