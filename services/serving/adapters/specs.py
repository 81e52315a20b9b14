"""Dataset specs for serving: the version a model was trained on, from the data.specs topic."""

from __future__ import annotations

from shared.datasets.registry import SpecRegistry
from shared.datasets.spec import DatasetSpec


class SpecSource:
    """Reads SpecRegistry only when a model loads, never on the request path."""

    def __init__(self, registry: SpecRegistry) -> None:
        self._registry = registry

    def spec(self, dataset: str, version: int | None) -> DatasetSpec:
        """The spec a model was trained on (the latest when its lineage names no version);
        LookupError when it is not registered."""
        if version is None:
            return self._registry.latest(dataset).spec
        return self._registry.get(dataset, version).spec
