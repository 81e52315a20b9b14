"""Joining predictions with their labels by record id, in either order, within a bounded wait.

Several predictions may wait for one record's label: one per slot (the model, version and
shadow flag that made it), since any number of models of a dataset may score the same record.
A label joins every prediction of its record waiting for it, and stays until its deadline for
the predictions that come after it (labels that ride in the record arrive before any
prediction); each slot joins a record's label once, so a redelivered prediction is not scored
twice. Time is passed in (seconds, any monotonic clock), so the join is pure. A prediction
whose label does not arrive within `wait_s` expires and is counted; so does a label that
joined nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

P = TypeVar("P")


@dataclass(frozen=True)
class Joined(Generic[P]):
    prediction: P
    label: Any


@dataclass
class _Label:
    deadline: float
    value: Any
    joined_slots: set[str] = field(default_factory=set)


class LabelJoin(Generic[P]):
    def __init__(self, wait_s: float, max_pending: int = 1_000_000) -> None:
        self.wait_s = wait_s
        self.max_pending = max_pending
        self._predictions: OrderedDict[tuple[str, str], tuple[float, P]] = OrderedDict()
        self._slots_of: dict[str, set[str]] = {}
        self._labels: OrderedDict[str, _Label] = OrderedDict()
        self._unused_labels = 0
        self.joined = 0
        self.expired_predictions = 0
        self.expired_labels = 0

    def add_prediction(
        self, record_id: str, prediction: P, now: float, slot: str = ""
    ) -> Joined[P] | None:
        """The prediction joined with its record's label, or None while it waits (a slot that
        already joined this record's label is a redelivery: dropped)."""
        self.expire(now)
        label = self._labels.get(record_id)
        if label is not None:
            if slot in label.joined_slots:
                return None
            self._use(label, slot)
            return Joined(prediction, label.value)
        self._forget((record_id, slot))
        self._predictions[(record_id, slot)] = (now + self.wait_s, prediction)
        self._slots_of.setdefault(record_id, set()).add(slot)
        self._bound_predictions()
        return None

    def add_label(self, record_id: str, label: Any, now: float) -> list[Joined[P]]:
        """Every prediction of the record that waited, joined; the label stays for later ones."""
        self.expire(now)
        if record_id in self._labels:
            return []  # a redelivered label: what it could join, it joined
        kept = _Label(now + self.wait_s, label)
        self._labels[record_id] = kept
        self._unused_labels += 1
        joined = []
        for slot in sorted(self._slots_of.pop(record_id, ())):
            _, prediction = self._predictions.pop((record_id, slot))
            self._use(kept, slot)
            joined.append(Joined(prediction, label))
        self._bound_labels()
        return joined

    def expire(self, now: float) -> list[P]:
        """Drops what waited too long; returns the expired predictions (oldest first)."""
        expired: list[P] = []
        while self._predictions:
            key, (deadline, prediction) = next(iter(self._predictions.items()))
            if deadline > now:
                break
            self._forget(key)
            expired.append(prediction)
        self.expired_predictions += len(expired)
        while self._labels:
            record_id, label = next(iter(self._labels.items()))
            if label.deadline > now:
                break
            self._drop_label(record_id)
        return expired

    @property
    def pending_predictions(self) -> int:
        return len(self._predictions)

    @property
    def pending_labels(self) -> int:
        """Labels that joined no prediction yet."""
        return self._unused_labels

    def counts(self) -> dict[str, int]:
        return {
            "joined": self.joined,
            "expired_predictions": self.expired_predictions,
            "expired_labels": self.expired_labels,
            "pending_predictions": self.pending_predictions,
            "pending_labels": self.pending_labels,
        }

    def _use(self, label: _Label, slot: str) -> None:
        if not label.joined_slots:
            self._unused_labels -= 1
        label.joined_slots.add(slot)
        self.joined += 1

    def _forget(self, key: tuple[str, str]) -> None:
        if self._predictions.pop(key, None) is None:
            return
        record_id, slot = key
        slots = self._slots_of[record_id]
        slots.discard(slot)
        if not slots:
            del self._slots_of[record_id]

    def _drop_label(self, record_id: str) -> None:
        label = self._labels.pop(record_id)
        if not label.joined_slots:
            self._unused_labels -= 1
            self.expired_labels += 1

    def _bound_predictions(self) -> None:
        while len(self._predictions) > self.max_pending:
            self._forget(next(iter(self._predictions)))
            self.expired_predictions += 1

    def _bound_labels(self) -> None:
        while len(self._labels) > self.max_pending:
            self._drop_label(next(iter(self._labels)))
