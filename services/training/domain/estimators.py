"""The estimator of a run: a scikit-learn class named by import path, with its parameters.

Only classes of scikit-learn itself may be named, so a dataset spec or a command cannot make
training import and run arbitrary code:

>>> estimator_class("sklearn.linear_model.LogisticRegression").__name__
'LogisticRegression'
>>> estimator_class("os.system")
Traceback (most recent call last):
...
services.training.domain.errors.EstimatorRefused: estimator 'os.system' is not a scikit-learn \
class: only sklearn.* estimators may be trained
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any, Literal

from sklearn.base import BaseEstimator, is_classifier, is_regressor

from services.training.domain.errors import EstimatorRefused
from shared.datasets.spec import ModelSpec

Task = Literal["classification", "regression"]
DEFAULT_ESTIMATORS: dict[str, str] = {
    "classification": "sklearn.ensemble.HistGradientBoostingClassifier",
    "regression": "sklearn.ensemble.HistGradientBoostingRegressor",
}
"""A spec that declares no estimator gets its task's: ModelSpec's own default is the
classifier, which a regression spec did not choose (it cannot fit a regression)."""
_PATH = re.compile(r"^sklearn(\.[a-z_][a-z0-9_]*)+\.[A-Z][A-Za-z0-9]*$")


@dataclass(frozen=True)
class ConfiguredEstimator:
    estimator: BaseEstimator
    path: str
    params: dict[str, Any]
    """The parameters set explicitly: the spec's, the command's overrides, and the seed."""


def estimator_class(path: str) -> type[BaseEstimator]:
    """The scikit-learn estimator class at `path`; anything else is refused."""
    if not isinstance(path, str) or not path.startswith("sklearn."):
        raise EstimatorRefused(
            f"estimator {path!r} is not a scikit-learn class: only sklearn.* estimators may be "
            "trained"
        )
    if not _PATH.match(path):
        raise EstimatorRefused(
            f"estimator {path!r} is not a public class path such as "
            "'sklearn.ensemble.HistGradientBoostingClassifier'"
        )
    module_name, _, class_name = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise EstimatorRefused(f"estimator {path!r}: no module {module_name!r}") from None
    found = getattr(module, class_name, None)
    if found is None:
        raise EstimatorRefused(f"estimator {path!r}: {module_name} has no {class_name!r}")
    if not isinstance(found, type) or not issubclass(found, BaseEstimator):
        raise EstimatorRefused(f"estimator {path!r} is not a scikit-learn estimator class")
    if not found.__module__.startswith("sklearn."):
        raise EstimatorRefused(f"estimator {path!r} is defined outside scikit-learn")
    return found


def estimator_path(model: ModelSpec, task: Task) -> str:
    """The estimator a spec trains for its task: the declared one, or the task's default.

    >>> estimator_path(ModelSpec(), "regression")
    'sklearn.ensemble.HistGradientBoostingRegressor'
    >>> estimator_path(ModelSpec(estimator="sklearn.linear_model.Ridge"), "regression")
    'sklearn.linear_model.Ridge'
    """
    if model.estimator == DEFAULT_ESTIMATORS["classification"] and task != "classification":
        return DEFAULT_ESTIMATORS.get(task, model.estimator)
    return model.estimator


def configure_estimator(
    model: ModelSpec, overrides: dict[str, Any], seed: int, task: Task
) -> ConfiguredEstimator:
    """The spec's estimator with its params, the command's overrides on top, and the seed as
    random_state when the estimator has one (the seed wins over a random_state in params)."""
    path = estimator_path(model, task)
    cls = estimator_class(path)
    params = {**model.params, **overrides}
    try:
        estimator = cls(**params)
    except TypeError as error:
        raise EstimatorRefused(f"{path}: {error}") from None
    if "random_state" in estimator.get_params(deep=False):
        params["random_state"] = seed
        estimator.set_params(random_state=seed)
    _check_params(estimator, path)
    _check_task(estimator, path, task)
    return ConfiguredEstimator(estimator=estimator, path=path, params=params)


def _check_params(estimator: BaseEstimator, path: str) -> None:
    validate = getattr(estimator, "_validate_params", None)
    if validate is None:
        return
    try:
        validate()
    except (ValueError, TypeError) as error:
        raise EstimatorRefused(f"{path}: {error}") from None


def _check_task(estimator: BaseEstimator, path: str, task: Task) -> None:
    if task == "classification" and not is_classifier(estimator):
        raise EstimatorRefused(f"{path} is not a classifier, and the dataset's task is {task}")
    if task == "regression" and not is_regressor(estimator):
        raise EstimatorRefused(f"{path} is not a regressor, and the dataset's task is {task}")
