"""Renders infra/k8s's overlays with kustomize and validates them, without a cluster.

Built-in kinds are validated by kubernetes-validate against the API schemas of
Kubernetes KUBERNETES_VERSION (strict: unknown fields fail). The custom resources of
Strimzi and KEDA are not in those schemas: they are checked against CR_SCHEMAS below,
written from Strimzi's (v1) and KEDA's (v1alpha1) API references and CRDs: kind, apiVersion
and the fields those operators require. `make k8s-check` runs `python -m infra.k8s.check`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

K8S = Path(__file__).resolve().parent
REPO = K8S.parents[1]
OVERLAYS = ("local", "production")
KUBERNETES_VERSION = "1.33.0"
CREDENTIALS = "base/credentials.env"

_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": _NAME, "labels": {"type": "object"}},
}
_CLUSTER_LABEL = {
    "type": "object",
    "required": ["labels"],
    "properties": {
        "labels": {"type": "object", "required": ["strimzi.io/cluster"]},
    },
}


def _resource(api: str, kind: str, spec: dict[str, Any], metadata: Any = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": api},
            "kind": {"const": kind},
            "metadata": {"allOf": [_METADATA, metadata or {}]},
            "spec": spec,
        },
    }


CR_SCHEMAS: dict[str, dict[str, Any]] = {
    "Kafka": _resource(
        "kafka.strimzi.io/v1",
        "Kafka",
        {
            "type": "object",
            "required": ["kafka"],
            "additionalProperties": False,
            "properties": {
                "kafka": {
                    "type": "object",
                    "required": ["listeners"],
                    "additionalProperties": False,
                    "properties": {
                        "version": {"type": "string"},
                        "metadataVersion": {"type": "string"},
                        "listeners": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["name", "port", "type", "tls"],
                                "properties": {
                                    "name": {"type": "string", "pattern": "^[a-z0-9]{1,11}$"},
                                    "port": {"type": "integer", "minimum": 9092},
                                    "type": {
                                        "enum": [
                                            "internal",
                                            "route",
                                            "loadbalancer",
                                            "nodeport",
                                            "ingress",
                                            "cluster-ip",
                                        ]
                                    },
                                    "tls": {"type": "boolean"},
                                },
                            },
                        },
                        "config": {"type": "object"},
                        "resources": {"type": "object"},
                    },
                },
                "entityOperator": {
                    "type": "object",
                    "properties": {
                        "topicOperator": {"type": "object"},
                        "userOperator": {"type": "object"},
                    },
                },
            },
        },
    ),
    "KafkaNodePool": _resource(
        "kafka.strimzi.io/v1",
        "KafkaNodePool",
        {
            "type": "object",
            "required": ["replicas", "roles", "storage"],
            "additionalProperties": False,
            "properties": {
                "replicas": {"type": "integer", "minimum": 0},
                "roles": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"enum": ["controller", "broker"]},
                },
                "storage": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        "type": {"enum": ["ephemeral", "persistent-claim", "jbod"]},
                        "volumes": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["id", "type"],
                                "properties": {
                                    "id": {"type": "integer", "minimum": 0},
                                    "type": {"enum": ["ephemeral", "persistent-claim"]},
                                    "size": {"type": "string"},
                                    "deleteClaim": {"type": "boolean"},
                                    "kraftMetadata": {"enum": ["shared"]},
                                },
                            },
                        },
                    },
                },
                "resources": {"type": "object"},
                "jvmOptions": {"type": "object"},
                "template": {"type": "object"},
            },
        },
        _CLUSTER_LABEL,
    ),
    "KafkaTopic": _resource(
        "kafka.strimzi.io/v1",
        "KafkaTopic",
        {
            "type": "object",
            "required": ["partitions", "replicas"],
            "additionalProperties": False,
            "properties": {
                "topicName": {"type": "string"},
                "partitions": {"type": "integer", "minimum": 1},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                "config": {
                    "type": "object",
                    "additionalProperties": {"type": ["string", "integer", "boolean", "number"]},
                },
            },
        },
        _CLUSTER_LABEL,
    ),
    "ScaledObject": _resource(
        "keda.sh/v1alpha1",
        "ScaledObject",
        {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}},
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer"},
                "cooldownPeriod": {"type": "integer"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "metadata": {
                                # KEDA reads trigger metadata as strings.
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                        },
                        "if": {"properties": {"type": {"const": "kafka"}}},
                        "then": {
                            "properties": {
                                "metadata": {
                                    "required": [
                                        "bootstrapServers",
                                        "consumerGroup",
                                        "topic",
                                        "lagThreshold",
                                    ],
                                    "properties": {
                                        "offsetResetPolicy": {"enum": ["earliest", "latest"]}
                                    },
                                }
                            }
                        },
                    },
                },
            },
        },
    ),
}


@cache
def kustomize() -> str:
    """The kustomize binary `infra/stack/stack.sh install-kustomize` built (or found cached)."""
    done = subprocess.run(
        [str(REPO / "infra" / "stack" / "stack.sh"), "install-kustomize"],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip().splitlines()[-1]


def render(overlay: str) -> list[dict[str, Any]]:
    """`kustomize build` of one overlay, on a copy of infra/k8s whose credentials.env is the
    committed example when the user has written none (the keys are what matter here)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "k8s"
        shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
        if not (copy / CREDENTIALS).exists():
            shutil.copy(copy / "base" / "credentials.env.example", copy / CREDENTIALS)
        done = subprocess.run(
            [kustomize(), "build", str(copy / "overlays" / overlay)],
            check=True,
            capture_output=True,
            text=True,
        )
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def problems(documents: list[dict[str, Any]]) -> list[str]:
    """What is wrong with each rendered object; empty when everything validates."""
    found = []
    for document in documents:
        where = f"{document.get('kind')}/{document.get('metadata', {}).get('name')}"
        kind = document.get("kind")
        if kind in CR_SCHEMAS:
            validator = jsonschema.Draft202012Validator(CR_SCHEMAS[kind])
            found += [f"{where}: {e.message}" for e in validator.iter_errors(document)]
            continue
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            found.append(f"{where}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError:
            found.append(f"{where}: no schema for {document.get('apiVersion')} {kind}")
    return found


def main() -> int:
    failed = False
    for overlay in OVERLAYS:
        documents = render(overlay)
        errors = problems(documents)
        failed |= bool(errors)
        for error in errors:
            print(f"{overlay}: {error}", file=sys.stderr)
        print(
            f"{overlay}: {len(documents)} objects, "
            f"{'INVALID' if errors else f'valid (Kubernetes {KUBERNETES_VERSION}, CR schemas)'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
