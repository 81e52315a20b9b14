"""Why ingestion refuses a request: each refusal carries its HTTP status, a reason (the label of
the refusal counter) and a message for the client, plus any details worth returning."""

from __future__ import annotations

from typing import Any


class Refusal(Exception):
    """A request ingestion will not acknowledge; nothing of it was accepted unless `extra`
    says how much was (a file that failed half-way)."""

    status: int = 422
    reason: str = "refused"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"detail": self.message, "reason": self.reason, **self.extra}


class MalformedBody(Refusal):
    """Not parseable at all: broken JSON or YAML."""

    status, reason = 400, "malformed_body"


class InvalidNumber(Refusal):
    """Valid JSON, but a number no service can hold: past float range or Python's digit limit."""

    reason = "invalid_number"


class NotABatch(Refusal):
    """Parseable, but not the expected shape ({"records": [...]}, {"labels": [...]})."""

    reason = "not_a_batch"


class EmptyBatch(Refusal):
    reason = "empty_batch"


class InvalidRow(Refusal):
    """A row that is not an object, a value that is not a scalar, a row too large to publish."""

    reason = "invalid_row"


class InvalidLabel(Refusal):
    reason = "invalid_label"


class InvalidSpec(Refusal):
    reason = "invalid_spec"


class UnknownDataset(Refusal):
    status, reason = 404, "unknown_dataset"

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"unknown dataset {name!r}; known datasets: {', '.join(known) or 'none'}", known=known
        )


class UnknownVersion(Refusal):
    status, reason = 404, "unknown_version"


class NoLabelDeclared(Refusal):
    reason = "no_label"


class UnsupportedFormat(Refusal):
    status, reason = 415, "unsupported_format"


class UnreadableFile(Refusal):
    reason = "unreadable_file"


class BrokerUnavailable(Refusal):
    """Kafka did not answer or did not confirm a write: nothing (more) is acknowledged."""

    status, reason = 503, "broker_unavailable"


class RecordTooLarge(Exception):
    """An encoded event over the size consumers accept; `position` is its index in the batch."""

    def __init__(self, position: int, size: int, limit: int) -> None:
        super().__init__(f"{size} bytes encoded, over the limit of {limit} bytes per record")
        self.position, self.size, self.limit = position, size, limit
