"""The latest rejected records of each dataset, kept in memory for people to look at (the
console's data page): at most `per_dataset` each, long values cut. Pure."""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any

from shared.events.records import RecordRejected


class RecentRejections:
    def __init__(self, per_dataset: int = 200, max_value_chars: int = 500) -> None:
        if per_dataset < 1:
            raise ValueError("per_dataset must be at least 1")
        self.per_dataset = per_dataset
        self.max_value_chars = max_value_chars
        self._kept: dict[str, OrderedDict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def add(self, event_id: str, at: datetime, rejected: RecordRejected) -> None:
        """Keeps one rejection (a redelivered one, same event id, once)."""
        if rejected.dataset is None:
            return
        entry = {
            "id": event_id,
            "at": at.isoformat(),
            "spec_version": rejected.spec_version,
            "record_id": rejected.record_id,
            "entity": rejected.entity,
            "rules": sorted({e.rule for e in rejected.errors}),
            "errors": [
                {"field": e.field, "rule": e.rule, "message": self._cut(e.message)}
                for e in rejected.errors
            ],
            "record": {k: self._cut(v) for k, v in (rejected.values or {}).items()},
        }
        with self._lock:
            kept = self._kept.setdefault(rejected.dataset, OrderedDict())
            kept[event_id] = entry
            kept.move_to_end(event_id)
            while len(kept) > self.per_dataset:
                kept.popitem(last=False)

    def of(self, dataset: str, limit: int) -> list[dict[str, Any]]:
        """The dataset's latest rejections, newest first."""
        with self._lock:
            kept = self._kept.get(dataset) or OrderedDict()
            return [dict(entry) for entry in reversed(kept.values())][:limit]

    def _cut(self, value: Any) -> Any:
        if isinstance(value, str) and len(value) > self.max_value_chars:
            return value[: self.max_value_chars] + "…"
        if isinstance(value, list | dict):
            text = str(value)
            return text if len(text) <= self.max_value_chars else text[: self.max_value_chars] + "…"
        return value
