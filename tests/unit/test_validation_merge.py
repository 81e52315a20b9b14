"""Replicas' statistics merged: what one process reading every partition would report."""

from __future__ import annotations

import random

import pytest

from services.validation.domain.merge import merge_dataset_snapshots
from services.validation.domain.quality import QUANTILES, QualityStats
from tests.unit.test_validation_quality import RANGE, SPEC, fed

EXACT = ("count", "missing", "non_finite", "unreadable", "rejected", "numbers", "out_of_range")


def fed_with(records: list[dict[str, object]]) -> QualityStats:
    stats = QualityStats()
    for values in records:
        stats.observe("shop", SPEC, values, [])
    return stats


def test_two_halves_merge_into_the_whole_exactly_but_quantiles_approximately() -> None:
    rng = random.Random(7)
    amounts: list[object] = [rng.gauss(100, 20) for _ in range(2000)] + [None, "lots"]
    records: list[dict[str, object]] = [
        {"amount": a, "channel": rng.choice(["web", "store"]), "member": rng.random() < 0.3}
        for a in amounts
    ]
    records.append({"channel": "web", "member": False})  # amount absent
    rng.shuffle(records)
    whole = fed_with(records)
    halves = [fed_with(records[0::2]), fed_with(records[1::2])]
    for stats in (whole, halves[0]):  # one rejected record, read by one replica
        stats.observe("shop", SPEC, {"amount": 2000, "channel": "web", "member": True}, [RANGE])
    merged = merge_dataset_snapshots([h.snapshot("shop") for h in halves])
    expected = whole.snapshot("shop")
    for key in ("records", "validated", "rejected", "rejected_by_rule", "errors_by_field"):
        assert merged[key] == expected[key], key
    for name, feature in expected["features"].items():
        got = merged["features"][name]
        for key in EXACT:
            assert got.get(key) == feature.get(key), (name, key)
        if feature.get("numbers") == 0:
            assert got["mean"] is None and got["min"] is None, name
        elif "mean" in feature:
            assert got["mean"] == pytest.approx(feature["mean"], rel=1e-12)
            assert got["var"] == pytest.approx(feature["var"], rel=1e-9)
            assert (got["min"], got["max"]) == (feature["min"], feature["max"])
            for quantile in QUANTILES:
                assert got[quantile] == pytest.approx(feature[quantile], rel=0.05)
        if "categories" in feature:
            assert got["categories"] == feature["categories"]
    assert merged["replicas"] == 2


def test_one_replica_s_snapshot_is_returned_as_it_is() -> None:
    snapshot = fed([1.0, 2.0]).snapshot("shop")
    assert merge_dataset_snapshots([snapshot]) is snapshot
