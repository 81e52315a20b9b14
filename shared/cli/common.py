"""What every `mlops` command shares: settings, exit codes, errors, the HTTP client."""

from __future__ import annotations

import json
from typing import Any

import httpx
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.kafka.config import client_config
from shared.settings import SERVICE_PORTS, STACK_ENV_FILE, PlatformSettings

OK = 0
FAILED = 1  # the operation failed: not found, refused, incomplete
USAGE = 2  # bad arguments (Click's own code)
UNREACHABLE = 3  # Kafka or a service did not answer


class CliError(Exception):
    """An expected failure: printed as one line on stderr, exit code `code`."""

    code = FAILED

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class Unreachable(CliError):
    code = UNREACHABLE


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


class CliSettings(BaseSettings):
    """Where the services answer (MLOPS_CLI_<SERVICE>_URL) and the registry API key.

    The key is MLOPS_CLI_API_KEY, or else the one of MLOPS_CLI_API_KEY_OWNER (default: the
    only owner, or "admin") in MLOPS_REGISTRY_API_KEYS, which `make up` writes.
    """

    model_config = SettingsConfigDict(
        env_prefix="MLOPS_CLI_", env_file=STACK_ENV_FILE, extra="ignore", frozen=True
    )

    ingestion_url: str = _url(SERVICE_PORTS["ingestion"])
    validation_url: str = _url(SERVICE_PORTS["validation"])
    feature_store_url: str = _url(SERVICE_PORTS["feature_store"])
    training_url: str = _url(SERVICE_PORTS["training"])
    registry_url: str = _url(SERVICE_PORTS["registry"])
    serving_url: str = _url(SERVICE_PORTS["serving"])
    monitoring_url: str = _url(SERVICE_PORTS["monitoring"])
    http_timeout_s: float = Field(30.0, gt=0)
    api_key: SecretStr | None = None
    api_key_owner: str | None = None
    registry_api_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        validation_alias="MLOPS_REGISTRY_API_KEYS",
    )

    def service_url(self, service: str) -> str:
        url: str = getattr(self, f"{service}_url")
        return url.rstrip("/")

    def registry_key(self) -> str:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        keys = self.registry_api_keys
        owner = self.api_key_owner or (next(iter(keys)) if len(keys) == 1 else "admin")
        if owner not in keys:
            raise CliError(
                "changing the registry needs an API key: set MLOPS_CLI_API_KEY, or "
                f"MLOPS_REGISTRY_API_KEYS with an entry for {owner!r} (MLOPS_CLI_API_KEY_OWNER)"
            )
        return keys[owner].get_secret_value()


def platform_settings() -> PlatformSettings:
    return PlatformSettings()


def cli_settings() -> CliSettings:
    return CliSettings()


def kafka_admin(settings: PlatformSettings, timeout_s: float = 10.0) -> AdminClient:
    """An admin client, after checking the cluster answers (else: exit 3)."""
    admin = AdminClient(client_config(settings, "mlops-cli"))
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException as error:
        raise Unreachable(
            f"Kafka at {settings.kafka_bootstrap_servers} is unreachable ({error.args[0]})"
        ) from None
    return admin


class ServiceClient:
    """JSON over HTTP to one service; refusals become CliError with the service's reason."""

    transport: httpx.BaseTransport | None = None  # tests put a fake service here

    def __init__(self, service: str, settings: CliSettings) -> None:
        self.service = service
        self.base = settings.service_url(service)
        self.timeout = settings.http_timeout_s

    def send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """The answer, whatever its status; an unreachable service is exit 3."""
        try:
            with httpx.Client(transport=self.transport, timeout=self.timeout) as client:
                return client.request(method, f"{self.base}{path}", json=body, headers=headers)
        except httpx.TransportError as error:
            raise Unreachable(f"{self.service} at {self.base} is unreachable ({error})") from None

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        response = self.send(method, path, body, headers)
        if response.status_code >= 400:
            raise CliError(f"{self.service}: {response.status_code} {_reason(response)}")
        return response.json() if response.content else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)


def _reason(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except (json.JSONDecodeError, AttributeError):
        return response.text.strip()[:500]
    return detail if isinstance(detail, str) else json.dumps(detail)[:500]
