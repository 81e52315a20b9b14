"""An in-process cache in front of the online store, for lookups that skip SQL. Pure.

It holds the vectors this worker wrote (every upsert passes through it) and the ones it read
from SQL, each for at most `ttl_s` seconds, and at most `max_entries` of them (least recently
used out first). Like the store, it only ever replaces a vector with a newer one (later event
time, or the same time and a later offset).

Freshness: with one feature-store worker every write of the store goes through this cache, so
a hit is exactly what SQL holds. With several workers, another worker's write reaches this
one's cache when the entry expires: a hit is at most `ttl_s` old.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar


class Versioned(Protocol):
    dataset: str
    entity: str

    @property
    def order(self) -> tuple[int, int]:
        """(event time in microseconds, source offset): the newer vector has the larger."""
        ...


V = TypeVar("V", bound=Versioned)


@dataclass
class _Entry(Generic[V]):
    vector: V
    expires_at: float
    rendered: bytes | None = field(default=None)


class LookupCache(Generic[V]):
    def __init__(
        self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], _Entry[V]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._max_entries > 0 and self._ttl_s > 0

    def get(self, dataset: str, entity: str) -> V | None:
        entry = self._live((dataset, entity))
        return entry.vector if entry is not None else None

    def rendered(self, dataset: str, entity: str, render: Callable[[V], bytes]) -> bytes | None:
        """The cached vector rendered (once per cached vector), or None on a miss."""
        entry = self._live((dataset, entity))
        if entry is None:
            return None
        if entry.rendered is None:
            entry.rendered = render(entry.vector)
        return entry.rendered

    def put(self, vectors: Iterable[V]) -> None:
        if not self.enabled:
            return
        expires_at = self._clock() + self._ttl_s
        with self._lock:
            for vector in vectors:
                key = (vector.dataset, vector.entity)
                held = self._entries.get(key)
                if held is not None and held.vector.order > vector.order:
                    continue
                self._entries[key] = _Entry(vector, expires_at)
                self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def _live(self, key: tuple[str, str]) -> _Entry[V] | None:
        if not self.enabled:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires_at <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry
