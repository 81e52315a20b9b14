"""Which loaded models make room for another: the eviction policy, free of I/O.

Serving holds champions within a memory budget (MLOPS_SERVING_MODEL_MEMORY_MB and, optionally,
MLOPS_SERVING_MAX_LOADED_MODELS). When a model is about to load, `choose_evictions` names the
loaded models to drop so that it fits: least recently used first, never one with a request in
flight, never a pinned one (a challenger in shadow mode), never one the caller keeps (the
model being replaced by a hot swap). When that is not enough it raises NoRoom with the
reason, and nothing is evicted.

    >>> budget = MemoryBudget(max_bytes=100)
    >>> loaded = [Resident("a", 40, last_used=1), Resident("b", 40, last_used=2)]
    >>> choose_evictions(loaded, 30, budget)
    ['a']
    >>> choose_evictions([Resident("a", 40, 1, in_flight=1), Resident("b", 40, 2)], 30, budget)
    ['b']
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class MemoryBudget:
    """At most `max_bytes` of loaded models and, when set, at most `max_models` of them."""

    max_bytes: int
    max_models: int | None = None


@dataclass(frozen=True)
class Resident:
    """A loaded model as the policy sees it; `last_used` orders use (larger: more recent)."""

    key: Hashable
    size_bytes: int
    last_used: float
    in_flight: int = 0
    pinned: bool = False

    @property
    def evictable(self) -> bool:
        return self.in_flight == 0 and not self.pinned


class NoRoom(Exception):
    """A model that cannot fit, even after evicting every model that may be evicted."""


def fits(used_bytes: int, count: int, budget: MemoryBudget) -> bool:
    """Whether `count` models of `used_bytes` in all stay within the budget."""
    within_count = budget.max_models is None or count <= budget.max_models
    return used_bytes <= budget.max_bytes and within_count


def choose_evictions(
    residents: Sequence[Resident],
    incoming_bytes: int,
    budget: MemoryBudget,
    keep: Collection[Hashable] = (),
    incoming_models: int = 1,
) -> list[Hashable]:
    """The keys to evict, least recently used first, for `incoming_models` more models of
    `incoming_bytes` to fit (0 and 0: the residents to drop to get back within the budget)."""
    if incoming_bytes > budget.max_bytes:
        raise NoRoom(
            f"the model needs {_mb(incoming_bytes)}, more than the whole limit of "
            f"{_mb(budget.max_bytes)} (MLOPS_SERVING_MODEL_MEMORY_MB)"
        )
    used = sum(resident.size_bytes for resident in residents) + incoming_bytes
    count = len(residents) + incoming_models
    candidates = sorted(
        (r for r in residents if r.evictable and r.key not in keep), key=lambda r: r.last_used
    )
    chosen: list[Hashable] = []
    for resident in candidates:
        if fits(used, count, budget):
            return chosen
        chosen.append(resident.key)
        used -= resident.size_bytes
        count -= 1
    if fits(used, count, budget):
        return chosen
    raise NoRoom(_no_room(residents, used, count, budget))


def _no_room(residents: Sequence[Resident], used: int, count: int, budget: MemoryBudget) -> str:
    held = [r for r in residents if not r.evictable]
    limit = f"limit {_mb(budget.max_bytes)}"
    if budget.max_models is not None:
        limit += f", {budget.max_models} models"
    return (
        f"no room within the {limit}: {_mb(used)} in {count} models would be loaded, and "
        f"{len(held)} loaded model(s) cannot be evicted (requests in flight or a challenger)"
    )


def _mb(size: int) -> str:
    return f"{size / 1_048_576:.1f} MB"
