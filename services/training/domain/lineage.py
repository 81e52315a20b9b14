"""What a run records about its inputs: feature definitions, a data-quality summary of the
training frame, and the versions of the libraries that fitted it."""

from __future__ import annotations

import math
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import pandas as pd

from services.training.domain.frames import TrainingFrame
from services.training.domain.split import TimeSplit
from shared.datasets.spec import DatasetSpec

LIBRARIES = ("scikit-learn", "numpy", "pandas", "scipy", "skops", "pyarrow")


def library_versions() -> dict[str, str]:
    """The versions of the libraries that fit, store and load the model, and of Python."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def feature_definitions(spec: DatasetSpec, features: list[str]) -> dict[str, Any]:
    """How each feature column comes about: a declared feature, or a windowed aggregation."""
    aggregations = {a.name: a for a in spec.aggregations}
    declared = {f.name: f for f in spec.features}
    definitions: dict[str, Any] = {}
    for name in features:
        if name in aggregations:
            definitions[name] = {
                "kind": "aggregation",
                **aggregations[name].model_dump(mode="json", exclude_none=True),
            }
        elif name in declared:
            definitions[name] = {"kind": "feature", "type": declared[name].type.value}
        else:
            definitions[name] = {"kind": "undeclared"}
    return definitions


def data_quality(training: TrainingFrame, split: TimeSplit) -> dict[str, Any]:
    """A few statistics of the training frame: sizes, time range, label balance, missing
    values, and the spread of each numeric feature."""
    frame = training.frame
    times = training.event_times()
    summary: dict[str, Any] = {
        "rows_read": training.rows_read,
        "unlabelled_rows_dropped": training.unlabelled_dropped,
        "rows_before_window": training.before_window,
        "rows": len(frame),
        "train_rows": len(split.train),
        "holdout_rows": len(split.holdout),
        "first_event_time": times.iloc[0].isoformat(),
        "last_event_time": times.iloc[-1].isoformat(),
        "holdout_from": split.holdout_from.isoformat(),
        "missing_share": _missing_shares(frame, training.features),
        "numeric": _numeric_summary(frame, training),
    }
    summary.update(_label_summary(training))
    return summary


def _missing_shares(frame: pd.DataFrame, features: list[str]) -> dict[str, float]:
    shares = frame[features].isna().mean()
    return {name: round(float(share), 6) for name, share in shares.items() if share > 0}


def _numeric_summary(frame: pd.DataFrame, training: TrainingFrame) -> dict[str, dict[str, float]]:
    numeric = [name for name, kind in training.kinds.items() if kind == "numeric"]
    summary = {}
    for name in numeric:
        column = frame[name].dropna()
        if column.empty:
            continue
        stats = {
            "mean": column.mean(),
            "std": column.std(ddof=0),
            "min": column.min(),
            "max": column.max(),
        }
        summary[name] = {k: float(v) for k, v in stats.items() if math.isfinite(float(v))}
    return summary


def _label_summary(training: TrainingFrame) -> dict[str, Any]:
    label = training.y()
    if training.task == "classification":
        counts = label.value_counts().sort_index()
        return {"label_counts": {str(k): int(v) for k, v in counts.items()}}
    return {"label_mean": float(label.mean()), "label_std": float(label.std(ddof=0))}
