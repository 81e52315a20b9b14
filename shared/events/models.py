"""Events and commands of the model plane: training, registration, promotion, rollback."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events.envelope import Payload
from shared.events.records import FieldValue

MODEL_NAME = r"^[a-z][a-z0-9_-]{0,99}$"


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="constants")


class ArtifactRef(_Part):
    """A stored model: where, its sha256 (checked before every load), and its format."""

    uri: str = Field(description="s3://bucket/key in MinIO.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    format: Literal["skops"] = "skops"
    size_bytes: int = Field(ge=0)
    trusted_types: list[str] = Field(
        default_factory=list, description="Types skops may load beyond its safe defaults."
    )


class OffsetRange(_Part):
    """Messages first..last (inclusive) of one topic partition: the unit of data lineage."""

    topic: str
    partition: int = Field(ge=0)
    first_offset: int = Field(ge=0)
    last_offset: int = Field(ge=0)


class TrainingTrigger(_Part):
    """Why a training ran: a person, a data-volume threshold, or a drift event."""

    kind: Literal["manual", "data_volume", "drift"]
    event_id: str | None = Field(None, description="The event that caused it (e.g. DriftDetected).")
    reason: str = ""
    requested_by: str | None = None
    since: datetime | None = Field(
        None,
        description="Train only on records whose event time is at or after this (e.g. the "
        "drift's): the window the policy chose. Null: all the data.",
    )


class TopicOffset(_Part):
    """A position in one topic partition: the next offset (everything before it)."""

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class DataWait(_Part):
    """How a run made sure its training set held every record labelled before its command:
    the topic offsets at the command's time, what the offline store had written when the set
    was built, and how long training waited for it."""

    needed: list[TopicOffset] = Field(
        description="Per partition of data.validated and data.labels: the first offset at or "
        "after the command's time, raised for data.validated to where it stood once validation "
        "had handled every record accepted before that time (all of it must be in the set)."
    )
    covered: list[TopicOffset] = Field(
        description="How far the feature store's offline store was written (next offsets)."
    )
    waited_s: float = Field(
        ge=0, description="Seconds training waited for validation and the offline store."
    )
    source: Literal["offline_store"] = "offline_store"


class TrainingLineage(_Part):
    """Everything needed to rebuild the training set and the model bit for bit."""

    dataset: str
    spec_version: int
    spec_fingerprint: str
    offsets: list[OffsetRange] = Field(description="Exact input ranges, features and labels.")
    training_set_uri: str | None = None
    training_set_sha256: str
    rows: int = Field(ge=0)
    holdout_rows: int = Field(ge=0)
    feature_columns: list[str]
    feature_definitions: dict[str, Any] = Field(default_factory=dict)
    data_quality: dict[str, Any] = Field(default_factory=dict)
    library_versions: dict[str, str] = Field(default_factory=dict)
    code_version: str = Field(description="git commit of the training code, or 'unknown'.")
    trigger: TrainingTrigger
    cut_off: datetime | None = Field(
        None,
        description="The training set's as-of time: only records and labels known by then "
        "(none: everything in the offset ranges).",
    )
    holdout_fraction: float | None = Field(
        None, gt=0, lt=1, description="Share of the newest rows held out for evaluation."
    )
    data_wait: DataWait | None = Field(
        None, description="What the run waited for before reading its training set."
    )


class Evaluation(_Part):
    """Metrics on a time-based holdout; `primary_metric` is what promotion compares."""

    metrics: dict[str, float]
    primary_metric: str
    higher_is_better: bool = True
    holdout: str = Field(description="Which rows, e.g. 'last 20% by event time'.")
    per_class: dict[str, dict[str, float]] = Field(default_factory=dict)
    rows: int | None = Field(None, ge=0, description="Holdout rows the metrics come from.")
    margin: float | None = Field(
        None,
        ge=0,
        description="How much this version must beat the champion by (the dataset spec's); "
        "null: the registry's own margin.",
    )
    min_rows: int | None = Field(
        None,
        ge=1,
        description="Fewest holdout rows it may be promoted on (the dataset spec's); null: any.",
    )


class BaselineEvaluation(_Part):
    """The champion of the time, scored on the challenger's own holdout."""

    version: int
    metrics: dict[str, float]


class TrainModel(Payload):
    """Command: train a model for a dataset (from HTTP, the CLI, data volume or drift)."""

    event_type: ClassVar[str] = "mlops.TrainModel"

    model_name: str = Field(pattern=MODEL_NAME)
    dataset: str
    trigger: TrainingTrigger
    params: dict[str, Any] = Field(default_factory=dict, description="Overrides of the spec's.")
    seed: int | None = None


