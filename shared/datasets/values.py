"""Reading raw values as the types a dataset spec declares. Pure functions, no I/O.

What each type accepts (anything else fails rule `type`, NaN and ±inf fail `not_finite`):

- numeric: JSON numbers (integers included), and strings holding a decimal number such as
  "52000.5" or "1e3" (CSV uploads send strings); coerced to float.
- integer: JSON integers, integral floats (3.0), and strings holding either ("3", "3.0");
  coerced to int. 3.5 fails `type`.
- boolean: true/false, the strings "true"/"false" in any case, and 0/1 (integers or the
  strings "0"/"1"); coerced to bool. Anything else, "yes" included, fails `type`.
- categorical: compared as strings: strings as they are, integers and integral floats as
  their integer digits (2 and 2.0 are "2"), booleans as "true"/"false"; coerced to that string.
- timestamp: ISO 8601 strings (a missing offset means UTC), or epoch seconds as a number or
  a numeric string; coerced to an ISO 8601 UTC string (a datetime for the event time).

Ranges: ``min``/``max`` are hard (``check_range`` raises, the record is rejected);
``expected_min``/``expected_max`` are soft (``outside_expected`` says so, the record is accepted
and the feature flagged). Validation and serving use these two functions, so both paths judge a
value the same way.

Non-finite values are the floats NaN and ±inf (including what the JSON tokens NaN, Infinity
and -Infinity decode to) and the strings "NaN", "inf", "Infinity" in any case and sign.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Final

from shared.datasets.spec import FeatureSpec, FeatureType
from shared.events.records import FieldValue

_DECIMAL = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")
_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")
_NON_FINITE_TEXT = re.compile(r"^\s*[+-]?(nan|inf|infinity)\s*$", re.IGNORECASE)
_TRUE: Final = frozenset({"true", "1"})
_FALSE: Final = frozenset({"false", "0"})


class Invalid(ValueError):
    """A value that does not fit: the rule it breaks and a message saying why."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


def is_non_finite(value: object) -> bool:
    """NaN or ±inf, as a float or as text."""
    if isinstance(value, float):
        return not math.isfinite(value)
    return isinstance(value, str) and _NON_FINITE_TEXT.match(value) is not None


def wire(value: FieldValue) -> FieldValue:
    """A value as strict JSON can carry it: non-finite floats become "NaN", "Infinity"..."""
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _non_finite(value: object) -> Invalid:
    return Invalid("not_finite", f"{wire(value)!r} is not a finite number")  # type: ignore[arg-type]


def _wrong_type(value: object, expected: str) -> Invalid:
    kind = "boolean" if isinstance(value, bool) else type(value).__name__
    shown = value if not isinstance(value, str) or len(value) <= 80 else value[:77] + "..."
    return Invalid("type", f"expected {expected}, got {kind} {shown!r}")


def as_number(value: object) -> float:
    if isinstance(value, bool):
        raise _wrong_type(value, "a number")
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            raise Invalid("range", "integer beyond the range of a float") from None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _non_finite(value)
        return value
    if isinstance(value, str):
        if is_non_finite(value):
            raise _non_finite(value)
        if _DECIMAL.match(value):
            number = float(value)
            if not math.isfinite(number):  # "1e999"
                raise _non_finite(number)
            return number
    raise _wrong_type(value, "a number")


def as_integer(value: object) -> int:
    if isinstance(value, bool):
        raise _wrong_type(value, "an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER.match(value):
        return int(value)
    if isinstance(value, float | str):
        try:
            number = as_number(value)
        except Invalid as error:
            if error.rule == "type":
                raise _wrong_type(value, "an integer") from None
            raise
        if number.is_integer():
            return int(number)
    raise _wrong_type(value, "an integer")


def as_boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    if is_non_finite(value):
        raise _non_finite(value)
    raise _wrong_type(value, "a boolean (true/false, 0/1)")


def category_text(value: object) -> str:
    """The string a value is compared as against a categorical feature's categories."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _non_finite(value)
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value
    raise _wrong_type(value, "a category")


def as_category(value: object, categories: list[str] | None) -> str:
    text = category_text(value)
    if categories is None or text in categories:
        return text
    if is_non_finite(text):
        raise _non_finite(text)
    allowed = ", ".join(categories[:20]) + (", ..." if len(categories) > 20 else "")
    raise Invalid("category", f"{text!r} is not one of: {allowed}")


def as_timestamp(value: object) -> datetime:
    if isinstance(value, bool):
        raise _wrong_type(value, "an ISO 8601 time or epoch seconds")
    if isinstance(value, str) and not _DECIMAL.match(value):
        if is_non_finite(value):
            raise _non_finite(value)
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _wrong_type(value, "an ISO 8601 time or epoch seconds") from None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if isinstance(value, int | float | str):
        seconds = as_number(value)
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise Invalid("type", f"{seconds!r} epoch seconds is out of range") from None
    raise _wrong_type(value, "an ISO 8601 time or epoch seconds")


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
        return as_timestamp(value).isoformat()
    raise AssertionError(f"unhandled feature type {kind}")  # pragma: no cover


def check_range(value: float | int, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise Invalid("range", f"{value} is below the minimum {minimum:g}")
    if maximum is not None and value > maximum:
        raise Invalid("range", f"{value} is above the maximum {maximum:g}")


def outside_expected(feature: FeatureSpec, value: object) -> bool:
    """Whether a present, readable number lies outside the feature's expected range (bounds
    inclusive). False for a missing value, a non-numeric feature, a feature without an expected
    range, and a value that does not read as a finite number: the hard rules judge those."""
    if feature.type not in (FeatureType.NUMERIC, FeatureType.INTEGER):
        return False
    low, high = feature.expected_min, feature.expected_max
    if value is None or (low is None and high is None):
        return False
    try:
        number = as_number(value)
    except Invalid:
        return False
    return (low is not None and number < low) or (high is not None and number > high)
