"""Sample records built from a dataset spec, to warm a model up before it takes traffic.

Each row takes a different point of every feature's declared domain (its minimum, maximum,
middle; a different category), so a model that cannot read some valid value fails its
warm-up instead of a client's request.
"""

from __future__ import annotations

from datetime import UTC, datetime

from services.serving.domain.records import InputSchema
from shared.datasets.spec import FeatureSpec, FeatureType
from shared.events.records import FieldValue

SAMPLE_ROWS = 4


def _bounds(feature: FeatureSpec) -> tuple[float | None, float | None]:
    """The expected range where declared (the values a model was trained on), else the hard
    one: an expected range always lies inside the hard one."""
    low = feature.expected_min if feature.expected_min is not None else feature.min
    high = feature.expected_max if feature.expected_max is not None else feature.max
    return low, high


def _numeric_point(feature: FeatureSpec, row: int) -> float:
    """The minimum, the maximum, the middle, the first quarter: all inside the declared range."""
    declared_low, declared_high = _bounds(feature)
    if declared_low is not None:
        low = declared_low
    else:
        low = min(0.0, declared_high) if declared_high is not None else 0.0
    high = declared_high if declared_high is not None else low + 1.0
    return [low, high, (low + high) / 2, low + (high - low) / 4][row % 4]


def _integer_point(feature: FeatureSpec, row: int) -> int:
    point = round(_numeric_point(feature, row))
    if feature.min is not None and point < feature.min:
        point += 1
    if feature.max is not None and point > feature.max:
        point -= 1
    return int(point)


def _feature_value(feature: FeatureSpec, row: int) -> FieldValue:
    if feature.type == FeatureType.NUMERIC:
        return float(_numeric_point(feature, row))
    if feature.type == FeatureType.INTEGER:
        return _integer_point(feature, row)
    if feature.type == FeatureType.CATEGORICAL:
        categories = feature.categories or [""]
        return categories[row % len(categories)]
    if feature.type == FeatureType.BOOLEAN:
        return row % 2 == 0
    return datetime(2024, 1, 1, tzinfo=UTC).isoformat()


def sample_rows(schema: InputSchema, count: int = SAMPLE_ROWS) -> list[dict[str, FieldValue]]:
    """`count` rows with a value for every input column of the model."""
    rows = []
    for row in range(count):
        values: dict[str, FieldValue] = {}
        for column in schema.columns:
            if column in schema.features:
                values[column] = _feature_value(schema.features[column], row)
            else:
                values[column] = float(row)
        rows.append(values)
    return rows
