"""Events about data records entering the platform."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from shared.events.envelope import Payload

FieldValue = str | int | float | bool | None


class RecordIngested(Payload):
    """One tabular record accepted by ingestion, as written to the raw topic."""

    event_type: ClassVar[str] = "mlops.RecordIngested"

    dataset: str = Field(min_length=1, max_length=200, description="Name of the dataset spec.")
    entity: str | None = Field(None, max_length=1000, description="Entity key; also the Kafka key.")
    values: dict[str, FieldValue] = Field(description="Column name to value, as received.")
    ingested_at: datetime = Field(description="When ingestion accepted the record (UTC).")
