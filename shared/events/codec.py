"""Turning Kafka message values into typed events, with a reason for every refusal."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from shared.events.envelope import Event, Payload


class UndecodableMessage(Exception):
    """A message value that can never become a valid event; it belongs on the dead-letter topic."""

    reason = "undecodable"


class PayloadTooLarge(UndecodableMessage):
    reason = "payload_too_large"


class InvalidJson(UndecodableMessage):
    reason = "invalid_json"


class SchemaViolation(UndecodableMessage):
    reason = "schema_violation"


class UnexpectedEventType(UndecodableMessage):
    reason = "unexpected_event_type"


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False)[:10]:
        location = ".".join(str(part) for part in item["loc"]) or "<root>"
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


class EventDecoder:
    """Decodes the JSON envelope of the payload types a subscription accepts."""

    def __init__(self, payload_types: Iterable[type[Payload]], max_bytes: int) -> None:
        self._models: dict[str, type[Event[Any]]] = {
            payload.event_type: Event[payload] for payload in payload_types
        }
        if not self._models:
            raise ValueError("an EventDecoder needs at least one payload type")
        self._only = next(iter(self._models.values())) if len(self._models) == 1 else None
        self.max_bytes = max_bytes

    def decode(self, value: bytes | None, info: object = None) -> Event[Any]:
        if value is None:
            raise SchemaViolation("empty message value (tombstone)")
        if len(value) > self.max_bytes:
            raise PayloadTooLarge(f"{len(value)} bytes exceeds the limit of {self.max_bytes}")
        if self._only is not None:
            return self._validate_json(self._only, value)
        try:
            document = json.loads(value)
        except (ValueError, UnicodeDecodeError) as error:
            raise InvalidJson(str(error)) from None
        event_type = document.get("type") if isinstance(document, dict) else None
        model = self._models.get(event_type) if isinstance(event_type, str) else None
        if model is None:
            expected = ", ".join(sorted(self._models))
            raise UnexpectedEventType(f"type {event_type!r} is not one of: {expected}")
        try:
            return model.model_validate(document)
        except ValidationError as error:
            raise SchemaViolation(_describe(error)) from None

    @staticmethod
    def _validate_json(model: type[Event[Any]], value: bytes) -> Event[Any]:
        try:
            return model.model_validate_json(value)
        except ValidationError as error:
            if any(item["type"] == "json_invalid" for item in error.errors()):
                raise InvalidJson(_describe(error)) from None
            raise SchemaViolation(_describe(error)) from None
