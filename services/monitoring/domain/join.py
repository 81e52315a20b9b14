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
from collections.abc import Callable
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


@dataclass
class JoinPart(Generic[P]):
    """What waits in the join for some records (a checkpoint's share of it)."""

    predictions: list[tuple[tuple[str, str], float, P]] = field(default_factory=list)
    labels: list[tuple[str, _Label]] = field(default_factory=list)


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

    def export(self, owned: Callable[[str], bool]) -> JoinPart[P]:
        """The waiting predictions and labels of the records `owned` says are in a part."""
        return JoinPart(
            predictions=[
                (key, deadline, prediction)
                for key, (deadline, prediction) in self._predictions.items()
                if owned(key[0])
            ],
            labels=[(record, label) for record, label in self._labels.items() if owned(record)],
        )

    def forget(self, owned: Callable[[str], bool]) -> None:
        """Drops what waits for the records `owned` says are in a part (not counted as
        expired: another owner keeps them)."""
        for key in [key for key in self._predictions if owned(key[0])]:
            self._forget(key)
        for record in [record for record in self._labels if owned(record)]:
            if not self._labels.pop(record).joined_slots:
                self._unused_labels -= 1

    def restore(self, part: JoinPart[P]) -> None:
        """Takes back a part's waiting predictions and labels, kept in deadline order (the
        order expiry reads them in)."""
        for key, deadline, prediction in part.predictions:
            self._forget(key)
            self._predictions[key] = (deadline, prediction)
            self._slots_of.setdefault(key[0], set()).add(key[1])
        for record, label in part.labels:
            if record in self._labels and not self._labels.pop(record).joined_slots:
                self._unused_labels -= 1
            self._labels[record] = label
            self._unused_labels += 0 if label.joined_slots else 1
        self._predictions = OrderedDict(
            sorted(self._predictions.items(), key=lambda item: item[1][0])
        )
        self._labels = OrderedDict(sorted(self._labels.items(), key=lambda item: item[1].deadline))

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
