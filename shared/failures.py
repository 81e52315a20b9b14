"""Which failures are worth retrying: the one place every consumer loop asks.

- DETERMINISTIC: the same input fails the same way every time (bad data, a value a store
  refuses, an output too large or unserializable, a schema limit). Retrying only delays the
  messages behind it: the message is dead-lettered (or rejected) at once.
- TRANSIENT: a dependency is unavailable (broker, database, object store, another service's
  HTTP API). The data is fine: it is retried with backoff, and the consumer waits instead of
  dead-lettering good data.
- UNKNOWN: anything else, most likely a bug; retried a few times, then dead-lettered.

An error may also say its own kind in a `kind` attribute (DeliveryError does). The chain of causes (`raise ... from ...`) is followed, so a wrapped error keeps its kind.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Final

import httpx
import psycopg
import urllib3.exceptions
from confluent_kafka import KafkaError, KafkaException
from minio.error import ServerError
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError
from sqlalchemy import exc as sql


class Failure(StrEnum):
    DETERMINISTIC = "deterministic"
    TRANSIENT = "transient"
    UNKNOWN = "unknown"


class DeterministicError(Exception):
    """Raised by platform code for a failure that no retry can fix."""


class TransientError(Exception):
    """Raised by platform code for a dependency that should come back."""


_DETERMINISTIC_TYPES: Final = (
    DeterministicError,
    ValidationError,
    PydanticSerializationError,
    UnicodeError,
    json.JSONDecodeError,
    OverflowError,
    RecursionError,
    sql.DataError,
    psycopg.DataError,
)
# Not here: IntegrityError. A unique key two consumers raced for passes on the next try (it
# finds the row), so it stays UNKNOWN: retried a few times, then dead-lettered.

TRANSIENT_EXCEPTIONS: Final[tuple[type[BaseException], ...]] = (
    TransientError,
    ConnectionError,
    TimeoutError,
    sql.OperationalError,
    sql.InterfaceError,
    sql.DisconnectionError,
    sql.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    urllib3.exceptions.MaxRetryError,
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.TimeoutError,
    httpx.TransportError,
    ServerError,
)
"""What a dependency that should come back raises (retried by the consumer loops; HTTP
answers it with 503)."""

DETERMINISTIC_KAFKA_CODES: Final = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_RECORD,
        KafkaError._BAD_MSG,
        KafkaError._INVALID_ARG,
    }
)

TRANSIENT_KAFKA_CODES: Final = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TIMED_OUT_QUEUE,
        KafkaError._QUEUE_FULL,
        KafkaError._RESOLVE,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.BROKER_NOT_AVAILABLE,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)


def classify_kafka_error(error: KafkaError) -> Failure:
    if error.code() in DETERMINISTIC_KAFKA_CODES:
        return Failure.DETERMINISTIC
    if error.code() in TRANSIENT_KAFKA_CODES or error.retriable():
        return Failure.TRANSIENT
    return Failure.UNKNOWN


def _classify_one(error: BaseException) -> Failure:
    declared = getattr(error, "kind", None)  # e.g. DeliveryError says what its writes met
    if isinstance(declared, Failure):
        return declared
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        return classify_kafka_error(error.args[0])
    if isinstance(error, _DETERMINISTIC_TYPES):
        return Failure.DETERMINISTIC
    if isinstance(error, TRANSIENT_EXCEPTIONS):
        return Failure.TRANSIENT
    return Failure.UNKNOWN


def classify(error: BaseException) -> Failure:
    """The kind of `error`, or of the first error in its chain of causes that has one."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = _classify_one(current)
        if kind is not Failure.UNKNOWN:
            return kind
        current = current.__cause__ or current.__context__
    return Failure.UNKNOWN
