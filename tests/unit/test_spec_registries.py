"""SpecRegistries: one spec registry per namespace, the service's own kept, others bounded."""

from __future__ import annotations

import pytest

from shared.datasets.registry import SpecRegistries, SpecRegistry


@pytest.fixture(autouse=True)
def _no_kafka(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    refreshed: list[str] = []
    monkeypatch.setattr(
        SpecRegistry, "refresh", lambda self, timeout_s=10.0: refreshed.append(self._topic)
    )
    return refreshed


def config(namespace: str) -> dict[str, str]:
    return {"bootstrap.servers": "127.0.0.1:1", "client.id": f"test-{namespace}"}


def test_each_namespace_reads_its_own_specs_topic_and_is_refreshed_when_asked(
    _no_kafka: list[str],
) -> None:
    own = SpecRegistry(config("mlops"), "mlops.data.specs", "test")
    registries = SpecRegistries(config, "test", {"mlops": own})
    assert registries("mlops") is own
    replay = registries("whatif")
    assert replay._topic == "whatif.data.specs"
    assert registries("whatif") is replay
    assert _no_kafka == ["mlops.data.specs", "whatif.data.specs", "whatif.data.specs"]


def test_other_namespaces_are_bounded_the_own_one_kept() -> None:
    own = SpecRegistry(config("mlops"), "mlops.data.specs", "test")
    registries = SpecRegistries(config, "test", {"mlops": own}, max_other=2)
    first, second = registries("a"), registries("b")
    registries("a")  # asked again: the most recent
    registries("c")  # b goes
    assert registries("a") is first
    assert registries("mlops") is own
    assert registries("b") is not second  # made again
