"""Loading a version and swapping it in: from a lifecycle event, or the registry at start-up.

A version is prepared completely before it takes traffic: its registry record (dataset, spec
version, feature columns), the artifact (sha256 checked, skops, no pickle), its dataset spec,
and a warm-up on sample records built from the spec. Only then does the slot swap its
reference. Anything refused is logged and counted (mlops_serving_models_refused_total) and
the version served before keeps serving. Failures worth retrying (registry, MinIO or Kafka
unreachable) defer the change, retried in the background until it loads or a newer change
for the same alias replaces it.

Lazy loading within a memory budget (memory.py): a champion loads on its first request
(`load_on_request`, from lazy.py), or at its promotion when the model is loaded already (a hot
swap) or fits without evicting anything (start-up and promotions use the free room, never
evict for it). A promotion of a model that is neither is recorded only (Verdict.RECORDED): its
next request loads the new version. Challengers (shadow mode) always load, and are never
evicted. Every load first evicts least-recently-used models to make room, then records the
model's size (measured at a version's first load, remembered for its reloads); ModelDeployed
is announced the first time a version answers here, not at every reload after an eviction.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from opentelemetry import trace

from services.serving import metrics
from services.serving.adapters.registry import RegistryRefused, RegistryUnavailable
from services.serving.domain.eviction import MemoryBudget, NoRoom
from services.serving.domain.records import InputSchema
from services.serving.domain.samples import sample_rows
from services.serving.domain.served import ModelCard, ModelUnusable, ServedModel
from services.serving.domain.sizes import retained_bytes
from services.serving.domain.slots import (
    CHALLENGER,
    CHAMPION,
    Assigned,
    Change,
    ModelSlot,
    ModelSlots,
    Verdict,
)
from services.serving.domain.trees import check_tree_predictors
from services.serving.memory import ModelMemory
from shared.artifacts import ArtifactRefused
from shared.datasets.spec import DatasetSpec
from shared.events.models import ArtifactRef

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)


class Registry(Protocol):
    def models(self) -> dict[str, dict[str, int]]: ...

    def alias(self, name: str, alias: str) -> ModelCard | None: ...

    def version(self, name: str, version: int) -> ModelCard: ...


class Artifacts(Protocol):
    def load(self, ref: ArtifactRef) -> Any: ...


class Specs(Protocol):
    def spec(self, dataset: str, version: int | None) -> DatasetSpec: ...


class LoadFailed(Exception):
    """A champion a request asked for could not load; the message says why."""


class Refused(Exception):
    """A version that must not serve; `reason` labels the refusal counter."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_ARTIFACT_REASONS = {
    "sha256 mismatch": "sha256_mismatch",
    "artifact asks to trust": "untrusted_types",
    "not a skops artifact": "not_skops",
    "artifact not found": "not_found",
}


def artifact_reason(error: ArtifactRefused) -> str:
    text = str(error)
    return next(
        (label for start, label in _ARTIFACT_REASONS.items() if text.startswith(start)),
        "unloadable",
    )


