"""Scoring: the model's input frame, predictions and their formatting, jobs scored together."""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline

from services.serving.domain.answers import Answer, errors_body, prediction_body
from services.serving.domain.jobs import InvalidRecords, Job, Outcome, ScoringFailed, score_jobs
from services.serving.domain.records import InputSchema
from services.serving.domain.samples import sample_rows
from services.serving.domain.served import ModelCard, ModelUnusable, Scored, ServedModel
from services.serving.domain.trees import check_tree_predictors
from shared.datasets.sources import agrawal_records
from shared.datasets.spec import shipped_specs
from shared.events.models import ArtifactRef
from shared.events.records import FieldError
from tests.bench.serving_pipeline import FEATURE_COLUMNS, loans_pipeline, training_frame

START = datetime(2024, 1, 1, tzinfo=UTC)


def records(count: int, seed: int = 5) -> list[dict[str, Any]]:
    return [row for row, _ in agrawal_records(count, seed=seed, start=START)]


@cache
def fitted() -> Pipeline:
    pairs = list(agrawal_records(300, seed=1, start=START))
    frame = training_frame([row for row, _ in pairs])
    return loans_pipeline(seed=1, max_iter=5).fit(frame, [label for _, label in pairs])


def card(version: int = 1, columns: tuple[str, ...] = FEATURE_COLUMNS) -> ModelCard:
    artifact = ArtifactRef(uri="s3://models/loans/v1.skops", sha256="ab" * 32, size_bytes=1)
    return ModelCard("loans", version, artifact, "loans", 1, columns)


def served(
    estimator: Any = None, version: int = 1, columns: tuple[str, ...] = FEATURE_COLUMNS
) -> ServedModel:
    spec = next(s for s in shipped_specs() if s.name == "loans")
    model = fitted() if estimator is None else estimator
    return ServedModel.build(card(version, columns), model, InputSchema.of(spec, columns))


class CountingModel:
    """Delegates to the fitted pipeline, counting predict calls and their rows."""

    def __init__(self, fail_on_rows: int | None = None) -> None:
        self.calls: list[int] = []
        self.classes_ = fitted().classes_
        self.fail_on_rows = fail_on_rows

    def predict(self, frame: pd.DataFrame) -> Any:
        return fitted().predict(frame)

    def predict_proba(self, frame: pd.DataFrame) -> Any:
        self.calls.append(len(frame))
        if self.fail_on_rows is not None and len(frame) >= self.fail_on_rows:
            raise ValueError("Input contains NaN")
        return fitted().predict_proba(frame)


def test_the_frame_is_typed_as_training_types_it() -> None:
    model = served()

    frame = model.frame(records(2))

    assert list(frame.columns) == list(FEATURE_COLUMNS)
    assert frame["age"].dtype == np.float64 and frame["salary"].dtype == np.float64
    assert frame["elevel"].dtype == object
    assert frame.dtypes.to_dict() == training_frame(records(2)).dtypes.to_dict()


def test_a_classifier_answers_its_best_class_and_every_class_probability() -> None:
    model = served()
    rows = records(20)

    scored = model.score(rows)

    expected = fitted().predict(training_frame(rows)).tolist()
    assert [s.prediction for s in scored] == expected
    for answer in scored:
        assert type(answer.prediction) is int
        assert set(answer.probabilities) == {"0", "1"}
        assert math.isclose(sum(answer.probabilities.values()), 1.0)


def test_a_regressor_answers_values_without_probabilities() -> None:
    frame = pd.DataFrame({"salary": [1.0, 2.0, 3.0], "loan": [0.0, 1.0, 0.0]})
    regressor = LinearRegression().fit(frame, [1.0, 2.0, 3.0])
    model = served(regressor, columns=("salary", "loan"))

    scored = model.score([{"salary": 4.0, "loan": 0.0}])

    assert scored[0].probabilities == {}
    assert scored[0].prediction == pytest.approx(4.0, abs=0.2)


def test_a_model_that_cannot_serve_is_refused() -> None:
    with pytest.raises(ModelUnusable, match="no predict method"):
        served(object())

    class Unfitted:
        classes_ = None

        def predict(self, frame: Any) -> Any: ...

        def predict_proba(self, frame: Any) -> Any: ...

    with pytest.raises(ModelUnusable, match="without classes_"):
        served(Unfitted())


