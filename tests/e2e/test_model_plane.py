"""The model plane end to end: ingested data becomes a trained, registered, promoted model with
complete lineage, and serving answers with that version."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from shared.datasets.sources import agrawal_records
from tests.integration.kafka_helpers import unique_name
from tests.services import RunningService, namespace_topics, start_service
from tests.waiting import wait_until

RECORDS = 2_000


@pytest.fixture
def platform(
    admin: AdminClient, subprocess_env: dict[str, str], tmp_path: Path
) -> Iterator[dict[str, RunningService]]:
    namespace = unique_name("e2em").replace("-", "")
    services: dict[str, RunningService] = {}
    with namespace_topics(admin, namespace):
        try:

            def start(name: str, wait_ready: bool = True, **extra: str) -> RunningService:
                services[name] = start_service(
                    name, namespace, subprocess_env, tmp_path, extra_env=extra,
                    wait_ready=wait_ready,
                )  # fmt: skip
                return services[name]

            registry = start("registry", MLOPS_REGISTRY_DATABASE_SCHEMA=f"reg_{namespace}")
            features = start("feature_store")
            start("ingestion")
            start("validation")
            start(
                "training",
                MLOPS_TRAINING_FEATURE_STORE_URL=features.url,
                MLOPS_TRAINING_REGISTRY_URL=registry.url,
                MLOPS_TRAINING_DATABASE_SCHEMA=f"train_{namespace}",
            )
            start(
                "serving",
                wait_ready=False,
                MLOPS_SERVING_MODELS='["loans"]',
                MLOPS_SERVING_REGISTRY_URL=registry.url,
                MLOPS_SERVING_FEATURE_STORE_URL=features.url,
            )
            yield services
        finally:
            for service in reversed(list(services.values())):
                service.stop()


def test_ingested_data_becomes_a_promoted_model_that_serving_answers_with(
    platform: dict[str, RunningService],
) -> None:
    start = datetime.now(UTC) - timedelta(days=2)
    rows = list(agrawal_records(RECORDS, seed=21, start=start, seconds_between=30))
    with httpx.Client(timeout=60) as client:
        ingestion = platform["ingestion"].url
        for first in range(0, RECORDS, 500):
            batch = [record for record, _ in rows[first : first + 500]]
            answer = client.post(f"{ingestion}/datasets/loans/records", json={"records": batch})
            assert answer.status_code == 202, answer.text
        labels = [{"record_id": r["application_id"], "label": label} for r, label in rows]
        answer = client.post(f"{ingestion}/datasets/loans/labels", json={"labels": labels})
        assert answer.status_code == 202, answer.text

        def training_set_rows() -> int:
            answer = client.post(
                f"{platform['feature_store'].url}/training-sets", json={"dataset": "loans"}
            )
            return answer.json().get("rows", 0) if answer.status_code in (200, 201) else 0

        wait_until(
            lambda: training_set_rows() >= RECORDS,
            what="every labelled record in a training set",
            timeout_s=180,
            interval_s=3,
        )
        answer = client.post(
            f"{platform['training'].url}/train",
            json={"model_name": "loans", "dataset": "loans", "reason": "e2e"},
        )
        assert answer.status_code == 202, answer.text

        registry = platform["registry"].url

        def champion() -> dict | None:
            answer = client.get(f"{registry}/models/loans/aliases/champion")
            return answer.json() if answer.status_code == 200 else None

        held = wait_until(champion, what="a champion for loans", timeout_s=240, interval_s=2)
        version = held["version"]["version"]
        lineage = client.get(f"{registry}/models/loans/versions/{version}/lineage").json()
        text = str(lineage)
        assert "offsets" in text and "training_set_sha256" in text and "spec_version" in text
        assert "'kind': 'manual'" in text

        serving = platform["serving"].url
        entity = rows[-1][0]["applicant_id"]

        def prediction() -> dict | None:
            answer = client.post(
                f"{serving}/predict", json={"model": "loans", "entities": [entity]}
            )
            return answer.json() if answer.status_code == 200 else None

        answered = wait_until(prediction, what="serving to answer", timeout_s=120, interval_s=1)
        assert (answered["model"], answered["version"]) == ("loans", version)
        [one] = answered["predictions"]
        assert one["entity"] == entity
        assert one["prediction"] in (0, 1)
        assert abs(sum(one["probabilities"].values()) - 1.0) < 1e-6
