"""One dataset's statistics from several replicas' own, each over the partitions it read.

Counts, rates, categories, min and max, mean and variance (Chan's parallel formula over the
sample variance River keeps) are what one process reading every partition would report.
Quantiles are River's streaming P² estimates, which do not merge: the merged value is their
mean weighted by each replica's count of numbers, an approximation (exact with one replica).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from services.validation.domain.quality import QUANTILES

_SUMMED = ("count", "missing", "non_finite", "unreadable", "rejected", "numbers", "out_of_range")


def merge_dataset_snapshots(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    rules: Counter[str] = Counter()
    errors: dict[str, Counter[str]] = {}
    for part in parts:
        rules.update(part["rejected_by_rule"])
        for field, counts in part["errors_by_field"].items():
            errors.setdefault(field, Counter()).update(counts)
    names = dict.fromkeys(name for part in parts for name in part["features"])
    return {
        "dataset": first["dataset"],
        "records": sum(part["records"] for part in parts),
        "validated": sum(part["validated"] for part in parts),
        "rejected": sum(part["rejected"] for part in parts),
        "rejected_by_rule": dict(sorted(rules.items())),
        "errors_by_field": {f: dict(sorted(c.items())) for f, c in sorted(errors.items())},
        "features": {
            name: merge_feature([p["features"][name] for p in parts if name in p["features"]])
            for name in names
        },
        "replicas": len(parts),
    }


def merge_feature(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    if len(parts) == 1:
        return parts[0]
    merged: dict[str, Any] = {"type": parts[0]["type"]}
    for key in _SUMMED:
        if any(key in part for part in parts):
            merged[key] = sum(part.get(key, 0) for part in parts)
    count = merged["count"]
    merged["missing_rate"] = merged["missing"] / count if count else 0.0
    merged["rejected_rate"] = merged["rejected"] / count if count else 0.0
    if "numbers" in merged:
        _merge_numbers(parts, merged)
    if any("categories" in part for part in parts):
        _merge_categories(parts, merged)
    return merged


def _merge_numbers(parts: Sequence[dict[str, Any]], merged: dict[str, Any]) -> None:
    merged["expected_min"] = parts[0].get("expected_min")
    merged["expected_max"] = parts[0].get("expected_max")
    validated = sum(part.get("validated", 0) for part in parts)
    merged["validated"] = validated
    merged["out_of_range_rate"] = merged["out_of_range"] / validated if validated else 0.0
    seen = [part for part in parts if part.get("numbers")]
    total = sum(part["numbers"] for part in seen)
    if not seen:
        merged.update(mean=None, var=None, min=None, max=None, **dict.fromkeys(QUANTILES))
        return
    mean = sum(part["numbers"] * part["mean"] for part in seen) / total
    squares = sum(
        (part["numbers"] - 1) * (part["var"] or 0.0) + part["numbers"] * (part["mean"] - mean) ** 2
        for part in seen
    )
    merged["mean"] = mean
    merged["var"] = squares / (total - 1) if total > 1 else None
    merged["min"] = min(part["min"] for part in seen)
    merged["max"] = max(part["max"] for part in seen)
    for name in QUANTILES:
        merged[name] = sum(part["numbers"] * part[name] for part in seen) / total


def _merge_categories(parts: Sequence[dict[str, Any]], merged: dict[str, Any]) -> None:
    categories: Counter[str] = Counter()
    for part in parts:
        categories.update(part.get("categories", {}))
    total = sum(categories.values())
    merged["categories"] = dict(categories.most_common())
    merged["category_frequency"] = {v: n / total for v, n in categories.most_common()}
