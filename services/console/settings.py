"""The console's settings: MLOPS_CONSOLE_* variables (the platform's are MLOPS_*).

Each service's URL defaults to what the stack gives every process it starts
(MLOPS_<NAME>_HOST / MLOPS_<NAME>_PORT, see infra/stack/services.sh), else the stack's
default port."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import SERVICE_PORTS, STACK_ENV_FILE, ServiceSettings, service_url

SERVICES = tuple(SERVICE_PORTS)
MIN_SECRET_LENGTH = 32
PLACEHOLDERS = ("changeme", "change-me", "change_me", "secret", "placeholder")


class ConsoleSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="MLOPS_CONSOLE_", env_file=STACK_ENV_FILE, extra="ignore", frozen=True
    )

    port: int = Field(8000, ge=1, le=65535)
    environment: Literal["local", "production"] = Field(
        "local", description="Outside local mode the session secret must be set (not generated)."
    )
    session_secret: SecretStr | None = Field(
        None,
        description="Signs the session cookie; `make up` generates one into .local/stack.env. "
        "Local mode without one: a random secret per process (sessions end at restart).",
    )
    session_max_age_s: int = Field(8 * 3600, ge=60, description="How long a session lasts.")
    https_only: bool = Field(False, description="Send the session cookie over HTTPS only.")
    service_urls: dict[str, str] = Field(
        default_factory=dict,
        description="Service name -> base URL, as JSON; default the stack's addresses.",
    )
    jaeger_ui_url: str | None = Field(
        None, description="Where a person opens a trace; default MLOPS_JAEGER_QUERY_URL."
    )
    http_timeout_s: float = Field(
        2.0, gt=0, description="How long one call to another service may take."
    )
    kafka_timeout_s: float = Field(2.0, gt=0, description="How long one Kafka admin call may take.")
    poll_interval_s: float = Field(3.0, gt=0, description="How often live parts of pages poll.")

    @model_validator(mode="after")
    def _secret_is_real(self) -> ConsoleSettings:
        secret = self.session_secret.get_secret_value() if self.session_secret else None
        if secret is None:
            if self.environment != "local":
                raise ValueError("MLOPS_CONSOLE_SESSION_SECRET is required outside local mode")
            return self
        if any(placeholder in secret.lower() for placeholder in PLACEHOLDERS):
            raise ValueError("the console's session secret is a placeholder; generate one")
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"the console's session secret is shorter than {MIN_SECRET_LENGTH} characters; "
                "generate one with `openssl rand -hex 32`"
            )
        return self

    def url(self, service: str) -> str:
        return self.service_urls.get(service) or service_url(service)

    def urls(self) -> dict[str, str]:
        return {name: self.url(name).rstrip("/") for name in SERVICES}
