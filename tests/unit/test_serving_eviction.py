"""The eviction policy (pure), the retained-size measure, and lazy loading within a memory
budget with in-memory registry, artifacts and specs."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import threading
import time
import tracemalloc
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from services.serving import loading
from services.serving.domain.eviction import MemoryBudget, NoRoom, Resident, choose_evictions
from services.serving.domain.served import ModelCard
from services.serving.domain.sizes import retained_bytes
from services.serving.domain.slots import CHAMPION, ChampionNotLoaded, Change, ModelSlots, Verdict
from services.serving.lazy import LazyChampions
from services.serving.loading import ModelLoader
from services.serving.memory import ModelMemory
from shared.artifacts import ArtifactRefused, deserialize, serialize
from shared.events.models import ArtifactRef
from tests.bench.serving_pipeline import FEATURE_COLUMNS
from tests.unit.test_serving_swap import (
    ConstantModel,
    InMemoryArtifacts,
    InMemoryRegistry,
    ShippedSpecs,
)

# --- the policy ---------------------------------------------------------------------------


def resident(key: str, size: int, used: float, **flags: Any) -> Resident:
    return Resident(key, size, used, **flags)


@pytest.mark.parametrize(
    ("residents", "incoming", "budget", "expected"),
    [
        ([resident("a", 40, 1), resident("b", 40, 2)], 20, MemoryBudget(100), []),
        ([resident("a", 40, 1), resident("b", 40, 2)], 30, MemoryBudget(100), ["a"]),
        ([resident("b", 40, 2), resident("a", 40, 1)], 70, MemoryBudget(100), ["a", "b"]),
        ([resident("a", 40, 1, in_flight=2), resident("b", 40, 2)], 30, MemoryBudget(100), ["b"]),
        ([resident("a", 40, 1, pinned=True), resident("b", 40, 2)], 30, MemoryBudget(100), ["b"]),
        ([resident("a", 1, 1), resident("b", 1, 2)], 1, MemoryBudget(100, max_models=2), ["a"]),
        ([resident("a", 10, 3), resident("b", 10, 1), resident("c", 60, 2)], 50, MemoryBudget(100), ["b", "c"]),
    ],
)  # fmt: skip
def test_the_least_recently_used_models_without_requests_make_room(
    residents: list[Resident], incoming: int, budget: MemoryBudget, expected: list[str]
) -> None:
    assert choose_evictions(residents, incoming, budget) == expected


def test_a_model_being_replaced_is_kept_and_what_is_over_the_budget_goes_back_under_it() -> None:
    loaded = [resident("a", 60, 1), resident("b", 60, 2)]

    assert choose_evictions(loaded, 0, MemoryBudget(100), incoming_models=0) == ["a"]
    assert choose_evictions(loaded, 0, MemoryBudget(100), keep={"a"}, incoming_models=0) == ["b"]


@pytest.mark.parametrize(
    ("residents", "incoming", "says"),
    [
        ([resident("a", 50, 1, in_flight=1), resident("b", 50, 2, pinned=True)], 10, "cannot be evicted"),
        ([], 101, "more than the whole limit"),
    ],
)  # fmt: skip
def test_when_nothing_may_go_no_room_says_why(
    residents: list[Resident], incoming: int, says: str
) -> None:
    with pytest.raises(NoRoom, match=says):
        choose_evictions(residents, incoming, MemoryBudget(100))


# --- the size measure -----------------------------------------------------------------------


def test_a_buffer_is_counted_once_however_many_arrays_view_it() -> None:
    weights = np.zeros(100_000)
    alone = retained_bytes({"w": weights})

    shared = retained_bytes({"w": weights, "view": weights[10:], "again": weights})

    assert weights.nbytes <= alone < weights.nbytes + 2_000
    assert shared - alone < 1_000


def tracemalloc_retained(data: bytes) -> tuple[Any, int]:
    """A model loaded from skops bytes and what tracemalloc saw it keep."""
    sha = hashlib.sha256(data).hexdigest()
    deserialize(data, sha)  # imports and caches outside the figure
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        model = deserialize(data, sha)
        gc.collect()
        return model, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_a_loaded_pipelines_size_is_what_tracemalloc_sees_it_keep() -> None:
    from tests.integration.test_serving_service import train

    model, traced = tracemalloc_retained(serialize(train(seed=1, max_iter=20))[0])

    assert retained_bytes(model) == pytest.approx(traced, rel=0.05)


def test_a_forests_trees_held_in_c_structures_are_counted() -> None:
    rows = np.random.default_rng(0).random((2000, 5))
    forest = RandomForestClassifier(10, random_state=0).fit(rows, rows[:, 0] > 0.5)
    nodes = sum(tree.tree_.__getstate__()["nodes"].nbytes for tree in forest.estimators_)

    assert retained_bytes(forest) > nodes


# --- lazy loading within a budget -----------------------------------------------------------

WEIGHTS = 100_000  # bytes each test model holds, besides itself


class Weighted(ConstantModel):
    """A model holding WEIGHTS bytes; `gate` holds its load until set."""

    def __init__(self) -> None:
        super().__init__()
        self.weights = np.zeros(WEIGHTS // 8)


def ref(model: str, version: int) -> ArtifactRef:
    digest = hashlib.sha256(f"{model}{version}".encode()).hexdigest()
    return ArtifactRef(uri=f"s3://models/{model}/v{version}", sha256=digest, size_bytes=WEIGHTS)


def card(model: str, version: int = 1) -> ModelCard:
    return ModelCard(model, version, ref(model, version), "loans", 1, FEATURE_COLUMNS)


class SlowArtifacts(InMemoryArtifacts):
    """Loads that wait for `gate`, counted by uri."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()

    def load(self, artifact: ArtifactRef) -> Any:
        assert self.gate.wait(10)
        super().load(artifact)
        return Weighted()


