"""Live feature values against the training reference of the model's lineage."""

from __future__ import annotations

import math
from typing import Any

import pytest

from services.monitoring.adapters.registry import BackgroundLineages
from services.monitoring.domain.reference import (
    ReferenceComparison,
    TrainingReferences,
    training_reference,
)

LINEAGE = {
    "data_quality": {
        "numeric": {
            "salary": {"mean": 100.0, "std": 10.0, "min": 70.0, "max": 130.0},
            "age": {"mean": 40.0, "std": 0.0, "min": 40.0, "max": 40.0},
            "broken": {"mean": "n/a"},
        }
    }
}


def test_the_reference_is_read_from_the_lineage_and_unreadable_figures_are_left_out() -> None:
    reference = training_reference(LINEAGE)
    assert sorted(reference) == ["age", "salary"]
    assert reference["salary"].std == 10.0
    assert training_reference({}) == {}


def test_live_values_are_compared_in_training_standard_deviations() -> None:
    comparison = ReferenceComparison(training_reference(LINEAGE))
    for salary in (110.0, 120.0, 130.0, 140.0):
        comparison.observe({"salary": salary, "age": 40, "unknown": 1.0})
    comparison.observe({"salary": None, "age": "forty"})
    report = comparison.report()

    salary = report["salary"]
    assert salary["live"]["count"] == 4
    assert salary["live"]["mean"] == pytest.approx(125.0)
    assert salary["mean_shift_in_std"] == pytest.approx(2.5)
    assert salary["std_ratio"] == pytest.approx(math.sqrt(166.666666) / 10.0, rel=1e-4)
    assert salary["outside_training_range"] == pytest.approx(0.25)
    assert salary["training"] == {"mean": 100.0, "std": 10.0, "min": 70.0, "max": 130.0}
    # a constant training feature has no scale to shift in
    assert report["age"]["mean_shift_in_std"] is None
    assert report["age"]["outside_training_range"] == 0.0


def test_a_version_that_served_nothing_reports_no_live_figures() -> None:
    report = ReferenceComparison(training_reference(LINEAGE)).report()
    assert report["salary"]["live"] == {"count": 0, "mean": None, "std": None}
    assert report["salary"]["mean_shift_in_std"] is None


class Registry:
    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []
        self.down = True

    def lineage(self, model: str, version: int) -> dict[str, Any] | None:
        self.asked.append((model, version))
        if self.down:
            raise ConnectionError("registry unreachable")
        return LINEAGE if version == 1 else None


def test_values_seen_while_the_lineage_is_awaited_are_compared_once_it_arrives() -> None:
    known: dict[tuple[str, int], dict[str, Any]] = {}
    references = TrainingReferences(lambda model, version: known.get((model, version)), 2)
    for salary in (500.0, 100.0, 110.0):  # the oldest beyond waiting_limit is let go
        references.observe("loans", 1, {"salary": salary})
    references.observe("loans", 2, {"salary": 120.0})
    assert references.report() == {}  # no lineage yet: no comparison

    known[("loans", 1)] = LINEAGE
    report = references.report()
    assert list(report) == ["loans"] and list(report["loans"]) == ["1"]
    assert report["loans"]["1"]["salary"]["live"]["count"] == 2
    assert report["loans"]["1"]["salary"]["mean_shift_in_std"] == pytest.approx(0.5)
    references.observe("loans", 1, {"salary": 120.0})
    assert references.report()["loans"]["1"]["salary"]["live"]["count"] == 3
    assert list(references.report()["loans"]) == ["1"]  # v2's lineage is still unknown


def test_a_lineage_is_asked_again_retry_s_after_a_failure_or_an_unknown_version() -> None:
    registry, now = Registry(), [0.0]
    lineages = BackgroundLineages(registry.lineage, retry_s=30, clock=lambda: now[0])
    assert lineages.lineage("loans", 1) is None and lineages.fetch_next(timeout_s=0)
    assert lineages.lineage("loans", 1) is None  # within retry_s: not asked again
    assert not lineages.fetch_next(timeout_s=0) and registry.asked == [("loans", 1)]

    registry.down, now[0] = False, 31.0
    assert lineages.lineage("loans", 1) is None and lineages.lineage("loans", 2) is None
    assert lineages.fetch_next(timeout_s=0) and lineages.fetch_next(timeout_s=0)
    assert lineages.lineage("loans", 1) == LINEAGE
    assert lineages.lineage("loans", 2) is None  # unknown to the registry: asked at 61 s
    assert not lineages.fetch_next(timeout_s=0)
    now[0] = 61.0
    assert lineages.lineage("loans", 2) is None and lineages.fetch_next(timeout_s=0)
    assert registry.asked == [("loans", 1), ("loans", 1), ("loans", 2), ("loans", 2)]
