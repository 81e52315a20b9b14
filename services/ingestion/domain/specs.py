"""A dataset spec from a request body: JSON by default, YAML when the content type says so.

A spec the platform cannot run is refused here, at registration, with one line naming the
problem (422 invalid_spec), rather than later by training: what DatasetSpec itself refuses (a
regression label that is not a number, a primary_metric unknown for the label's task, ...), and
a model estimator that is not a scikit-learn class of the label's task (a classifier for a
regression label) or does not take its params.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import yaml
from pydantic import ValidationError

from services.ingestion.domain.batches import json_kind, parse_json
from services.ingestion.domain.errors import InvalidSpec, MalformedBody
from shared.datasets.spec import DatasetSpec
from shared.text import first_text_problem

YAML_MEDIA_TYPES = frozenset({"application/yaml", "text/yaml", "application/x-yaml", "text/x-yaml"})


def media_type(content_type: str | None) -> str:
    """'text/csv; charset=utf-8' -> 'text/csv'."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _load_yaml(body: bytes) -> Any:
    try:
        # Aliases let a few bytes expand into a huge document: a spec never needs them.
        for event in yaml.parse(body, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise MalformedBody("YAML aliases (*name) are not accepted in a dataset spec")
        return yaml.safe_load(body)
    except yaml.YAMLError as error:
        raise MalformedBody(f"malformed YAML: {error}") from None


_VALUE_ERROR = "Value error, "
_ESTIMATOR_PATH = re.compile(r"^sklearn(\.[a-z_][a-z0-9_]*)+\.[A-Z][A-Za-z0-9]*$")


def validation_errors(error: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as {loc, message, type}; a validator's own message without pydantic's
    "Value error, " prefix (it already names the field)."""
    return [
        {
            "loc": ".".join(str(part) for part in item["loc"]) or "<root>",
            "message": item["msg"].removeprefix(_VALUE_ERROR),
            "type": item["type"],
        }
        for item in error.errors(include_url=False)
    ]


def _one_line(error: dict[str, Any]) -> str:
    """A validator's message names what it is about ("label y: ...", "model.primary_metric
    ..."), a feature's by its name; pydantic's own messages need their location."""
    loc, message = str(error["loc"]), str(error["message"])
    if error["type"] != "value_error" and loc != "<root>":
        return f"{loc}: {message}"
    if re.fullmatch(r"features\.\d+", loc):
        return f"feature {message}"
    return message


def estimator_problem(spec: DatasetSpec) -> str | None:
    """Why training could not fit the spec's estimator for its label's task, or None.

    Only sklearn.* classes are imported (as training does), and only instantiated, never fitted.
    """
    if spec.task is None:
        return None
    path = spec.model.estimator
    if not _ESTIMATOR_PATH.match(path):
        return (
            f"model.estimator {path!r} is not a scikit-learn class path such as "
            "'sklearn.ensemble.HistGradientBoostingClassifier'"
        )
    module_name, _, class_name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), class_name, None)
    except ImportError:
        found = None
    from sklearn.base import BaseEstimator, is_classifier, is_regressor

    if not isinstance(found, type) or not issubclass(found, BaseEstimator):
        return f"model.estimator {path!r}: scikit-learn has no such estimator class"
    try:
        estimator = found(**spec.model.params)
    except TypeError as error:
        return f"model.params do not fit {path}: {error}"
    fits = is_classifier if spec.task == "classification" else is_regressor
    if not fits(estimator):
        kind = "classifier" if spec.task == "classification" else "regressor"
        return (
            f"model.estimator {path} is not a {kind}, and the label's task is {spec.task}: "
            f"name a {kind}, such as sklearn.ensemble.HistGradientBoosting"
            f"{'Classifier' if spec.task == 'classification' else 'Regressor'}"
        )
    return None


def parse_spec(body: bytes, content_type: str | None) -> DatasetSpec:
    """The DatasetSpec of a body; MalformedBody if unparseable, InvalidSpec listing every
    validation error otherwise."""
    is_yaml = media_type(content_type) in YAML_MEDIA_TYPES
    document = _load_yaml(body) if is_yaml else parse_json(body)
    if not isinstance(document, dict):
        raise InvalidSpec(
            f"a dataset spec is a {'YAML mapping' if is_yaml else 'JSON object'}, "
            f"not a {json_kind(document)}",
            errors=[],
        )
    unfit = first_text_problem(document, "spec")
    if unfit is not None:
        where, why = unfit
        errors = [{"loc": where, "message": why, "type": "invalid_text"}]
        raise InvalidSpec(f"invalid dataset spec: {where}: {why}", errors=errors)
    try:
        spec = DatasetSpec.model_validate(document)
    except ValidationError as error:
        errors = validation_errors(error)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        message = f"invalid dataset spec: {_one_line(errors[0])}{more}"
        raise InvalidSpec(message, errors=errors) from None
    problem = estimator_problem(spec)
    if problem is not None:
        errors = [{"loc": "model", "message": problem, "type": "not_runnable"}]
        raise InvalidSpec(f"invalid dataset spec: {problem}", errors=errors)
    return spec
