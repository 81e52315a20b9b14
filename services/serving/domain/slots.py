"""Which version of each served model answers, and how a promotion replaces it.

A slot holds references to the loaded champion (and challenger, for shadow scoring). A new
version is loaded and warmed up outside the slot; `swap` then replaces the reference under a
lock, so a request keeps the model object it read when it started and none waits for a load.

What a lifecycle change does (`verdict`), for the alias it names:

| change                                   | verdict     |
|------------------------------------------|-------------|
| an event id already handled              | duplicate   |
| nothing served yet                       | load        |
| a newer version                          | load        |
| a rollback (ModelRolledBack), any version | load       |
| the version already served               | same        |
| an older version, not a rollback         | older       |
| the start-up lookup, once a version is served | superseded |

The start-up lookup (the registry's champion when the service starts) never replaces what a
lifecycle event loaded meanwhile: the topic's order is the truth, the lookup only fills an
empty slot.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from services.serving.domain.served import ServedModel
from shared.events.models import ArtifactRef

CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"
REMEMBERED_EVENTS: Final = 10_000


class Verdict(StrEnum):
    LOAD = "load"
    DUPLICATE = "duplicate"
    SAME = "same"
    OLDER = "older"
    SUPERSEDED = "superseded"
    DEFERRED = "deferred"


@dataclass(frozen=True)
class Change:
    """A version taking an alias, as serving reads ModelPromoted, ModelRolledBack or the
    start-up lookup (no event id, `initial`)."""

    model: str
    alias: str
    version: int
    artifact: ArtifactRef
    event_id: str | None = None
    rollback: bool = False
    initial: bool = False


def verdict(current: int | None, change: Change) -> Verdict:
    """What a change does to an alias currently held by version `current` (None: empty)."""
    if change.initial:
        return Verdict.LOAD if current is None else Verdict.SUPERSEDED
    if current is None:
        return Verdict.LOAD
    if change.version == current:
        return Verdict.SAME
    if change.version < current and not change.rollback:
        return Verdict.OLDER
    return Verdict.LOAD


class UnknownModel(LookupError):
    def __init__(self, name: str, served: list[str]) -> None:
        super().__init__(f"model {name!r} is not served here; served: {', '.join(served)}")
        self.name, self.served = name, served


class NoChampion(LookupError):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"model {name!r} has no champion loaded yet: {reason}")
        self.name, self.reason = name, reason


class ModelSlot:
    """The versions of one model that answer (champion) or shadow it (challenger)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._served: dict[str, ServedModel] = {}
        self._lock = threading.Lock()
        self._handled: OrderedDict[str, None] = OrderedDict()
        self.waiting_for = "the registry's champion (asked once models.lifecycle is followed)"

    def current(self, alias: str = CHAMPION) -> ServedModel | None:
        """The model answering for an alias now; a plain read, never blocked by a swap."""
        return self._served.get(alias)

    def champion(self) -> ServedModel:
        served = self._served.get(CHAMPION)
        if served is None:
            raise NoChampion(self.name, self.waiting_for)
        return served

    def version(self, alias: str) -> int | None:
        served = self._served.get(alias)
        return None if served is None else served.version

    def verdict(self, change: Change) -> Verdict:
        with self._lock:
            if change.event_id is not None and change.event_id in self._handled:
                return Verdict.DUPLICATE
            return verdict(self.version(change.alias), change)

    def swap(self, change: Change, served: ServedModel) -> Verdict:
        """Puts a loaded model in place if the change still applies (another may have been
        swapped in while it loaded); returns what was done."""
        with self._lock:
            decided = verdict(self.version(change.alias), change)
            if decided == Verdict.LOAD:
                self._served[change.alias] = served
            self._remember(change.event_id)
            return decided

    def handled(self, change: Change) -> None:
        """Marks a change's event as handled without a swap (ignored or refused)."""
        with self._lock:
            self._remember(change.event_id)

    def _remember(self, event_id: str | None) -> None:
        if event_id is None:
            return
        self._handled[event_id] = None
        while len(self._handled) > REMEMBERED_EVENTS:
            self._handled.popitem(last=False)


class ModelSlots:
    """Every served model's slot, by name."""

    def __init__(self, names: list[str]) -> None:
        self._slots = {name: ModelSlot(name) for name in names}

    @property
    def names(self) -> list[str]:
        return list(self._slots)

    def __iter__(self) -> Iterator[ModelSlot]:
        return iter(self._slots.values())

    def get(self, name: str) -> ModelSlot:
        try:
            return self._slots[name]
        except KeyError:
            raise UnknownModel(name, self.names) from None

    def serves(self, name: str) -> bool:
        return name in self._slots

    def without_champion(self) -> dict[str, str]:
        """Models that cannot answer yet, and what each waits for."""
        return {
            slot.name: slot.waiting_for for slot in self._slots.values() if slot.current() is None
        }
