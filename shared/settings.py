"""Platform-wide settings, read from MLOPS_* environment variables.

Settings objects are built by a service's bootstrap at start-up, never at import time,
so tests and tools can point the same code at another broker or namespace.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

STACK_ENV_FILE = ".local/stack.env"

SERVICE_PORTS = {
    "ingestion": 8001,
    "validation": 8002,
    "feature_store": 8003,
    "training": 8004,
    "registry": 8005,
    "serving": 8006,
    "monitoring": 8007,
}
"""Each service's default port (infra/stack/services.sh and docker-compose.yml use the same)."""


def service_url(name: str, environ: Mapping[str, str] | None = None) -> str:
    """A service's URL from the MLOPS_<NAME>_HOST/PORT the local stack gives every process it
    starts (so a stack moved with SERVICE_PORT_BASE is followed), else its default port."""
    env = os.environ if environ is None else environ
    prefix = f"MLOPS_{name.upper()}"
    host = env.get(f"{prefix}_HOST", "127.0.0.1")
    port = env.get(f"{prefix}_PORT", str(SERVICE_PORTS[name]))
    return f"http://{host}:{port}"


class PlatformSettings(BaseSettings):
    """What every process of the platform needs to reach the shared infrastructure."""

    model_config = SettingsConfigDict(
        env_prefix="MLOPS_", env_file=STACK_ENV_FILE, extra="ignore", frozen=True
    )

    namespace: str = Field("mlops", pattern=r"^[a-z0-9][a-z0-9_-]*$")
    instance: str = Field(
        "",
        pattern=r"^[a-z0-9_-]*$",
        description="This process's name among its service's replicas (the local stack sets "
        "validation-2, say); empty when the service runs once.",
    )
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_brokers: int = Field(1, ge=1, description="Brokers in the cluster (1 or 3 locally).")
    kafka_client_extra: dict[str, str] = Field(default_factory=dict)
    max_payload_bytes: int = Field(
        1_048_576,
        gt=0,
        description="The largest message the platform writes or reads (the broker's limit). "
        "A record may take half of it, a rejection a quarter (see the properties below).",
    )
    database_url: SecretStr | None = None
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_secure: bool = False
    otlp_endpoint: str | None = None
    jaeger_query_url: str = "http://127.0.0.1:16686"
    trace_sample_ratio: float = Field(1.0, ge=0.0, le=1.0)
    shutdown_drain_s: float = Field(
        0.0,
        ge=0.0,
        le=60.0,
        description="Seconds a service asked to stop keeps answering, with /live and /ready at "
        "503, before it stops accepting: for a load balancer to take it out first (the local "
        "stack sets it for replicas behind HAProxy).",
    )

    @property
    def max_record_bytes(self) -> int:
        """One record on the raw topic (ingestion refuses larger ones, validation rejects
        them): half the payload limit, so its validated form fits with room to spare."""
        return self.max_payload_bytes // 2

    @property
    def max_rejection_bytes(self) -> int:
        """One RecordRejected: a quarter of the payload limit; longer values and lists are
        summarized, so any record can be rejected within the broker's limit."""
        return self.max_payload_bytes // 4

    def database_url_or_sqlite(self, sqlite_path: str = ".local/data/mlops.sqlite") -> str:
        """The configured database, or the embedded SQLite default."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{sqlite_path}"


class ServiceSettings(BaseSettings):
    """The HTTP side of one service; subclasses set env_prefix to MLOPS_<NAME>_."""

    model_config = SettingsConfigDict(env_file=STACK_ENV_FILE, extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    max_body_bytes: int = Field(
        1_048_576, gt=0, description="Largest request body; larger ones are refused with 413."
    )
    advertised_url: str | None = Field(
        None,
        description="This replica's HTTP address for its other replicas, which gather each "
        "other's in-memory state; default http://127.0.0.1:<port>.",
    )

    @property
    def own_url(self) -> str:
        return self.advertised_url or f"http://127.0.0.1:{self.port}"
