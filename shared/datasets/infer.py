"""A first dataset spec inferred from a sample, in the manner of TFDV's schema inference.

    python -m shared.datasets.infer SAMPLE.(csv|parquet|json|jsonl) --name N \
        --entity-key K --event-time T [--label L] [--task classification|regression] \
        [--record-id R] [--max-categories 20] [--exclude COL ...] \
        [--label-arrival with_record|feedback] [--description TEXT]

prints the spec as YAML (checked by DatasetSpec), ready for ``POST /datasets``. It is a starting
point to review, and what it proposes is chosen so that a covariate shift becomes a signal, not
a wall of rejections:

- Types come from the column dtypes and values: boolean, integer, numeric, timestamp, and
  categorical for a text column with at most ``max_categories`` distinct values (low
  cardinality); more distinct text values are refused (an id or free text: ``--exclude`` it).
- Numeric and integer features get an **expected range**, never a hard one: ``expected_min`` /
  ``expected_max`` are the sample's min and max widened by ``WIDEN`` (5%) of the sample's spread
  on each side (not below 0 when the sample has no negative value; integers rounded outward;
  rounded outward to a readable precision). A later value outside is accepted, flagged in
  ``RecordValidated.out_of_range`` and counted by validation, so monitoring sees the shift. No
  ``min``/``max`` is written: a sample cannot prove a physical bound; add one by hand where a
  value beyond it is impossible (a negative age), and only there.
- Categorical features list the categories the sample shows, and a category outside that list
  is **rejected** (rule ``category``): an unseen category cannot be encoded for the model. The
  header warns for each categorical column whose sample suggests unseen categories (Good-Turing:
  the share of values seen exactly once estimates the chance that the next value is new); add
  the categories you know of, or ``--exclude`` the column, before registering.
- The label's task: regression for a numeric label (non-integral values) or an integer label
  with more than ``max_categories`` distinct values, classification otherwise (``--task``
  overrides it). The model section names the estimator for that task and its promotion rule:
  the primary metric (ModelSpec.metric_for's default for the task), with its direction, the
  margin and the minimum evaluation rows as comments (unset: the metric's own direction, the
  registry's defaults), so editing primary_metric alone keeps a consistent rule.
- A column is nullable when the sample holds a null.
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

from shared.datasets.spec import (
    CLASSIFICATION_METRICS,
    NAME_PATTERN,
    REGRESSION_METRICS,
    DatasetSpec,
    FeatureType,
    ModelSpec,
)

READABLE_SUFFIXES = (".csv", ".parquet", ".pq", ".json", ".jsonl", ".ndjson")
_ISO_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)
_INTEGER_TEXT = re.compile(r"^[+-]?\d+$")
_NUMBER_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_BOOLEAN_TEXT = {"true": True, "false": False}
WIDEN = 0.05
"""How far the expected range reaches past the sample's extremes, as a share of its spread."""
UNSEEN_WARNING = 0.01
"""The Good-Turing estimate of unseen categories above which the header warns."""
ESTIMATORS = {
    "classification": "sklearn.ensemble.HistGradientBoostingClassifier",
    "regression": "sklearn.ensemble.HistGradientBoostingRegressor",
}


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
            low, high = expected_range(min(finite), max(finite), kind == FeatureType.INTEGER)
            entry["expected_min"], entry["expected_max"] = low, high
        return entry


def expected_range(low: float, high: float, integer: bool) -> tuple[float, float]:
    """The sample's [low, high] widened by WIDEN of its spread on each side (of |low| for a
    constant column, 1 when that is 0), kept at 0 or above when low is, rounded outward."""
    spread = high - low or abs(low) or 1.0
    margin = WIDEN * spread
    step = 10.0 ** (math.floor(math.log10(margin)) - 1) if margin > 0 else 1.0
    if integer:
        step = max(step, 1.0)
    widened_low = math.floor((low - margin) / step) * step
    widened_high = math.ceil((high + margin) / step) * step
    if low >= 0:
        widened_low = max(widened_low, 0.0)
    return _tidy(widened_low), _tidy(widened_high)


def _tidy(value: float) -> float:
    """Rounding noise off a multiple of a power of ten (0.30000000000000004 -> 0.3)."""
    return float(f"{value:.12g}")


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
    task: Literal["classification", "regression"] | None = None,
) -> DatasetSpec:
    """A DatasetSpec describing ``frame``: every column but the key, time, id and label
    columns (and ``exclude``) becomes a feature; ``task`` overrides the label's inferred
    task. Raises InferenceError saying why not."""
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
    if task is not None and label is None:
        raise InferenceError(f"--task {task}: there is no --label to predict")
    document["model"] = {"estimator": ESTIMATORS["classification"], "params": {"random_state": 0}}
    if label is not None:
        document["label"] = _label(frame[label], label, max_categories, label_arrival, task)
        chosen = document["label"]["task"]
        document["model"] = {
            "estimator": ESTIMATORS[chosen],
            "params": {"random_state": 0},
            "primary_metric": ModelSpec().metric_for(chosen)[0],
        }
    try:
        return DatasetSpec.model_validate(document)
    except ValidationError as error:
        raise InferenceError(f"the inferred spec is not valid: {error}") from None


