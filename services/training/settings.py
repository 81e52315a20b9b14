"""Training's settings: MLOPS_TRAINING_* variables (the platform's are MLOPS_*)."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from shared.events.models import MODEL_NAME
from shared.settings import STACK_ENV_FILE, PlatformSettings, ServiceSettings, service_url

CLASSIFICATION_METRICS = ("roc_auc", "accuracy", "f1", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")


class TrainingSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="MLOPS_TRAINING_", env_file=STACK_ENV_FILE, extra="ignore", frozen=True
    )

    port: int = Field(8004, ge=1, le=65535)
    group_id: str | None = Field(
        None, description="Consumer group of training.requests; default <namespace>.training."
    )
    labels_group_id: str | None = Field(
        None, description="Consumer group of data.labels; default <namespace>.training-labels."
    )
    validation_group_id: str | None = Field(
        None,
        description="Validation's consumer group, whose progress on data.raw a run waits for "
        "(a record accepted before the command is trained on); default <namespace>.validation.",
    )
    feature_store_url: str = Field(default_factory=lambda: service_url("feature_store"))
    registry_url: str = Field(default_factory=lambda: service_url("registry"))
    http_timeout_s: float = Field(
        120.0, gt=0, description="How long a training-set or registry request may take."
    )
    models_bucket: str = Field("mlops-models", min_length=3, max_length=63)
    database_url: SecretStr | None = Field(
        None, description="Where finished runs are kept; default MLOPS_DATABASE_URL, else SQLite."
    )
    database_schema: str = Field(
        "training",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL schema of training's tables (created if missing).",
    )
    sqlite_path: str = Field(
        ".local/data/training.sqlite", description="The SQLite file when no URL is configured."
    )
    retrain_every_labels: int = Field(
        5000, ge=1, description="A dataset's model retrains after every this many new labels."
    )
    model_names: dict[str, str] = Field(
        default_factory=dict,
        description="Dataset -> model name for data-volume retraining, as JSON; default: the "
        'dataset\'s own name. E.g. {"loans": "loans-hgb"}.',
    )
    default_seed: int = Field(0, ge=0, description="The seed when a TrainModel names none.")
    holdout_fraction: float = Field(
        0.2, gt=0, lt=1, description="The latest share of rows by event time kept for evaluation."
    )
    classification_metric: str = Field(
        "roc_auc",
        description="Only a fallback for rebuilding versions whose evaluation names no metric: "
        "training compares the metric the dataset spec's model section chooses.",
    )
    regression_metric: str = Field("rmse", description="The same fallback, for regression.")
    data_wait_s: float = Field(
        120.0,
        ge=0,
        description="How long a run waits for its data: validation past every record sent "
        "before its command, then the feature store's offline store holding every record and "
        "label validated by then; then it fails with what was missing.",
    )
    data_poll_s: float = Field(
        1.0, gt=0, description="How often a waiting run asks the feature store how far it is."
    )
    pin_training_set_to_command_time: bool = Field(
        True,
        description="Ask the feature store for rows up to the command's time, so a redelivered "
        "command that must train again reads the same point-in-time set.",
    )
    min_training_rows: int = Field(
        10, ge=2, description="Fewer labelled rows than this refuse the run."
    )
    handler_attempts: int = Field(
        5,
        ge=1,
        description="Tries per command when a dependency (feature store, MinIO) fails; then "
        "it ends in TrainingFailed (failed).",
    )
    max_training_seconds: float = Field(
        1800.0, gt=0, description="The longest a run may take before Kafka reassigns its command."
    )
    lease_ttl_s: float = Field(
        60.0,
        ge=3,
        description="A run holds its model's lease in SQL (one run of a model at a time across "
        "replicas) and renews it every third of this; a lease not renewed this long (its "
        "replica died) is free.",
    )
    lease_wait_s: float = Field(
        1800.0,
        ge=0,
        description="How long a command waits for its model's lease held by another run; then "
        "it ends in TrainingFailed (failed) naming the holder.",
    )
    publish_timeout_s: float = Field(
        10.0, gt=0, description="How long POST /train waits for Kafka to confirm the command."
    )

    reproduction_timeout_s: float = Field(
        900.0,
        gt=0,
        description="A reproduction (POST /reproductions) without an outcome this long after "
        "it was asked, waiting included, ends failed (timed out).",
    )
    reproduction_queue: int = Field(
        4,
        ge=1,
        description="Reproductions that may wait while one runs; more are refused with 429.",
    )
    reproductions_kept: int = Field(
        200, ge=1, description="Reproductions kept per namespace (in SQL, for every replica)."
    )
    reproduction_lease_s: float = Field(
        30.0,
        ge=3,
        description="A replica renews the heartbeat of its reproductions every third of this; "
        "one whose heartbeat is older (its replica died) ends failed.",
    )

    @field_validator("model_names")
    @classmethod
    def _model_names_are_valid(cls, names: dict[str, str]) -> dict[str, str]:
        bad = {dataset: name for dataset, name in names.items() if not re.match(MODEL_NAME, name)}
        if bad:
            raise ValueError(f"model names must match {MODEL_NAME}: {bad}")
        return names

    @field_validator("classification_metric")
    @classmethod
    def _known_classification_metric(cls, metric: str) -> str:
        return _known(metric, CLASSIFICATION_METRICS)

    @field_validator("regression_metric")
    @classmethod
    def _known_regression_metric(cls, metric: str) -> str:
        return _known(metric, REGRESSION_METRICS)

    def database_url_for(self, platform: PlatformSettings) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return platform.database_url_or_sqlite(self.sqlite_path)

    def model_name_for(self, dataset: str) -> str:
        return self.model_names.get(dataset, dataset)


def _known(metric: str, known: tuple[str, ...]) -> str:
    if metric not in known:
        raise ValueError(f"unknown metric {metric!r}; one of: {', '.join(known)}")
    return metric
