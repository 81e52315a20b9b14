"""A model version ready to answer: the fitted estimator, what the registry says about it, and
the input schema its records are read with. Scoring is pure computation, no I/O.

The estimator reads a pandas DataFrame with the version's feature_columns, in that order.
Classifiers answer the class of highest probability (predict_proba's argmax, which is what
scikit-learn's predict returns for its probabilistic classifiers) and every class's
probability; regressors answer predict's value and no probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from services.serving.domain.records import InputSchema
from shared.events.models import ArtifactRef
from shared.events.records import FieldValue


class ModelUnusable(Exception):
    """A loaded estimator that cannot serve: wrong interface or failed warm-up."""


@dataclass(frozen=True)
class ModelCard:
    """What the registry records about one version, as serving needs it."""

    name: str
    version: int
    artifact: ArtifactRef
    dataset: str
    spec_version: int | None
    feature_columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Scored:
    prediction: FieldValue
    probabilities: dict[str, float]


def _python(value: Any) -> FieldValue:
    """A numpy scalar (a class label, a regression value) as a JSON scalar."""
    item = value.item() if isinstance(value, np.generic) else value
    if isinstance(item, bool | int | str) or item is None:
        return item
    if isinstance(item, float):
        return item
    return str(item)


@dataclass(frozen=True, eq=False)
class ServedModel:
    """One loaded version. Requests keep the object they started with across a swap."""

    card: ModelCard
    estimator: Any
    schema: InputSchema
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    classes: tuple[FieldValue, ...] = ()
    class_keys: tuple[str, ...] = ()
    floats: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()

    @classmethod
    def build(cls, card: ModelCard, estimator: Any, schema: InputSchema) -> ServedModel:
        if not callable(getattr(estimator, "predict", None)):
            raise ModelUnusable(f"{type(estimator).__name__} has no predict method")
        classes: tuple[FieldValue, ...] = ()
        if callable(getattr(estimator, "predict_proba", None)):
            if getattr(estimator, "classes_", None) is None:
                raise ModelUnusable("a classifier without classes_ (is it fitted?)")
            classes = tuple(_python(label) for label in estimator.classes_)
        return cls(
            card=card,
            estimator=estimator,
            schema=schema,
            classes=classes,
            class_keys=tuple(str(label) for label in classes),
            floats=schema.float_columns,
            categories=schema.category_columns,
        )

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> int:
        return self.card.version

    def frame(self, rows: Sequence[Mapping[str, FieldValue]]) -> pd.DataFrame:
        """The estimator's input, typed as the training service types its frames: numbers and
        booleans as float64 (NaN for missing), categories as strings in object columns, other
        columns as pandas reads them."""
        data: dict[str, Any] = {}
        for column in self.schema.columns:
            values = [row.get(column) for row in rows]
            if column in self.floats:
                data[column] = np.array(values, dtype=np.float64)
            elif column in self.categories:
                data[column] = pd.Series(values, dtype=object)
            else:
                data[column] = values
        return pd.DataFrame(data)  # in the columns' order; columns= would cost a reindex

    def score(self, rows: Sequence[Mapping[str, FieldValue]]) -> list[Scored]:
        frame = self.frame(rows)
        if not self.classes:
            values = self.estimator.predict(frame)
            return [Scored(_python(value), {}) for value in np.asarray(values).ravel()]
        probabilities = np.asarray(self.estimator.predict_proba(frame))
        best = probabilities.argmax(axis=1).tolist()
        keys, classes = self.class_keys, self.classes
        return [
            Scored(classes[index], dict(zip(keys, row, strict=True)))
            for index, row in zip(best, probabilities.tolist(), strict=True)
        ]

    def warm_up(self, rows: Sequence[Mapping[str, FieldValue]]) -> None:
        """Scores sample rows in a batch and one by one; raises ModelUnusable on any failure."""
        try:
            scored = self.score(rows) + [self.score([row])[0] for row in rows]
        except Exception as error:
            raise ModelUnusable(
                f"warm-up prediction failed: {type(error).__name__}: {error}"
            ) from None
        if len(scored) != 2 * len(rows):
            raise ModelUnusable(f"warm-up: {len(rows)} rows gave {len(scored) // 2} predictions")
        for answer in scored:
            total = sum(answer.probabilities.values())
            if self.classes and not math.isclose(total, 1.0, abs_tol=1e-6):
                raise ModelUnusable(f"warm-up: probabilities sum to {total}, not 1")