def _label(
    series: pd.Series,
    name: str,
    max_categories: int,
    arrival: Literal["with_record", "feedback"],
    task: Literal["classification", "regression"] | None,
) -> dict[str, Any]:
    """The label entry. Its task: regression for non-integral numbers, or integers with more
    than max_categories distinct values; classification for everything else."""
    try:
        entry = _Column(name, series, max_categories).infer()
    except InferenceError as error:
        raise InferenceError(f"label: {error}") from None
    kind = entry["type"]
    label: dict[str, Any] = {"name": name, "type": kind, "arrival": arrival}
    if kind == FeatureType.TIMESTAMP:
        raise InferenceError(
            f"label {name!r} holds timestamps; a label must be a class or a number"
        )
    distinct = series.dropna().nunique()
    continuous = kind == FeatureType.NUMERIC or (
        kind == FeatureType.INTEGER and distinct > max_categories
    )
    label["task"] = task or ("regression" if continuous else "classification")
    if label["task"] == "regression" and kind not in (FeatureType.NUMERIC, FeatureType.INTEGER):
        raise InferenceError(
            f"--task regression: label {name!r} is {kind.value}, not a number; a regression "
            "label must be numeric or integer"
        )
    if kind == FeatureType.CATEGORICAL:
        label["categories"] = entry["categories"]
    return label


def unseen_category_notes(frame: pd.DataFrame, spec: DatasetSpec) -> list[str]:
    """For each categorical feature whose sample suggests categories it lacks, a line saying so.

    Good-Turing: the share of the sample's values whose category occurs exactly once estimates
    the probability that the next value is a category never seen; a record with one is rejected
    (rule category), so above UNSEEN_WARNING the column deserves a look before registering."""
    notes = []
    for feature in spec.features:
        if feature.type != FeatureType.CATEGORICAL or feature.name not in frame:
            continue
        values = frame[feature.name].dropna().astype(str).str.strip()
        counts = values.value_counts()
        once = int((counts == 1).sum())
        unseen = once / len(values) if len(values) else 0.0
        if unseen > UNSEEN_WARNING:
            notes.append(
                f"{feature.name}: {len(counts)} categories in {len(values)} values, {once} seen "
                f"only once: about {unseen:.0%} of new values may be categories the sample "
                "lacks, and those records are rejected (rule category); add the categories you "
                "know of, or --exclude the column"
            )
    return notes


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
    model = {key: value for key, value in full["model"].items() if value is not None}
    document["model"] = {**model, "params": _Flow(full["model"]["params"])}
    document = {key: document[key] for key in DatasetSpec.model_fields if key in document}
    text = yaml.dump(document, Dumper=_SpecDumper, sort_keys=False, width=100)
    text += _promotion_comment(spec)
    reloaded = DatasetSpec.model_validate(yaml.safe_load(text))
    if reloaded.fingerprint() != spec.fingerprint():  # pragma: no cover - a bug, not input
        raise AssertionError("the YAML form does not load back to the same spec")
    comment = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    return comment + text


def _promotion_comment(spec: DatasetSpec) -> str:
    """The promotion rule spelled out under the model section, with the fields left unset."""
    if spec.task is None:
        return ""
    metric, higher = spec.model.metric_for(spec.task)
    known = CLASSIFICATION_METRICS if spec.task == "classification" else REGRESSION_METRICS
    lines = [
        f"Promotion: a new version replaces the champion when its {metric} on the same holdout",
        f"is {'higher' if higher else 'lower'} than the champion's by promotion_margin or more.",
        f"primary_metric for {spec.task}: one of {', '.join(sorted(known))}.",
    ]
    if spec.model.higher_is_better is None:
        lines.append(f"higher_is_better: {str(higher).lower()}  # unset: {metric}'s own direction")
    if spec.model.promotion_margin is None:
        lines.append("promotion_margin: 0.0  # unset: MLOPS_REGISTRY_PROMOTION_MARGIN (0)")
    if spec.model.min_evaluation_rows is None:
        lines.append("min_evaluation_rows: 100  # unset: the registry's default")
    return "".join(f"  # {line}\n" for line in lines)


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
    parser.add_argument(
        "--task",
        choices=("classification", "regression"),
        help="the label's task, when the inferred one is wrong",
    )
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
            task=args.task,
        )
    except InferenceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    notes = unseen_category_notes(frame, spec)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    header = "\n".join(
        [
            f"Inferred from {args.sample.name} ({len(frame)} rows) by python -m "
            "shared.datasets.infer. Review it before registering:",
            "- expected_min/expected_max are the sample's range widened by 5% of its spread: a",
            "  value outside is accepted, flagged (out_of_range) and counted, never rejected.",
            "  Add a hard min/max only where a value beyond it is impossible.",
            "- categories are those the sample shows; any other category is rejected.",
            *(f"- warning: {note}" for note in notes),
        ]
    )
    sys.stdout.write(spec_to_yaml(spec, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
