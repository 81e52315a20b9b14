"""Reproductions asked of the service, and their outcomes: kept in memory, the newest
`kept` of them (a restart forgets them; the outcome of each is also in the service's log).

A reproduction is `running` from the moment it is asked (queued or being run) until it ends
`identical`, `differs` or `failed` (always with a reason). One that has not ended by its
deadline is `failed` ("timed out"): nothing stays `running` forever, and the first outcome
is the one kept (a run that ends after its deadline changes nothing).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from services.training.domain.reproduction import IDENTICAL, Check, verdict

Status = Literal["running", "identical", "differs", "failed"]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Reproduction:
    id: str
    model: str
    version: int
    started_at: datetime
    deadline: datetime
    status: Status = "running"
    checks: tuple[Check, ...] = ()
    reason: str | None = None
    """Why it failed, or what differs (the verdict line)."""
    notes: tuple[str, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)
    """What was read and how long it took (feature and label events, seconds)."""
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status != "running"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "status": self.status,
            "checks": [check.as_json() for check in self.checks],
            "reason": self.reason,
            "notes": list(self.notes),
            "summary": self.summary,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


class Reproductions:
    """The newest `kept` reproductions by id, thread-safe."""

    def __init__(self, kept: int, timeout_s: float, clock: Clock = utc_now) -> None:
        self._kept = kept
        self._timeout = timedelta(seconds=timeout_s)
        self._clock = clock
        self._items: OrderedDict[str, Reproduction] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, model: str, version: int) -> Reproduction:
        now = self._clock()
        item = Reproduction(str(uuid.uuid4()), model, version, now, now + self._timeout)
        with self._lock:
            self._items[item.id] = item
            while len(self._items) > self._kept:
                self._items.popitem(last=False)
        return item

    def get(self, id: str) -> Reproduction | None:
        with self._lock:
            item = self._items.get(id)
            return None if item is None else self._expire(item)

    def recent(self, model: str | None = None, limit: int = 20) -> list[Reproduction]:
        """The newest first."""
        with self._lock:
            items = [self._expire(item) for item in reversed(self._items.values())]
        return [item for item in items if model is None or item.model == model][:limit]

    def is_over(self, id: str) -> bool:
        """Finished, timed out or forgotten: nothing more to run for it."""
        item = self.get(id)
        return item is None or item.finished

    def compared(
        self, id: str, checks: list[Check], notes: list[str], summary: dict[str, Any]
    ) -> Reproduction | None:
        line = verdict(checks)
        status: Status = "identical" if line == IDENTICAL else "differs"
        return self._finish(
            id,
            status=status,
            checks=tuple(checks),
            reason=None if status == "identical" else line,
            notes=tuple(notes),
            summary=summary,
        )

    def failed(
        self, id: str, reason: str, summary: dict[str, Any] | None = None
    ) -> Reproduction | None:
        return self._finish(id, status="failed", reason=reason, summary=summary or {})

    def _finish(self, id: str, **outcome: Any) -> Reproduction | None:
        """The outcome, unless the reproduction already has one (or was forgotten)."""
        with self._lock:
            item = self._items.get(id)
            if item is None:
                return None
            item = self._expire(item)
            if item.finished:
                return item
            item = replace(item, finished_at=self._clock(), **outcome)
            self._items[id] = item
            return item

    def _expire(self, item: Reproduction) -> Reproduction:
        """The item, failed when its deadline passed while it was running (lock held)."""
        now = self._clock()
        if item.finished or now < item.deadline:
            return item
        seconds = (item.deadline - item.started_at).total_seconds()
        item = replace(
            item,
            status="failed",
            reason=f"timed out: no outcome within {seconds:.0f}s "
            "(MLOPS_TRAINING_REPRODUCTION_TIMEOUT_S)",
            finished_at=item.deadline,
        )
        self._items[item.id] = item
        return item
