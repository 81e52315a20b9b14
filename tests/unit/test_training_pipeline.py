"""Pipelines built from the shipped dataset specs: the right columns in the right transformers,
the seed everywhere, storable as skops artifacts, and reproducible."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from services.training.domain.estimators import configure_estimator
from services.training.domain.frames import TrainingFrame, prepare
from services.training.domain.pipeline import build_pipeline
from services.training.domain.split import time_split
from shared.artifacts import deserialize, serialize
from shared.datasets.sources import agrawal_records, breast_cancer_records
from shared.datasets.spec import DatasetSpec, ModelSpec, shipped_specs

START = datetime(2024, 1, 1, tzinfo=UTC)
SPECS = {spec.name: spec for spec in shipped_specs()}


def training_frame(name: str) -> TrainingFrame:
    if name == "loans":
        rows = [
            {**r, "approved": y, "applications_1h": 1, "loan_sum_1h": r["loan"]}
            for r, y in agrawal_records(600, seed=4, start=START, function_before=2)
        ]
    else:
        rows = [r for r, _ in breast_cancer_records(seed=4, start=START)]
    return prepare(pd.DataFrame(rows), SPECS[name])


def transformers(pipeline: object) -> dict[str, tuple[object, list[str]]]:
    features = pipeline.named_steps["features"]  # type: ignore[attr-defined]
    assert isinstance(features, ColumnTransformer)
    return {name: (step, columns) for name, step, columns in features.transformers}


def test_the_loans_pipeline_one_hot_encodes_categories_and_passes_numbers_to_the_trees() -> None:
    training = training_frame("loans")
    configured = configure_estimator(SPECS["loans"].model, {}, seed=5, task="classification")
    pipeline = build_pipeline(configured.estimator, training.kinds, seed=5)
    steps = transformers(pipeline)
    assert steps["numeric"] == ("passthrough", [
        "salary", "commission", "age", "hvalue", "hyears", "loan", "applications_1h", "loan_sum_1h"
    ])  # fmt: skip
    categorical, columns = steps["categorical"]
    assert columns == ["elevel", "car", "zipcode"]
    encoder = categorical.named_steps["encode"]  # type: ignore[attr-defined]
    assert isinstance(encoder, OneHotEncoder) and encoder.handle_unknown == "ignore"
    assert pipeline.named_steps["model"].random_state == 5
    assert type(pipeline.named_steps["model"]).__name__ == "HistGradientBoostingClassifier"


def test_the_breast_cancer_pipeline_has_thirty_numeric_columns_and_no_categories() -> None:
    training = training_frame("breast_cancer")
    configured = configure_estimator(
        SPECS["breast_cancer"].model, {}, seed=0, task="classification"
    )
    steps = transformers(build_pipeline(configured.estimator, training.kinds, seed=0))
    assert set(steps) == {"numeric"}
    assert len(steps["numeric"][1]) == 30


def test_linear_models_get_imputed_and_scaled_numbers() -> None:
    training = training_frame("breast_cancer")
    model = ModelSpec(estimator="sklearn.linear_model.LogisticRegression", params={"C": 0.5})
    configured = configure_estimator(model, {}, seed=0, task="classification")
    numeric, _ = transformers(build_pipeline(configured.estimator, training.kinds, seed=0))[
        "numeric"
    ]
    assert [name for name, _ in numeric.steps] == ["impute", "scale"]  # type: ignore[attr-defined]
    assert isinstance(numeric.named_steps["scale"], StandardScaler)  # type: ignore[attr-defined]


def test_booleans_are_passed_as_numbers() -> None:
    spec = DatasetSpec.model_validate(
        {
            "name": "toy",
            "entity_key": "user",
            "event_time": "at",
            "features": [{"name": "member", "type": "boolean"}, {"name": "x", "type": "numeric"}],
            "label": {"name": "y", "type": "integer"},
        }
    )
    raw = pd.DataFrame(
        {
            "user": [f"u{i}" for i in range(40)],
            "at": pd.date_range("2024-01-01", periods=40, freq="min", tz="UTC"),
            "member": [i % 2 == 0 for i in range(40)],
            "x": np.arange(40.0),
            "y": [i % 2 for i in range(40)],
        }
    )
    training = prepare(raw, spec)
    configured = configure_estimator(spec.model, {}, seed=0, task="classification")
    pipeline = build_pipeline(configured.estimator, training.kinds, seed=0)
    assert transformers(pipeline)["boolean"] == ("passthrough", ["member"])
    pipeline.fit(training.x(), training.y())
    assert pipeline.predict(training.x()).tolist() == training.y().tolist()


@pytest.mark.parametrize("name", ["loans", "breast_cancer"])
def test_a_fitted_pipeline_is_a_loadable_skops_artifact(name: str) -> None:
    training = training_frame(name)
    split = time_split(training, 0.2)
    configured = configure_estimator(SPECS[name].model, {}, seed=1, task="classification")
    pipeline = build_pipeline(configured.estimator, training.kinds, seed=1)
    pipeline.fit(training.x(split.train), training.y(split.train))
    data, _ = serialize(pipeline)
    loaded = deserialize(data, hashlib.sha256(data).hexdigest())
    holdout = training.x(split.holdout)
    assert (loaded.predict_proba(holdout) == pipeline.predict_proba(holdout)).all()


@pytest.mark.parametrize(
    ("name", "estimator", "params"),
    [
        ("loans", "sklearn.ensemble.HistGradientBoostingClassifier", {"max_iter": 50}),
        ("loans", "sklearn.ensemble.RandomForestClassifier", {"n_estimators": 20}),
        ("breast_cancer", "sklearn.neural_network.MLPClassifier", {"max_iter": 400}),
    ],
)
def test_same_training_set_params_and_seed_give_the_same_predictions(
    name: str, estimator: str, params: dict[str, int]
) -> None:
    predictions = []
    for order in (None, 11):
        training = training_frame(name)
        if order is not None:  # the same set, stored in another order
            shuffled = training.frame.sample(frac=1, random_state=order)
            training = prepare(shuffled, SPECS[name])
        split = time_split(training, 0.2)
        model = ModelSpec(estimator=estimator, params=params)
        configured = configure_estimator(model, {}, seed=9, task="classification")
        pipeline = build_pipeline(configured.estimator, training.kinds, seed=9)
        pipeline.fit(training.x(split.train), training.y(split.train))
        predictions.append(pipeline.predict_proba(training.x(split.holdout)))
    assert np.array_equal(predictions[0], predictions[1])
