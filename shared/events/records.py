"""Events about data records: ingested, validated or rejected, labelled, turned into features."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from shared.datasets.spec import VersionedSpec
from shared.events.envelope import Payload

FieldValue = str | int | float | bool | None


class SourcePosition(BaseModel):
    """Where a message sits in Kafka: the unit of lineage."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="constants")

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class RecordIngested(Payload):
    """One tabular record accepted by ingestion, as written to the raw topic."""

    event_type: ClassVar[str] = "mlops.RecordIngested"

    dataset: str = Field(min_length=1, max_length=200, description="Name of the dataset spec.")
    entity: str | None = Field(None, max_length=1000, description="Entity key; also the Kafka key.")
    values: dict[str, FieldValue] = Field(description="Column name to value, as received.")
    ingested_at: datetime = Field(description="When ingestion accepted the record (UTC).")
    spec_version: int | None = Field(
        None, description="Spec version current at ingestion; validation uses the latest if absent."
    )


class FieldError(BaseModel):
    """One failed check: which field, which rule, and why."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="constants")

    field: str | None = Field(description="The column, or null for record-level rules.")
    rule: str = Field(description="type, range, category, required, not_finite, future_time, ...")
    message: str
    value: FieldValue = None


class RecordValidated(Payload):
    """A record that passed every rule of its spec, with values coerced to their declared types."""

    event_type: ClassVar[str] = "mlops.RecordValidated"

    dataset: str
    spec_version: int
    record_id: str
    entity: str
    event_time: datetime
    values: dict[str, FieldValue] = Field(description="Feature values, typed as the spec declares.")
    label: FieldValue = Field(None, description="The label, when it arrives with the record.")
    source: SourcePosition = Field(description="The raw message this record came from.")
    out_of_range: list[str] = Field(
        default_factory=list,
        description="Features whose value lies outside the spec's expected range (accepted, "
        "flagged; monitoring counts them as a covariate-shift signal).",
    )


class RecordRejected(Payload):
    """A record that failed its spec, with every failing field and rule."""

    event_type: ClassVar[str] = "mlops.RecordRejected"

    dataset: str | None
    spec_version: int | None = None
    record_id: str | None = None
    entity: str | None = None
    values: dict[str, FieldValue] = Field(default_factory=dict, description="As received.")
    errors: list[FieldError] = Field(min_length=1)
    source: SourcePosition
    truncated: str | None = Field(
        None,
        description="Set when values and errors were summarized to keep the rejection within "
        "the size limit: what was cut, and how much.",
    )


class LabelRecorded(Payload):
    """Ground truth for a record, arriving after it (feedback), keyed by record id."""

    event_type: ClassVar[str] = "mlops.LabelRecorded"

    dataset: str
    record_id: str
    label: FieldValue
    labelled_at: datetime = Field(description="When the ground truth became known.")
    entity: str | None = None


class FeaturesComputed(Payload):
    """A record's feature vector: its own features plus the entity's windowed aggregates."""

    event_type: ClassVar[str] = "mlops.FeaturesComputed"

    dataset: str
    spec_version: int
    record_id: str
    entity: str
    event_time: datetime
    features: dict[str, FieldValue]
    source: SourcePosition = Field(description="The validated message the features came from.")
    label: FieldValue = Field(
        None, description="The label, when it arrived with the record (spec arrival with_record)."
    )


class DatasetSpecRegistered(Payload):
    """A dataset spec version; the compacted topic of these is the spec registry."""

    event_type: ClassVar[str] = "mlops.DatasetSpecRegistered"

    registered: VersionedSpec


class RawRecord(BaseModel):
    """The bare form any Kafka client (kcat included) may publish to the raw topic.

    Validation treats it exactly like a RecordIngested envelope; its event id is derived from
    its topic, partition and offset, so a redelivery keeps the same id.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(min_length=1, max_length=200)
    values: dict[str, FieldValue]
    entity: str | None = Field(None, max_length=1000)
