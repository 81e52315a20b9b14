"""The retrains monitoring asked for, and the steps of their outcomes (pure records)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Retrain:
    """A retrain monitoring asked for (its TrainModel), awaiting its outcome."""

    command_id: str
    model_name: str
    dataset: str
    drift_id: str


@dataclass(frozen=True)
class RetrainResult:
    """One step of a retrain's outcome: trained, failed, refused, registered, promoted,
    rejected. `summary` is what /drift and the decision log show next to the trigger."""

    result_id: str
    command_id: str
    model_name: str
    drift_id: str
    outcome: str
    at: float
    version: int | None = None
    detail: str = ""

    @property
    def summary(self) -> str:
        version = f" v{self.version}" if self.version is not None else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.outcome}{version}{detail}"
