"""Every event type of the platform, by its wire name."""

from __future__ import annotations

from shared.events.envelope import Payload
from shared.events.models import (
    DriftDetected,
    ModelDeployed,
    ModelPromoted,
    ModelRegistered,
    ModelRejected,
    ModelRolledBack,
    ModelTrained,
    PredictionServed,
    TrainingFailed,
    TrainModel,
)
from shared.events.records import (
    DatasetSpecRegistered,
    FeaturesComputed,
    LabelRecorded,
    RecordIngested,
    RecordRejected,
    RecordValidated,
)

EVENT_TYPES: dict[str, type[Payload]] = {
    payload.event_type: payload
    for payload in (
        RecordIngested,
        RecordValidated,
        RecordRejected,
        LabelRecorded,
        FeaturesComputed,
        DatasetSpecRegistered,
        TrainModel,
        ModelTrained,
        TrainingFailed,
        ModelRegistered,
        ModelPromoted,
        ModelRejected,
        ModelRolledBack,
        ModelDeployed,
        PredictionServed,
        DriftDetected,
    )
}


def payload_type(event_type: str) -> type[Payload]:
    try:
        return EVENT_TYPES[event_type]
    except KeyError:
        known = ", ".join(sorted(EVENT_TYPES))
        raise KeyError(f"unknown event type {event_type!r}; known: {known}") from None
