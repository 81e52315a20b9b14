"""Two versions side by side: metrics, and what differs in their parameters and lineage.

>>> differences({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}, "d": 4})
{'b.c': {'a': 2, 'b': 3}, 'd': {'a': None, 'b': 4}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_ABSENT: Any = None


def flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted paths; lists and scalars are leaves."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every dotted path whose value differs (a path missing on one side is None there)."""
    flat_a, flat_b = flatten(a), flatten(b)
    paths = sorted(set(flat_a) | set(flat_b))
    return {
        path: {"a": flat_a.get(path, _ABSENT), "b": flat_b.get(path, _ABSENT)}
        for path in paths
        if path not in flat_a or path not in flat_b or flat_a[path] != flat_b[path]
    }


def metrics_side_by_side(
    a: Mapping[str, float], b: Mapping[str, float]
) -> dict[str, dict[str, float | None]]:
    """Each metric of either version with both values and b - a where both are numbers."""
    table: dict[str, dict[str, float | None]] = {}
    for name in sorted(set(a) | set(b)):
        value_a, value_b = a.get(name), b.get(name)
        both = isinstance(value_a, int | float) and isinstance(value_b, int | float)
        table[name] = {"a": value_a, "b": value_b, "b_minus_a": value_b - value_a if both else None}
    return table


def better_of(a: float | None, b: float | None, higher_is_better: bool) -> str | None:
    """'a', 'b', 'tie', or None when a value is missing."""
    if not isinstance(a, int | float) or not isinstance(b, int | float):
        return None
    if a == b:
        return "tie"
    return "b" if (b > a) == higher_is_better else "a"
