"""Request bodies into rows and labels: only the shape is checked here, never a spec's rules.

A record batch is ``{"records": [{column: scalar, ...}, ...]}``; a label batch is
``{"labels": [{"record_id": "...", "label": scalar, "labelled_at": "ISO time"?, "entity": ...?}]}``.
Every refusal names the row (its index in the list) and, where it applies, the column.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.ingestion.domain.errors import (
    EmptyBatch,
    InvalidLabel,
    InvalidNumber,
    InvalidRow,
    MalformedBody,
    NotABatch,
    Refusal,
)
from shared.text import shown

Scalar = str | int | float | bool | None
Row = dict[str, Scalar]
MAX_LISTED_ERRORS = 20
MAX_ENTITY_CHARS = 1000
MAX_RECORD_ID_CHARS = 1000
MAX_INTEGER_DIGITS = 4300  # Python's own limit on int(str); far past float range already


def json_kind(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def parse_json(body: bytes) -> Any:
    """The JSON document of a body; MalformedBody carries a reason a client can act on,
    InvalidNumber names a number no platform service could hold.

    NaN and Infinity (as Python's and JavaScript's serializers write them) are let through:
    they are values, and validation rejects them with the rule not_finite and a reason.
    """
    if not body.strip():
        raise MalformedBody("malformed JSON: the body is empty")
    try:
        return json.loads(body, parse_int=_integer, parse_float=_finite_float)
    except json.JSONDecodeError as error:
        raise MalformedBody(f"malformed JSON: {_explained(error)}") from None
    except UnicodeDecodeError as error:
        raise MalformedBody(f"malformed JSON: the body is not UTF-8 text ({error})") from None
    except RecursionError:
        raise MalformedBody("malformed JSON: nested too deeply") from None


def _explained(error: json.JSONDecodeError) -> str:
    where = f"line {error.lineno} column {error.colno} (char {error.pos})"
    if error.pos >= len(error.doc.rstrip()):
        return f"the body ends before the JSON document does, at {where}"
    if error.msg == "Expecting value":
        return f"a value is missing or is not JSON at {where} (text needs double quotes)"
    return f"{error.msg} at {where}"


def _integer(digits: str) -> int:
    count = len(digits.lstrip("+-"))
    if count > MAX_INTEGER_DIGITS:
        raise InvalidNumber(
            f"an integer with {count} digits, more than {MAX_INTEGER_DIGITS}: "
            "send a number within float range (about 1.8e308) or a string"
        )
    return int(digits)


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        shown = text if len(text) <= 40 else text[:39] + "…"
        raise InvalidNumber(
            f"the number {shown} is out of float range (beyond ±1.8e308): "
            "send a smaller number or a string"
        )
    return value


def _batch_list(document: Any, field: str, example: str) -> list[Any]:
    shape = f'a JSON object {{"{field}": [{example}, ...]}}'
    if not isinstance(document, dict):
        raise NotABatch(f"the body must be {shape}, not a JSON {json_kind(document)}")
    if field not in document:
        raise NotABatch(f'the body has no "{field}" field; it must be {shape}')
    unexpected = sorted(set(document) - {field})
    if unexpected:
        listed = [shown(key, 60) for key in unexpected[:5]]
        more = f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""
        raise NotABatch(f"unexpected fields {listed}{more}; the body must be {shape}")
    items = document[field]
    if not isinstance(items, list):
        raise NotABatch(f'"{field}" must be a list, not a JSON {json_kind(items)}')
    if not items:
        raise EmptyBatch(f'"{field}" is empty: nothing to ingest')
    return items


class _Errors:
    """Collects the first problems of a batch so that one answer lists several of them."""

    def __init__(self, refusal: type[Refusal], suffix: str = "; nothing was ingested") -> None:
        self.refusal, self.suffix = refusal, suffix
        self.items: list[dict[str, Any]] = []
        self.count = 0

    def add(self, index: int, column: str | None, message: str) -> None:
        self.count += 1
        if len(self.items) < MAX_LISTED_ERRORS:
            self.items.append({"index": index, "column": column, "message": message})

    def raise_any(self) -> None:
        if not self.count:
            return
        first = self.items[0]["message"]
        others = self.count - 1
        more = f" (and {others} more problem{'s' if others > 1 else ''})" if others else ""
        raise self.refusal(
            f"{first}{more}{self.suffix}",
            errors=self.items,
            error_count=self.count,
        )


def parse_record_batch(document: Any) -> list[Row]:
    """The rows of a record batch, as received; refuses non-objects and non-scalar values."""
    rows = _batch_list(document, "records", "{column: value, ...}")
    errors = _Errors(InvalidRow)
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            errors.add(index, None, f"records[{index}] is a JSON {json_kind(row)}, not an object")
            continue
        for column, value in row.items():
            if not is_scalar(value):
                errors.add(
                    index,
                    shown(column, 100),
                    f"records[{index}].{shown(column, 100)} is a JSON {json_kind(value)}, not a scalar "
                    "(string, number, boolean or null)",
                )
    errors.raise_any()
    return rows


def check_entity_keys(
    rows: list[Row], entity_key: str, *, label: str = "records", offset: int = 0
) -> None:
    """Refuses an entity value too long to be the key of a RecordIngested event. Rows are
    named ``label[offset + i]``; a file's rows (offset given) are a part of a larger whole."""
    errors = _Errors(InvalidRow, "; nothing was ingested" if label == "records" else "")
    for position, row in enumerate(rows):
        index = offset + position
        value = row.get(entity_key)
        if value is not None and len(str(value)) > MAX_ENTITY_CHARS:
            errors.add(
                index,
                entity_key,
                f"{label}[{index}].{entity_key}: the entity key is {len(str(value))} characters "
                f"long, over {MAX_ENTITY_CHARS}",
            )
    errors.raise_any()


