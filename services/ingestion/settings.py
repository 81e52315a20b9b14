"""Ingestion's settings, from MLOPS_INGESTION_* variables (built in bootstrap, never at import)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

MIB = 1024 * 1024


class IngestionSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MLOPS_INGESTION_")

    port: int = Field(8001, ge=1, le=65535)
    max_body_bytes: int = Field(
        16 * MIB,
        gt=0,
        description="Largest JSON body (record, label or spec batch); files are unbounded.",
    )
    file_chunk_rows: int = Field(
        10_000, gt=0, description="Rows of an uploaded file published (and confirmed) at a time."
    )
    delivery_timeout_s: float = Field(
        15.0, gt=0, description="How long a write may wait for Kafka's confirmation before 503."
    )
    broker_retry_after_s: float = Field(
        5.0,
        gt=0,
        description="After a write Kafka did not confirm, writes are refused at once (503 with "
        "Retry-After) for this long, then tried again.",
    )
    registry_timeout_s: float = Field(
        5.0, gt=0, description="How long a read of the spec registry may wait for Kafka."
    )
    spool_dir: str | None = Field(
        None, description="Where uploads are spooled (the system temporary directory if unset)."
    )
