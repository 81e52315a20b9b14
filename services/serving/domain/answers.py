"""What /predict answers: one entry per record, and field errors in FastAPI's own shape.

    {"request_id": "...", "model": "loans", "version": 3,
     "predictions": [{"prediction": 1, "probabilities": {"0": 0.13, "1": 0.87},
                      "model": "loans", "version": 3, "request_id": "...",
                      "record_id": "app-7-0", "entity": "applicant-12"}]}

Every record of one request is scored by the same model version. Errors use the `detail`
list FastAPI answers for a malformed body, so a client reads one shape for both:

    {"detail": [{"loc": ["body", "records", 0, "age"], "msg": "95 is above the maximum 80",
                 "type": "range", "input": 95}]}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.serving.domain.served import Scored, ServedModel
from shared.events.records import FieldError, FieldValue


@dataclass(frozen=True, slots=True)
class Answer:
    """One record's prediction, with what identifies the record."""

    scored: Scored
    record_id: str | None
    entity: str | None


def prediction_entry(answer: Answer, served: ServedModel, request_id: str) -> dict[str, Any]:
    return {
        "prediction": answer.scored.prediction,
        "probabilities": answer.scored.probabilities,
        "model": served.name,
        "version": served.version,
        "request_id": request_id,
        "record_id": answer.record_id,
        "entity": answer.entity,
    }


def prediction_body(
    request_id: str, served: ServedModel, answers: Sequence[Answer]
) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "model": served.name,
        "version": served.version,
        "predictions": [prediction_entry(answer, served, request_id) for answer in answers],
    }


def _json_safe(value: FieldValue) -> FieldValue:
    """NaN and infinities have no strict-JSON form: they are shown as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def error_entry(where: str, index: int, error: FieldError) -> dict[str, Any]:
    location: list[str | int] = ["body", where, index]
    if error.field is not None:
        location.append(error.field)
    return {
        "loc": location,
        "msg": error.message,
        "type": error.rule,
        "input": _json_safe(error.value),
    }


def errors_body(where: str, errors: Sequence[tuple[int, Sequence[FieldError]]]) -> dict[str, Any]:
    """`errors`: (record index, its field errors) for each invalid record."""
    return {
        "detail": [error_entry(where, index, error) for index, found in errors for error in found]
    }
