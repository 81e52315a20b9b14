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

A model is known once serving hears of it (the registry's list at start-up, a promotion on
models.lifecycle); its slot then says which of three states it is in: its champion answers;
no champion exists yet (NoChampion: /predict 404, not an outage); or a champion exists that
does not answer here (loading, retried after a failure, refused: ChampionNotLoaded, /predict
503 and /ready 503 with the reason).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection, Iterator
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


NO_CHAMPION_YET: Final = "no version holds the champion alias in the registry"


class NotServed(LookupError):
    """A model MLOPS_SERVING_MODELS leaves out of this instance."""

    def __init__(self, name: str, only: Collection[str]) -> None:
        super().__init__(
            f"model {name!r} is not served here: MLOPS_SERVING_MODELS restricts serving to "
            f"{', '.join(sorted(only))}"
        )
        self.name = name


class NoChampion(LookupError):
    """A model without champion: not promoted yet, or not a model at all. Not an outage."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no champion for model {name!r} yet: {NO_CHAMPION_YET}")
        self.name = name


class ChampionNotLoaded(LookupError):
    """A model whose champion is known but does not answer here (loading, retried, refused)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"model {name!r} has a champion that is not loaded here: {reason}")
        self.name, self.reason = name, reason


class ModelSlot:
    """The versions of one model that answer (champion) or shadow it (challenger)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._served: dict[str, ServedModel] = {}
        self._lock = threading.Lock()
        self._handled: OrderedDict[str, None] = OrderedDict()
        self.not_loaded: str | None = None
        """Why the champion the registry names does not answer here (None: none is known)."""

    def current(self, alias: str = CHAMPION) -> ServedModel | None:
        """The model answering for an alias now; a plain read, never blocked by a swap."""
        return self._served.get(alias)

    def champion(self) -> ServedModel:
        served = self._served.get(CHAMPION)
        if served is not None:
            return served
        if self.not_loaded is not None:
            raise ChampionNotLoaded(self.name, self.not_loaded)
        raise NoChampion(self.name)

    @property
    def waiting_for(self) -> str | None:
        """What the slot waits for before it can answer (None: its champion answers)."""
        if self._served.get(CHAMPION) is not None:
            return None
        return self.not_loaded or f"a champion: {NO_CHAMPION_YET}"

    @property
    def blocked(self) -> str | None:
        """Why a champion the registry names cannot answer yet: what /ready reports."""
        return self.not_loaded if self._served.get(CHAMPION) is None else None

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
                if change.alias == CHAMPION:
                    self.not_loaded = None
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
    """Every known model's slot, by name, made when serving first hears of the model (the
    registry's list at start-up, or a promotion). `only` (MLOPS_SERVING_MODELS) restricts the
    models served; None serves every model."""

    def __init__(self, only: Collection[str] | None = None) -> None:
        self.only = frozenset(only) if only else None
        self._slots: dict[str, ModelSlot] = {}
        self._lock = threading.Lock()
        for name in sorted(self.only or ()):
            self._slots[name] = ModelSlot(name)

    @property
    def names(self) -> list[str]:
        return list(self._slots)

    def __iter__(self) -> Iterator[ModelSlot]:
        return iter(list(self._slots.values()))

    def accepts(self, name: str) -> bool:
        return self.only is None or name in self.only

    def slot(self, name: str) -> ModelSlot:
        """The model's slot, made on first use; NotServed when the restriction leaves it out."""
        if not self.accepts(name):
            raise NotServed(name, self.only or ())
        slot = self._slots.get(name)
        if slot is None:
            with self._lock:
                slot = self._slots.setdefault(name, ModelSlot(name))
        return slot

    def get(self, name: str) -> ModelSlot:
        """A known model's slot; NotServed or NoChampion (never made from a request)."""
        if not self.accepts(name):
            raise NotServed(name, self.only or ())
        try:
            return self._slots[name]
        except KeyError:
            raise NoChampion(name) from None

    def champion(self, name: str) -> ServedModel:
        """The version answering for a model; NotServed, NoChampion or ChampionNotLoaded."""
        return self.get(name).champion()

    def answering(self) -> list[str]:
        """The models whose champion answers here."""
        return [slot.name for slot in self if slot.current() is not None]

    def blocked(self) -> dict[str, str]:
        """Models whose known champion cannot answer yet, and why (what /ready reports)."""
        return {slot.name: why for slot in self if (why := slot.blocked) is not None}
