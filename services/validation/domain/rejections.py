"""Keeping a rejection within the broker's limit, whatever the record held. Pure.

A record may repeat thousands of unexpected columns, each in `values` and again in `errors`:
as received, its rejection would be many times the record. Over `max_bytes`, first every text
(a value, a column name, a message) is cut to MAX_TEXT characters, then `values` and `errors`
keep their leading entries only; `truncated` says what was cut and how much.
"""

from __future__ import annotations

from typing import Final

from shared.events.records import FieldError, FieldValue, RecordRejected

MAX_TEXT: Final = 1000
_ENVELOPE_BYTES: Final = 2048  # the envelope's attributes around the payload, with room


def _cut(text: str, counter: list[int]) -> str:
    if len(text) <= MAX_TEXT:
        return text
    counter[0] += 1
    return f"{text[:MAX_TEXT]}... ({len(text) - MAX_TEXT} more characters)"


def _cut_value(value: FieldValue, counter: list[int]) -> FieldValue:
    return _cut(value, counter) if isinstance(value, str) else value


def _cut_texts(payload: RecordRejected) -> tuple[RecordRejected, int]:
    counter = [0]
    values = {_cut(k, counter): _cut_value(v, counter) for k, v in payload.values.items()}
    errors = [
        FieldError(
            field=None if e.field is None else _cut(e.field, counter),
            rule=_cut(e.rule, counter),
            message=_cut(e.message, counter),
            value=_cut_value(e.value, counter),
        )
        for e in payload.errors
    ]
    return payload.model_copy(update={"values": values, "errors": errors}), counter[0]


def _size(payload: RecordRejected) -> int:
    return len(payload.__pydantic_serializer__.to_json(payload)) + _ENVELOPE_BYTES


def _kept(payload: RecordRejected, values: int, errors: int) -> RecordRejected:
    kept = dict(list(payload.values.items())[:values])
    return payload.model_copy(update={"values": kept, "errors": payload.errors[:errors]})


def bounded(payload: RecordRejected, max_bytes: int) -> RecordRejected:
    """`payload` as it is when its event fits in `max_bytes`, else summarized to fit."""
    if _size(payload) <= max_bytes:
        return payload
    cut, texts = _cut_texts(payload)
    values, errors = len(cut.values), len(cut.errors)
    summary = cut
    while _size(summary) > max_bytes and (values > 0 or errors > 1):
        values, errors = values // 2, max(1, errors // 2)
        summary = _kept(cut, values, errors)
    notes = [f"summarized to stay under {max_bytes} bytes"]
    if texts:
        notes.append(f"{texts} texts cut to {MAX_TEXT} characters")
    if values < len(cut.values):
        notes.append(f"{len(cut.values) - values} of {len(cut.values)} values left out")
    if errors < len(cut.errors):
        notes.append(f"{len(cut.errors) - errors} of {len(cut.errors)} errors left out")
    return summary.model_copy(update={"truncated": "; ".join(notes)})
