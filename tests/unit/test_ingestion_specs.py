"""A spec in a request body: JSON by default, YAML by content type; every error listed."""

import json
from pathlib import Path

import pytest

from services.ingestion.domain.errors import InvalidSpec, MalformedBody
from services.ingestion.domain.specs import media_type, parse_spec
from shared.datasets.spec import SHIPPED_SPECS, DatasetSpec

LOANS_YAML = (SHIPPED_SPECS / "loans.yaml").read_bytes()
LOANS = DatasetSpec.from_file(Path(SHIPPED_SPECS / "loans.yaml"))


@pytest.mark.parametrize(
    "content_type", ["application/yaml", "text/yaml", "application/x-yaml; charset=utf-8"]
)
def test_a_yaml_spec_is_read_when_the_content_type_says_yaml(content_type: str) -> None:
    assert parse_spec(LOANS_YAML, content_type).fingerprint() == LOANS.fingerprint()


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain"])
def test_a_json_spec_is_the_default(content_type: str | None) -> None:
    body = json.dumps(LOANS.model_dump(mode="json")).encode()
    assert parse_spec(body, content_type) == LOANS


def test_an_invalid_spec_lists_every_validation_error() -> None:
    document = LOANS.model_dump(mode="json")
    document["features"][0]["min"] = 10
    document["features"][0]["max"] = 1
    document["surprise"] = True
    with pytest.raises(InvalidSpec) as refused:
        parse_spec(json.dumps(document).encode(), "application/json")
    body = refused.value.body()
    assert body["reason"] == "invalid_spec" and refused.value.status == 422
    locations = {error["loc"] for error in body["errors"]}
    assert {"features.0", "surprise"} <= locations
    assert body["detail"].startswith("invalid dataset spec: ")


@pytest.mark.parametrize(
    ("body", "content_type", "refusal", "message"),
    [
        (b"name: [unclosed", "application/yaml", MalformedBody, "malformed YAML"),
        (b"a: &x [1]\nb: *x\n", "text/yaml", MalformedBody, "aliases"),
        (b"{not json", "application/json", MalformedBody, "malformed JSON"),
        (b"[1, 2]", "application/json", InvalidSpec, "a dataset spec is a JSON object"),
        (b"- 1\n", "text/yaml", InvalidSpec, "a dataset spec is a YAML mapping"),
    ],
)
def test_what_is_not_a_spec_is_refused(
    body: bytes, content_type: str, refusal: type, message: str
) -> None:
    with pytest.raises(refusal, match=message):
        parse_spec(body, content_type)


def test_media_type_drops_parameters() -> None:
    assert media_type("Text/CSV; charset=utf-8") == "text/csv"
    assert media_type(None) == ""


def a_document(**changes: object) -> dict:
    document: dict = {
        "name": "homes",
        "entity_key": "home_id",
        "event_time": "sold_at",
        "features": [{"name": "rooms", "type": "integer", "min": 0, "expected_max": 12}],
        "label": {"name": "price", "type": "numeric", "task": "regression"},
        "model": {"estimator": "sklearn.ensemble.HistGradientBoostingRegressor"},
    }
    document.update(changes)
    return document


def refusal_of(document: dict) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as refused:
        parse_spec(json.dumps(document).encode(), "application/json")
    assert refused.value.status == 422 and refused.value.reason == "invalid_spec"
    assert "\n" not in refused.value.message, "one line"
    return refused.value


def test_a_runnable_regression_spec_is_accepted() -> None:
    spec = parse_spec(json.dumps(a_document()).encode(), "application/json")
    assert spec.task == "regression" and spec.model.metric_for("regression") == ("rmse", False)


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        (
            {
                "label": {
                    "name": "price",
                    "type": "categorical",
                    "categories": ["low", "high"],
                    "task": "regression",
                }
            },
            "invalid dataset spec: label price: a regression label must be numeric or integer, "
            "not categorical",
        ),
        (
            {
                "model": {
                    "estimator": "sklearn.ensemble.HistGradientBoostingRegressor",
                    "primary_metric": "roc_auc",
                }
            },
            "invalid dataset spec: model.primary_metric 'roc_auc' is not a regression metric "
            "(the label's task); use one of: mae, r2, rmse",
        ),
        (
            {"model": {"primary_metric": "gini"}, "label": {"name": "sold", "type": "boolean"}},
            "invalid dataset spec: model.primary_metric 'gini' is not a classification metric "
            "(the label's task); use one of: accuracy, f1, log_loss, roc_auc",
        ),
        (
            {"model": {}},
            "invalid dataset spec: model.estimator sklearn.ensemble.HistGradientBoostingClassifier"
            " is not a regressor, and the label's task is regression: name a regressor, such as "
            "sklearn.ensemble.HistGradientBoostingRegressor",
        ),
        (
            {"model": {"estimator": "os.system"}},
            "invalid dataset spec: model.estimator 'os.system' is not a scikit-learn class path",
        ),
        (
            {"model": {"estimator": "sklearn.linear_model.Nothing"}},
            "invalid dataset spec: model.estimator 'sklearn.linear_model.Nothing': scikit-learn "
            "has no such estimator class",
        ),
        (
            {"model": {"estimator": "sklearn.linear_model.Ridge", "params": {"depth": 3}}},
            "invalid dataset spec: model.params do not fit sklearn.linear_model.Ridge:",
        ),
        (
            {"features": [{"name": "rooms", "type": "integer", "min": 0, "expected_min": -1}]},
            "invalid dataset spec: feature rooms: the expected range [-1.0, None] reaches past "
            "the hard range [0.0, None]",
        ),
        (
            {"label": {"name": "price", "type": "numeric", "task": "ranking"}},
            "invalid dataset spec: label.task: Input should be 'classification' or 'regression'",
        ),
    ],
)
def test_a_spec_the_platform_cannot_run_is_refused_in_one_line_naming_the_problem(
    changes: dict, detail: str
) -> None:
    refused = refusal_of(a_document(**changes))
    assert refused.message.startswith(detail), refused.message
    assert refused.body()["errors"], "the errors are listed too"


def test_the_estimator_is_not_checked_for_a_dataset_without_a_label() -> None:
    document = a_document(model={})
    del document["label"]
    assert parse_spec(json.dumps(document).encode(), "application/json").task is None
