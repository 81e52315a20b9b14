"""The lookup cache in front of the online store: newest vector wins, bounded size and age."""

from __future__ import annotations

from dataclasses import dataclass

from services.feature_store.domain.lookup_cache import LookupCache


@dataclass(frozen=True)
class Vector:
    dataset: str
    entity: str
    event_time_us: int
    offset: int

    @property
    def order(self) -> tuple[int, int]:
        return self.event_time_us, self.offset


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_cached_vector_is_only_replaced_by_a_newer_one() -> None:
    cache: LookupCache[Vector] = LookupCache(10, 60)
    cache.put([Vector("loans", "a", 2_000, 5)])
    cache.put([Vector("loans", "a", 1_000, 9)])  # older event time, arrived late
    assert cache.get("loans", "a") == Vector("loans", "a", 2_000, 5)
    cache.put([Vector("loans", "a", 2_000, 7)])  # same time, later offset
    assert cache.get("loans", "a") == Vector("loans", "a", 2_000, 7)
    assert cache.get("other", "a") is None


def test_entries_expire_after_their_ttl_and_the_least_recently_used_go_first() -> None:
    clock = Clock()
    cache: LookupCache[Vector] = LookupCache(2, 30, clock)
    cache.put([Vector("loans", "a", 1, 1), Vector("loans", "b", 1, 2)])
    assert cache.get("loans", "a") is not None  # a is now the most recently used
    cache.put([Vector("loans", "c", 1, 3)])
    assert cache.get("loans", "b") is None
    assert cache.get("loans", "a") is not None
    clock.now += 30
    assert cache.get("loans", "a") is None
    assert len(cache) == 1


def test_a_rendered_vector_is_rendered_once_until_it_is_replaced() -> None:
    cache: LookupCache[Vector] = LookupCache(10, 60)
    renders: list[Vector] = []

    def render(vector: Vector) -> bytes:
        renders.append(vector)
        return f"{vector.offset}".encode()

    assert cache.rendered("loans", "a", render) is None
    cache.put([Vector("loans", "a", 1, 1)])
    assert cache.rendered("loans", "a", render) == b"1"
    assert cache.rendered("loans", "a", render) == b"1"
    cache.put([Vector("loans", "a", 1, 2)])
    assert cache.rendered("loans", "a", render) == b"2"
    assert len(renders) == 2


def test_a_cache_of_no_entries_or_no_ttl_is_disabled() -> None:
    for cache in (LookupCache[Vector](0, 60), LookupCache[Vector](10, 0)):
        cache.put([Vector("loans", "a", 1, 1)])
        assert cache.get("loans", "a") is None
        assert not cache.enabled
