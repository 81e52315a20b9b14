"""Each dataset's task (classification or regression), from its registered spec.

Read through shared.datasets.registry.SpecRegistry over data.specs, as the other services
read specs. A dataset whose spec is unknown (or a registry that cannot answer) gets the
configured fallback and is asked about again `retry_s` later, so a stream naming an unknown
dataset never re-reads the topic on every message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from shared.datasets.spec import VersionedSpec

log = logging.getLogger(__name__)


class Specs(Protocol):
    def latest(self, name: str) -> VersionedSpec: ...


class DatasetTasks:
    def __init__(
        self,
        specs: Specs,
        fallback: Mapping[str, str],
        retry_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._specs = specs
        self._fallback = dict(fallback)
        self._retry_s = retry_s
        self._clock = clock
        self._known: dict[str, str] = {}
        self._asked_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def task(self, dataset: str) -> str:
        with self._lock:
            known = self._known.get(dataset)
            if known is not None:
                return known
            asked = self._asked_at.get(dataset)
            now = self._clock()
            if asked is None or now - asked >= self._retry_s:
                self._asked_at[dataset] = now
                found = self._lookup(dataset)
                if found is not None:
                    self._known[dataset] = found
                    return found
            return self._fallback.get(dataset, "classification")

    def _lookup(self, dataset: str) -> str | None:
        try:
            task = self._specs.latest(dataset).spec.task
        except Exception as error:  # unknown dataset, or the broker cannot answer: fallback
            log.info("task of %s unknown for now (%s): using the fallback", dataset, error)
            return None
        return task or "classification"