class Serving:
    """Slots, memory, loader and lazy champions for `models`, each with a v1 champion known
    from the registry's list (none loaded)."""

    def __init__(
        self, models: list[str], fitting: int, timeout_s: float = 5.0, listed: bool = True
    ) -> None:
        self.slots = ModelSlots()
        self.registry = InMemoryRegistry(*[card(m, v) for m in models for v in (1, 2)])
        self.artifacts = SlowArtifacts()
        self.memory = ModelMemory(self.slots, MemoryBudget(fitting * WEIGHTS + WEIGHTS // 2))
        self.loader = ModelLoader(
            self.slots, self.registry, self.artifacts, ShippedSpecs(), memory=self.memory
        )
        self.champions = LazyChampions(self.slots, self.memory, self.loader, timeout_s, 2)
        for model in models if listed else []:
            self.slots.slot(model).listed(CHAMPION, 1)

    def predict(self, model: str) -> int:
        async def one() -> int:
            served, held = await self.champions.hold(model)
            if held:
                self.champions.release(model)
            return served.version

        return asyncio.run(one())

    def loaded(self) -> list[str]:
        return sorted(entry["model"] for entry in self.memory.snapshot()["loaded"])


def test_models_load_on_request_and_the_least_recently_used_are_evicted_and_reloaded() -> None:
    serving = Serving(["a", "b", "c"], fitting=2)
    assert serving.loaded() == []

    for model in ["a", "b", "a", "c", "b"]:
        assert serving.predict(model) == 1

    snapshot = serving.memory.snapshot()
    assert serving.loaded() == ["b", "c"]
    assert snapshot["used_bytes"] <= snapshot["limit_bytes"]
    assert (snapshot["loads"], snapshot["evictions"], snapshot["reloads"]) == (4, 2, 1)
    assert serving.artifacts.loaded.count(ref("b", 1).uri) == 2
    assert all(entry["size_bytes"] >= WEIGHTS for entry in snapshot["loaded"])


def test_a_version_is_measured_at_its_first_load_only_not_at_its_reloads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    measured: list[int] = []

    def counted(root: Any) -> int:
        measured.append(id(root))
        return retained_bytes(root)

    monkeypatch.setattr(loading, "retained_bytes", counted)
    serving = Serving(["a", "b", "c"], fitting=2)

    for model in ["a", "b", "c", "a", "b", "c"]:  # each evicted, then reloaded
        assert serving.predict(model) == 1

    snapshot = serving.memory.snapshot()
    assert (snapshot["loads"], snapshot["reloads"], snapshot["evictions"]) == (6, 3, 4)
    assert len(measured) == 3, "one walk per version"
    assert all(entry["size_bytes"] >= WEIGHTS for entry in snapshot["loaded"])


def test_concurrent_requests_for_a_cold_model_share_one_load() -> None:
    serving = Serving(["a"], fitting=2)
    serving.artifacts.gate.clear()

    async def many() -> list[int]:
        asked = [asyncio.create_task(serving.champions.hold("a")) for _ in range(8)]
        await asyncio.sleep(0.05)
        serving.artifacts.gate.set()
        held = await asyncio.gather(*asked)
        return [served.version for served, _ in held]

    assert asyncio.run(many()) == [1] * 8
    assert serving.artifacts.loaded == [ref("a", 1).uri]
    assert serving.memory.snapshot()["loaded"][0]["in_flight"] == 8


def test_a_model_with_a_request_in_flight_is_never_evicted() -> None:
    serving = Serving(["a", "b", "c"], fitting=2)
    serving.predict("a")

    async def hold_a_then_load_others() -> None:
        await serving.champions.hold("a")  # in flight, least recently used
        await serving.champions.hold("b")
        serving.champions.release("b")
        await serving.champions.hold("c")
        serving.champions.release("c")

    asyncio.run(hold_a_then_load_others())

    assert "a" in serving.loaded()


def test_a_load_slower_than_the_timeout_answers_503_and_the_next_request_joins_it() -> None:
    serving = Serving(["a"], fitting=2, timeout_s=0.2)
    serving.artifacts.gate.clear()

    with pytest.raises(ChampionNotLoaded, match=r"not ready within 0\.2 s"):
        serving.predict("a")
    serving.artifacts.gate.set()

    assert serving.predict("a") == 1
    assert serving.artifacts.loaded == [ref("a", 1).uri], "one load, joined"


def test_a_refused_cold_champion_answers_503_with_the_reason_and_is_not_retried() -> None:
    serving = Serving(["a"], fitting=2)
    serving.artifacts.refusals[ref("a", 1).sha256] = ArtifactRefused("sha256 mismatch: x")

    for _ in range(2):
        with pytest.raises(ChampionNotLoaded, match=r"version 1 was refused \(sha256_mismatch\)"):
            serving.predict("a")

    assert serving.slots.blocked() == {
        "a": "version 1 was refused (sha256_mismatch): sha256 mismatch: x"
    }


def test_a_promotion_records_a_cold_model_and_swaps_a_loaded_one() -> None:
    serving = Serving(["a", "b", "c"], fitting=2)
    serving.predict("a")
    serving.predict("b")  # full: a and b loaded, c cold

    cold = serving.loader.apply(Change("c", CHAMPION, 2, ref("c", 2), event_id="pc"))
    hot = serving.loader.apply(Change("a", CHAMPION, 2, ref("a", 2), event_id="pa"))

    assert (cold, hot) == (Verdict.RECORDED, Verdict.LOAD)
    assert serving.artifacts.loaded.count(ref("c", 2).uri) == 0, "recorded, not loaded"
    assert serving.slots.get("a").current().version == 2  # type: ignore[union-attr]
    assert serving.predict("c") == 2
    assert serving.loaded() == ["a", "c"], "b, least recently used, made room"


def promote_in_background(serving: Serving, model: str) -> threading.Thread:
    """A promotion of a model this replica has no champion of, loading (gated) on a thread."""
    change = Change(model, CHAMPION, 1, ref(model, 1), event_id=f"p-{model}")
    promotion = threading.Thread(target=serving.loader.apply, args=(change,))
    promotion.start()
    assert wait_for(lambda: serving.slots.get(model).loading == 1)
    return promotion


def wait_for(probe: Any, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not probe() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(probe())


def test_a_request_while_a_promotion_loads_the_first_champion_waits_for_it() -> None:
    serving = Serving(["n"], fitting=2, listed=False)
    serving.artifacts.gate.clear()
    promotion = promote_in_background(serving, "n")

    async def asked_while_loading() -> int:
        asked = asyncio.create_task(serving.champions.hold("n"))
        await asyncio.sleep(0.2)
        assert not asked.done(), "the request waits for the promotion's load"
        serving.artifacts.gate.set()
        served, held = await asked
        assert held
        return served.version

    assert asyncio.run(asked_while_loading()) == 1
    promotion.join(5)
    assert serving.artifacts.loaded == [ref("n", 1).uri], "the promotion's load, not a second"
    assert serving.slots.get("n").loading is None


def test_a_promotion_loading_longer_than_the_timeout_answers_503_with_the_bound() -> None:
    serving = Serving(["n"], fitting=2, timeout_s=0.2, listed=False)
    serving.artifacts.gate.clear()
    promotion = promote_in_background(serving, "n")

    with pytest.raises(ChampionNotLoaded, match=r"version 1 is loading and was not ready within"):
        serving.predict("n")
    serving.artifacts.gate.set()
    promotion.join(5)

    assert serving.predict("n") == 1
