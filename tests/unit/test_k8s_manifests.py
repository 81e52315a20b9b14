"""infra/k8s cannot be applied here; these checks render it (kustomize, built from its Go
module by infra/stack/stack.sh install-kustomize), validate it offline and keep it consistent
with the services' settings, ports, consumer groups and topics, as test_compose does."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.k8s import check, generate
from services.feature_store.adapters.streaming import app_id
from shared.kafka.topics import TopicCatalog
from shared.settings import PlatformSettings

REPO = Path(__file__).resolve().parents[2]
SCALED = {"validation", "feature-store", "training", "registry", "monitoring"}
SHARED_WORK = {
    "ingestion",
    "validation",
    "feature-store",
    "training",
    "registry",
    "serving",
    "monitoring",
}

Objects = list[dict[str, Any]]


@pytest.fixture(scope="module", params=check.OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, Objects]:
    return request.param, check.render(request.param)


@pytest.fixture(scope="module")
def production() -> Objects:
    return check.render("production")


def of_kind(objects: Objects, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_generated_manifests_are_up_to_date() -> None:
    assert generate.main(["check"]) == 0, "run python -m infra.k8s.generate"


def test_every_rendered_object_is_valid(overlay: tuple[str, Objects]) -> None:
    name, objects = overlay
    assert check.problems(objects) == [], name


@pytest.mark.parametrize(
    ("kind", "breaks"),
    [
        ("Deployment", lambda o: container(o).update(livenessProbe={"httpGet": {"path": 1}})),
        ("Deployment", lambda o: o["spec"].update(replica=2)),
        ("KafkaTopic", lambda o: o["spec"].update(partitions="three")),
        ("ScaledObject", lambda o: o["spec"]["triggers"][0]["metadata"].pop("consumerGroup")),
        ("Kafka", lambda o: o["spec"]["kafka"].pop("listeners")),
        ("KafkaNodePool", lambda o: o["spec"].update(roles=["leader"])),
    ],
)
def test_validation_refuses_a_broken_object(production: Objects, kind: str, breaks: Any) -> None:
    broken = copy.deepcopy(next(o for o in production if o["kind"] == kind))
    breaks(broken)
    assert check.problems([broken])


def test_every_service_has_a_deployment_service_and_budget(overlay: tuple[str, Objects]) -> None:
    _, objects = overlay
    for package in sorted((REPO / "services").glob("*/__main__.py")):
        name = package.parent.name.replace("_", "-")
        for kind in ("Deployment", "Service", "PodDisruptionBudget"):
            assert name in of_kind(objects, kind), f"services/{package.parent.name}: no {kind}"


def test_ports_and_probes_are_the_settings_port(overlay: tuple[str, Objects]) -> None:
    _, objects = overlay
    services = of_kind(objects, "Service")
    for service in generate.services():
        name = generate.dns_name(service)
        main = container(of_kind(objects, "Deployment")[name])
        assert main["command"] == ["python", "-m", f"services.{service}"]
        assert main["ports"] == [
            {"name": "http", "containerPort": generate.port(service), "protocol": "TCP"}
        ]
        assert main["livenessProbe"]["httpGet"] == {"path": "/live", "port": "http"}
        assert main["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
        assert main["resources"]["requests"] and main["resources"]["limits"]
        assert services[name]["spec"]["ports"][0]["port"] == generate.port(service)
        env = {e["name"]: e.get("value") for e in main["env"]}
        assert env[f"MLOPS_{service.upper()}_HOST"] == "0.0.0.0"


def test_port_is_read_from_the_settings_class() -> None:
    ports = dict(re.findall(r"\[(\w+)\]=(\d+)", (REPO / "infra/stack/services.sh").read_text()))
    assert {s: generate.port(s) for s in generate.services()} == {
        s: int(ports[s]) for s in generate.services()
    }


def settings_variables() -> set[str]:
    names = {f"MLOPS_{n.upper()}" for n in PlatformSettings.model_fields}
    for service in generate.services():
        fields = generate.settings_class(service).model_fields
        names |= {f"MLOPS_{service.upper()}_{n.upper()}" for n in fields}
    return names


def test_every_variable_is_a_real_setting(overlay: tuple[str, Objects]) -> None:
    _, objects = overlay
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    real = settings_variables()
    configmap = next(iter(of_kind(objects, "ConfigMap").values()))
    assert set(configmap["data"]) <= real
    assert set(configmap["data"]) >= set(compose["x-platform-env"]) - {
        "MLOPS_DATABASE_URL",
        "MLOPS_S3_ACCESS_KEY",
        "MLOPS_S3_SECRET_KEY",
    }
    for deployment in of_kind(objects, "Deployment").values():
        for variable in container(deployment).get("env", []):
            if variable["name"].startswith("MLOPS_"):
                assert variable["name"] in real, variable["name"]


def test_secret_keys_are_those_of_compose_env(overlay: tuple[str, Objects]) -> None:
    _, objects = overlay
    secret = next(iter(of_kind(objects, "Secret").values()))
    compose = (REPO / "docker-compose.yml").read_text()
    assert set(secret["data"]) == set(re.findall(r"\$\{(\w+):\?", compose))
    assert "infra/k8s/base/credentials.env" in (REPO / ".gitignore").read_text().split()


@pytest.mark.parametrize(
    ("service", "variable", "key"),
    [
        ("registry", "MLOPS_REGISTRY_API_KEYS", "REGISTRY_API_KEYS"),
        ("console", "MLOPS_CONSOLE_SESSION_SECRET", "CONSOLE_SESSION_SECRET"),
    ],
)
def test_the_example_credentials_are_placeholders_the_services_refuse(
    monkeypatch: pytest.MonkeyPatch, service: str, variable: str, key: str
) -> None:
    example = (REPO / "infra/k8s/base/credentials.env.example").read_text()
    values = dict(re.findall(r"^(\w+)=(.*)$", example, re.MULTILINE))
    monkeypatch.setenv(variable, values[key])
    with pytest.raises(ValueError, match="placeholder"):
        generate.settings_class(service)(_env_file=None)


def test_kafka_topics_are_the_catalog(overlay: tuple[str, Objects]) -> None:
    name, objects = overlay
    catalog = TopicCatalog.load()
    brokers = max(o["spec"]["replicas"] for o in of_kind(objects, "KafkaNodePool").values())
    topics = {o["spec"]["topicName"]: o["spec"] for o in of_kind(objects, "KafkaTopic").values()}
    expected = {spec.full_name(generate.NAMESPACE): spec for spec in catalog.specs.values()}
    assert set(topics) == set(expected), name
    for full, spec in expected.items():
        replicas = min(spec.replication_factor, brokers)
        assert topics[full]["partitions"] == spec.partitions, full
        assert topics[full]["replicas"] == replicas, full
        config = topics[full]["config"]
        assert {k: config[k] for k in spec.config} == spec.config, full
        assert config["min.insync.replicas"] == ("2" if replicas >= 3 else "1"), full
    configmap = next(iter(of_kind(objects, "ConfigMap").values()))
    assert int(configmap["data"]["MLOPS_KAFKA_BROKERS"]) == brokers


def test_kafka_is_strimzis_at_the_local_version_without_auto_created_topics(
    overlay: tuple[str, Objects],
) -> None:
    _, objects = overlay
    kafka = of_kind(objects, "Kafka")[generate.KAFKA_CLUSTER]
    pom = (REPO / "infra/kafka/pom.xml").read_text()
    assert kafka["spec"]["kafka"]["version"] == re.findall(r"<kafka.version>([^<]+)<", pom)[0]
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    assert "topicOperator" in kafka["spec"]["entityOperator"]
    assert not [
        o for o in objects if o["kind"] == "StatefulSet" and "kafka" in o["metadata"]["name"]
    ]
    configmap = next(iter(of_kind(objects, "ConfigMap").values()))
    listener = kafka["spec"]["kafka"]["listeners"][0]
    assert configmap["data"]["MLOPS_KAFKA_BOOTSTRAP_SERVERS"] == (
        f"{generate.KAFKA_CLUSTER}-kafka-bootstrap:{listener['port']}"
    )


def default_groups(service: str) -> set[str]:
    """The consumer groups a service joins by default, read from its bootstrap.py:
    `settings.group_id or f"{namespace}.{NAME}..."`, or the faust app id (feature store)."""
    if service == "feature_store":
        streaming = (REPO / "services/feature_store/adapters/streaming.py").read_text()
        assert "StreamingApp(\n        app_id(namespace)," in streaming
        return {app_id(generate.NAMESPACE)}
    bootstrap = (REPO / "services" / service / "bootstrap.py").read_text()
    name = re.search(r'^NAME = "([^"]+)"', bootstrap, re.MULTILINE)
    assert name, f"services/{service}/bootstrap.py names no NAME"
    templates = re.findall(r'_id or f"\{namespace\}\.(\{NAME\}[^"]*)"', bootstrap)
    return {f"{generate.NAMESPACE}.{t.format(NAME=name.group(1))}" for t in templates}


def consumer_groups() -> dict[str, set[str]]:
    """Consumer group -> topics its service's handlers consume, for the scaled services."""
    groups: dict[str, set[str]] = {}
    for service, pairs in generate.SCALED_CONSUMERS.items():
        handlers = (REPO / "services" / service / "handlers.py").read_text()
        for group, topic in pairs:
            assert group in default_groups(service), f"{group}: not a group of {service}"
            assert f'"{topic}"' in handlers, f"services/{service} does not consume {topic}"
            groups.setdefault(group, set()).add(topic)
    return groups


