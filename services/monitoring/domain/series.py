"""Live performance over time, for plots: the latest snapshots of each model version, kept in
memory, at most `points_per_version` each (the oldest go first). Pure."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

KEPT = ("model_name", "model_version", "task", "labelled", "served", "expired")
SCORES = ("accuracy", "last_100", "last_1000", "mae", "rmse", "last_100_mae", "last_1000_mae")


class PerformanceSeries:
    """>>> series = PerformanceSeries(points_per_version=2)
    >>> for at in (1.0, 2.0, 3.0):
    ...     series.add(at, [{"model_name": "m", "model_version": 1, "accuracy": at / 4}])
    >>> [(p["at"], p["accuracy"]) for p in series.of("m")]
    [(2.0, 0.5), (3.0, 0.75)]
    """

    def __init__(self, points_per_version: int) -> None:
        if points_per_version < 1:
            raise ValueError("points_per_version must be at least 1")
        self.points_per_version = points_per_version
        self._points: dict[tuple[str, int], deque[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def add(self, at: float, rows: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            for row in rows:
                key = (str(row.get("model_name")), int(row.get("model_version") or 0))
                points = self._points.get(key)
                if points is None:
                    points = self._points[key] = deque(maxlen=self.points_per_version)
                point = {"at": at, **_fields(row)}
                points.append(point)

    def restore(self, model: str, points: Iterable[Mapping[str, Any]]) -> bool:
        """Takes the model's points read back from storage (oldest first, each with its own
        `at`) unless live points of the model arrived first; says whether it took them."""
        with self._lock:
            if any(name == model for name, _ in self._points):
                return False
            for point in points:
                key = (model, int(point.get("model_version") or 0))
                kept = self._points.setdefault(key, deque(maxlen=self.points_per_version))
                kept.append({"at": point.get("at"), **_fields(point)})
            return True

    def of(self, model: str) -> list[dict[str, Any]]:
        """Every kept point of the model's versions, by version then time."""
        with self._lock:
            return [
                dict(point)
                for (name, _), points in sorted(self._points.items())
                if name == model
                for point in points
            ]

    def models(self) -> list[str]:
        with self._lock:
            return sorted({name for name, _ in self._points})


def _fields(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in (*KEPT, *SCORES) if k in row}
