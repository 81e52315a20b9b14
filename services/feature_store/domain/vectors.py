"""Feature vectors: a record's own values plus its entity's aggregates, and their names.

Offline rows and training sets use fixed generic columns (record id, entity, event time,
label, ...) beside the feature columns, and lineage columns that start with ``source``. A
spec whose feature or aggregation names would collide with those is refused, so no column
can silently overwrite another.

>>> features_event_id("7a0c") == features_event_id("7a0c")
True
>>> state_key("loans", "applicant/42")
'loans/applicant/42'
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from shared.datasets.spec import DatasetSpec
from shared.events.records import FieldValue

GENERIC_COLUMNS = ("record_id", "entity", "event_time", "spec_version", "label", "labelled_at")
RESERVED_NAMES = frozenset({*GENERIC_COLUMNS, "dataset"})
LINEAGE_PREFIXES = ("source", "_")


class SpecConflict(ValueError):
    """A spec whose column names collide; its records are dead-lettered with this reason."""

    reason = "spec_conflict"


def feature_columns(spec: DatasetSpec) -> list[str]:
    """The spec's feature columns, then its aggregates, refusing colliding names."""
    names = [feature.name for feature in spec.features]
    names += [aggregation.name for aggregation in spec.aggregations]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise SpecConflict(f"{spec.name}: aggregations named like features: {duplicated}")
    reserved = sorted(
        name for name in names if name in RESERVED_NAMES or name.startswith(LINEAGE_PREFIXES)
    )
    if reserved:
        raise SpecConflict(
            f"{spec.name}: columns {reserved} collide with the feature store's own columns "
            f"({', '.join(sorted(RESERVED_NAMES))}, and names starting with source or _)"
        )
    return names


def feature_vector(
    values: Mapping[str, FieldValue], aggregates: Mapping[str, FieldValue]
) -> dict[str, FieldValue]:
    return {**values, **aggregates}


def features_event_id(validated_event_id: str) -> str:
    """The FeaturesComputed id of a validated event: the same on every replay."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{validated_event_id}/features"))


def state_key(dataset: str, entity: str) -> str:
    """The streaming table's key of an entity; dataset names cannot hold '/'."""
    return f"{dataset}/{entity}"
