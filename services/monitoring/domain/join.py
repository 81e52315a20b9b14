"""Joining predictions with their labels by record id, in either order, within a bounded wait.

Time is passed in (seconds, any monotonic clock), so the join is pure. A prediction whose label
does not arrive within `wait_s` expires and is counted; so does a label without a prediction.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

P = TypeVar("P")


@dataclass(frozen=True)
class Joined(Generic[P]):
    prediction: P
    label: Any


class LabelJoin(Generic[P]):
    def __init__(self, wait_s: float, max_pending: int = 1_000_000) -> None:
        self.wait_s = wait_s
        self.max_pending = max_pending
        self._predictions: OrderedDict[str, tuple[float, P]] = OrderedDict()
        self._labels: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self.joined = 0
        self.expired_predictions = 0
        self.expired_labels = 0

    def add_prediction(self, record_id: str, prediction: P, now: float) -> Joined[P] | None:
        self.expire(now)
        waiting = self._labels.pop(record_id, None)
        if waiting is not None:
            self.joined += 1
            return Joined(prediction, waiting[1])
        self._predictions[record_id] = (now + self.wait_s, prediction)
        self._predictions.move_to_end(record_id)
        self._bound(self._predictions, "predictions")
        return None

    def add_label(self, record_id: str, label: Any, now: float) -> Joined[P] | None:
        self.expire(now)
        waiting = self._predictions.pop(record_id, None)
        if waiting is not None:
            self.joined += 1
            return Joined(waiting[1], label)
        self._labels[record_id] = (now + self.wait_s, label)
        self._labels.move_to_end(record_id)
        self._bound(self._labels, "labels")
        return None

    def expire(self, now: float) -> list[P]:
        """Drops what waited too long; returns the expired predictions (oldest first)."""
        expired: list[P] = []
        while self._predictions:
            record_id, (deadline, prediction) = next(iter(self._predictions.items()))
            if deadline > now:
                break
            del self._predictions[record_id]
            expired.append(prediction)
        self.expired_predictions += len(expired)
        while self._labels:
            record_id, (deadline, _) = next(iter(self._labels.items()))
            if deadline > now:
                break
            del self._labels[record_id]
            self.expired_labels += 1
        return expired

    @property
    def pending_predictions(self) -> int:
        return len(self._predictions)

    @property
    def pending_labels(self) -> int:
        return len(self._labels)

    def _bound(self, pending: OrderedDict[str, Any], what: str) -> None:
        while len(pending) > self.max_pending:
            pending.popitem(last=False)
            if what == "predictions":
                self.expired_predictions += 1
            else:
                self.expired_labels += 1

    def counts(self) -> dict[str, int]:
        return {
            "joined": self.joined,
            "expired_predictions": self.expired_predictions,
            "expired_labels": self.expired_labels,
            "pending_predictions": self.pending_predictions,
            "pending_labels": self.pending_labels,
        }
