"""The loaded models' memory: what each holds, what is in use, and evictions within a budget.

Every model in memory (a champion, or a challenger in shadow mode) has an entry: its retained
size (domain/sizes.py, measured once loaded), when a request last used it and how many
requests hold it now. Before a load, `make_room` evicts least-recently-used models (policy:
domain/eviction.py) so that the estimate fits: the size measured for that version before, else
its artifact's byte size times the largest retained/artifact ratio measured so far (1 before
any load; for the skops pipelines tried the artifact is 1.1 to 2.5 times the retained size).
Once loaded, `admit` puts the
model in place and records its measured size, evicting more if the estimate was short. A
version is measured at its first load only (`measured`): the walk of its object graph is slow,
and a reload of the same artifact holds the same bytes. During
a hot swap both versions count, as both are in memory until the old one's requests finish.

Requests `hold` a champion while they are scored (and while their features are looked up);
a held model is never evicted. One lock covers the entries and the slots' references, so a
model is never evicted between a request reading it and holding it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.serving import metrics
from services.serving.domain.eviction import (
    MemoryBudget,
    NoRoom,
    Resident,
    choose_evictions,
    fits,
)
from services.serving.domain.served import ServedModel
from services.serving.domain.slots import CHAMPION, ModelSlots

log = logging.getLogger(__name__)

Key = tuple[str, str]
"""(model, alias)"""


@dataclass
class Entry:
    version: int
    size_bytes: int
    last_used: float
    in_flight: int = 0
    pinned: bool = False

    def resident(self, key: Key) -> Resident:
        return Resident(key, self.size_bytes, self.last_used, self.in_flight, self.pinned)


class ModelMemory:
    def __init__(
        self,
        slots: ModelSlots,
        budget: MemoryBudget,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._slots = slots
        self.budget = budget
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[Key, Entry] = {}
        self._measured: dict[tuple[str, int], int] = {}
        self._ratio: float | None = None
        self.loads = 0
        self.reloads = 0
        self.evictions = 0
        metrics.MEMORY_LIMIT.set(budget.max_bytes)

    def hold(self, model: str) -> ServedModel | None:
        """The model's loaded champion, held until `release`; None when it is not loaded."""
        with self._lock:
            served = self._slots.get(model).current()
            entry = self._entries.get((model, CHAMPION))
            if served is None or entry is None:
                return None
            entry.in_flight += 1
            entry.last_used = self._clock()
            return served

    def hold_loaded(self, model: str) -> bool:
        """Holds a champion a request got from its load; False when it is no longer in memory
        (evicted already: the request finishes on the object it has, nothing to release)."""
        with self._lock:
            entry = self._entries.get((model, CHAMPION))
            if entry is None:
                return False
            entry.in_flight += 1
            entry.last_used = self._clock()
            return True

    def release(self, model: str) -> None:
        with self._lock:
            entry = self._entries.get((model, CHAMPION))
            if entry is not None and entry.in_flight > 0:
                entry.in_flight -= 1

    def measured(self, model: str, version: int) -> int | None:
        """The version's size as measured when it first loaded here; None before that."""
        return self._measured.get((model, version))

    def estimate(self, model: str, version: int, artifact_bytes: int | None) -> int:
        """A version's size before it loads: as measured before, else its artifact's size."""
        known = self.measured(model, version)
        if known is not None:
            return known
        return round((artifact_bytes or 0) * (self._ratio or 1.0))

    def has_room(self, estimate: int) -> bool:
        """Whether one more model of `estimate` bytes fits without evicting anything."""
        with self._lock:
            used = sum(entry.size_bytes for entry in self._entries.values())
            return fits(used + estimate, len(self._entries) + 1, self.budget)

    def make_room(self, key: Key, estimate: int) -> None:
        """Evicts what must go for `key` to load; NoRoom (nothing evicted) when it cannot fit."""
        with self._lock:
            adding = 0 if key in self._entries else 1
            chosen = choose_evictions(
                self._residents(), estimate, self.budget, keep={key}, incoming_models=adding
            )
            for victim in chosen:
                self._evict(victim)  # type: ignore[arg-type]

    def admit(self, key: Key, served: ServedModel, size: int, install: Callable[[], Any]) -> Any:
        """Runs `install` (the slot's swap) and records the model's measured size if it did
        something; then evicts more if the measured size exceeds the estimate. Returns what
        `install` returned."""
        with self._lock:
            installed = install()
            if not installed:
                return installed
            model, alias = key
            before = self._entries.get(key)
            in_flight = before.in_flight if before is not None else 0
            self._entries[key] = Entry(
                served.version, size, self._clock(), in_flight, pinned=alias != CHAMPION
            )
            self.loads += 1
            if (model, served.version) in self._measured:
                self.reloads += 1
            self._measured[(model, served.version)] = size
            artifact_bytes = served.card.artifact.size_bytes
            if artifact_bytes:
                self._ratio = max(self._ratio or 0.0, size / artifact_bytes)
            metrics.MODEL_BYTES.labels(model, alias).set(size)
            self._back_within_budget(key)
            return installed

    def forget(self, key: Key) -> None:
        """The model left memory otherwise (a cold promotion dropped it)."""
        with self._lock:
            if self._entries.pop(key, None) is not None:
                self._removed(key)

    def snapshot(self) -> dict[str, Any]:
        """What /memory answers."""
        with self._lock:
            now = self._clock()
            loaded = [
                {
                    "model": model,
                    "alias": alias,
                    "version": entry.version,
                    "size_bytes": entry.size_bytes,
                    "idle_s": round(now - entry.last_used, 3),
                    "in_flight": entry.in_flight,
                }
                for (model, alias), entry in sorted(self._entries.items())
            ]
            return {
                "limit_bytes": self.budget.max_bytes,
                "max_models": self.budget.max_models,
                "used_bytes": sum(entry["size_bytes"] for entry in loaded),
                "loads": self.loads,
                "reloads": self.reloads,
                "evictions": self.evictions,
                "loaded": loaded,
            }

    def size_of(self, key: Key) -> int | None:
        entry = self._entries.get(key)
        return None if entry is None else entry.size_bytes

    def _residents(self) -> list[Resident]:
        return [entry.resident(key) for key, entry in self._entries.items()]

    def _back_within_budget(self, key: Key) -> None:
        try:
            chosen = choose_evictions(
                self._residents(), 0, self.budget, keep={key}, incoming_models=0
            )
        except NoRoom as error:
            log.warning("loaded models exceed the memory limit until requests finish: %s", error)
            chosen = []
        for victim in chosen:
            self._evict(victim)  # type: ignore[arg-type]
        self._update_gauges()

    def _evict(self, key: Key) -> None:
        model, alias = key
        entry = self._entries.pop(key)
        self._slots.slot(model).unload(alias)
        self.evictions += 1
        metrics.EVICTIONS.labels(model).inc()
        self._removed(key)
        log.info("evicted %s %s v%d (%d bytes)", model, alias, entry.version, entry.size_bytes)

    def _removed(self, key: Key) -> None:
        with contextlib.suppress(KeyError):
            metrics.MODEL_BYTES.remove(*key)
        self._update_gauges()

    def _update_gauges(self) -> None:
        metrics.MEMORY_USED.set(sum(entry.size_bytes for entry in self._entries.values()))
        metrics.MODELS_RESIDENT.set(len(self._entries))
