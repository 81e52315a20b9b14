"""The training frame: the feature store's rows, sorted, typed and hashed.

Rows are sorted by (event time, record id), so the same training set gives the same frame,
the same split and the same model whatever order the rows were stored in. The content hash
is taken over that order, over every column (sorted by name), with values in a canonical JSON
form: equal content, equal hash.

Which columns are features: every column except the ids, the entity, the event time, the
label and the columns saying where a row came from (`source*`, `_*`), in the spec's order
(features, then aggregations), then any others by name. Timestamp features are left out
(a model takes numbers, categories and booleans).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from services.training.domain.errors import BadTrainingSet, NotEnoughData
from shared.datasets.spec import DatasetSpec, FeatureType

ColumnKind = Literal["numeric", "categorical", "boolean"]
GENERIC_COLUMNS = frozenset(
    {"record_id", "entity", "event_time", "label", "dataset", "spec_version", "labelled_at"}
)
SOURCE_PREFIXES = ("source", "_")
_KINDS: dict[FeatureType, ColumnKind] = {
    FeatureType.NUMERIC: "numeric",
    FeatureType.INTEGER: "numeric",
    FeatureType.CATEGORICAL: "categorical",
    FeatureType.BOOLEAN: "boolean",
}


@dataclass(frozen=True)
class Columns:
    """The roles of a training set's columns."""

    event_time: str
    record_id: str | None
    label: str
    features: dict[str, ColumnKind]


@dataclass(frozen=True)
class TrainingFrame:
    """Labelled rows sorted by (event time, record id), feature and label columns typed."""

    frame: pd.DataFrame
    columns: Columns
    task: Literal["classification", "regression"]
    rows_read: int
    sha256: str
    before_window: int = 0
    """Labelled rows left out because they are older than the window asked for."""

    @property
    def features(self) -> list[str]:
        return list(self.columns.features)

    @property
    def kinds(self) -> dict[str, ColumnKind]:
        return dict(self.columns.features)

    @property
    def unlabelled_dropped(self) -> int:
        return self.rows_read - len(self.frame) - self.before_window

    def x(self, frame: pd.DataFrame | None = None) -> pd.DataFrame:
        return (self.frame if frame is None else frame)[self.features]

    def y(self, frame: pd.DataFrame | None = None) -> pd.Series:
        return (self.frame if frame is None else frame)[self.columns.label]

    def event_times(self) -> pd.Series:
        return self.frame[self.columns.event_time]


def prepare(raw: pd.DataFrame, spec: DatasetSpec) -> TrainingFrame:
    """The typed, sorted, labelled training frame of a raw training set, and its hash."""
    if spec.label is None:
        raise BadTrainingSet(f"dataset {spec.name!r} has no label in its spec: nothing to learn")
    columns = resolve_columns(raw, spec)
    ordered = sort_rows(raw, columns.event_time, columns.record_id)
    digest = content_sha256(ordered)
    labelled = ordered[ordered[columns.label].notna()].reset_index(drop=True)
    frame = labelled.copy()
    for name, kind in columns.features.items():
        frame[name] = _typed(frame[name], kind, name)
    frame[columns.label] = _typed_label(frame[columns.label], spec.label.task, columns.label)
    return TrainingFrame(frame, columns, spec.label.task, len(raw), digest)


def since(training: TrainingFrame, start: datetime | None) -> TrainingFrame:
    """Only the rows whose event time is at or after `start` (all of them when it is None)."""
    if start is None:
        return training
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    times = training.frame[training.columns.event_time]
    kept = training.frame[times >= pd.Timestamp(start)].reset_index(drop=True)
    dropped = training.before_window + len(training.frame) - len(kept)
    return replace(training, frame=kept, before_window=dropped)


def resolve_columns(raw: pd.DataFrame, spec: DatasetSpec) -> Columns:
    """Which column is the event time, the record id, the label, and which are features (of
    which kind: as the spec declares it, else from the column's dtype)."""
    assert spec.label is not None
    names = [str(name) for name in raw.columns]
    present = set(names)
    event_time = _first_present((spec.event_time, "event_time"), present, "event time")
    label = _first_present((spec.label.name, "label"), present, "label")
    record_candidates = [c for c in (spec.record_id, "record_id") if c and c in present]
    record_id = record_candidates[0] if record_candidates else None
    reserved = GENERIC_COLUMNS | {spec.entity_key, spec.event_time, spec.label.name}
    reserved |= {spec.record_id} if spec.record_id else set()
    declared = _declared_kinds(spec)
    timestamps = {f.name for f in spec.features if f.type == FeatureType.TIMESTAMP}
    candidates = [
        name
        for name in names
        if name not in reserved and name not in timestamps and not name.startswith(SOURCE_PREFIXES)
    ]
    ordered = [n for n in declared if n in candidates]
    ordered += sorted(n for n in candidates if n not in declared)
    if not ordered:
        raise BadTrainingSet(f"the training set of {spec.name!r} has no feature column: {names}")
    kinds = {name: declared.get(name) or _dtype_kind(raw[name]) for name in ordered}
    return Columns(event_time, record_id, label, kinds)


