"""The registry's settings: MLOPS_REGISTRY_* variables (the platform's are MLOPS_*)."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import STACK_ENV_FILE, PlatformSettings, ServiceSettings

MIN_KEY_LENGTH = 16
PLACEHOLDERS = ("changeme", "change-me", "change_me")
OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
RESERVED_OWNERS = frozenset({"policy"})


class RegistrySettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="MLOPS_REGISTRY_", env_file=STACK_ENV_FILE, extra="ignore", frozen=True
    )

    port: int = Field(8005, ge=1, le=65535)
    database_url: SecretStr | None = Field(
        None,
        description="The registry's own database; default: MLOPS_DATABASE_URL, else SQLite.",
    )
    sqlite_path: str = Field(
        ".local/data/registry.sqlite", description="The SQLite file when no URL is configured."
    )
    database_schema: str = Field(
        "registry",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL schema holding the registry's tables (created if missing).",
    )
    group_id: str | None = Field(None, description="Consumer group; default <namespace>.registry.")
    promotion_margin: float = Field(
        0.0, ge=0.0, description="How much a challenger must beat the champion's primary metric."
    )
    manual_approval: bool = Field(
        False, description="Policy promotions wait as 'challenger' until approved over HTTP."
    )
    api_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Owner name -> API key for mutating endpoints, as JSON: {"alice": "..."}.',
    )
    publish_timeout_s: float = Field(
        10.0, gt=0, description="How long an HTTP change may wait for Kafka's confirmation."
    )
    handler_attempts: int = Field(
        8,
        ge=1,
        description="Tries per ModelTrained message on an error of unknown kind; a database "
        "that is down is waited for instead (shared/failures.py).",
    )

    @field_validator("api_keys")
    @classmethod
    def _refuse_weak_keys(cls, keys: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for owner, key in keys.items():
            _check_owner(owner)
            _check_key(owner, key.get_secret_value())
        values = [key.get_secret_value() for key in keys.values()]
        if len(set(values)) != len(values):
            raise ValueError("two owners share one API key; each owner needs their own")
        return keys

    def database_url_for(self, platform: PlatformSettings) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return platform.database_url_or_sqlite(self.sqlite_path)


def _check_owner(owner: str) -> None:
    if not OWNER.match(owner):
        raise ValueError(
            f"API key owner {owner!r} must be 1-100 letters, digits or _.@- "
            "(it is written to the audit trail)"
        )
    if owner.lower() in RESERVED_OWNERS:
        raise ValueError(f"API key owner {owner!r} is reserved for the promotion policy")


def _check_key(owner: str, key: str) -> None:
    if any(placeholder in key.lower() for placeholder in PLACEHOLDERS):
        raise ValueError(f"the API key of {owner!r} is a placeholder; generate a real one")
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(
            f"the API key of {owner!r} is shorter than {MIN_KEY_LENGTH} characters; "
            "generate one with `openssl rand -hex 24`"
        )
