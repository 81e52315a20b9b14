"""Streaming data-quality statistics (River), their HTTP view and their Prometheus gauges."""

from __future__ import annotations

import asyncio
import math

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.validation import metrics
from services.validation.domain.quality import MAX_CATEGORIES, OTHER, QualityStats
from services.validation.http import stats_router
from shared.events.records import FieldError
from tests.unit.test_validation_rules import EXPECTED, a_spec

SPEC = a_spec()
RANGE = FieldError(field="amount", rule="range", message="too big", value=2000)


def fed(amounts: list[object]) -> QualityStats:
    stats = QualityStats()
    for n, amount in enumerate(amounts):
        values = {"amount": amount, "channel": "web" if n % 4 else "store", "member": n % 2 == 0}
        if amount == "absent":
            del values["amount"]
        stats.observe("shop", SPEC, values, [])
    return stats


def test_numeric_features_get_count_missing_rate_moments_extremes_and_quantiles() -> None:
    amounts: list[object] = [float(n) for n in range(1, 101)]
    stats = fed([*amounts, None, "absent", math.nan, "lots"])
    amount = stats.snapshot("shop")["features"]["amount"]
    assert amount["count"] == 104 and amount["missing"] == 2
    assert amount["missing_rate"] == pytest.approx(2 / 104)
    assert amount["non_finite"] == 1 and amount["unreadable"] == 1
    assert amount["numbers"] == 100
    assert amount["mean"] == pytest.approx(50.5)
    assert amount["var"] == pytest.approx(841.6667, rel=1e-3)
    assert (amount["min"], amount["max"]) == (1.0, 100.0)
    assert amount["p50"] == pytest.approx(50.5, abs=2)
    assert amount["p90"] == pytest.approx(90, abs=2)
    assert amount["p99"] == pytest.approx(99, abs=2)


def test_categorical_and_boolean_features_get_value_frequencies() -> None:
    features = fed([1.0] * 8).snapshot("shop")["features"]
    assert features["channel"]["categories"] == {"web": 6, "store": 2}
    assert features["channel"]["category_frequency"] == {"web": 0.75, "store": 0.25}
    assert features["member"]["category_frequency"] == {"true": 0.5, "false": 0.5}
    assert features["items"]["missing_rate"] == 1.0, "never sent"


def test_distinct_categories_are_bounded() -> None:
    stats = QualityStats()
    for n in range(MAX_CATEGORIES + 50):
        stats.observe("shop", SPEC, {"channel": f"c{n}"}, [])
    categories = stats.snapshot("shop")["features"]["channel"]["categories"]
    assert len(categories) == MAX_CATEGORIES + 1 and categories[OTHER] == 50


def test_outcomes_are_counted_per_rule_and_field() -> None:
    stats = QualityStats()
    stats.observe(
        "shop", SPEC, {"amount": 2000}, [RANGE, RANGE.model_copy(update={"field": "items"})]
    )
    stats.observe("shop", SPEC, {"amount": 1}, [])
    snapshot = stats.snapshot("shop")
    assert (snapshot["records"], snapshot["validated"], snapshot["rejected"]) == (2, 1, 1)
    assert snapshot["rejected_by_rule"] == {"range": 1}, "a record counts once per rule"
    assert snapshot["errors_by_field"] == {"amount": {"range": 1}, "items": {"range": 1}}
    assert stats.snapshot("other") is None


def test_the_stats_endpoint_serves_known_datasets_and_404s_unknown_ones() -> None:
    stats = fed([1.0, 2.0])
    specs = {"shop": SPEC, "quiet": a_spec(name="quiet")}
    app = FastAPI()
    app.include_router(stats_router(stats, lambda: sorted(specs), specs.get))

    async def get_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://validation") as c:
            return [
                await c.get(path)
                for path in ("/stats/shop", "/stats/quiet", "/stats/nope", "/stats")
            ]

    shop, quiet, missing, listing = asyncio.run(get_all())
    assert shop.status_code == 200 and shop.json()["records"] == 2
    assert quiet.status_code == 200 and quiet.json()["records"] == 0
    assert set(quiet.json()["features"]) == {f.name for f in SPEC.features}
    assert missing.status_code == 404
    assert missing.json()["detail"] == "unknown dataset 'nope'; known: quiet, shop"
    assert listing.json() == {"datasets": ["quiet", "shop"], "unattributed": {}}


def test_statistics_are_exported_as_prometheus_gauges() -> None:
    stats = fed([1.0, 3.0, None, 5.0])
    stats.observe("shop", SPEC, {"amount": 2000}, [RANGE])
    stats.observe_unattributed("malformed")
    registry = CollectorRegistry()
    metrics.register(stats, registry)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }

    def gauge(name: str, **labels: str) -> float:
        return samples[(f"mlops_validation_{name}", tuple(sorted(labels.items())))]

    assert gauge("records", dataset="shop", outcome="raw") == 5
    assert gauge("records", dataset="shop", outcome="validated") == 4
    assert gauge("records", dataset="shop", outcome="rejected") == 1
    assert gauge("rejections", dataset="shop", rule="range") == 1
    assert gauge("unattributed", rule="malformed") == 1
    assert gauge("feature_missing_rate", dataset="shop", feature="amount") == 0.2
    assert gauge("feature_max", dataset="shop", feature="amount") == 2000
    assert gauge("feature_quantile", dataset="shop", feature="amount", quantile="0.5") > 0
    assert (
        gauge("feature_category_frequency", dataset="shop", feature="channel", category="web")
        == 0.75
    )


def test_out_of_range_and_rejections_per_feature_are_prometheus_counters_and_rates() -> None:
    stats = QualityStats()
    for n in range(4):
        stats.observe("shop", EXPECTED, {"amount": 300.0 + n, "items": 3}, [], ["amount"])
    stats.observe("shop", EXPECTED, {"amount": 5.0, "items": 3}, [])
    stats.observe("shop", EXPECTED, {"amount": 2000, "items": 3}, [RANGE])
    stats.declare(a_spec(name="quiet", features=EXPECTED.model_dump()["features"]))
    registry = CollectorRegistry()
    metrics.register(stats, registry)
    families = {
        family.name: family
        for family in text_string_to_metric_families(generate_latest(registry).decode())
    }

    def value(family: str, sample: str, **labels: str) -> float:
        [found] = [
            s.value for s in families[family].samples if s.name == sample and s.labels == labels
        ]
        return found

    counter = "mlops_validation_out_of_range"
    assert families[counter].type == "counter"
    assert value(counter, f"{counter}_total", dataset="shop", feature="amount") == 4
    assert value(counter, f"{counter}_total", dataset="shop", feature="items") == 0
    assert value(counter, f"{counter}_total", dataset="quiet", feature="amount") == 0
    rejections = "mlops_validation_feature_rejections"
    assert value(rejections, f"{rejections}_total", dataset="shop", feature="amount") == 1
    rate = "mlops_validation_feature_out_of_range_rate"
    assert value(rate, rate, dataset="shop", feature="amount") == 0.8
    assert value(rate, rate, dataset="shop", feature="items") == 0.0
    quiet = stats.snapshot("quiet")["features"]["amount"]
    assert (quiet["expected_max"], quiet["out_of_range_rate"]) == (200, 0.0)
