"""The data-quality statistics as Prometheus gauges, computed at scrape time.

Registered once in the default registry, which shared.service serves at /metrics. Labels are
bounded: datasets are the registered ones, categories at most MAX_CATEGORIES per feature.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from services.validation.domain.quality import QUANTILES, QualityStats

_FEATURE_GAUGES = {
    "missing_rate": "Share of records lacking the feature (absent or null).",
    "mean": "Running mean of the feature's numeric values.",
    "var": "Running variance of the feature's numeric values.",
    "min": "Smallest numeric value seen.",
    "max": "Largest numeric value seen.",
    "out_of_range_rate": "Share of validated records whose value lay outside the expected range.",
    "rejected_rate": "Share of records rejected with an error on the feature.",
}


class QualityCollector(Collector):
    def __init__(self, stats: QualityStats) -> None:
        self._stats = stats

    def describe(self) -> list[Metric]:
        return []  # names are known only at scrape time; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        records = GaugeMetricFamily(
            "mlops_validation_records",
            "Raw records of a dataset seen since start, by outcome (raw, validated, rejected).",
            labels=["dataset", "outcome"],
        )
        rejections = GaugeMetricFamily(
            "mlops_validation_rejections",
            "Rejected records of a dataset that failed each rule, since start.",
            labels=["dataset", "rule"],
        )
        unattributed = GaugeMetricFamily(
            "mlops_validation_unattributed",
            "Raw messages of no known dataset (malformed, unknown_dataset), since start.",
            labels=["rule"],
        )
        features = {
            name: GaugeMetricFamily(
                f"mlops_validation_feature_{name}", help_text, labels=["dataset", "feature"]
            )
            for name, help_text in _FEATURE_GAUGES.items()
        }
        quantiles = GaugeMetricFamily(
            "mlops_validation_feature_quantile",
            "Streaming quantile (P²) of the feature's numeric values.",
            labels=["dataset", "feature", "quantile"],
        )
        categories = GaugeMetricFamily(
            "mlops_validation_feature_category_frequency",
            "Share of the feature's present values equal to each category.",
            labels=["dataset", "feature", "category"],
        )
        out_of_range = CounterMetricFamily(
            "mlops_validation_out_of_range",
            "Validated records whose value lay outside the feature's expected range (accepted, "
            "flagged), since start.",
            labels=["dataset", "feature"],
        )
        feature_rejections = CounterMetricFamily(
            "mlops_validation_feature_rejections",
            "Records rejected with an error on the feature, since start.",
            labels=["dataset", "feature"],
        )
        for snapshot in self._stats.snapshots():
            dataset = snapshot["dataset"]
            for outcome, key in (
                ("raw", "records"),
                ("validated", "validated"),
                ("rejected", "rejected"),
            ):
                records.add_metric([dataset, outcome], snapshot[key])
            for rule, count in snapshot["rejected_by_rule"].items():
                rejections.add_metric([dataset, rule], count)
            for feature, summary in snapshot["features"].items():
                if "out_of_range" in summary:
                    out_of_range.add_metric([dataset, feature], summary["out_of_range"])
                feature_rejections.add_metric([dataset, feature], summary["rejected"])
                for name, family in features.items():
                    if summary.get(name) is not None:
                        family.add_metric([dataset, feature], summary[name])
                for name, q in QUANTILES.items():
                    if summary.get(name) is not None:
                        quantiles.add_metric([dataset, feature, str(q)], summary[name])
                for category, share in summary.get("category_frequency", {}).items():
                    categories.add_metric([dataset, feature, category], share)
        for rule, count in self._stats.unattributed_counts().items():
            unattributed.add_metric([rule], count)
        yield records
        yield rejections
        yield unattributed
        yield out_of_range
        yield feature_rejections
        yield from features.values()
        yield quantiles
        yield categories


def register(stats: QualityStats, registry: CollectorRegistry = REGISTRY) -> QualityCollector:
    collector = QualityCollector(stats)
    registry.register(collector)
    return collector