def _declared_kinds(spec: DatasetSpec) -> dict[str, ColumnKind]:
    kinds: dict[str, ColumnKind] = {
        f.name: _KINDS[f.type] for f in spec.features if f.type in _KINDS
    }
    kinds.update({aggregation.name: "numeric" for aggregation in spec.aggregations})
    return kinds


def _dtype_kind(series: pd.Series) -> ColumnKind:
    if is_bool_dtype(series):
        return "boolean"
    return "numeric" if is_numeric_dtype(series) else "categorical"


def _first_present(candidates: tuple[str, ...], present: set[str], role: str) -> str:
    for name in candidates:
        if name in present:
            return name
    raise BadTrainingSet(f"the training set has no {role} column ({' or '.join(candidates)})")


def sort_rows(raw: pd.DataFrame, event_time: str, record_id: str | None) -> pd.DataFrame:
    """Rows by (event time, record id); without a record id, by every column after the time."""
    frame = raw.copy()
    try:
        frame[event_time] = pd.to_datetime(frame[event_time], utc=True)
    except (ValueError, TypeError) as error:
        raise BadTrainingSet(f"column {event_time!r} does not hold times: {error}") from None
    if frame[event_time].isna().any():
        raise BadTrainingSet(f"column {event_time!r} has rows without an event time")
    if record_id is not None:
        tiebreak = frame[record_id].map(_canonical).astype(str)
    else:
        others = sorted(set(frame) - {event_time}, key=str)
        rows = frame[others].itertuples(index=False, name=None)
        tiebreak = pd.Series([json.dumps([_canonical(v) for v in row]) for row in rows])
    frame["__tiebreak"] = tiebreak.to_numpy()
    frame = frame.sort_values([event_time, "__tiebreak"], kind="mergesort")
    return frame.drop(columns="__tiebreak").reset_index(drop=True)


def content_sha256(frame: pd.DataFrame) -> str:
    """sha256 of the rows in their order, columns by name, values in canonical JSON."""
    names = sorted(frame.columns, key=str)
    digest = hashlib.sha256(json.dumps([str(n) for n in names]).encode())
    values = [_canonical_column(frame[name]) for name in names]
    for row in zip(*values, strict=True):
        digest.update(b"\n")
        digest.update(json.dumps(row, allow_nan=False, separators=(",", ":")).encode())
    return digest.hexdigest()


def _canonical_column(series: pd.Series) -> list[Any]:
    return [_canonical(value) for value in series.tolist()]


def _canonical(value: Any) -> Any:
    """None for missing; ISO-8601 UTC for times; plain JSON for everything else."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return value if math.isfinite(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, pd.Timestamp | datetime):
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, bool | int | str):
        return value
    return str(value)


def _typed(series: pd.Series, kind: ColumnKind, name: str) -> pd.Series:
    """numeric -> float64; categorical -> strings (missing stays NaN); boolean -> 0/1."""
    if kind == "numeric":
        try:
            return pd.to_numeric(series, errors="raise").astype("float64")
        except (ValueError, TypeError) as error:
            raise BadTrainingSet(f"feature {name!r} is numeric but holds {error}") from None
    if kind == "boolean":
        return series.map(_as_bit, na_action="ignore").astype("float64")
    return series.map(_as_category, na_action="ignore").astype(object)


def _as_bit(value: Any) -> float:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1"):
            return 1.0
        if lowered in ("false", "0"):
            return 0.0
        raise BadTrainingSet(f"not a boolean: {value!r}")
    return 1.0 if bool(value) else 0.0


def _as_category(value: Any) -> str:
    """Categories compare as strings (the spec's rule); 1.0 and 1 are both '1'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _typed_label(series: pd.Series, task: str, name: str) -> pd.Series:
    if task == "regression":
        try:
            return pd.to_numeric(series, errors="raise").astype("float64")
        except (ValueError, TypeError) as error:
            raise BadTrainingSet(
                f"label {name!r} of a regression is not numeric: {error}"
            ) from None
    if is_numeric_dtype(series) and not is_bool_dtype(series):
        numbers = series.astype("float64")
        if bool(np.all(np.mod(numbers, 1) == 0)):
            return numbers.astype("int64")
        raise BadTrainingSet(f"label {name!r} of a classification holds fractional values")
    return series.map(_as_category).astype(object)


def require_rows(training: TrainingFrame, minimum: int) -> None:
    rows = len(training.frame)
    if rows < minimum:
        older = (
            f", {training.before_window} older than the window" if training.before_window else ""
        )
        raise NotEnoughData(
            f"{rows} labelled rows (of {training.rows_read} read{older}); "
            f"at least {minimum} are needed"
        )
