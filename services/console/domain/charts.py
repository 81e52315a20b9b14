"""Plotly figures ({"data": [...traces], "layout": {...}}) built from the services' answers.
Pure: the pages put them in a <script type="application/json"> block, our JS draws them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from services.console.domain.timeline import parse_time

Figure = dict[str, Any]

CLASSIFICATION_SERIES = ("last_100", "accuracy")
REGRESSION_SERIES = ("last_100_mae", "mae")


def figure(traces: list[dict[str, Any]], **layout: Any) -> Figure:
    base = {"margin": {"l": 50, "r": 20, "t": 30, "b": 40}, "height": 320}
    return {"data": traces, "layout": {**base, **layout}}


def metric_per_version(versions: Sequence[Mapping[str, Any]]) -> Figure:
    """Each version's primary metric (its holdout score when registered)."""
    by_metric: dict[str, tuple[list[str], list[Any]]] = {}
    for version in versions:
        metric = version.get("primary_metric")
        value = version.get("primary_metric_value")
        if not metric or not isinstance(value, int | float):
            continue
        xs, ys = by_metric.setdefault(str(metric), ([], []))
        xs.append(f"v{version.get('version')}")
        ys.append(value)
    traces = [
        {"type": "scatter", "mode": "lines+markers", "name": metric, "x": xs, "y": ys}
        for metric, (xs, ys) in sorted(by_metric.items())
    ]
    return figure(traces, xaxis={"title": {"text": "version"}, "type": "category"})


def metric_name(task: str | None) -> str:
    return "mae" if task == "regression" else "accuracy"


def performance_chart(
    history: Iterable[Mapping[str, Any]],
    drift_times: Iterable[datetime],
    deployment_times: Iterable[datetime],
) -> Figure:
    """Live accuracy (classification) or MAE (regression) per version over time, one trace
    named "v<N> <metric>" each, and the traces "drift" and "deployment" as markers on the same
    time axis. `history` rows are monitoring's snapshots (at, model_version, task, ...)."""
    series: dict[tuple[int, str], list[tuple[datetime, float]]] = {}
    for row in history:
        at = parse_time(row.get("at"))
        task = row.get("task") or "classification"
        keys = REGRESSION_SERIES if task == "regression" else CLASSIFICATION_SERIES
        value = next((row[key] for key in keys if isinstance(row.get(key), int | float)), None)
        if at is None or value is None:
            continue
        name = metric_name(task)
        series.setdefault((int(row.get("model_version") or 0), name), []).append((at, value))
    traces: list[dict[str, Any]] = []
    values: list[float] = []
    for (version, name), points in sorted(series.items()):
        points.sort()
        values.extend(value for _, value in points)
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": f"v{version} {name}",
                "x": [at.isoformat() for at, _ in points],
                "y": [value for _, value in points],
            }
        )
    top = max(values, default=1.0)
    for name, times, symbol, color in (
        ("drift", drift_times, "x", "#d62728"),
        ("deployment", deployment_times, "triangle-up", "#2ca02c"),
    ):
        xs = sorted({at.isoformat() for at in times})
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": name,
                "x": xs,
                "y": [top] * len(xs),
                "marker": {"symbol": symbol, "size": 12, "color": color},
            }
        )
    return figure(traces, xaxis={"type": "date", "title": {"text": "time"}})


def reference_chart(features: Mapping[str, Mapping[str, Any]]) -> Figure:
    """Per feature, the live mean ± std next to the training reference's."""
    names = sorted(features)
    traces = []
    for side in ("training", "live"):
        means, stds = [], []
        for name in names:
            figures = features[name].get(side) or {}
            means.append(figures.get("mean"))
            stds.append(figures.get("std") or 0)
        traces.append(
            {
                "type": "bar",
                "name": side,
                "x": names,
                "y": means,
                "error_y": {"type": "data", "array": stds, "visible": True},
            }
        )
    return figure(traces, barmode="group", yaxis={"title": {"text": "mean ± std"}})


def rejections_chart(rejections: Iterable[Mapping[str, Any]]) -> Figure:
    """Rejected records per minute and reason (validation's recent rejections)."""
    counts: dict[str, dict[str, int]] = {}
    for rejection in rejections:
        at = parse_time(rejection.get("at"))
        if at is None:
            continue
        minute = at.replace(second=0, microsecond=0).isoformat()
        for reason in rejection.get("rules") or ["unknown"]:
            per_minute = counts.setdefault(str(reason), {})
            per_minute[minute] = per_minute.get(minute, 0) + 1
    traces = [
        {
            "type": "bar",
            "name": reason,
            "x": sorted(per_minute),
            "y": [per_minute[m] for m in sorted(per_minute)],
        }
        for reason, per_minute in sorted(counts.items())
    ]
    return figure(traces, barmode="stack", xaxis={"type": "date"})