class ModelLoader:
    """Applies alias changes one at a time (lifecycle events, the start-up lookup, retries).

    A change that fails for a reason worth retrying (registry, MinIO or Kafka unreachable) is
    deferred, not raised: the lifecycle consumer moves on, and `retry_deferred` tries it again
    until it loads, is refused, or a newer change for the same alias replaces it (so a late
    retry never undoes what came after it).
    """

    def __init__(
        self,
        slots: ModelSlots,
        registry: Registry,
        artifacts: Artifacts,
        specs: Specs,
        on_deployed: Callable[[Change], None] | None = None,
        memory: ModelMemory | None = None,
    ) -> None:
        self._slots = slots
        self.memory = memory or ModelMemory(slots, MemoryBudget(max_bytes=2**62))
        self._announced: set[tuple[str, str, int]] = set()
        self._on_deployed = on_deployed
        self._registry = registry
        self._artifacts = artifacts
        self._specs = specs
        self._applying = threading.Lock()
        self._deferred: dict[tuple[str, str], Change] = {}

    def apply(self, change: Change, card: ModelCard | None = None) -> Verdict | None:
        """Loads and swaps in the version of a change if it applies; None when refused.
        Start-up lookups (`change.initial`) raise what is worth retrying instead of deferring."""
        with self._applying:
            return self._apply(change, card)

    def retry_deferred(self) -> None:
        with self._applying:
            waiting = list(self._deferred.values())
        for change in waiting:
            with self._applying:
                if self._deferred.get((change.model, change.alias)) is change:
                    self._apply(change)

    @property
    def deferred(self) -> list[Change]:
        return list(self._deferred.values())

    def _apply(self, change: Change, card: ModelCard | None = None) -> Verdict | None:
        if not change.initial:
            self._deferred.pop((change.model, change.alias), None)
        slot = self._slots.slot(change.model)
        decided = slot.verdict(change)
        if decided != Verdict.LOAD:
            self._ignored(change, decided)
            slot.handled(change)
            return decided
        if self._stays_cold(slot, change):
            return self._record(slot, change)
        if change.alias == CHAMPION and slot.current() is None and slot.assigned() is None:
            slot.start_loading(change.version)
        attributes = {"mlops.model": change.model, "mlops.alias": change.alias}
        try:
            with _tracer.start_as_current_span(
                f"swap {change.model} {change.alias} to v{change.version}", attributes=attributes
            ):
                return self._load_and_swap(change, card)
        finally:
            slot.done_loading(change.version)

    def _stays_cold(self, slot: ModelSlot, change: Change) -> bool:
        """A champion not loaded here that does not fit without evicting: not loaded now."""
        if change.alias != CHAMPION or slot.current() is not None:
            return False
        size = self.memory.estimate(change.model, change.version, change.artifact.size_bytes)
        return not self.memory.has_room(size)

    def _record(self, slot: ModelSlot, change: Change) -> Verdict:
        recorded = slot.assign(change)
        log.info(
            "%s %s is now version %d, not loaded: %s",
            change.model,
            change.alias,
            change.version,
            "its next request loads it" if recorded == Verdict.RECORDED else recorded.value,
        )
        return recorded

    def _make_room(self, change: Change) -> None:
        """Evicts for a load at promotion; a hot swap or challenger loads even without room."""
        size = self.memory.estimate(change.model, change.version, change.artifact.size_bytes)
        try:
            self.memory.make_room((change.model, change.alias), size)
        except NoRoom as error:
            log.warning("loading %s v%d beyond the limit: %s", change.model, change.version, error)

    def _swap_in(self, slot: ModelSlot, change: Change, served: ServedModel) -> Verdict:
        done: list[Verdict] = []

        def swap() -> bool:
            done.append(slot.swap(change, served))
            return done[0] == Verdict.LOAD

        size = self._retained_bytes(change.model, served)
        self.memory.admit((change.model, change.alias), served, size, swap)
        return done[0]

    def _retained_bytes(self, model: str, served: ServedModel) -> int:
        """The version's size: walked at its first load (a walk of its whole object graph),
        the memory's figure for it at every reload after (the same artifact, the same size)."""
        known = self.memory.measured(model, served.version)
        return known if known is not None else retained_bytes(served.estimator)

    def _load_and_swap(self, change: Change, card: ModelCard | None) -> Verdict | None:
        """The swap span's body: prepare, swap, announce the deployment."""
        slot = self._slots.slot(change.model)
        self._make_room(change)
        try:
            served = self.prepare(change, card)
        except Refused as error:
            self._refused(change, error)
            return None
        except Exception as error:
            if change.initial:
                raise
            self._defer(change, error)
            return Verdict.DEFERRED
        done = self._swap_in(slot, change, served)
        if done == Verdict.LOAD:
            self._announce(change)
            metrics.MODELS_LOADED.labels(change.model, change.alias).inc()
            metrics.SERVED_VERSION.labels(change.model, change.alias).set(change.version)
            log.info(
                "%s %s is now version %d (%s)",
                change.model,
                change.alias,
                change.version,
                "rollback" if change.rollback else change.event_id or "start-up lookup",
            )
        else:
            self._ignored(change, done)
        return done

    def load_on_request(self, model: str) -> ServedModel:
        """The model's champion, loaded for a request if it is not (on a load thread);
        LoadFailed with the reason. Loads again if the champion moved while it loaded."""
        slot = self._slots.slot(model)
        for _ in range(3):
            current = slot.current()
            if current is not None:
                return current
            assigned = slot.assigned()
            if assigned is None:
                raise LoadFailed(slot.not_loaded or "no champion")
            served = self._load_assigned(slot, assigned)
            if served is not None:
                return served
        raise LoadFailed("its champion changed three times while it loaded; try again")

    def _load_assigned(self, slot: ModelSlot, assigned: Assigned) -> ServedModel | None:
        """Loads the assigned champion; the model answering after (None: it moved meanwhile)."""
        version = assigned.version
        try:
            card = self._registry.version(slot.name, version)
            change = Change(slot.name, CHAMPION, version, assigned.artifact or card.artifact)
            self._make_room_or_refuse(change)
            served = self.prepare(change, card)
        except Refused as error:
            self._refused(change, error)
            metrics.COLD_LOADS.labels(slot.name, "refused").inc()
            raise LoadFailed(f"version {version} was refused ({error.reason}): {error}") from None
        except RegistryRefused as error:
            metrics.COLD_LOADS.labels(slot.name, "refused").inc()
            raise LoadFailed(f"version {version}: {error}") from None
        except LoadFailed:
            raise
        except Exception as error:
            metrics.COLD_LOADS.labels(slot.name, "failed").inc()
            raise LoadFailed(
                f"version {version} could not load: {type(error).__name__}: {error}"
            ) from None
        return self._install(slot, change, served)

    def _make_room_or_refuse(self, change: Change) -> None:
        size = self.memory.estimate(change.model, change.version, change.artifact.size_bytes)
        try:
            self.memory.make_room((change.model, CHAMPION), size)
        except NoRoom as error:
            metrics.COLD_LOADS.labels(change.model, "no_room").inc()
            raise LoadFailed(f"version {change.version} cannot load now: {error}") from None

    def _install(self, slot: ModelSlot, change: Change, served: ServedModel) -> ServedModel | None:
        answering: list[ServedModel | None] = []

        def install() -> bool:
            answering.append(slot.install(served))
            return answering[0] is served

        size = self._retained_bytes(slot.name, served)
        self.memory.admit((slot.name, CHAMPION), served, size, install)
        if answering[0] is served:
            metrics.COLD_LOADS.labels(slot.name, "loaded").inc()
            metrics.MODELS_LOADED.labels(slot.name, CHAMPION).inc()
            metrics.SERVED_VERSION.labels(slot.name, CHAMPION).set(change.version)
            self._announce(change)
            log.info("%s champion version %d loaded on request", slot.name, change.version)
        return answering[0]

    def prepare(self, change: Change, card: ModelCard | None = None) -> ServedModel:
        """The version of a change, loaded and warmed up; raises Refused if it must not serve."""
        try:
            card = card or self._registry.version(change.model, change.version)
        except RegistryRefused as error:
            raise Refused("registry_record", str(error)) from None
        if (
            card.artifact.sha256 != change.artifact.sha256
            or card.artifact.uri != change.artifact.uri
        ):
            raise Refused(
                "registry_mismatch",
                f"the event's artifact ({change.artifact.uri}, {change.artifact.sha256[:12]}) is "
                f"not the registry's ({card.artifact.uri}, {card.artifact.sha256[:12]})",
            )
        try:
            estimator = self._artifacts.load(change.artifact)
        except ArtifactRefused as error:
            raise Refused(artifact_reason(error), str(error)) from None
        try:
            spec = self._specs.spec(card.dataset, card.spec_version)
        except LookupError as error:
            raise Refused("unknown_spec", str(error)) from None
        try:
            check_tree_predictors(estimator)
        except ModelUnusable as error:
            raise Refused("unsafe_tree", str(error)) from None
        try:
            served = ServedModel.build(card, estimator, InputSchema.of(spec, card.feature_columns))
            served.warm_up(sample_rows(served.schema))
        except ModelUnusable as error:
            raise Refused("warm_up_failed", str(error)) from None
        return served

    def _announce(self, change: Change) -> None:
        """Tells the platform (ModelDeployed) that this instance serves the version now; a
        failure to announce never undoes the swap."""
        deployed = (change.model, change.alias, change.version)
        if self._on_deployed is None or (change.event_id is None and deployed in self._announced):
            return
        self._announced.add(deployed)
        try:
            self._on_deployed(change)
        except Exception as error:
            log.warning("could not announce %s v%d: %s", change.model, change.version, error)

    def _ignored(self, change: Change, decided: Verdict) -> None:
        metrics.LIFECYCLE_IGNORED.labels(change.model, decided.value).inc()
        log.info(
            "%s %s version %d not swapped in: %s (serving %s)",
            change.model,
            change.alias,
            change.version,
            decided.value,
            self._slots.slot(change.model).loaded_version(change.alias),
        )

    def _defer(self, change: Change, error: Exception) -> None:
        self._deferred[(change.model, change.alias)] = change
        metrics.LOADS_DEFERRED.labels(change.model).inc()
        log.warning(
            "cannot load %s version %d as %s now, will retry: %s: %s",
            change.model,
            change.version,
            change.alias,
            type(error).__name__,
            error,
        )
        slot = self._slots.slot(change.model)
        if nothing_else_to_serve(slot, change):
            slot.not_loaded = f"version {change.version} could not load, retrying: {error}"

    def _refused(self, change: Change, error: Refused) -> None:
        slot = self._slots.slot(change.model)
        slot.handled(change)
        metrics.MODELS_REFUSED.labels(change.model, error.reason).inc()
        kept = slot.loaded_version(change.alias)
        log.error(
            "refused %s version %d as %s (%s): %s; %s",
            change.model,
            change.version,
            change.alias,
            error.reason,
            error,
            f"version {kept} keeps serving" if kept else "nothing served yet",
        )
        if nothing_else_to_serve(slot, change):
            slot.not_loaded = f"version {change.version} was refused ({error.reason}): {error}"
            slot.refused_version = change.version