def test_scaled_objects_use_real_groups_and_topics(overlay: tuple[str, Objects]) -> None:
    _, objects = overlay
    catalog = TopicCatalog.load()
    topics = {spec.full_name(generate.NAMESPACE): spec for spec in catalog.specs.values()}
    groups = consumer_groups()
    scaled = of_kind(objects, "ScaledObject")
    assert set(scaled) == SCALED
    configmap = next(iter(of_kind(objects, "ConfigMap").values()))
    for name, scaled_object in scaled.items():
        assert scaled_object["spec"]["scaleTargetRef"]["name"] in of_kind(objects, "Deployment")
        for trigger in scaled_object["spec"]["triggers"]:
            meta = trigger["metadata"]
            assert trigger["type"] == "kafka"
            assert meta["bootstrapServers"] == configmap["data"]["MLOPS_KAFKA_BOOTSTRAP_SERVERS"]
            assert meta["topic"] in topics, meta["topic"]
            short = meta["topic"].removeprefix(f"{generate.NAMESPACE}.")
            assert short in groups[meta["consumerGroup"]], (name, meta)
            assert scaled_object["spec"]["maxReplicaCount"] <= max(
                topics[t["metadata"]["topic"]].partitions for t in scaled_object["spec"]["triggers"]
            )


def test_production_runs_several_replicas_of_what_shares_work(production: Objects) -> None:
    deployments = of_kind(production, "Deployment")
    for name in SHARED_WORK:
        assert deployments[name]["spec"]["replicas"] > 1, name
    for name, scaled in of_kind(production, "ScaledObject").items():
        assert 1 < scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"], name
    assert of_kind(production, "HorizontalPodAutoscaler")["serving"]["spec"]["minReplicas"] > 1
    budgets = of_kind(production, "PodDisruptionBudget")
    assert all(b["spec"].get("maxUnavailable") == 1 for b in budgets.values())


def test_images_are_the_platform_image_and_the_compose_versions(
    overlay: tuple[str, Objects],
) -> None:
    _, objects = overlay
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    images = {
        container(o)["name"]: container(o)["image"]
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet")
    }
    for name in ("postgres", "minio", "jaeger"):
        assert images[name] == compose[name]["image"], name
    for service in generate.services():
        assert images[generate.dns_name(service)].split(":")[0].endswith("mlops-platform")


def test_every_secret_and_configmap_reference_resolves(overlay: tuple[str, Objects]) -> None:
    _, objects = overlay
    secrets = {n: set(o["data"]) for n, o in of_kind(objects, "Secret").items()}
    configmaps = set(of_kind(objects, "ConfigMap"))
    for workload in (o for o in objects if o["kind"] in ("Deployment", "StatefulSet")):
        main = container(workload)
        for source in main.get("envFrom", []):
            assert source["configMapRef"]["name"] in configmaps
        for variable in main.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets.get(ref["name"], set()), (
                    workload["metadata"]["name"],
                    variable["name"],
                )
