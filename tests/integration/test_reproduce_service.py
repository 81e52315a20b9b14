"""Reproductions against the real stack: the registry, the feature store and training run as
`python -m services.<name>` on real Kafka and MinIO. A version is trained from records on
data.validated (and labels on data.labels), registered, then reproduced through training's
POST /reproductions, which asks the feature store to rebuild the set from the Kafka ranges of
the lineage (POST /training-sets/rebuild).

Two datasets that differ in task and label arrival: loans (classification, labels arriving
later on data.labels) and scikit-learn's diabetes table (regression, the label inside the
record). Then the paths where it cannot be identical: a lineage whose ranges were altered
(`differs`, saying what), an unknown version (404), labels deleted from Kafka (`failed`,
naming the offsets still held), the feature store down (503 naming it), and `mlops
reproduce` itself as the thin client it is.
"""

# ruff: noqa: F811 (the `stack` fixture is imported from the training tests and asked for by name)
from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from shared.events import Event
from shared.events.models import ModelTrained, TrainingTrigger, TrainModel
from shared.kafka.producer import OutgoingMessage
from tests.integration.test_training_service import (  # noqa: F401 (fixtures)
    FEATURE_STORE_RECORDS,
    FIT_PARAMS,
    Stack,
    minio,
    stack,
    stack_spec,
    validated_and_labels,
    validated_with_labels,
)
from tests.services import RunningService
from tests.waiting import wait_until

DIABETES_RECORDS = 240
OUTCOMES = ("identical", "differs", "failed")


def publish_dataset(stack: Stack, dataset: str) -> int:
    """The dataset's records on data.validated (loans: labels on data.labels): the count."""
    if dataset == "loans":
        records, labels = validated_and_labels(stack.namespace)
        stack.producer.publish_confirmed(
            OutgoingMessage.for_event(stack.topic("data.validated"), r, key=r.data.entity)
            for r in records
        )
        stack.producer.publish_confirmed(
            OutgoingMessage.for_event(stack.topic("data.labels"), label, key=label.data.record_id)
            for label in labels
        )
        return FEATURE_STORE_RECORDS
    version = stack.register_spec(stack_spec(dataset)).version
    records = validated_with_labels(stack.namespace, dataset, version, DIABETES_RECORDS)
    stack.producer.publish_confirmed(
        OutgoingMessage.for_event(stack.topic("data.validated"), r, key=r.data.entity)
        for r in records
    )
    return DIABETES_RECORDS


def registered_version(
    stack: Stack, dataset: str
) -> tuple[RunningService, RunningService, ModelTrained]:
    """Feature store, registry and training started; one version of `dataset` trained on
    every record and registered. Returns (feature store, training, what was trained); the
    registry is the stack's second service."""
    count = publish_dataset(stack, dataset)
    feature_store = stack.start_feature_store()

    def every_record_labelled() -> bool:
        answer = httpx.post(
            f"{feature_store.url}/training-sets", json={"dataset": dataset}, timeout=60
        )
        return answer.status_code == 201 and answer.json()["rows"] == count

    wait_until(
        every_record_labelled,
        what=f"the feature store to join {count} {dataset} records with their labels",
        timeout_s=180,
        interval_s=1,
    )
    registry = stack.start_registry()
    training = stack.start_training(registry, feature_store_url=feature_store.url)
    command = Event.create(
        TrainModel(
            model_name=dataset,
            dataset=dataset,
            trigger=TrainingTrigger(kind="manual", reason="to reproduce", requested_by="test"),
            params=FIT_PARAMS,
            seed=3,
        ),
        source="test",
        subject=dataset,
    )
    stack.publish("training.requests", command, key=dataset)
    [event] = stack.read("models.trained", 1, timeout_s=180)
    assert event.type == "mlops.ModelTrained", event.data
    wait_until(
        lambda: (
            httpx.get(f"{registry.url}/models/{dataset}/versions/1", timeout=10).status_code == 200
        ),
        what=f"the registry to register {dataset} v1",
        timeout_s=60,
        interval_s=0.5,
    )
    return feature_store, training, event.data