def nothing_else_to_serve(slot: ModelSlot, change: Change) -> bool:
    """A champion change whose failure leaves the model nothing to answer with (no version
    loaded, and none other assigned to load on request)."""
    if change.alias != CHAMPION or slot.current() is not None:
        return False
    assigned = slot.assigned()
    return assigned is None or assigned.version == change.version


class DeferredLoads:
    """Retries the changes the loader deferred, every `retry_s`."""

    group_id = "deferred-loads"

    def __init__(self, loader: ModelLoader, retry_s: float) -> None:
        self._loader = loader
        self._retry_s = retry_s

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self._retry_s):
            self._loader.retry_deferred()


class ChampionLookup:
    """At start-up, once the lifecycle consumer is positioned: asks the registry for every
    model and the versions holding its aliases (GET /models), then loads each champion (and
    challenger, in shadow mode) of the models served, retrying until each has loaded. What is
    promoted later arrives on models.lifecycle. `discovered` is set once the registry's list
    was read: until then serving cannot know which champions it should answer for."""

    group_id = "champion-lookup"
    ends_by_itself = True

    def __init__(
        self,
        slots: ModelSlots,
        registry: Registry,
        loader: ModelLoader,
        positioned: threading.Event,
        retry_s: float,
        shadow: bool,
    ) -> None:
        self._slots = slots
        self._registry = registry
        self._loader = loader
        self._positioned = positioned
        self._retry_s = retry_s
        self._aliases = (CHAMPION, CHALLENGER) if shadow else (CHAMPION,)
        self._refused: set[tuple[str, str, int, str]] = set()
        self.discovered = threading.Event()
        self.waiting_for = "models.lifecycle to be followed, then the registry's list of models"

    def run(self, stop: threading.Event) -> None:
        while not self._positioned.wait(0.2):
            if stop.is_set():
                return
        pending: set[tuple[str, str]] | None = None
        while not stop.is_set():
            if pending is None:
                pending = self._discover()
            if pending is not None:
                pending = {item for item in sorted(pending) if not self._look_up(*item)}
                if not pending:
                    return
            stop.wait(self._retry_s)

    def check(self) -> None:
        """Readiness: the registry's list of models was read."""
        if not self.discovered.is_set():
            raise RuntimeError(f"waiting for {self.waiting_for}")

    def _discover(self) -> set[tuple[str, str]] | None:
        """The (model, alias) pairs to load, from the registry's list; None when it cannot
        answer. Each served model's slot is made, and a champion to load is marked as such
        before `discovered` is set, so /ready never passes before a known champion answers."""
        try:
            models = self._registry.models()
        except (RegistryUnavailable, RegistryRefused) as error:
            self.waiting_for = f"the registry's list of models: {error}"
            log.warning("cannot list the registry's models: %s", error)
            return None
        pending = set()
        for name, aliases in sorted(models.items()):
            if not self._slots.accepts(name):
                continue
            slot = self._slots.slot(name)
            for alias in self._aliases:
                if alias not in aliases:
                    continue
                pending.add((name, alias))
                slot.listed(alias, aliases[alias])
        self.discovered.set()
        log.info(
            "the registry lists %d model(s); loading %s",
            len(models),
            ", ".join(f"{name} {alias}" for name, alias in sorted(pending)) or "nothing",
        )
        return pending

    def _look_up(self, name: str, alias: str) -> bool:
        """True once there is nothing more to ask the registry for this alias."""
        slot = self._slots.slot(name)
        if slot.current(alias) is not None:
            return True
        if alias == CHAMPION and not self._loader.memory.has_room(0):
            return True  # loaded on its first request
        try:
            card = self._registry.alias(name, alias)
        except (RegistryUnavailable, RegistryRefused) as error:
            if alias == CHAMPION:
                slot.not_loaded = f"the registry's champion: {error}"
            log.warning("cannot ask the registry for the %s of %s: %s", alias, name, error)
            return False
        if card is None:  # the alias moved away since the list was read
            if alias == CHAMPION and slot.current() is None:
                slot.not_loaded = None
            return True
        refusal = (name, alias, card.version, card.artifact.sha256)
        if refusal in self._refused:
            return False  # refused already; ask again in case the alias moves
        change = Change(name, alias, card.version, card.artifact, initial=True)
        try:
            applied = self._loader.apply(change, card)
            if applied is None:
                self._refused.add(refusal)
            if applied == Verdict.RECORDED:
                return True
        except Exception as error:
            log.warning("loading %s version %d failed, will retry: %s", name, card.version, error)
            if alias == CHAMPION:
                slot.not_loaded = f"version {card.version} could not load, retrying: {error}"
            return False
        return slot.current(alias) is not None or alias != CHAMPION
