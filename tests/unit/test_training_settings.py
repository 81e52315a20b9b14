"""Training's settings: defaults, and clear refusals of bad values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.training.settings import TrainingSettings
from shared.settings import PlatformSettings


def settings(**values: object) -> TrainingSettings:
    return TrainingSettings(_env_file=None, **values)  # type: ignore[call-arg]


def test_defaults() -> None:
    s = settings()
    assert s.port == 8004
    assert s.feature_store_url == "http://127.0.0.1:8003"
    assert s.registry_url == "http://127.0.0.1:8005"
    assert s.retrain_every_labels == 5000
    assert s.models_bucket == "mlops-models"
    assert (s.holdout_fraction, s.classification_metric, s.regression_metric) == (
        0.2,
        "roc_auc",
        "rmse",
    )
    assert (s.data_wait_s, s.data_poll_s) == (120.0, 1.0)


def test_settings_come_from_mlops_training_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_TRAINING_RETRAIN_EVERY_LABELS", "20")
    monkeypatch.setenv("MLOPS_TRAINING_MODEL_NAMES", '{"loans": "loans-hgb"}')
    s = settings()
    assert s.retrain_every_labels == 20
    assert s.model_name_for("loans") == "loans-hgb"
    assert s.model_name_for("breast_cancer") == "breast_cancer"


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("model_names", {"loans": "Loans HGB"}, "model names must match"),
        ("classification_metric", "rmse", "unknown metric 'rmse'"),
        ("regression_metric", "roc_auc", "unknown metric 'roc_auc'"),
        ("holdout_fraction", 1.0, "less than 1"),
        ("retrain_every_labels", 0, "greater than or equal to 1"),
        ("data_wait_s", -1, "greater than or equal to 0"),
        ("data_poll_s", 0, "greater than 0"),
    ],
)
def test_bad_values_are_refused(field: str, value: object, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        settings(**{field: value})


def test_the_database_is_training_s_own_then_the_platform_s_then_sqlite(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MLOPS_DATABASE_URL", raising=False)
    platform = PlatformSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings().database_url_for(platform) == "sqlite:///.local/data/training.sqlite"
    with_platform = PlatformSettings(_env_file=None, database_url="postgresql://p/db")  # type: ignore[call-arg]
    assert settings().database_url_for(with_platform) == "postgresql://p/db"
    own = settings(database_url="sqlite:///x.db")
    assert own.database_url_for(with_platform) == "sqlite:///x.db"