def test_warm_up_passes_for_a_working_model_and_fails_for_a_broken_one() -> None:
    model = served()
    model.warm_up(sample_rows(model.schema))

    broken = served(CountingModel(fail_on_rows=1))
    with pytest.raises(ModelUnusable, match="warm-up prediction failed: ValueError"):
        broken.warm_up(sample_rows(broken.schema))


def test_jobs_sharing_a_model_are_scored_in_one_call_and_answered_apart() -> None:
    counting = CountingModel()
    model = served(counting)
    first, second = records(3, seed=6), records(2, seed=7)
    jobs = [Job(model, "a", 0.0, records=first), Job(model, "b", 0.0, records=second)]

    outcomes = score_jobs(jobs)

    assert counting.calls == [5]
    assert all(isinstance(o, Outcome) for o in outcomes)
    answered = [[a.record_id for a in o.answers] for o in outcomes]  # type: ignore[union-attr]
    assert answered == [[r["application_id"] for r in first], [r["application_id"] for r in second]]


def test_an_invalid_job_fails_alone() -> None:
    model = served()
    bad = records(2, seed=8)
    bad[1]["age"] = 500

    valid, invalid = score_jobs(
        [Job(model, "ok", 0.0, records=records(1)), Job(model, "bad", 0.0, records=bad)]
    )

    assert isinstance(valid, Outcome) and len(valid.answers) == 1
    assert isinstance(invalid, InvalidRecords)
    assert [(i, [e.field for e in errors]) for i, errors in invalid.errors] == [(1, ["age"])]


def test_a_batch_the_model_fails_on_is_retried_job_by_job() -> None:
    counting = CountingModel(fail_on_rows=3)
    model = served(counting)
    jobs = [
        Job(model, "small", 0.0, records=records(1)),
        Job(model, "big", 0.0, records=records(3)),
    ]

    small, big = score_jobs(jobs)

    assert counting.calls == [4, 1, 3]
    assert isinstance(small, Outcome)
    assert isinstance(big, ScoringFailed)
    assert "could not score these records: ValueError: Input contains NaN" in str(big)


def test_jobs_on_different_versions_are_scored_by_their_own_model() -> None:
    old, new = served(CountingModel(), version=1), served(CountingModel(), version=2)

    score_jobs([Job(old, "a", 0.0, records=records(1)), Job(new, "b", 0.0, records=records(2))])

    assert (old.estimator.calls, new.estimator.calls) == ([1], [2])


def test_the_answer_names_model_version_request_and_record() -> None:
    model = served(version=3)
    answers = [Answer(Scored(1, {"0": 0.25, "1": 0.75}), "app-1", "applicant-9")]

    body = prediction_body("req-7", model, answers)

    assert body == {
        "request_id": "req-7",
        "model": "loans",
        "version": 3,
        "predictions": [
            {
                "prediction": 1,
                "probabilities": {"0": 0.25, "1": 0.75},
                "model": "loans",
                "version": 3,
                "request_id": "req-7",
                "record_id": "app-1",
                "entity": "applicant-9",
            }
        ],
    }


def test_field_errors_take_fastapis_shape_and_stay_valid_json() -> None:
    errors = [
        (0, [FieldError(field="age", rule="range", message="too old", value=95)]),
        (2, [FieldError(field="salary", rule="not_finite", message="nan", value=math.nan)]),
    ]

    body = errors_body("records", errors)

    assert body["detail"] == [
        {"loc": ["body", "records", 0, "age"], "msg": "too old", "type": "range", "input": 95},
        {
            "loc": ["body", "records", 2, "salary"],
            "msg": "nan",
            "type": "not_finite",
            "input": "nan",
        },
    ]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("left", 10_000, "points past the end of its tree"),
        ("right", 0, "points back to itself or an earlier node"),
        ("feature_idx", 99, "reads a feature outside the model's"),
        ("feature_idx", -1, "reads a feature outside the model's"),
    ],
)
def test_a_tree_whose_nodes_point_outside_it_is_refused(
    field: str, value: int, problem: str
) -> None:
    check_tree_predictors(fitted())  # the real thing passes
    crafted = copy.deepcopy(fitted())
    tree = crafted.named_steps["model"]._predictors[2][0]
    tree.nodes[field][0] = value

    with pytest.raises(ModelUnusable, match=f"tree of iteration 2: a split node {problem}"):
        check_tree_predictors(crafted)
