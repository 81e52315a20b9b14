"""Champions for requests, loaded on demand: the request side of lazy loading.

A request for a model whose champion is in memory holds it (memory.py) and is scored at once.
One whose champion is not loaded (never asked for yet, or evicted) starts its load on a load
thread, or joins the load already running for that model: concurrent requests for the same
cold model share one load. A request waits for the load at most
MLOPS_SERVING_MODEL_LOAD_TIMEOUT_S; then, or when the load fails, it is answered 503 with the
reason (ChampionNotLoaded), never left hanging. A load outlives the request that started it,
so the next request finds the model loaded or joins the same load. A request for a model whose
first champion a promotion is loading (as on a replica that just started and reads the
promotion) waits for that load within the same bound.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from services.serving import metrics
from services.serving.domain.served import ServedModel
from services.serving.domain.slots import ChampionNotLoaded, ModelSlot, ModelSlots, NoChampion
from services.serving.memory import ModelMemory

PROMOTION_POLL_S = 0.02


class ChampionSource(Protocol):
    """What the /predict use case asks for the champion of a model."""

    async def hold(self, model: str) -> tuple[ServedModel, bool]: ...

    def release(self, model: str) -> None: ...


class LoadedChampions:
    """Champions as the slots hold them, no loading (tests, tools): never held."""

    def __init__(self, slots: ModelSlots) -> None:
        self._slots = slots

    async def hold(self, model: str) -> tuple[ServedModel, bool]:
        return self._slots.champion(model), False

    def release(self, model: str) -> None:
        return None


class Loader(Protocol):
    def load_on_request(self, model: str) -> ServedModel: ...


class LazyChampions:
    """Holds a model's champion for a request, loading it first if it is not in memory.
    `hold` answers the model and whether it is held (then `release` it when done)."""

    def __init__(
        self,
        slots: ModelSlots,
        memory: ModelMemory,
        loader: Loader,
        timeout_s: float,
        threads: int,
    ) -> None:
        self._slots = slots
        self._memory = memory
        self._loader = loader
        self._timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="model-load")
        self._loading: dict[str, Future[ServedModel]] = {}
        self._lock = threading.Lock()

    async def hold(self, model: str) -> tuple[ServedModel, bool]:
        served = self._memory.hold(model)  # NotServed, NoChampion for unknown models
        if served is not None:
            return served, True
        slot = self._slots.get(model)
        if slot.loading is not None:
            await self._wait_for_promotion(slot)
            served = self._memory.hold(model)
            if served is not None:
                return served, True
        self._check_loadable(slot)
        loaded = await self._wait_for(slot, self._load(model))
        return loaded, self._memory.hold_loaded(model)

    def release(self, model: str) -> None:
        self._memory.release(model)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _wait_for_promotion(self, slot: ModelSlot) -> None:
        """Waits, within the timeout, until the promotion loading the slot's first champion
        has ended, whatever its outcome."""
        deadline = time.monotonic() + self._timeout_s
        version = slot.loading
        while slot.loading is not None and time.monotonic() < deadline:
            await asyncio.sleep(PROMOTION_POLL_S)
        if slot.loading is not None:
            raise ChampionNotLoaded(
                slot.name,
                f"version {version} is loading and was not ready within {self._timeout_s:g} s "
                "(MLOPS_SERVING_MODEL_LOAD_TIMEOUT_S); the load goes on, try again",
            )

    @staticmethod
    def _check_loadable(slot: ModelSlot) -> None:
        """Answers at once for a model without champion, or whose champion was refused."""
        assigned = slot.assigned()
        if assigned is None:
            if slot.not_loaded is not None:
                raise ChampionNotLoaded(slot.name, slot.not_loaded)
            raise NoChampion(slot.name)
        if slot.refused_version == assigned.version and slot.not_loaded is not None:
            raise ChampionNotLoaded(slot.name, slot.not_loaded)

    def _load(self, model: str) -> Future[ServedModel]:
        """The running load of a model's champion, started if there is none."""
        with self._lock:
            running = self._loading.get(model)
            if running is not None and not running.done():
                return running
            started = time.perf_counter()
            future = self._executor.submit(self._loader.load_on_request, model)
            self._loading[model] = future
        future.add_done_callback(lambda done: self._finished(model, done, started))
        return future

    def _finished(self, model: str, done: Future[ServedModel], started: float) -> None:
        metrics.COLD_LOAD_SECONDS.observe(time.perf_counter() - started)
        with self._lock:
            if self._loading.get(model) is done:
                del self._loading[model]

    async def _wait_for(self, slot: ModelSlot, future: Future[ServedModel]) -> ServedModel:
        waited = asyncio.wrap_future(future)
        done, _ = await asyncio.wait({waited}, timeout=self._timeout_s)
        if not done:
            waited.add_done_callback(_retrieve)  # the load goes on; its outcome is logged
            assigned = slot.assigned()
            version = f"version {assigned.version}" if assigned else "its champion"
            raise ChampionNotLoaded(
                slot.name,
                f"{version} is loading and was not ready within {self._timeout_s:g} s "
                "(MLOPS_SERVING_MODEL_LOAD_TIMEOUT_S); the load goes on, try again",
            )
        try:
            return waited.result()
        except Exception as error:
            raise ChampionNotLoaded(slot.name, str(error)) from None


def _retrieve(future: asyncio.Future[ServedModel]) -> None:
    if not future.cancelled():
        future.exception()
