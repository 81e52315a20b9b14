"""Reading request values as the types a dataset spec declares. Pure functions, no I/O.

The same acceptance as validation's (services/validation/domain/values.py), so a record that
validation accepts is read the same way here:

- numeric: JSON numbers and decimal strings ("52000.5"); coerced to float.
- integer: integers, integral floats (3.0) and integer strings ("3"); coerced to int.
- boolean: true/false, "true"/"false" in any case, 0/1; coerced to bool.
- categorical: compared as strings; integers and integral floats as their digits (2.0 is "2").
- timestamp: ISO 8601 strings (no offset means UTC) or epoch seconds; coerced to ISO 8601 UTC.

NaN and ±inf break rule `not_finite`, a value of the wrong kind rule `type`.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from shared.datasets.spec import FeatureType
from shared.events.records import FieldValue

_DECIMAL = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")
_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")
_NON_FINITE_TEXT = re.compile(r"^\s*[+-]?(nan|inf|infinity)\s*$", re.IGNORECASE)


class Invalid(ValueError):
    """A value that does not fit: the rule it breaks and why."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


def _shown(value: object) -> str:
    if isinstance(value, str) and len(value) > 80:
        return repr(value[:77] + "...")
    return repr(value)


def _wrong_type(value: object, expected: str) -> Invalid:
    kind = "boolean" if isinstance(value, bool) else type(value).__name__
    return Invalid("type", f"expected {expected}, got {kind} {_shown(value)}")


def _non_finite(value: object) -> Invalid:
    return Invalid("not_finite", f"{_shown(value)} is not a finite number")


def _is_non_finite(value: object) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    return isinstance(value, str) and _NON_FINITE_TEXT.match(value) is not None


def as_number(value: object) -> float:
    if isinstance(value, bool):
        raise _wrong_type(value, "a number")
    if isinstance(value, int | float | str) and _is_non_finite(value):
        raise _non_finite(value)
    readable = isinstance(value, int | float) or (
        isinstance(value, str) and _DECIMAL.match(value) is not None
    )
    if not readable:
        raise _wrong_type(value, "a number")
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        raise _non_finite(value)
    return number


def as_integer(value: object) -> int:
    if isinstance(value, bool):
        raise _wrong_type(value, "an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER.match(value):
        return int(value)
    number = as_number(value)
    if not number.is_integer():
        raise _wrong_type(value, "an integer")
    return int(number)


def as_boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    if _is_non_finite(value):
        raise _non_finite(value)
    raise _wrong_type(value, "a boolean (true/false, 0/1)")


def as_category(value: object, categories: list[str] | None) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _non_finite(value)
        text = str(int(value)) if value.is_integer() else repr(value)
    elif isinstance(value, str):
        text = value
    else:
        raise _wrong_type(value, "a category")
    if categories is not None and text not in categories:
        allowed = ", ".join(categories[:20]) + (", ..." if len(categories) > 20 else "")
        raise Invalid("category", f"{_shown(text)} is not one of: {allowed}")
    return text


def as_timestamp(value: object) -> str:
    if isinstance(value, str) and not _DECIMAL.match(value):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _wrong_type(value, "an ISO 8601 time or epoch seconds") from None
        moment = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        return moment.isoformat()
    seconds = as_number(value)
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        raise Invalid("type", f"{seconds!r} epoch seconds is out of range") from None


def coerce(kind: FeatureType, value: object, categories: list[str] | None = None) -> FieldValue:
    """A non-null value as its declared type; raises Invalid with the rule it breaks."""
    if kind == FeatureType.NUMERIC:
        return as_number(value)
    if kind == FeatureType.INTEGER:
        return as_integer(value)
    if kind == FeatureType.BOOLEAN:
        return as_boolean(value)
    if kind == FeatureType.CATEGORICAL:
        return as_category(value, categories)
    if kind == FeatureType.TIMESTAMP:
        return as_timestamp(value)
    raise AssertionError(f"unhandled feature type {kind}")  # pragma: no cover


def check_range(value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise Invalid("range", f"{value:g} is below the minimum {minimum:g}")
    if maximum is not None and value > maximum:
        raise Invalid("range", f"{value:g} is above the maximum {maximum:g}")
