"""docker-compose.yml cannot run here; these checks keep it consistent with the local stack."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import PlatformSettings

REPO = Path(__file__).resolve().parents[2]
OFFICIAL_IMAGES = {
    "kafka": "apache/kafka",
    "postgres": "postgres",
    "minio": "minio/minio",
    "jaeger": "jaegertracing/jaeger",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def local_default(variable: str) -> int:
    """The default port the local stack scripts use, e.g. KAFKA_PORT:-9092."""
    text = "\n".join(p.read_text() for p in (REPO / "infra" / "stack").glob("*.sh"))
    match = re.search(rf"{variable}:-(\d+)", text)
    assert match, f"{variable} has no default in infra/stack"
    return int(match.group(1))


def published(service: dict[str, Any]) -> set[int]:
    return {int(str(port).rsplit(":", 2)[-2]) for port in service.get("ports", [])}


def test_infrastructure_uses_the_official_images(compose: dict[str, Any]) -> None:
    for name, image in OFFICIAL_IMAGES.items():
        assert compose["services"][name]["image"].split(":")[0] == image


def test_kafka_image_is_the_version_the_local_stack_runs(compose: dict[str, Any]) -> None:
    pom = (REPO / "infra" / "kafka" / "pom.xml").read_text()
    local = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert local
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{local.group(1)}"


def test_kafka_creates_no_topic_on_its_own(compose: dict[str, Any]) -> None:
    environment = compose["services"]["kafka"]["environment"]
    assert environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    properties = (REPO / "infra" / "kafka").glob("*.properties*")
    local = (
        "\n".join(p.read_text() for p in properties)
        + (REPO / "infra" / "stack" / "kafka.sh").read_text()
    )
    assert "auto.create.topics.enable=false" in local


@pytest.mark.parametrize(
    ("service", "variables"),
    [
        ("kafka", ["KAFKA_PORT"]),
        ("postgres", ["POSTGRES_PORT"]),
        ("minio", ["MINIO_PORT", "MINIO_CONSOLE_PORT"]),
        ("jaeger", ["JAEGER_UI_PORT", "OTLP_GRPC_PORT", "OTLP_HTTP_PORT"]),
    ],
)
def test_ports_are_the_local_stack_defaults(
    compose: dict[str, Any], service: str, variables: list[str]
) -> None:
    assert {local_default(v) for v in variables} <= published(compose["services"][service])


def test_platform_variables_are_settings_the_services_read(compose: dict[str, Any]) -> None:
    fields = {f"MLOPS_{name.upper()}" for name in PlatformSettings.model_fields}
    environment = compose["x-platform-env"]
    assert set(environment) <= fields
    stack_env = (REPO / "infra" / "stack" / "stack.sh").read_text()
    written_locally = set(re.findall(r"^(MLOPS_[A-Z_]+)=", stack_env, re.MULTILINE))
    for_one_service = {"MLOPS_REGISTRY_API_KEYS", "MLOPS_CONSOLE_SESSION_SECRET"}
    assert written_locally - for_one_service <= fields
    assert written_locally - for_one_service - {"MLOPS_KAFKA_BROKERS"} <= set(environment)
    assert "MLOPS_REGISTRY_API_KEYS" in compose["services"]["registry"]["environment"]
    assert "MLOPS_CONSOLE_SESSION_SECRET" in compose["services"]["console"]["environment"]


def test_topics_are_created_from_the_catalog(compose: dict[str, Any]) -> None:
    command = compose["services"]["topics"]["command"]
    assert command == ["python", "-m", "shared.kafka.topics", "ensure"]


def test_every_service_package_runs_in_compose_on_its_local_port(compose: dict[str, Any]) -> None:
    ports = dict(re.findall(r"\[(\w+)\]=(\d+)", (REPO / "infra/stack/services.sh").read_text()))
    for package in sorted((REPO / "services").glob("*/__main__.py")):
        name = package.parent.name
        assert name in compose["services"], f"services/{name} is missing from docker-compose.yml"
        assert int(ports[name]) in published(compose["services"][name])


SERVICE_URL_SETTINGS = {
    "serving": ("registry_url", "feature_store_url"),
    "training": ("registry_url", "feature_store_url"),
    "monitoring": ("registry_url",),
}


@pytest.mark.parametrize("service", sorted(SERVICE_URL_SETTINGS))
def test_a_service_that_calls_another_names_its_compose_address(
    compose: dict[str, Any], service: str
) -> None:
    """A URL left at its 127.0.0.1 default would call the container itself."""
    environment = compose["services"][service]["environment"]
    for setting in SERVICE_URL_SETTINGS[service]:
        target = setting.removesuffix("_url")
        variable = f"MLOPS_{service.upper()}_{setting.upper()}"
        assert variable in environment, f"{variable} is not set in docker-compose.yml"
        assert environment[variable].startswith(f"http://{target}:"), environment[variable]
