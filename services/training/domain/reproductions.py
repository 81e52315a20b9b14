"""A reproduction asked of the service and its outcome (adapters.reproductions keeps them in
SQL, where every replica reads them).

A reproduction is `running` from the moment it is asked (queued or being run) until it ends
`identical`, `differs` or `failed` (always with a reason). One that has not ended by its
deadline is `failed` ("timed out"), and so is one whose replica stopped sending heartbeats
(it died with the reproduction queued or running): nothing stays `running` forever, and the
first outcome is the one kept (a run that ends after its deadline changes nothing).
"""

from __future__ import annotations

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
    replica: str = ""
    """The replica whose worker queued it and runs it."""
    heartbeat_at: datetime | None = None
    """When that replica last said it still has it."""

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


def outcome_of(checks: list[Check]) -> tuple[Status, str | None]:
    """`identical`, or `differs` with the verdict line as its reason."""
    line = verdict(checks)
    return ("identical", None) if line == IDENTICAL else ("differs", line)


def settled(item: Reproduction, now: datetime, lease: timedelta) -> Reproduction:
    """The item as it stands at `now`: failed once its deadline passed, or once its replica
    sent no heartbeat for a whole lease; unchanged otherwise."""
    if item.finished:
        return item
    if now >= item.deadline:
        seconds = (item.deadline - item.started_at).total_seconds()
        return replace(
            item,
            status="failed",
            reason=f"timed out: no outcome within {seconds:.0f}s "
            "(MLOPS_TRAINING_REPRODUCTION_TIMEOUT_S)",
            finished_at=item.deadline,
        )
    beat = item.heartbeat_at or item.started_at
    if now - beat > lease:
        return replace(
            item,
            status="failed",
            reason=f"replica {item.replica} stopped: no heartbeat since {beat.isoformat()} "
            f"(more than {lease.total_seconds():.0f}s, MLOPS_TRAINING_REPRODUCTION_LEASE_S); "
            "ask again",
            finished_at=now,
        )
    return item