@dataclass(frozen=True)
class LabelInput:
    """One piece of ground truth as sent: for which record, the label, when it became known."""

    record_id: str
    label: Scalar
    labelled_at: datetime | None = None
    entity: str | None = None


_LABEL_FIELDS = {"record_id", "label", "labelled_at", "entity"}


def parse_time(text: str) -> datetime:
    """An ISO-8601 time; one without a UTC offset is taken as UTC."""
    parsed = datetime.fromisoformat(text.strip())
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def parse_label_batch(document: Any) -> list[LabelInput]:
    items = _batch_list(document, "labels", '{"record_id": "...", "label": ...}')
    errors = _Errors(InvalidLabel)
    labels: list[LabelInput] = []
    for index, item in enumerate(items):
        where = f"labels[{index}]"
        if not isinstance(item, dict):
            errors.add(index, None, f"{where} is a JSON {json_kind(item)}, not an object")
            continue
        before = errors.count
        for field in sorted(set(item) - _LABEL_FIELDS):
            errors.add(index, shown(field, 100), f"{where}: unexpected field {shown(field, 100)!r}")
        record_id = item.get("record_id")
        if isinstance(record_id, int) and not isinstance(record_id, bool):
            record_id = str(record_id)
        if not isinstance(record_id, str) or not record_id.strip():
            errors.add(
                index, "record_id", f"{where}.record_id is required: the id of the labelled record"
            )
        elif len(record_id) > MAX_RECORD_ID_CHARS:
            errors.add(index, "record_id", f"{where}.record_id is over {MAX_RECORD_ID_CHARS} chars")
        if "label" not in item or item["label"] is None:
            errors.add(index, "label", f"{where}.label is required (a string, number or boolean)")
        elif not is_scalar(item["label"]):
            errors.add(
                index, "label", f"{where}.label is a JSON {json_kind(item['label'])}, not a scalar"
            )
        labelled_at = None
        raw_time = item.get("labelled_at")
        if raw_time is not None:
            try:
                if not isinstance(raw_time, str):
                    raise ValueError(f"a JSON {json_kind(raw_time)}")
                labelled_at = parse_time(raw_time)
            except ValueError as error:
                errors.add(
                    index,
                    "labelled_at",
                    f"{where}.labelled_at is not an ISO-8601 time ({shown(str(error))})",
                )
        entity = item.get("entity")
        if entity is not None and not (is_scalar(entity) and not isinstance(entity, bool)):
            errors.add(index, "entity", f"{where}.entity must be a string or a number")
        elif entity is not None and len(str(entity)) > MAX_ENTITY_CHARS:
            errors.add(index, "entity", f"{where}.entity is over {MAX_ENTITY_CHARS} characters")
        if errors.count == before:
            labels.append(
                LabelInput(
                    record_id=str(record_id),
                    label=item["label"],
                    labelled_at=labelled_at,
                    entity=None if entity is None else str(entity),
                )
            )
    errors.raise_any()
    return labels