def reproduce(training: RunningService, body: dict[str, Any]) -> dict[str, Any]:
    """POST /reproductions, then GET until an outcome (bounded)."""
    started = httpx.post(f"{training.url}/reproductions", json=body, timeout=30)
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "running"
    reproduction_id = started.json()["id"]

    def outcome() -> dict[str, Any] | None:
        answer = httpx.get(f"{training.url}/reproductions/{reproduction_id}", timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json() if answer.json()["status"] in OUTCOMES else None

    result = wait_until(
        outcome, what=f"reproduction {reproduction_id} to end", timeout_s=240, interval_s=0.5
    )
    assert result["finished_at"] is not None
    return result


@pytest.mark.parametrize("dataset", ["loans", "diabetes"])
def test_a_registered_version_reproduces_identically_from_kafka(stack: Stack, dataset: str) -> None:
    _, training, trained = registered_version(stack, dataset)
    result = reproduce(training, {"model": dataset, "version": 1})
    assert result["status"] == "identical", result
    assert result["reason"] is None
    names = [check["name"] for check in result["checks"]]
    assert names == [
        "feature sources",
        "spec fingerprint",
        "rows",
        "holdout rows",
        "training-set hash",
        "metrics",
        "predictions",
    ]
    assert all(check["same"] for check in result["checks"])
    rows = next(check for check in result["checks"] if check["name"] == "rows")
    assert rows["reproduced"] == str(trained.lineage.rows)
    assert result["summary"]["rows"] == trained.lineage.rows
    listed = httpx.get(f"{training.url}/reproductions", params={"model": dataset}).json()
    assert [item["id"] for item in listed] == [result["id"]]


def test_what_cannot_be_identical_says_why(
    stack: Stack, admin: AdminClient, subprocess_env: dict[str, str]
) -> None:
    feature_store, training, trained = registered_version(stack, "loans")

    # the CLI is a thin client of the same endpoint
    cli = subprocess.run(
        [sys.executable, "-m", "shared.cli", "reproduce", "loans", "--latest"],
        env={**subprocess_env, "MLOPS_CLI_TRAINING_URL": training.url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (cli.returncode, cli.stdout.strip().splitlines()[-1]) == (0, "identical"), (
        cli.stdout + cli.stderr
    )
    assert "training-set hash" in cli.stdout and "feature sources" in cli.stdout

    unknown = httpx.post(f"{training.url}/reproductions", json={"model": "loans", "version": 9})
    assert unknown.status_code == 404, unknown.text
    assert "9" in unknown.json()["detail"]
    nobody = httpx.post(f"{training.url}/reproductions", json={"model": "ghost", "latest": True})
    assert nobody.status_code == 404, nobody.text

    # a lineage whose labels range lost its newest 20 labels: a smaller, different set
    lineage = trained.lineage.model_dump(mode="json")
    labels_topic = stack.topic("data.labels")
    widest = max(
        (r for r in lineage["offsets"] if r["topic"] == labels_topic),
        key=lambda r: r["last_offset"] - r["first_offset"],
    )
    assert widest["last_offset"] - widest["first_offset"] >= 20, widest
    widest["last_offset"] -= 20
    altered = reproduce(training, {"model": "loans", "version": 1, "lineage": lineage})
    assert altered["status"] == "differs", altered
    assert "rows" in altered["reason"] and "training-set hash" in altered["reason"]
    assert altered["reason"].startswith("differs: ")

    # retention deleted the oldest labels of that partition: the data is gone
    partition = widest["partition"]
    [deleted] = admin.delete_records(
        [TopicPartition(labels_topic, partition, widest["first_offset"] + 5)]
    ).values()
    deleted.result(timeout=30)
    gone = reproduce(training, {"model": "loans", "version": 1})
    assert gone["status"] == "failed", gone
    assert "no longer in Kafka" in gone["reason"], gone["reason"]
    assert (
        f"{labels_topic} [{partition}] holds offsets {widest['first_offset'] + 5}.."
        in (gone["reason"])
    )
    assert gone["checks"] == []

    # the feature store down, then the registry: refused at once, naming it
    feature_store.stop()
    down = httpx.post(f"{training.url}/reproductions", json={"model": "loans", "version": 1})
    assert down.status_code == 503, down.text
    assert "feature store" in down.json()["detail"]
    [registry] = [s for s in stack.services if s.name == "registry"]
    registry.stop()
    down = httpx.post(f"{training.url}/reproductions", json={"model": "loans", "latest": True})
    assert down.status_code == 503, down.text
    assert "registry" in down.json()["detail"]
    # what was asked before stays visible, newest first, each with its outcome
    listed = httpx.get(f"{training.url}/reproductions", params={"limit": 10}).json()
    assert [item["status"] for item in listed] == ["failed", "differs", "identical"]
