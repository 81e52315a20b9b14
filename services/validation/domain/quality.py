"""Streaming data-quality statistics per dataset and feature, with River. In memory.

Every raw record of a known dataset updates them with its values as received (before
coercion, so what is wrong with the data shows): per feature the count of records seen, how
many lacked it (absent or null) and the missing rate (missing / count), non-finite and
unreadable values; for numeric and integer features River's running mean, variance, min, max
and P² quantiles (p50, p90, p99) over the values that read as finite numbers; for categorical
and boolean features the frequency of each value (as a string, at most MAX_CATEGORIES distinct
ones, the rest counted under OTHER). Per feature also the two covariate-shift signals:
`out_of_range`, validated records whose value lay outside the feature's expected range
(accepted and flagged, RecordValidated.out_of_range) and `out_of_range_rate` (out_of_range /
validated records seen), and `rejected`, records rejected with an error on the feature, and
`rejected_rate` (rejected / count). Per dataset: records, validated, rejected, and rejected
records per rule and errors per field and rule.

The statistics live in the process: a restart starts them from zero.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Collection
from typing import Any, Final

from river import stats

from shared.datasets.spec import DatasetSpec, FeatureType
from shared.datasets.values import Invalid, as_number, category_text
from shared.events.records import FieldError, FieldValue

MAX_CATEGORIES: Final = 100
MAX_FIELDS: Final = 200
OTHER: Final = "__other__"
QUANTILES: Final = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
_NUMERIC = (FeatureType.NUMERIC, FeatureType.INTEGER)
_CATEGORICAL = (FeatureType.CATEGORICAL, FeatureType.BOOLEAN)


def _bounded(counter: Counter[str], key: str, limit: int) -> str:
    return key if key in counter or len(counter) < limit else OTHER


class FeatureStats:
    def __init__(self, name: str, kind: FeatureType) -> None:
        self.name, self.kind = name, kind
        self.count = self.missing = self.non_finite = self.unreadable = 0
        self.numbers = 0
        self.validated = self.out_of_range = self.rejected = 0
        self.expected_min: float | None = None
        self.expected_max: float | None = None
        self.mean, self.var = stats.Mean(), stats.Var()
        self.min, self.max = stats.Min(), stats.Max()
        self.quantiles = {name: stats.Quantile(q) for name, q in QUANTILES.items()}
        self.categories: Counter[str] = Counter()

    def observe(self, value: FieldValue, present: bool) -> None:
        self.count += 1
        if not present or value is None:
            self.missing += 1
            return
        try:
            if self.kind in _NUMERIC:
                self._observe_number(as_number(value))
            elif self.kind in _CATEGORICAL:
                text = category_text(value)
                self.categories[_bounded(self.categories, text, MAX_CATEGORIES)] += 1
        except Invalid as invalid:
            if invalid.rule == "not_finite":
                self.non_finite += 1
            else:
                self.unreadable += 1

    def judged(self, outcome: str) -> None:
        """The record's outcome for this feature: validated, out_of_range (validated and
        flagged) or rejected (an error on this feature)."""
        if outcome == "rejected":
            self.rejected += 1
            return
        self.validated += 1
        if outcome == "out_of_range":
            self.out_of_range += 1

    def _observe_number(self, number: float) -> None:
        self.numbers += 1
        for statistic in (self.mean, self.var, self.min, self.max, *self.quantiles.values()):
            statistic.update(number)

    def snapshot(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "type": str(self.kind),
            "count": self.count,
            "missing": self.missing,
            "missing_rate": self.missing / self.count if self.count else 0.0,
            "non_finite": self.non_finite,
            "unreadable": self.unreadable,
            "rejected": self.rejected,
            "rejected_rate": self.rejected / self.count if self.count else 0.0,
        }
        if self.kind in _NUMERIC:
            summary["expected_min"] = self.expected_min
            summary["expected_max"] = self.expected_max
            summary["out_of_range"] = self.out_of_range
            summary["validated"] = self.validated
            summary["out_of_range_rate"] = (
                self.out_of_range / self.validated if self.validated else 0.0
            )
            seen = self.numbers > 0
            summary["numbers"] = self.numbers
            summary["mean"] = self.mean.get() if seen else None
            summary["var"] = self.var.get() if self.numbers > 1 else None
            summary["min"] = self.min.get() if seen else None
            summary["max"] = self.max.get() if seen else None
            for name, quantile in self.quantiles.items():
                summary[name] = quantile.get() if seen else None
        if self.kind in _CATEGORICAL:
            total = sum(self.categories.values())
            summary["categories"] = dict(self.categories.most_common())
            summary["category_frequency"] = {
                value: n / total for value, n in self.categories.most_common()
            }
        return summary


class DatasetStats:
    def __init__(self, name: str) -> None:
        self.name = name
        self.records = self.validated = self.rejected = 0
        self.rejected_by_rule: Counter[str] = Counter()
        self.errors: dict[str, Counter[str]] = {}
        self.features: dict[str, FeatureStats] = {}

    def _feature(self, name: str, kind: FeatureType) -> FeatureStats:
        feature = self.features.get(name)
        if feature is None or feature.kind != kind:  # a new spec version may change a type
            feature = self.features[name] = FeatureStats(name, kind)
        return feature

    def declare(self, spec: DatasetSpec) -> None:
        for feature in spec.features:
            stats_ = self._feature(feature.name, feature.type)
            stats_.expected_min, stats_.expected_max = feature.expected_min, feature.expected_max

    def observe(
        self,
        spec: DatasetSpec | None,
        values: dict[str, FieldValue] | None,
        errors: list[FieldError],
        out_of_range: Collection[str] = (),
    ) -> None:
        self.records += 1
        if spec is not None and values is not None:
            failed = {e.field for e in errors}
            for feature in spec.features:
                present = feature.name in values
                stats_ = self._feature(feature.name, feature.type)
                stats_.expected_min, stats_.expected_max = (
                    feature.expected_min,
                    feature.expected_max,
                )
                stats_.observe(values.get(feature.name), present)
                if errors:
                    if feature.name in failed:
                        stats_.judged("rejected")
                else:
                    flagged = feature.name in out_of_range
                    stats_.judged("out_of_range" if flagged else "validated")
        if not errors:
            self.validated += 1
            return
        self.rejected += 1
        for rule in sorted({e.rule for e in errors}):
            self.rejected_by_rule[rule] += 1
        for e in errors:
            field = e.field if e.field is not None else "<record>"
            field = field if field in self.errors or len(self.errors) < MAX_FIELDS else OTHER
            self.errors.setdefault(field, Counter())[e.rule] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "dataset": self.name,
            "records": self.records,
            "validated": self.validated,
            "rejected": self.rejected,
            "rejected_by_rule": dict(sorted(self.rejected_by_rule.items())),
            "errors_by_field": {f: dict(sorted(c.items())) for f, c in sorted(self.errors.items())},
            "features": {name: f.snapshot() for name, f in self.features.items()},
        }


class QualityStats:
    """Thread-safe: the consumer thread writes, HTTP requests and /metrics scrapes read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._datasets: dict[str, DatasetStats] = {}
        self.unattributed: Counter[str] = Counter()

    def observe(
        self,
        dataset: str,
        spec: DatasetSpec | None,
        values: dict[str, FieldValue] | None,
        errors: list[FieldError],
        out_of_range: Collection[str] = (),
    ) -> None:
        """One raw record of a known dataset: its values as received, the rules it failed,
        and (validated) the features flagged outside their expected range."""
        with self._lock:
            stats_ = self._datasets.get(dataset)
            if stats_ is None:
                stats_ = self._datasets[dataset] = DatasetStats(dataset)
            stats_.observe(spec, values, errors, out_of_range)

    def observe_unattributed(self, rule: str) -> None:
        """A message of no known dataset (malformed, unknown dataset): counted apart."""
        with self._lock:
            self.unattributed[rule] += 1

    def declare(self, spec: DatasetSpec) -> None:
        """A known dataset with no record yet still has (empty) statistics."""
        with self._lock:
            if spec.name not in self._datasets:
                self._datasets[spec.name] = DatasetStats(spec.name)
                self._datasets[spec.name].declare(spec)

    def datasets(self) -> list[str]:
        with self._lock:
            return sorted(self._datasets)

    def snapshot(self, dataset: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._datasets.get(dataset)
            return found.snapshot() if found is not None else None

    def snapshots(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._datasets[name].snapshot() for name in sorted(self._datasets)]

    def unattributed_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.unattributed)
