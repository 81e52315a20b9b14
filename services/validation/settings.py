"""Validation's settings: MLOPS_VALIDATION_* variables (the platform's are MLOPS_*)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import STACK_ENV_FILE, ServiceSettings


class ValidationSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="MLOPS_VALIDATION_", env_file=STACK_ENV_FILE, extra="ignore", frozen=True
    )

    port: int = Field(8002, ge=1, le=65535)
    recent_rejections: int = Field(
        200,
        ge=1,
        le=100_000,
        description="Rejected records kept in memory per dataset for GET /rejections/{dataset}.",
    )
    group_id: str | None = Field(
        None, description="Consumer group; default <namespace>.validation."
    )
    sqlite_path: str = Field(
        ".local/data/validation.sqlite",
        description="The record-id store when MLOPS_DATABASE_URL is not set.",
    )
    spec_refresh_seconds: float = Field(
        1.0, gt=0, description="How often the specs topic is checked for new versions."
    )
    handler_attempts: int = Field(
        8,
        ge=1,
        description="Tries per message on an error of unknown kind; a database that is "
        "down is waited for instead (shared/failures.py).",
    )
