"""Lineage and the retraining trace of the closed loop's drift-retrained version: the registry's
one lineage document (GET /lineage/{model}/{version}, and `mlops lineage`) holds the
DriftDetected with its evidence, the registry's decisions and serving's deployments, each with
its trace id; the retraining's trace, read back from Jaeger, runs monitoring -> training ->
registry -> serving."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx

from shared.settings import PlatformSettings
from tests.e2e.closed_loop import MODEL, DriftRetrain, Loop
from tests.e2e.test_data_traces import jaeger_trace, services_in
from tests.waiting import wait_until

CHAIN = ("monitoring", "training", "registry", "serving")


def lineage_document(loop: Loop, version: int) -> dict[str, Any]:
    answer = httpx.get(f"{loop.urls.registry}/lineage/{MODEL}/{version}", timeout=10)
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def mlops(loop: Loop, env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *arguments],
        env={**env, "MLOPS_CLI_REGISTRY_URL": loop.urls.registry, "COLUMNS": "200"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_lineage_of_a_drift_retrained_version_holds_the_drift_decisions_and_deployments(
    loop: Loop, drift_retrain: DriftRetrain, subprocess_env: dict[str, str]
) -> None:
    version = drift_retrain.new_version
    [command] = loop.watcher.drift_commands()
    drift = loop.watcher.by_id(command.data["trigger"]["event_id"])
    assert drift is not None and drift.trace_id
    [promotion] = [
        s for s in loop.watcher.seen("mlops.ModelPromoted") if s.data["version"] == version
    ]
    document = wait_until(
        lambda: (d := lineage_document(loop, version))["deployments"] and d,
        what=f"a deployment of v{version} in its lineage",
        timeout_s=30,
    )

    trigger = document["trigger"]
    assert (trigger["kind"], trigger["event_id"]) == ("drift", drift.event["id"])
    assert trigger["event"] == drift.event, "the DriftDetected itself, evidence and all"
    assert trigger["event"]["data"]["detector"] and trigger["event"]["data"]["current"]
    assert trigger["trace_id"] == drift.trace_id
    assert document["training"]["trace_id"] == command.trace_id
    assert document["offsets"] and document["data_quality"] and document["feature_columns"]
    decisions = {d["action"]: d for d in document["decisions"] if d["to_version"] == version}
    assert {"registered", "promoted"} <= set(decisions)
    assert decisions["promoted"]["event_id"] == promotion.event["id"]
    assert all(d["trace_id"] == promotion.trace_id for d in decisions.values())
    assert all(d["trace_id"] for d in document["deployments"])
    assert promotion.trace_id in {d["trace_id"] for d in document["deployments"]}

    printed = mlops(loop, subprocess_env, "lineage", f"{MODEL}@{version}", "--json")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == lineage_document(loop, version)
    readable = mlops(loop, subprocess_env, "lineage", f"{MODEL}@{version}")
    assert readable.returncode == 0, readable.stderr
    assert drift.event["id"] in readable.stdout and "deployments" in readable.stdout
    missing = mlops(loop, subprocess_env, "lineage", f"{MODEL}@{version + 100}")
    assert missing.returncode == 1, missing.stdout + missing.stderr


def test_a_retraining_is_one_trace_from_monitoring_through_training_registry_and_serving(
    loop: Loop, drift_retrain: DriftRetrain, settings: PlatformSettings
) -> None:
    assert settings.jaeger_query_url, "MLOPS_JAEGER_QUERY_URL must point at Jaeger's query API"
    [command] = loop.watcher.drift_commands()
    trace_id = command.trace_id
    assert trace_id
    swap = f"swap {MODEL} champion to v{drift_retrain.new_version}"

    def complete() -> dict[str, Any] | None:
        found = jaeger_trace(settings, trace_id)
        if not found or not set(CHAIN) <= services_in(found):
            return None
        names = {span["operationName"] for span in found["spans"]}
        return found if swap in names else None

    trace = wait_until(
        complete, what=f"trace {trace_id} with {CHAIN} and {swap!r}", timeout_s=60, interval_s=2
    )
    spans = {span["spanID"]: span for span in trace["spans"]}
    service_of = {pid: process["serviceName"] for pid, process in trace["processes"].items()}

    def parent(span: dict[str, Any]) -> dict[str, Any] | None:
        ids = [r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"]
        return spans.get(ids[0]) if ids else None

    def services_upward(span: dict[str, Any]) -> list[str]:
        """The services of the span and its ancestors, nearest first, repeats folded."""
        chain: list[str] = []
        current: dict[str, Any] | None = span
        while current is not None:
            name = service_of[current["processID"]]
            if not chain or chain[-1] != name:
                chain.append(name)
            current = parent(current)
        return chain

    drift = loop.watcher.by_id(command.data["trigger"]["event_id"])
    assert drift is not None and drift.trace_id
    [decision] = [s for s in spans.values() if s["operationName"] == f"retrain {MODEL}"]
    assert service_of[decision["processID"]] == "monitoring"
    # the DriftDetected is in the retraining's trace: published there by monitoring
    assert drift.trace_id == trace_id
    assert any(
        s["operationName"].endswith("monitoring.drift publish")
        and service_of[s["processID"]] == "monitoring"
        for s in spans.values()
    )
    swaps = [s for s in spans.values() if s["operationName"] == swap]
    assert swaps
    for span in swaps:
        upward = services_upward(span)
        assert [name for name in upward if name in CHAIN][:4] == list(reversed(CHAIN)), upward
