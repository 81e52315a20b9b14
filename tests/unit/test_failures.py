"""Which failures the consumer runner retries (transient), dead-letters at once
(deterministic) or retries a few times (unknown)."""

from __future__ import annotations

import json

import httpx
import psycopg
import pytest
import urllib3.exceptions
from confluent_kafka import KafkaError, KafkaException
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import exc as sql

from shared.failures import Failure, classify
from shared.kafka.producer import DeliveryError, DeliveryFailure


class _Limited(BaseModel):
    subject: str = Field(max_length=3)


def _validation_error() -> ValidationError:
    try:
        _Limited(subject="too long")
    except ValidationError as error:
        return error
    raise AssertionError("unreachable")


def _serialization_error() -> Exception:
    try:
        _Limited.model_construct(subject="\ud800").__pydantic_serializer__.to_json(
            _Limited.model_construct(subject="\ud800")
        )
    except Exception as error:
        return error
    raise AssertionError("a lone surrogate serialized")


def _sql(kind: type[sql.DBAPIError], orig: Exception) -> sql.DBAPIError:
    return kind("INSERT ...", {}, orig)


DETERMINISTIC = {
    "NUL byte refused by PostgreSQL": _sql(sql.DataError, psycopg.DataError("NUL (0x00)")),
    "psycopg DataError alone": psycopg.DataError("value too long"),
    "envelope limit": _validation_error(),
    "unserializable output": _serialization_error(),
    "lone surrogate encoded": UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates"),
    "not UTF-8": UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
    "not JSON": json.JSONDecodeError("Expecting value", "", 0),
    "too large for the broker": KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)),
    "refused by the broker at flush": DeliveryError(
        "1 writes failed",
        [DeliveryFailure("t", KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), b"{}")],
    ),
    "float overflow": OverflowError("int too large to convert to float"),
}

TRANSIENT = {
    "database down": _sql(sql.OperationalError, psycopg.OperationalError("connection refused")),
    "psycopg OperationalError alone": psycopg.OperationalError("server closed the connection"),
    "broker down": KafkaException(KafkaError(KafkaError._TRANSPORT)),
    "all brokers down": KafkaException(KafkaError(KafkaError._ALL_BROKERS_DOWN)),
    "write timed out": DeliveryError(
        "1 writes failed", [DeliveryFailure("t", KafkaError(KafkaError._MSG_TIMED_OUT), None)]
    ),
    "writes still queued": DeliveryError("3 writes unconfirmed after 30s", unconfirmed=3),
    "object store down": urllib3.exceptions.MaxRetryError(None, "/bucket", "refused"),  # type: ignore[arg-type]
    "object store connection": urllib3.exceptions.NewConnectionError(None, "refused"),  # type: ignore[arg-type]
    "a service's API down": httpx.ConnectError("connection refused"),
    "socket refused": ConnectionRefusedError(111, "refused"),
    "socket timeout": TimeoutError("timed out"),
}


@pytest.mark.parametrize("error", DETERMINISTIC.values(), ids=DETERMINISTIC.keys())
def test_data_errors_are_deterministic(error: Exception) -> None:
    assert classify(error) is Failure.DETERMINISTIC


@pytest.mark.parametrize("error", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_unavailable_dependencies_are_transient(error: Exception) -> None:
    assert classify(error) is Failure.TRANSIENT


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("a bug"),
        KeyError("x"),
        AssertionError(),
        _sql(sql.IntegrityError, psycopg.IntegrityError("duplicate key: a race, passes next try")),
    ],
    ids=repr,
)
def test_anything_else_is_unknown(error: Exception) -> None:
    assert classify(error) is Failure.UNKNOWN


def test_a_wrapped_error_keeps_the_kind_of_its_cause() -> None:
    try:
        try:
            raise psycopg.DataError("invalid byte sequence for encoding UTF8: 0x00")
        except psycopg.DataError as cause:
            raise RuntimeError("claiming the record id failed") from cause
    except RuntimeError as wrapped:
        assert classify(wrapped) is Failure.DETERMINISTIC


def test_a_delivery_error_mixing_refused_and_timed_out_writes_is_transient() -> None:
    """A batch is done again when any of its writes may still go through."""
    mixed = DeliveryError(
        "2 writes failed",
        [
            DeliveryFailure("t", KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), b"x"),
            DeliveryFailure("t", KafkaError(KafkaError._MSG_TIMED_OUT), b"y"),
        ],
    )
    assert classify(mixed) is Failure.TRANSIENT
