"""What the registry consumes and emits: models.trained in; for each ModelTrained,
ModelRegistered then ModelPromoted (champion, or challenger awaiting approval) or
ModelRejected out, on models.lifecycle keyed "<model_name>:<version>". A TrainingFailed on
models.trained (a run that ended without a model) registers nothing: it is logged and left
alone, not dead-lettered.

For lineage it also reads monitoring.drift (each DriftDetected is kept, with its evidence and
trace id) and models.lifecycle (each ModelDeployed serving announces is kept; the registry's
own lifecycle events it reads there are left alone).

HTTP changes (aliases, rollback, approval) publish to models.lifecycle too: PUBLISHES.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

from services.registry.domain.events import LIFECYCLE, lifecycle_key
from services.registry.lifecycle import Registry
from shared.events.envelope import Event
from shared.events.models import (
    DriftDetected,
    ModelDeployed,
    ModelPromoted,
    ModelRegistered,
    ModelRejected,
    ModelRolledBack,
    ModelTrained,
    TrainingFailed,
)
from shared.kafka.consumer import Emit, Handler, MessageInfo
from shared.kafka.routes import Route

CONSUMES: Final = "models.trained"
DRIFTS: Final = "monitoring.drift"
LIFECYCLE_EVENTS: Final = (
    ModelRegistered,
    ModelPromoted,
    ModelRejected,
    ModelRolledBack,
    ModelDeployed,
)
PUBLISHES: Final = (LIFECYCLE,)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deps:
    registry: Registry


def register_model(deps: Deps) -> Handler:
    def handle(event: Event[Any], info: MessageInfo) -> list[Emit]:
        if isinstance(event.data, TrainingFailed):
            failed = event.data
            log.info(
                "training of %s %s (command %s): %s; nothing to register",
                failed.model_name, failed.outcome, failed.command_id, failed.reason,
            )  # fmt: skip
            return []
        return [
            Emit(
                LIFECYCLE, emitted, key=lifecycle_key(emitted.data.model_name, emitted.data.version)
            )
            for emitted in deps.registry.register_trained(event)
        ]

    return handle


def keep_drift(deps: Deps) -> Handler:
    def handle(event: Event[Any], info: MessageInfo) -> None:
        deps.registry.record_drift(event)

    return handle


def keep_deployment(deps: Deps) -> Handler:
    def handle(event: Event[Any], info: MessageInfo) -> None:
        if isinstance(event.data, ModelDeployed):
            deps.registry.record_deployment(event)

    return handle


def routes(deps: Deps) -> list[Route]:
    return [
        Route(CONSUMES, (ModelTrained, TrainingFailed), register_model(deps), emits=(LIFECYCLE,)),
        Route(DRIFTS, (DriftDetected,), keep_drift(deps)),
        Route(LIFECYCLE, LIFECYCLE_EVENTS, keep_deployment(deps)),
    ]
