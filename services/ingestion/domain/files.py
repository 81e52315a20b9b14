"""Uploaded files: telling CSV from Parquet, and turning their cells into JSON scalars.

CSV has no types: every cell is text. A cell becomes a number or a boolean only when the spec
declares that type for its column and the text is exactly such a literal ("42", "-1.5e3",
"true"); anything else stays the text it was, so validation sees the value as written and can
say why it refuses it. Empty cells and pandas' NA spellings ("", "NA", "null", "NaN", ...)
become null. Parquet cells keep their types; NaN becomes null, timestamps and dates become
ISO-8601 strings, and a whole float in an integer column (pandas' NaN upcast) becomes an int.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any

from services.ingestion.domain.batches import Row, Scalar
from services.ingestion.domain.errors import UnsupportedFormat
from services.ingestion.domain.specs import media_type
from shared.datasets.spec import DatasetSpec, FeatureType

FORMATS = ("csv", "parquet")
CSV_MEDIA_TYPES = frozenset({"text/csv", "application/csv", "text/plain"})
PARQUET_MEDIA_TYPES = frozenset(
    {"application/vnd.apache.parquet", "application/x-parquet", "application/parquet"}
)
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
PARQUET_MAGIC = b"PAR1"

_INTEGER = re.compile(r"^[+-]?\d+$")
_WHOLE = re.compile(r"^[+-]?\d+\.0*$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_BOOLEANS = {"true": True, "false": False}


def detect_format(
    *,
    requested: str | None,
    filename: str | None,
    content_type: str | None,
    head: bytes,
) -> str:
    """csv or parquet: from ?format=, then the file name, then the content type, then the
    Parquet magic bytes; UnsupportedFormat says how to name it otherwise."""
    if requested:
        wanted = requested.strip().lower()
        if wanted not in FORMATS:
            raise UnsupportedFormat(
                f"format must be one of {', '.join(FORMATS)}, not {requested!r}"
            )
        return wanted
    if filename:
        by_suffix = SUFFIXES.get(PurePosixPath(filename).suffix.lower())
        if by_suffix:
            return by_suffix
    media = media_type(content_type)
    if media in CSV_MEDIA_TYPES:
        return "csv"
    if media in PARQUET_MEDIA_TYPES:
        return "parquet"
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    raise UnsupportedFormat(
        f"cannot tell the file's format (content type {media or 'none'!r}"
        + (f", file name {filename!r}" if filename else "")
        + "): send it as text/csv or application/vnd.apache.parquet, with a .csv or .parquet "
        "file name, or add ?format=csv|parquet"
    )


def column_types(spec: DatasetSpec) -> dict[str, FeatureType]:
    """The declared type of every typed column: the features, and the label if any."""
    types = {feature.name: feature.type for feature in spec.features}
    if spec.label is not None:
        types[spec.label.name] = spec.label.type
    return types


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def text_cell(value: Any, declared: FeatureType | None) -> Scalar:
    """A CSV cell (text, or NaN for an NA spelling) as the JSON scalar a client would send."""
    if _is_missing(value):
        return None
    text = str(value)
    candidate = text.strip()
    if declared == FeatureType.INTEGER:
        if _INTEGER.match(candidate):
            return int(candidate)
        if _WHOLE.match(candidate):
            return int(candidate.split(".", 1)[0])
    elif declared == FeatureType.NUMERIC:
        if _INTEGER.match(candidate):
            return int(candidate)
        if _NUMBER.match(candidate):
            return float(candidate)
    elif declared == FeatureType.BOOLEAN and candidate.lower() in _BOOLEANS:
        return _BOOLEANS[candidate.lower()]
    return text


def typed_cell(value: Any, declared: FeatureType | None) -> Scalar:
    """A Parquet cell (a Python value from Arrow) as a JSON scalar."""
    if _is_missing(value):
        return None
    if isinstance(value, bool | str):
        return value
    if isinstance(value, Decimal):
        value = int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float):
        if math.isinf(value):
            # JSON has no infinity; as text it stays visible (and refused) downstream.
            return "inf" if value > 0 else "-inf"
        if declared == FeatureType.INTEGER and value.is_integer():
            return int(value)
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def convert_text_row(row: Mapping[str, Any], types: Mapping[str, FeatureType]) -> Row:
    return {column: text_cell(value, types.get(column)) for column, value in row.items()}


def convert_typed_row(row: Mapping[str, Any], types: Mapping[str, FeatureType]) -> Row:
    return {column: typed_cell(value, types.get(column)) for column, value in row.items()}