class ModelTrained(Payload):
    """A trained, evaluated and stored model, with its complete lineage."""

    event_type: ClassVar[str] = "mlops.ModelTrained"

    model_name: str = Field(pattern=MODEL_NAME)
    run_id: str
    estimator: str
    params: dict[str, Any]
    seed: int
    artifact: ArtifactRef
    evaluation: Evaluation
    baseline: BaselineEvaluation | None = None
    lineage: TrainingLineage
    trained_at: datetime


class TrainingFailed(Payload):
    """A TrainModel that ended without a model: refused (the command cannot be trained as
    asked) or failed (a dependency was down, the data did not arrive in time). Published on
    models.trained beside ModelTrained, so every requester and monitoring's policy see it."""

    event_type: ClassVar[str] = "mlops.TrainingFailed"

    model_name: str = Field(pattern=MODEL_NAME)
    dataset: str
    command_id: str = Field(description="The TrainModel's event id (GET /runs/{command_id}).")
    trigger: TrainingTrigger
    outcome: Literal["refused", "failed"] = Field(
        description="refused: another attempt of the same command would fail the same way; "
        "failed: a later attempt may succeed (a dependency down, data not there yet)."
    )
    reason: str = Field(min_length=1, description="Why, for people: what to change or wait for.")
    error: str = Field(description="The error's class, e.g. NotEnoughData.")
    failed_at: datetime


class ModelRegistered(Payload):
    event_type: ClassVar[str] = "mlops.ModelRegistered"

    model_name: str
    version: int = Field(ge=1)
    run_id: str
    artifact: ArtifactRef
    evaluation: Evaluation


class ModelPromoted(Payload):
    """A version now holds an alias (champion by default); serving swaps to it."""

    event_type: ClassVar[str] = "mlops.ModelPromoted"

    model_name: str
    version: int = Field(ge=1)
    alias: str = "champion"
    previous_version: int | None = None
    artifact: ArtifactRef
    reason: str
    decided_by: str = Field(description="'policy', or the API key's owner for manual changes.")


class ModelRejected(Payload):
    """A registered version the promotion policy did not promote, and why."""

    event_type: ClassVar[str] = "mlops.ModelRejected"

    model_name: str
    version: int = Field(ge=1)
    reason: str
    decided_by: str = "policy"


class ModelRolledBack(Payload):
    """The alias went back to an earlier version."""

    event_type: ClassVar[str] = "mlops.ModelRolledBack"

    model_name: str
    version: int = Field(ge=1, description="The version that holds the alias now.")
    from_version: int = Field(ge=1)
    alias: str = "champion"
    artifact: ArtifactRef
    reason: str
    decided_by: str


class ModelDeployed(Payload):
    """A serving instance swapped a version in (or loaded it at start-up): a deployment."""

    event_type: ClassVar[str] = "mlops.ModelDeployed"

    model_name: str = Field(pattern=MODEL_NAME)
    version: int = Field(ge=1)
    alias: str = "champion"
    instance: str = Field(min_length=1, description="Which serving instance (its consumer group).")
    artifact: ArtifactRef
    cause_event_id: str | None = Field(
        None, description="The ModelPromoted/ModelRolledBack it followed; null: start-up lookup."
    )
    deployed_at: datetime


class PredictionServed(Payload):
    """One prediction, logged by serving for monitoring (and shadow challengers' too)."""

    event_type: ClassVar[str] = "mlops.PredictionServed"

    request_id: str
    model_name: str
    version: int = Field(ge=1)
    dataset: str
    record_id: str | None = Field(None, description="Links the prediction to a later label.")
    entity: str | None = None
    features: dict[str, FieldValue]
    prediction: FieldValue
    probabilities: dict[str, float] = Field(default_factory=dict)
    latency_ms: float = Field(ge=0)
    shadow: bool = Field(False, description="A challenger's prediction, logged but never returned.")
    served_at: datetime


class DriftDetected(Payload):
    """A River detector saw the distribution of one signal change: the evidence for a retrain.

    `signal` is a feature name (validated records), "prediction" (the predicted positive
    rate) or "error" (the 0/1 loss once labels arrived)."""

    event_type: ClassVar[str] = "mlops.DriftDetected"

    dataset: str
    model_name: str = Field(pattern=MODEL_NAME)
    model_version: int | None = Field(
        None, ge=1, description="The version whose predictions drifted; null for feature drift."
    )
    signal: str = Field(min_length=1)
    signal_kind: Literal["feature", "prediction", "error"]
    detector: str = Field(description="River detector class, e.g. 'ADWIN'.")
    detector_params: dict[str, Any] = Field(default_factory=dict)
    position: int = Field(ge=1, description="Values of this signal the detector had seen.")
    detected_at: datetime
    event_time: datetime | None = Field(None, description="Time of the value that raised it.")
    reference: dict[str, float] = Field(
        default_factory=dict, description="Summary (count, mean, std) before the change."
    )
    current: dict[str, float] = Field(
        default_factory=dict, description="Summary of the latest values, after the change."
    )
