"""Spec lookups re-read the registry topic only when it has grown."""

from __future__ import annotations

import pytest

from services.validation.adapters.specs import WatermarkedSpecs
from shared.datasets.registry import UnknownDataset
from shared.datasets.spec import DatasetSpec
from tests.unit.test_validation_handler import FakeSpecs
from tests.unit.test_validation_rules import a_spec


class TopicSpecs(FakeSpecs):
    """A registry whose new specs become visible only when it reads its topic."""

    def __init__(self, *specs: DatasetSpec) -> None:
        super().__init__(*specs)
        self.unread: list[DatasetSpec] = []

    def refresh(self, timeout_s: float = 10.0) -> None:
        super().refresh(timeout_s)
        for spec in self.unread:
            self.add(spec)
        self.unread.clear()


def test_misses_reread_the_registry_only_when_the_topic_grew() -> None:
    registry = TopicSpecs(a_spec())
    end = [(1,)]
    specs = WatermarkedSpecs(registry, lambda timeout_s: end[0])  # type: ignore[arg-type]

    assert specs.latest("shop").version == 1
    assert registry.refreshes == 0, "a known name needs no read"
    for _ in range(3):
        with pytest.raises(UnknownDataset, match="known: shop"):
            specs.latest("nope")
    assert registry.refreshes == 1, "an unchanged topic is not read again"

    registry.unread.append(a_spec(name="fresh"))
    with pytest.raises(UnknownDataset):
        specs.latest("fresh")
    assert registry.refreshes == 1, "not read before the topic's end moved"
    end[0] = (2,)
    assert specs.latest("fresh").spec.name == "fresh"
    assert registry.refreshes == 2, "a grown topic is read"


def test_versions_are_looked_up_and_unknown_ones_refused() -> None:
    registry = FakeSpecs(a_spec())
    specs = WatermarkedSpecs(registry, lambda timeout_s: (1,))  # type: ignore[arg-type]
    assert specs.get("shop", 1).version == 1
    for version in (0, 2, 99):
        with pytest.raises(LookupError, match=f"no version {version}"):
            specs.get("shop", version)
    with pytest.raises(UnknownDataset):
        specs.get("nope", 1)
    assert registry.refreshes == 1
    assert specs.names() == ["shop"]
