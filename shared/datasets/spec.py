"""Dataset specs: what a tabular dataset looks like, declared once and used by every service.

A spec names the entity key, the event-time column, every feature with its type and allowed
values, the label and how it arrives, and the windowed aggregations the feature store keeps.
Specs are files (YAML or JSON, schema in schemas/dataset-spec.json) and are versioned: the
same content always has the same fingerprint, and a changed spec gets the next version.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"


class FeatureType(StrEnum):
    NUMERIC = "numeric"
    INTEGER = "integer"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureSpec(_Strict):
    """One column: its type and the values it may take."""

    name: str = Field(pattern=NAME_PATTERN)
    type: FeatureType
    nullable: bool = False
    min: float | None = Field(None, description="Smallest allowed value (numeric, integer).")
    max: float | None = Field(None, description="Largest allowed value (numeric, integer).")
    expected_min: float | None = Field(
        None,
        description="Smallest expected value (numeric, integer): a value below it is accepted, "
        "flagged (RecordValidated.out_of_range) and counted; min/max are hard and reject.",
    )
    expected_max: float | None = Field(
        None, description="Largest expected value (numeric, integer); see expected_min."
    )
    categories: list[str] | None = Field(
        None, description="Allowed values (categorical), compared as strings."
    )
    description: str = ""

    @model_validator(mode="after")
    def _constraints_fit_the_type(self) -> Self:
        ranged = self.min is not None or self.max is not None
        if ranged and self.type not in (FeatureType.NUMERIC, FeatureType.INTEGER):
            raise ValueError(f"{self.name}: min/max apply to numeric and integer features only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"{self.name}: min {self.min} is above max {self.max}")
        expected = self.expected_min is not None or self.expected_max is not None
        if expected and self.type not in (FeatureType.NUMERIC, FeatureType.INTEGER):
            raise ValueError(
                f"{self.name}: expected_min/expected_max apply to numeric and integer features only"
            )
        low, high = self.expected_min, self.expected_max
        if low is not None and high is not None and low > high:
            raise ValueError(f"{self.name}: expected_min {low} is above expected_max {high}")
        if (low is not None and self.min is not None and low < self.min) or (
            high is not None and self.max is not None and high > self.max
        ):
            raise ValueError(
                f"{self.name}: the expected range [{low}, {high}] reaches past the hard range "
                f"[{self.min}, {self.max}]: a value there would be rejected, never flagged"
            )
        if self.type == FeatureType.CATEGORICAL and not self.categories:
            raise ValueError(f"{self.name}: a categorical feature needs its categories")
        if self.categories is not None and self.type != FeatureType.CATEGORICAL:
            raise ValueError(f"{self.name}: categories apply to categorical features only")
        return self


class LabelSpec(_Strict):
    """The target column, and whether it comes with the record or later as feedback."""

    name: str = Field(pattern=NAME_PATTERN)
    type: FeatureType
    categories: list[str] | None = None
    arrival: Literal["with_record", "feedback"] = Field(
        "with_record",
        description="with_record: a column of the record; feedback: sent later, keyed by record id.",
    )
    task: Literal["classification", "regression"] = "classification"

    @model_validator(mode="after")
    def _task_fits_the_type(self) -> Self:
        if self.task == "regression" and self.type not in (
            FeatureType.NUMERIC,
            FeatureType.INTEGER,
        ):
            raise ValueError(
                f"label {self.name}: a regression label must be numeric or integer, "
                f"not {self.type.value}"
            )
        if self.type == FeatureType.TIMESTAMP:
            raise ValueError(f"label {self.name}: a timestamp cannot be a label")
        if self.categories is not None and self.task == "regression":
            raise ValueError(f"label {self.name}: categories apply to classification labels only")
        return self


class Aggregation(_Strict):
    """A per-entity streaming aggregate over a time window, e.g. the mean loan over 1 hour."""

    name: str = Field(pattern=NAME_PATTERN)
    function: Literal["count", "sum", "mean"]
    feature: str | None = Field(None, description="The feature aggregated; none for count.")
    window_seconds: int = Field(gt=0)
    hop_seconds: int | None = Field(
        None, gt=0, description="Hopping window step; omitted for a tumbling window."
    )

    @model_validator(mode="after")
    def _feature_given_unless_count(self) -> Self:
        if self.function != "count" and self.feature is None:
            raise ValueError(f"{self.name}: {self.function} needs a feature")
        if self.hop_seconds is not None and self.hop_seconds > self.window_seconds:
            raise ValueError(f"{self.name}: hop_seconds cannot exceed window_seconds")
        return self


CLASSIFICATION_METRICS = {
    "roc_auc": True,
    "accuracy": True,
    "f1": True,
    "log_loss": False,
}
REGRESSION_METRICS = {"rmse": False, "mae": False, "r2": True}
DEFAULT_METRIC = {"classification": "roc_auc", "regression": "rmse"}


class ModelSpec(_Strict):
    """The scikit-learn estimator the training service fits for this dataset, and the rule
    the registry promotes its versions by (metric, direction, margin, evaluation size)."""

    estimator: str = "sklearn.ensemble.HistGradientBoostingClassifier"
    params: dict[str, Any] = Field(default_factory=dict)
    primary_metric: str | None = Field(
        None,
        description="The holdout metric promotion compares: roc_auc, accuracy, f1, log_loss "
        "(classification), rmse, mae, r2 (regression). Default: roc_auc, or rmse.",
    )
    higher_is_better: bool | None = Field(
        None, description="The metric's direction; default: the known direction of the metric."
    )
    promotion_margin: float | None = Field(
        None,
        ge=0,
        description="How much a version must beat the champion by; default the registry's.",
    )
    min_evaluation_rows: int | None = Field(
        None,
        ge=1,
        description="Fewest holdout rows a version is judged on; fewer: not promoted.",
    )

    def metric_for(self, task: str) -> tuple[str, bool]:
        """The primary metric for a task, and whether higher is better."""
        known = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
        metric = self.primary_metric or DEFAULT_METRIC[task]
        if metric not in known:
            raise ValueError(
                f"model.primary_metric {metric!r} is not a {task} metric (the label's task); "
                f"use one of: {', '.join(sorted(known))}"
            )
        direction = self.higher_is_better if self.higher_is_better is not None else known[metric]
        return metric, direction


class DatasetSpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    entity_key: str = Field(pattern=NAME_PATTERN, description="Column naming the entity.")
    event_time: str = Field(pattern=NAME_PATTERN, description="Column with the event time.")
    record_id: str | None = Field(
        None, description="Column with the record's own id; the event id is used when absent."
    )
    features: list[FeatureSpec] = Field(min_length=1)
    label: LabelSpec | None = None
    aggregations: list[Aggregation] = Field(default_factory=list)
    future_tolerance_seconds: float = Field(
        300.0, ge=0, description="How far past ingestion time an event time may lie."
    )
    model: ModelSpec = Field(default_factory=ModelSpec)

    @model_validator(mode="after")
    def _names_are_consistent(self) -> Self:
        names = [f.name for f in self.features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"features declared twice: {duplicates}")
        reserved = {self.entity_key, self.event_time} | ({self.record_id} - {None})
        if self.label is not None:
            reserved.add(self.label.name)
        clashing = sorted(reserved & set(names))
        if clashing:
            raise ValueError(
                f"key, time, id or label columns also declared as features: {clashing}"
            )
        for aggregation in self.aggregations:
            if aggregation.feature is not None and aggregation.feature not in names:
                raise ValueError(
                    f"aggregation {aggregation.name}: no feature {aggregation.feature!r}"
                )
        if self.label is not None:
            self.model.metric_for(self.label.task)
        return self

    @property
    def task(self) -> str | None:
        """classification or regression; None for a dataset without a label."""
        return self.label.task if self.label is not None else None

    def feature(self, name: str) -> FeatureSpec:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(f"{self.name} has no feature {name!r}")

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON form: equal content, equal fingerprint."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def from_file(cls, path: Path) -> DatasetSpec:
        text = path.read_text()
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return cls.model_validate(document)


class VersionedSpec(_Strict):
    """A spec as registered: its version number and fingerprint."""

    version: int = Field(ge=1)
    fingerprint: str
    spec: DatasetSpec


SHIPPED_SPECS = Path(__file__).resolve().parent / "specs"


def shipped_specs() -> list[DatasetSpec]:
    return [DatasetSpec.from_file(p) for p in sorted(SHIPPED_SPECS.glob("*.yaml"))]
