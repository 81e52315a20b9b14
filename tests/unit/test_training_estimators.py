"""Training's estimators: only scikit-learn classes, with the spec's params, the command's
overrides and the seed."""

from __future__ import annotations

import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LinearRegression

from services.training.domain.errors import EstimatorRefused
from services.training.domain.estimators import configure_estimator, estimator_class
from shared.datasets.spec import ModelSpec


@pytest.mark.parametrize(
    "path",
    [
        "os.system",
        "builtins.eval",
        "subprocess.Popen",
        "numpy.linalg.LinAlgError",
        "sklearnx.ensemble.RandomForestClassifier",
        "sklearn",
        "",
    ],
)
def test_anything_outside_scikit_learn_is_refused(path: str) -> None:
    with pytest.raises(EstimatorRefused, match=r"scikit-learn|public class path"):
        estimator_class(path)


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("sklearn.ensemble.NoSuchForest", "has no 'NoSuchForest'"),
        ("sklearn.nosuchmodule.Thing", "no module 'sklearn.nosuchmodule'"),
        ("sklearn.utils.Bunch", "not a scikit-learn estimator class"),
        ("sklearn.base.os.system", "public class path"),
        ("sklearn.ensemble._forest.__builtins__", "public class path"),
    ],
)
def test_sklearn_paths_that_are_not_estimators_are_refused(path: str, problem: str) -> None:
    with pytest.raises(EstimatorRefused, match=problem):
        estimator_class(path)


def test_command_params_override_the_specs_and_the_seed_is_the_random_state() -> None:
    spec = ModelSpec(
        estimator="sklearn.ensemble.HistGradientBoostingClassifier",
        params={"max_iter": 100, "learning_rate": 0.2, "random_state": 0},
    )
    configured = configure_estimator(spec, {"max_iter": 7}, seed=11, task="classification")
    assert isinstance(configured.estimator, HistGradientBoostingClassifier)
    assert configured.params == {"max_iter": 7, "learning_rate": 0.2, "random_state": 11}
    assert configured.estimator.get_params()["max_iter"] == 7
    assert configured.estimator.get_params()["random_state"] == 11


def test_an_estimator_without_random_state_gets_no_seed_param() -> None:
    spec = ModelSpec(estimator="sklearn.linear_model.LinearRegression")
    configured = configure_estimator(spec, {}, seed=3, task="regression")
    assert isinstance(configured.estimator, LinearRegression)
    assert configured.params == {}


def test_unknown_or_invalid_params_are_refused_with_the_estimator_named() -> None:
    spec = ModelSpec(estimator="sklearn.ensemble.HistGradientBoostingClassifier")
    with pytest.raises(EstimatorRefused, match=r"HistGradientBoostingClassifier.*no_such_param"):
        configure_estimator(spec, {"no_such_param": 1}, seed=0, task="classification")
    with pytest.raises(EstimatorRefused, match="max_iter"):
        configure_estimator(spec, {"max_iter": -5}, seed=0, task="classification")


def test_an_estimator_of_the_wrong_task_is_refused() -> None:
    regressor = ModelSpec(estimator="sklearn.linear_model.Ridge")
    with pytest.raises(EstimatorRefused, match="not a classifier"):
        configure_estimator(regressor, {}, seed=0, task="classification")
    classifier = ModelSpec(estimator="sklearn.linear_model.LogisticRegression")
    with pytest.raises(EstimatorRefused, match="not a regressor"):
        configure_estimator(classifier, {}, seed=0, task="regression")


def test_a_spec_without_an_estimator_gets_its_task_s_default() -> None:
    regression = configure_estimator(ModelSpec(), {"max_iter": 5}, seed=2, task="regression")
    assert regression.path == "sklearn.ensemble.HistGradientBoostingRegressor"
    assert type(regression.estimator).__name__ == "HistGradientBoostingRegressor"
    assert regression.params == {"max_iter": 5, "random_state": 2}
    classification = configure_estimator(ModelSpec(), {}, seed=2, task="classification")
    assert isinstance(classification.estimator, HistGradientBoostingClassifier)
