"""Monitoring's settings: MLOPS_MONITORING_* variables (the platform's are MLOPS_*)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from services.monitoring.domain.detectors import DetectorSpec
from services.monitoring.domain.monitor import DatasetDetectors
from services.monitoring.domain.policy import PolicyConfig
from shared.events.models import MODEL_NAME
from shared.settings import STACK_ENV_FILE, PlatformSettings, ServiceSettings, service_url


class DetectorSetting(BaseModel):
    """A River detector and its parameters, e.g. {"kind": "adwin", "params": {"delta": 0.002}}."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["adwin", "kswin", "page_hinkley"] = "adwin"
    params: dict[str, Any] = Field(default_factory=dict)
    rank_reference: int | None = Field(
        None,
        ge=1,
        description="Feed each value as its mid-rank in [0, 1] against the first this many "
        "values (a reference sample); None: the raw values.",
    )

    def spec(self) -> DetectorSpec:
        spec = DetectorSpec(self.kind, dict(self.params), self.rank_reference)
        spec.build()  # unknown parameters fail at start-up
        return spec


class DatasetDetectorSettings(BaseModel):
    """Detectors of one dataset: on each numeric feature (mid-ranks against the first 500
    values, so discrete and heavy-tailed features raise no false alarm), the predicted class
    rate or predicted value, the 0/1 loss (classification) or absolute residual (regression),
    and the out-of-range and rejection rates. `features`: which features (default every
    numeric one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feature: DetectorSetting = DetectorSetting(
        kind="adwin", params={"delta": 0.002}, rank_reference=500
    )
    prediction: DetectorSetting = DetectorSetting(kind="adwin", params={"delta": 0.002})
    # Tuned on make bench-drift's error streams (seeds apart from the reported ones): faster
    # than River's default delta 0.002, with no false alarm on the stationary segments.
    error: DetectorSetting = DetectorSetting(kind="adwin", params={"delta": 0.01, "clock": 8})
    # The absolute residual as mid-ranks against its first 200 values: one setting for any
    # unit. Tuned on bench-drift's FriedmanDrift (seeds 4-7, apart from the reported ones):
    # mean delay 46 events, and no false alarm on 45 stationary residual streams of 20,000
    # (half-normal, |t(2)|, rounded Laplace), where delta 0.01 had one.
    residual: DetectorSetting = DetectorSetting(
        kind="adwin", params={"delta": 0.005, "clock": 8}, rank_reference=200
    )
    predicted_value: DetectorSetting = DetectorSetting(
        kind="adwin", params={"delta": 0.002}, rank_reference=500
    )
    rate: DetectorSetting = DetectorSetting(kind="adwin", params={"delta": 0.002})
    features: list[str] | None = None

    def detectors(self) -> DatasetDetectors:
        return DatasetDetectors(
            feature=self.feature.spec(),
            prediction=self.prediction.spec(),
            error=self.error.spec(),
            features=tuple(self.features) if self.features is not None else None,
            residual=self.residual.spec(),
            predicted_value=self.predicted_value.spec(),
            rate=self.rate.spec(),
        )


class MonitoringSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="MLOPS_MONITORING_", env_file=STACK_ENV_FILE, extra="ignore", frozen=True
    )

    port: int = Field(8007, ge=1, le=65535)
    group_id: str | None = Field(
        None,
        description="Consumer group of monitoring.inputs; default <namespace>.monitoring "
        "(the forwarding stage: <group>-router; the models' events: <group>-models.<instance>).",
    )
    label_wait_s: float = Field(
        3600.0, gt=0, description="How long a prediction waits for its label before it expires."
    )
    debounce_s: float = Field(
        300.0, ge=0, description="Drift signals within this of an episode's first make one."
    )
    cooldown_s: float = Field(1800.0, ge=0, description="No new retrain this soon after one.")
    min_labels_after_drift: int = Field(
        100, ge=0, description="Labelled predictions needed after a drift before retraining."
    )
    max_retrains_per_hour: int = Field(
        2, ge=0, description="Circuit breaker: more drift retrains than this per hour are refused."
    )
    max_retrain_attempts: int = Field(
        3,
        ge=1,
        description="Retrains per drift episode: a failed or refused one re-arms the episode "
        "(it waits for MIN_LABELS_AFTER_DRIFT new labels again) until this many were tried.",
    )
    tasks: dict[str, Literal["classification", "regression"]] = Field(
        default_factory=dict,
        description="Dataset -> task, as JSON, for datasets whose spec is not registered; "
        "a registered spec's task wins.",
    )
    retrain_since_drift: bool = Field(
        True,
        description="A drift retrain trains on the records since the drift's event time only "
        "(TrainModel trigger.since); false: on all the data.",
    )
    model_names: dict[str, str] = Field(
        default_factory=dict,
        description="Dataset -> model name to retrain, as JSON; default the dataset's name.",
    )
    detectors: dict[str, DatasetDetectorSettings] = Field(
        default_factory=dict, description="Per-dataset detectors, as JSON; others get defaults."
    )
    default_detectors: DatasetDetectorSettings = DatasetDetectorSettings()
    registry_url: str = Field(
        default_factory=lambda: service_url("registry"),
        description="The registry, for each served version's training reference (its lineage).",
    )
    history_every: int = Field(
        100, ge=1, description="A performance snapshot goes to SQL after this many labels."
    )
    checkpoint_every: int = Field(
        10_000,
        ge=0,
        description="A monitoring.inputs partition's state (detectors, join, policy) is "
        "checkpointed in SQL with its offset after this many inputs (and on rebalance and "
        "clean stop); a restarted or new owner resumes from it, re-applying at most about "
        "this many inputs. Each checkpoint pickles the partition's whole state (the join's "
        "waiting predictions too). 0: no checkpoints (a restart starts the state afresh).",
    )
    checkpoint_interval_s: float = Field(
        60.0, gt=0, description="...or after this long, if an input came since the last one."
    )
    recent_limit: int = Field(100, ge=1, description="Rows GET /drift and /performance show.")
    history_points: int = Field(
        500,
        ge=1,
        le=100_000,
        description="Snapshots per model version kept in memory for "
        "GET /performance/{model}/history.",
    )
    database_url: SecretStr | None = Field(
        None, description="Drift, decision and performance history; default MLOPS_DATABASE_URL."
    )
    sqlite_path: str = Field(".local/data/monitoring.sqlite")

    @field_validator("model_names")
    @classmethod
    def _model_names_are_valid(cls, names: dict[str, str]) -> dict[str, str]:
        bad = {dataset: name for dataset, name in names.items() if not re.match(MODEL_NAME, name)}
        if bad:
            raise ValueError(f"model names must match {MODEL_NAME}: {bad}")
        return names

    def database_url_for(self, platform: PlatformSettings) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return platform.database_url_or_sqlite(self.sqlite_path)

    def model_name_for(self, dataset: str) -> str:
        return self.model_names.get(dataset, dataset)

    @cached_property
    def _built_detectors(self) -> tuple[Mapping[str, DatasetDetectors], DatasetDetectors]:
        """Each configured dataset's detectors and the default, built once: building parses
        and checks every detector spec, which per event cost more than the detectors did."""
        built = {dataset: config.detectors() for dataset, config in self.detectors.items()}
        return MappingProxyType(built), self.default_detectors.detectors()

    def detectors_for(self, dataset: str) -> DatasetDetectors:
        """The dataset's detectors (the default for a dataset not configured). The first call
        builds them all, so a bad configuration fails there: bootstrap calls it at start-up."""
        configured, default = self._built_detectors
        return configured.get(dataset, default)

    def policy(self) -> PolicyConfig:
        return PolicyConfig(
            debounce_s=self.debounce_s,
            cooldown_s=self.cooldown_s,
            min_labels_after_drift=self.min_labels_after_drift,
            max_retrains_per_hour=self.max_retrains_per_hour,
            max_attempts=self.max_retrain_attempts,
        )
