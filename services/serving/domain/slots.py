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

Loaded or not: a slot records which version holds each alias here (`assigned`), whether or not
that version is in memory. The versions above are compared with the assigned one, so a
promotion of a model that is not loaded (cold, or evicted) is recorded (`assign`) and loaded
by its next request (`install`, only if the assignment did not move meanwhile); an evicted
model (`unload`) keeps its assignment and answers again once reloaded.

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
    RECORDED = "recorded"


@dataclass(frozen=True)
class Assigned:
    """The version holding an alias here, loaded or not; `artifact` is None while only the
    registry's list named it."""

    version: int
    artifact: ArtifactRef | None = None


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


def initial_verdict(assigned: Assigned | None, loaded: int | None, change: Change) -> Verdict:
    """What the start-up lookup's change does: it fills an empty slot, unless a lifecycle
    change assigned another version meanwhile (a version only the registry's list named may
    be replaced by the registry's fresher answer)."""
    if loaded is not None:
        return Verdict.SUPERSEDED
    if assigned is None or assigned.artifact is None or assigned.version == change.version:
        return Verdict.LOAD
    return Verdict.SUPERSEDED


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
        self._assigned: dict[str, Assigned] = {}
        self.refused_version: int | None = None
        """The champion version refused here; its requests are answered 503 without a retry."""
        self._lock = threading.Lock()
        self._handled: OrderedDict[str, None] = OrderedDict()
        self.not_loaded: str | None = None
        """Why the champion the registry names does not answer here (None: none is known)."""
        self.loading: int | None = None
        """The champion version a promotion is loading into this empty slot; its requests wait
        for it (bounded) rather than being answered 503 at once. ModelLoader._apply ends every
        such load with `done_loading`."""

    def start_loading(self, version: int) -> None:
        """A promotion loads the first champion this slot will hold."""
        self.not_loaded = f"version {version} is loading"
        self.loading = version

    def done_loading(self, version: int) -> None:
        """The load of `version` ended (swapped in, deferred, refused or overtaken)."""
        if self.loading == version:
            self.loading = None

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

    def assigned(self, alias: str = CHAMPION) -> Assigned | None:
        """The version holding the alias here, loaded or not."""
        return self._assigned.get(alias)

    @property
    def answers(self) -> bool:
        """Its champion answers: loaded, or known and loaded on request."""
        if self._served.get(CHAMPION) is not None:
            return True
        return CHAMPION in self._assigned and self.not_loaded is None

    @property
    def waiting_for(self) -> str | None:
        """What the slot waits for before it can answer (None: its champion answers)."""
        if self.answers:
            return None
        return self.not_loaded or f"a champion: {NO_CHAMPION_YET}"

    @property
    def blocked(self) -> str | None:
        """Why a champion the registry names cannot answer yet: what /ready reports."""
        return self.not_loaded if self._served.get(CHAMPION) is None else None

    def version(self, alias: str) -> int | None:
        """The version assigned to the alias here (loaded or not)."""
        assigned = self._assigned.get(alias)
        return None if assigned is None else assigned.version

    def loaded_version(self, alias: str) -> int | None:
        served = self._served.get(alias)
        return None if served is None else served.version

    def verdict(self, change: Change) -> Verdict:
        with self._lock:
            if change.event_id is not None and change.event_id in self._handled:
                return Verdict.DUPLICATE
            return self._verdict(change)

    def _verdict(self, change: Change) -> Verdict:
        if change.initial:
            return initial_verdict(
                self._assigned.get(change.alias), self.loaded_version(change.alias), change
            )
        return verdict(self.version(change.alias), change)

    def listed(self, alias: str, version: int) -> None:
        """The registry's list names this version: assigned, unless a change came first."""
        with self._lock:
            self._assigned.setdefault(alias, Assigned(version))

    def assign(self, change: Change) -> Verdict:
        """Records a change's version without loading it (the model is not loaded here); the
        version loaded before, if any, is dropped."""
        with self._lock:
            decided = self._verdict(change)
            if decided == Verdict.LOAD:
                self._assigned[change.alias] = Assigned(change.version, change.artifact)
                self._served.pop(change.alias, None)
                if change.alias == CHAMPION:
                    self.not_loaded, self.refused_version = None, None
                decided = Verdict.RECORDED
            self._remember(change.event_id)
            return decided

    def install(self, served: ServedModel, alias: str = CHAMPION) -> ServedModel | None:
        """Puts a model loaded on request in place if its version is still the assigned one;
        the model answering then (None: the assignment moved while it loaded)."""
        with self._lock:
            if self.version(alias) != served.version:
                return None
            current = self._served.setdefault(alias, served)
            if alias == CHAMPION:
                self.not_loaded = None
            return current

    def unload(self, alias: str = CHAMPION) -> ServedModel | None:
        """Drops the loaded model (evicted); the assignment stays."""
        with self._lock:
            return self._served.pop(alias, None)

    def swap(self, change: Change, served: ServedModel) -> Verdict:
        """Puts a loaded model in place if the change still applies (another may have been
        swapped in while it loaded); returns what was done."""
        with self._lock:
            decided = self._verdict(change)
            if decided == Verdict.LOAD:
                self._served[change.alias] = served
                self._assigned[change.alias] = Assigned(change.version, change.artifact)
                if change.alias == CHAMPION:
                    self.not_loaded, self.refused_version = None, None
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
        """The models whose champion answers here (loaded, or loaded on request)."""
        return [slot.name for slot in self if slot.answers]

    def blocked(self) -> dict[str, str]:
        """Models whose known champion cannot answer yet, and why (what /ready reports)."""
        return {slot.name: why for slot in self if (why := slot.blocked) is not None}
