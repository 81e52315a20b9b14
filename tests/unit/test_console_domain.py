"""The console's pure parts: lineage to graph, timeline merging, chart series from the
services' payloads, CSRF tokens, the loop diagram's groups and rates, trace waterfalls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.console.domain import charts, csrf, loop, timeline
from services.console.domain.lineage_graph import lineage_graph
from services.console.domain.traces import waterfall
from services.console.settings import ConsoleSettings
from shared.settings import service_url

T0 = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)


def drift_envelope(at: datetime, model: str = "loans", version: int | None = 1) -> dict[str, Any]:
    return {
        "id": f"d-{at.timestamp()}",
        "time": at.isoformat(),
        "data": {
            "dataset": "loans",
            "model_name": model,
            "model_version": version,
            "signal": "error",
            "signal_kind": "error",
            "detector": "ADWIN",
            "position": 120,
            "detected_at": at.isoformat(),
            "reference": {"mean": 0.02},
            "current": {"mean": 0.5},
        },
    }


def lineage(trigger: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "model_name": "loans",
        "version": 2,
        "run_id": "run-123",
        "dataset": "loans",
        "spec_version": 3,
        "spec_fingerprint": "abcdef1234567890",
        "offsets": [
            {"topic": "mlops.data.validated", "partition": 0, "first_offset": 0, "last_offset": 9},
            {"topic": "mlops.data.validated", "partition": 1, "first_offset": 4, "last_offset": 7},
            {"topic": "mlops.data.labels", "partition": 0, "first_offset": 0, "last_offset": 12},
        ],
        "rows": 20,
        "training": {"run_id": "run-123", "estimator": "LogisticRegression", "trace_id": "ab12"},
        "trigger": trigger,
        "decisions": [
            {"action": "promoted", "alias": "champion", "actor": "policy", "reason": "better"}
        ],
        "deployments": [
            {"instance": "serving-1", "alias": "champion", "deployed_at": T0.isoformat()}
        ],
        **extra,
    }


def test_a_drift_triggered_lineage_draws_every_kind_of_node_and_names_the_drift() -> None:
    trigger = {"kind": "drift", "reason": "drift in error", "event": drift_envelope(T0)}
    graph = lineage_graph(lineage(trigger))
    kinds = [node.kind for node in graph.nodes]
    assert set(kinds) == {"spec", "topic", "run", "trigger", "drift", "decision", "deployment"}
    assert kinds.count("topic") == 2  # one node per topic, its partitions' ranges inside
    drift = next(node for node in graph.nodes if node.kind == "drift")
    assert "drift" in drift.title and "ADWIN" in drift.title and "error" in drift.title
    topic = next(n for n in graph.nodes if n.title == "mlops.data.validated")
    assert topic.detail == "p0:0-9 p1:4-7"
    run = graph.node("run")
    assert run.link == "/traces/ab12"
    targets = {(e.source, e.target) for e in graph.edges}
    assert {("drift", "trigger"), ("trigger", "run"), ("spec", "run"), ("run", "decision0")} <= (
        targets
    )
    assert ("decision0", "deployment0") in targets
    for node in graph.nodes:  # laid out inside the drawing, in columns left to right
        assert node.x >= 0 and node.right <= graph.width and node.y + 54 <= graph.height
    assert graph.node("spec").x < run.x < graph.node("decision0").x < graph.node("deployment0").x


def test_a_manual_lineage_has_no_drift_node_and_tolerates_missing_parts() -> None:
    graph = lineage_graph({"model_name": "m", "version": 1, "trigger": {"kind": "manual"}})
    assert [n.kind for n in graph.nodes] == ["spec", "run", "trigger"]
    assert graph.lines()  # every edge has both ends


def test_the_timeline_merges_every_source_newest_first_each_event_once() -> None:
    drifts = timeline.drift_events([drift_envelope(T0)])
    decided = timeline.decision_events(
        [
            {"action": "trigger", "decided_at": (T0 + timedelta(seconds=5)).timestamp(),
             "model_name": "loans", "reason": "drift", "outcome": "promoted v2"},
            {"action": "wait", "decided_at": T0.timestamp(), "model_name": "loans", "reason": "x"},
        ]
    )  # fmt: skip
    trained = timeline.version_events(
        [{"model_name": "loans", "version": 2, "created_at": (T0 + timedelta(seconds=9)).isoformat(),
          "trigger": "drift", "primary_metric": "accuracy", "primary_metric_value": 0.91234}]
    )  # fmt: skip
    audit = timeline.audit_events(
        "loans",
        [
            {"action": "promoted", "at": (T0 + timedelta(seconds=10)).isoformat(), "alias": "champion",
             "to_version": 2, "actor": "policy", "reason": "better"},
            {"action": "tag_set", "at": T0.isoformat(), "to_version": 2, "actor": "a", "reason": "t"},
            {"action": "rejected", "at": (T0 + timedelta(seconds=11)).isoformat(), "to_version": 3,
             "actor": "policy", "reason": "worse"},
        ],
    )  # fmt: skip
    merged = timeline.merge([drifts, decided, trained, audit, drifts], limit=10)
    assert [e.type for e in merged] == [
        "ModelRejected", "ModelPromoted", "ModelTrained", "RetrainDecided", "DriftDetected"
    ]  # fmt: skip
    assert merged[-1].link == "/models/loans/versions/1"
    assert merged[3].link == "/models/loans"
    assert "accuracy=0.912" in merged[2].text
    assert timeline.merge([drifts, trained], limit=1)[0].type == "ModelTrained"


def test_times_are_read_from_iso_strings_and_epoch_seconds() -> None:
    assert timeline.parse_time("2026-12-06T02:00:00Z") == T0
    assert timeline.parse_time(T0.timestamp()) == T0
    assert timeline.parse_time("2026-12-06T02:00:00") == T0  # naive: UTC
    assert timeline.parse_time("yesterday") is None and timeline.parse_time(None) is None


def test_the_performance_chart_has_a_trace_per_version_and_the_drift_and_deployment_markers() -> (
    None
):
    history = [
        {"at": T0.timestamp() + 10, "model_version": 1, "task": "classification", "accuracy": 0.9,
         "last_100": 0.95},
        {"at": T0.timestamp(), "model_version": 1, "task": "classification", "accuracy": 0.9,
         "last_100": 0.97},
        {"at": T0.timestamp() + 20, "model_version": 2, "task": "classification", "accuracy": 0.8,
         "last_100": None},
        {"at": T0.timestamp() + 20, "model_version": 3, "task": "regression", "mae": 1.5},
        {"at": None, "model_version": 3, "task": "regression", "mae": 9.0},
    ]  # fmt: skip
    figure = charts.performance_chart(history, [T0 + timedelta(seconds=5)], [T0, T0])
    names = [trace["name"] for trace in figure["data"]]
    assert names == ["v1 accuracy", "v2 accuracy", "v3 mae", "drift", "deployment"]
    v1 = figure["data"][0]
    assert v1["y"] == [0.97, 0.95] and v1["x"][0] == T0.isoformat()  # oldest first
    assert figure["data"][1]["y"] == [0.8]  # no windowed value yet: the overall one
    drift, deployment = figure["data"][3], figure["data"][4]
    assert drift["x"] == [(T0 + timedelta(seconds=5)).isoformat()]
    assert deployment["x"] == [T0.isoformat()]  # the same time once
    assert figure["layout"]["xaxis"]["type"] == "date"


def test_an_empty_performance_chart_still_has_its_markers_traces() -> None:
    names = [t["name"] for t in charts.performance_chart([], [], [])["data"]]
    assert names == ["drift", "deployment"]


def test_the_metric_chart_plots_each_versions_primary_metric() -> None:
    figure = charts.metric_per_version(
        [
            {"version": 1, "primary_metric": "accuracy", "primary_metric_value": 0.8},
            {"version": 2, "primary_metric": "accuracy", "primary_metric_value": 0.9},
            {"version": 3, "primary_metric": None, "primary_metric_value": None},
        ]
    )
    (trace,) = figure["data"]
    assert trace["name"] == "accuracy" and trace["x"] == ["v1", "v2"] and trace["y"] == [0.8, 0.9]


def test_rejections_are_counted_per_minute_and_rule() -> None:
    rows = [
        {"at": T0.isoformat(), "rules": ["range"]},
        {"at": (T0 + timedelta(seconds=30)).isoformat(), "rules": ["range", "type"]},
        {"at": (T0 + timedelta(minutes=2)).isoformat(), "rules": ["range"]},
    ]
    traces = {t["name"]: t for t in charts.rejections_chart(rows)["data"]}
    assert traces["range"]["y"] == [2, 1] and traces["type"]["y"] == [1]


def test_csrf_tokens_belong_to_their_session() -> None:
    session: dict[str, Any] = {}
    token = csrf.token_of(session)
    assert csrf.token_of(session) == token and len(token) >= 32
    assert csrf.valid(session, token)
    assert not csrf.valid(session, token + "x")
    assert not csrf.valid(session, None) and not csrf.valid(session, "")
    assert not csrf.valid({}, token)  # another session (or none) has no such token
    assert not csrf.valid({"csrf": token}, ["a list"])


def test_consumer_groups_are_attributed_to_their_service() -> None:
    lags = {
        "mlops.validation": 3,
        "mlops.training": 1,
        "mlops.training-labels": 2,
        "mlops-feature-store-offline-validated": 5,
        "mlops.serving.1a2b3c4d": 0,
        "other.validation": 100,
    }
    assert loop.lag_per_service(lags, "mlops") == {
        "validation": 3, "training": 3, "feature_store": 5, "serving": 0
    }  # fmt: skip


def test_rates_come_from_two_reads_of_the_end_offsets() -> None:
    assert loop.rates({"a": 10, "b": 5}, {"a": 30, "b": 5, "c": 7}, 2.0) == {
        "a": 10.0, "b": 0.0, "c": 0.0
    }  # fmt: skip
    assert loop.rates({}, {"a": 1}, 0) == {}


def test_every_arrow_of_the_diagram_joins_two_boxes_inside_it() -> None:
    assert len(loop.arrows()) == len(loop.EDGES)
    for x1, y1, x2, y2 in loop.arrows():
        assert min(x1, x2) >= 0 and max(x1, x2) <= loop.WIDTH
        assert min(y1, y2) >= 0 and max(y1, y2) <= loop.HEIGHT


def test_a_trace_becomes_a_waterfall_of_spans_by_service_depth_first() -> None:
    trace = {
        "traceID": "t1",
        "processes": {"p1": {"serviceName": "monitoring"}, "p2": {"serviceName": "training"}},
        "spans": [
            {"spanID": "b", "operationName": "train", "processID": "p2", "startTime": 1_000_500,
             "duration": 400, "references": [{"refType": "CHILD_OF", "spanID": "a"}],
             "tags": [{"key": "otel.status_code", "value": "ERROR"}]},
            {"spanID": "a", "operationName": "drift", "processID": "p1", "startTime": 1_000_000,
             "duration": 1000, "references": []},
        ],
    }  # fmt: skip
    found = waterfall(trace)
    assert [(s.service, s.depth) for s in found.spans] == [("monitoring", 0), ("training", 1)]
    assert found.duration_ms == 1.0 and found.services == ["monitoring", "training"]
    child = found.spans[1]
    assert child.left_pct == 50.0 and child.width_pct == 40.0 and child.error
    assert waterfall({"traceID": "x"}).spans == []


def test_service_urls_come_from_the_stacks_addresses() -> None:
    env = {"MLOPS_REGISTRY_HOST": "10.0.0.2", "MLOPS_REGISTRY_PORT": "28005"}
    assert service_url("registry", env) == "http://10.0.0.2:28005"
    assert service_url("serving", {}) == "http://127.0.0.1:8006"
    settings = ConsoleSettings(_env_file=None, service_urls={"training": "http://t:1/"})  # type: ignore[call-arg]
    assert settings.urls()["training"] == "http://t:1"


@pytest.mark.parametrize("secret", ["changeme-" + "x" * 40, "short"])
def test_a_weak_session_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValueError):
        ConsoleSettings(_env_file=None, session_secret=secret)  # type: ignore[call-arg, arg-type]


def test_outside_local_mode_the_session_secret_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_CONSOLE_SESSION_SECRET", raising=False)
    with pytest.raises(ValueError, match="required outside local mode"):
        ConsoleSettings(_env_file=None, environment="production")  # type: ignore[call-arg]
    ConsoleSettings(_env_file=None, environment="production", session_secret="a" * 40)  # type: ignore[call-arg, arg-type]
