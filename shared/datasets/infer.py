"""A first dataset spec inferred from a sample, in the manner of TFDV's schema inference.

    python -m shared.datasets.infer SAMPLE.(csv|parquet|json|jsonl) --name N \
        --entity-key K --event-time T [--label L] [--record-id R] [--max-categories 20] \
        [--exclude COL ...] [--label-arrival with_record|feedback] [--description TEXT]

prints the spec as YAML (checked by DatasetSpec). Types come from the column dtypes and
values: boolean, integer, numeric, timestamp, and categorical for a text column with at most
``max_categories`` distinct values. Ranges and categories are the ones seen in the sample and
a column is nullable when the sample holds a null, so the result is a starting point to review
(widen ranges, add the categories the sample missed) before registering it.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pandas.api import types as ptypes
from pydantic import ValidationError

from shared.datasets.spec import NAME_PATTERN, DatasetSpec, FeatureType

READABLE_SUFFIXES = (".csv", ".parquet", ".pq", ".json", ".jsonl", ".ndjson")
_ISO_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)
_INTEGER_TEXT = re.compile(r"^[+-]?\d+$")
_NUMBER_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_BOOLEAN_TEXT = {"true": True, "false": False}


class InferenceError(ValueError):
    """The sample cannot give a spec; the message says which column and what to do."""


class _Column:
    """What one column of the sample shows: its type, range, categories and nulls."""

    def __init__(self, name: str, series: pd.Series, max_categories: int) -> None:
        self.name = name
        self.nullable = bool(series.isna().any())
        self.values = series.dropna()
        self.max_categories = max_categories
        if self.values.empty:
            raise InferenceError(
                f"column {name!r} has no value in the sample (all null): its type cannot be "
                "inferred; --exclude it or give a sample where it is filled"
            )

    def infer(self) -> dict[str, Any]:
        """The column as a feature entry: type plus min/max or categories."""
        series = self.values
        dtype = series.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            return self._categorical([*series.astype(object)])
        if ptypes.is_bool_dtype(dtype):
            return {"type": FeatureType.BOOLEAN}
        if ptypes.is_integer_dtype(dtype):
            return self._ranged(FeatureType.INTEGER, [int(v) for v in series])
        if ptypes.is_float_dtype(dtype):
            numbers = [float(v) for v in series]
            # An integer column with nulls arrives as float (pandas' NaN upcast).
            whole = self.nullable and all(math.isfinite(v) and v.is_integer() for v in numbers)
            return self._ranged(FeatureType.INTEGER if whole else FeatureType.NUMERIC, numbers)
        if ptypes.is_datetime64_any_dtype(dtype):
            return {"type": FeatureType.TIMESTAMP}
        return self._from_objects([*series.astype(object)])

    def _from_objects(self, values: list[Any]) -> dict[str, Any]:
        if all(isinstance(v, bool) for v in values):
            return {"type": FeatureType.BOOLEAN}
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return self._ranged(FeatureType.INTEGER, values)
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return self._ranged(FeatureType.NUMERIC, [float(v) for v in values])
        if all(isinstance(v, datetime | date) for v in values):
            return {"type": FeatureType.TIMESTAMP}
        texts = [str(v).strip() for v in values]
        if all(_ISO_DATETIME.match(t) for t in texts):
            return {"type": FeatureType.TIMESTAMP}
        if all(t.lower() in _BOOLEAN_TEXT for t in texts):
            return {"type": FeatureType.BOOLEAN}
        distinct = set(texts)
        if len(distinct) <= self.max_categories:
            return self._categorical(texts)
        if all(_INTEGER_TEXT.match(t) for t in distinct):
            return self._ranged(FeatureType.INTEGER, [int(t) for t in texts])
        if all(_NUMBER_TEXT.match(t) for t in distinct):
            return self._ranged(FeatureType.NUMERIC, [float(t) for t in texts])
        examples = ", ".join(repr(t) for t in sorted(distinct)[:3])
        raise InferenceError(
            f"column {self.name!r} has {len(distinct)} distinct text values ({examples}, ...), "
            f"more than --max-categories {self.max_categories}: it cannot be a categorical "
            "feature; raise --max-categories, or --exclude it if it is free text or an id"
        )

    def _categorical(self, values: list[Any]) -> dict[str, Any]:
        distinct = {str(v).strip() for v in values}
        if len(distinct) > self.max_categories:
            raise InferenceError(
                f"column {self.name!r} has {len(distinct)} categories, more than "
                f"--max-categories {self.max_categories}; raise it or --exclude the column"
            )
        return {"type": FeatureType.CATEGORICAL, "categories": _sorted_categories(distinct)}

    @staticmethod
    def _ranged(kind: FeatureType, values: Sequence[float]) -> dict[str, Any]:
        finite = [v for v in values if math.isfinite(v)]
        entry: dict[str, Any] = {"type": kind}
        if finite:
            entry["min"], entry["max"] = min(finite), max(finite)
        return entry


def _sorted_categories(values: set[str]) -> list[str]:
    """Numeric codes in numeric order ("2" before "10"), text in text order."""
    if all(_NUMBER_TEXT.match(v) for v in values):
        return sorted(values, key=float)
    return sorted(values)


def infer_spec(
    frame: pd.DataFrame,
    *,
    name: str,
    entity_key: str,
    event_time: str,
    label: str | None = None,
    record_id: str | None = None,
    max_categories: int = 20,
    exclude: Sequence[str] = (),
    label_arrival: Literal["with_record", "feedback"] = "with_record",
    description: str = "",
) -> DatasetSpec:
    """A DatasetSpec describing ``frame``: every column but the key, time, id and label
    columns (and ``exclude``) becomes a feature; raises InferenceError saying why not."""
    if max_categories < 1:
        raise InferenceError(f"max_categories must be at least 1, not {max_categories}")
    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns):
        twice = sorted({c for c in columns if columns.count(c) > 1})
        raise InferenceError(f"the sample has duplicate columns: {twice}")
    named = {
        "--entity-key": entity_key,
        "--event-time": event_time,
        "--label": label,
        "--record-id": record_id,
    }
    for option, column in [*named.items(), *(("--exclude", c) for c in exclude)]:
        if column is not None and column not in columns:
            raise InferenceError(
                f"{option} {column!r}: no such column in the sample; columns: {', '.join(columns)}"
            )
    if frame.empty:
        raise InferenceError("the sample has no rows: nothing to infer types from")
    reserved = {entity_key, event_time, label, record_id, *exclude} - {None}
    feature_columns = [c for c in columns if c not in reserved]
    badly_named = [c for c in feature_columns if not re.match(NAME_PATTERN, c)]
    if badly_named:
        raise InferenceError(
            f"columns {badly_named} are not valid feature names (lower-case snake_case, "
            f"pattern {NAME_PATTERN}); rename them in the data or --exclude them"
        )
    if not feature_columns:
        raise InferenceError("no feature column left once the key, time, id and label are set")
    features = []
    for column in feature_columns:
        observed = _Column(column, frame[column], max_categories)
        features.append({"name": column, **observed.infer(), "nullable": observed.nullable})
    document: dict[str, Any] = {
        "name": name,
        "description": description,
        "entity_key": entity_key,
        "event_time": event_time,
        "record_id": record_id,
        "features": features,
    }
    if label is not None:
        document["label"] = _label(frame[label], label, max_categories, label_arrival)
        if document["label"]["task"] == "regression":
            document["model"] = {
                "estimator": "sklearn.ensemble.HistGradientBoostingRegressor",
                "params": {"random_state": 0},
            }
    document.setdefault(
        "model",
        {
            "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
            "params": {"random_state": 0},
        },
    )
    try:
        return DatasetSpec.model_validate(document)
    except ValidationError as error:
        raise InferenceError(f"the inferred spec is not valid: {error}") from None


def _label(
    series: pd.Series,
    name: str,
    max_categories: int,
    arrival: Literal["with_record", "feedback"],
) -> dict[str, Any]:
    entry = _Column(name, series, max_categories).infer()
    kind = entry["type"]
    label: dict[str, Any] = {"name": name, "type": kind, "arrival": arrival}
    if kind == FeatureType.TIMESTAMP:
        raise InferenceError(
            f"label {name!r} holds timestamps; a label must be a class or a number"
        )
    if kind == FeatureType.CATEGORICAL:
        label["categories"] = entry["categories"]
    distinct = series.dropna().nunique()
    continuous = kind == FeatureType.NUMERIC or (
        kind == FeatureType.INTEGER and distinct > max_categories
    )
    label["task"] = "regression" if continuous else "classification"
    return label


# -- the sample file ---------------------------------------------------------------------------


def read_sample(path: Path) -> pd.DataFrame:
    """A CSV, Parquet, JSON (an array of objects) or JSON-lines file as a DataFrame."""
    if not path.exists():
        raise InferenceError(f"no such file: {path}")
    if path.is_dir():
        raise InferenceError(f"{path} is a directory, not a sample file")
    suffix = path.suffix.lower()
    if suffix not in READABLE_SUFFIXES:
        raise InferenceError(
            f"cannot read {path.name}: unknown format {suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(READABLE_SUFFIXES)}"
        )
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return _read_json(path)
    except InferenceError:
        raise
    except Exception as error:
        kind = {".pq": "parquet", ".jsonl": "json lines", ".ndjson": "json lines"}.get(
            suffix, suffix.lstrip(".")
        )
        raise InferenceError(f"cannot read {path} as {kind}: {error}") from None


def _read_json(path: Path) -> pd.DataFrame:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        document = json.loads(text)
        rows = document.get("records") if isinstance(document, dict) else document
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise InferenceError(
            f"{path}: expected a JSON array of objects (or {{'records': [...]}}, or one object "
            "per line in .jsonl)"
        )
    return pd.DataFrame.from_records(rows)


# -- YAML --------------------------------------------------------------------------------------


class _Flow(dict[str, Any]):
    """A mapping printed on one line, like the features of the shipped specs."""


class _SpecDumper(yaml.SafeDumper):
    pass


_SpecDumper.add_representer(
    _Flow, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data, True)
)


def _plain(value: Any) -> Any:
    """Whole floats as ints (min: 20 rather than 20.0); they load back as the same floats."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def spec_to_yaml(spec: DatasetSpec, header: str = "") -> str:
    """The spec as YAML in the layout of the shipped specs, defaults left out."""
    full = spec.model_dump(mode="json")
    document = {"name": spec.name, **spec.model_dump(mode="json", exclude_defaults=True)}
    document["features"] = [
        _Flow({key: _plain(value) for key, value in feature.items()})
        for feature in document["features"]
    ]
    if full["label"] is not None:
        document["label"] = _Flow({k: v for k, v in full["label"].items() if v is not None})
    document["aggregations"] = [_Flow(a) for a in document.get("aggregations", [])]
    document["model"] = {**full["model"], "params": _Flow(full["model"]["params"])}
    document = {key: document[key] for key in DatasetSpec.model_fields if key in document}
    text = yaml.dump(document, Dumper=_SpecDumper, sort_keys=False, width=100)
    reloaded = DatasetSpec.model_validate(yaml.safe_load(text))
    if reloaded.fingerprint() != spec.fingerprint():  # pragma: no cover - a bug, not input
        raise AssertionError("the YAML form does not load back to the same spec")
    comment = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    return comment + text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.datasets.infer",
        description="Infer a dataset spec from a sample file and print it as YAML.",
    )
    parser.add_argument("sample", type=Path, help="a .csv, .parquet, .json or .jsonl file")
    parser.add_argument("--name", required=True, help="the dataset name")
    parser.add_argument("--entity-key", required=True, help="column naming the entity")
    parser.add_argument("--event-time", required=True, help="column with the event time")
    parser.add_argument("--label", help="the target column, if the sample has it")
    parser.add_argument("--record-id", help="column with each record's own id")
    parser.add_argument("--max-categories", type=int, default=20)
    parser.add_argument(
        "--exclude", action="append", default=[], help="a column to leave out (repeatable)"
    )
    parser.add_argument(
        "--label-arrival", choices=("with_record", "feedback"), default="with_record"
    )
    parser.add_argument("--description", default="")
    args = parser.parse_args(argv)
    try:
        frame = read_sample(args.sample)
        spec = infer_spec(
            frame,
            name=args.name,
            entity_key=args.entity_key,
            event_time=args.event_time,
            label=args.label,
            record_id=args.record_id,
            max_categories=args.max_categories,
            exclude=args.exclude,
            label_arrival=args.label_arrival,
            description=args.description,
        )
    except InferenceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    header = (
        f"Inferred from {args.sample.name} ({len(frame)} rows) by python -m shared.datasets.infer.\n"
        "Review it: ranges and categories are only those the sample shows."
    )
    sys.stdout.write(spec_to_yaml(spec, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
