"""Lifecycle events: their ids, keys and the audit actions that record them."""

from __future__ import annotations

import uuid
from typing import Any, Final

from shared.events.envelope import Event, Payload

SOURCE: Final = "registry"
LIFECYCLE: Final = "models.lifecycle"
CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"

# A fixed namespace for uuid5: the same input event and kind always give the same id.
ID_NAMESPACE: Final = uuid.UUID("1d6a3c2e-7f0b-5e43-9a51-0c8f6a2b4d17")


class Action:
    """The audit trail's vocabulary."""

    REGISTERED: Final = "registered"
    PROMOTED: Final = "promoted"
    REJECTED: Final = "rejected"
    AWAITING_APPROVAL: Final = "awaiting_approval"
    APPROVED: Final = "approved"
    ALIAS_SET: Final = "alias_set"
    ROLLED_BACK: Final = "rolled_back"
    TAG_SET: Final = "tag_set"
    TAG_DELETED: Final = "tag_deleted"

    MOVES_ALIAS: Final = frozenset({PROMOTED, AWAITING_APPROVAL, APPROVED, ALIAS_SET, ROLLED_BACK})


def derived_id(input_event_id: str, kind: str) -> str:
    """The id of what the registry emits for an input event: uuid5(input id, event kind)."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{input_event_id}:{kind}"))


def lifecycle_key(model_name: str, version: int) -> str:
    """The compaction key of models.lifecycle."""
    return f"{model_name}:{version}"


def caused_event(payload: Payload, model_name: str, caused_by: Event[Any]) -> Event[Any]:
    """An event caused by `caused_by`, with the id derived from it and the payload's type."""
    return Event[type(payload)](  # type: ignore[misc]
        id=derived_id(caused_by.id, payload.event_type),
        source=SOURCE,
        type=payload.event_type,
        subject=model_name,
        correlationid=caused_by.correlationid or caused_by.id,
        causationid=caused_by.id,
        data=payload,
    )


def new_event(payload: Payload, model_name: str) -> Event[Any]:
    """An event of a person's decision (HTTP), starting its own correlation."""
    return Event.create(payload, source=SOURCE, subject=model_name)
