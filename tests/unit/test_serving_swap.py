"""The model swap: which change loads, what is refused, and requests in flight keeping the model
object they started with. Registry, artifacts and specs are in-memory stand-ins."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from services.serving.adapters.feature_store import OnlineFeatures
from services.serving.adapters.registry import RegistryRefused, RegistryUnavailable
from services.serving.domain.records import InputSchema, ReadRecord, read_record
from services.serving.domain.served import ModelCard, ServedModel
from services.serving.domain.slots import (
    CHAMPION,
    ChampionNotLoaded,
    Change,
    ModelSlot,
    ModelSlots,
    NoChampion,
    NotServed,
    Verdict,
    verdict,
)
from services.serving.handlers import LoggedPrediction, deployed_event
from services.serving.loading import ChampionLookup, ModelLoader
from services.serving.predictions import Predictions
from shared.artifacts import ArtifactRefused
from shared.datasets.sources import agrawal_records
from shared.datasets.spec import DatasetSpec, shipped_specs
from shared.events.models import ArtifactRef
from tests.bench.serving_pipeline import FEATURE_COLUMNS
from tests.waiting import wait_until

SPECS = {spec.name: spec for spec in shipped_specs()}
LOANS = SPECS["loans"]
CANCER_COLUMNS = tuple(feature.name for feature in SPECS["breast_cancer"].features)
RECORD = next(agrawal_records(1, seed=2, start=datetime(2024, 1, 1, tzinfo=UTC)))[0]


def artifact(version: int) -> ArtifactRef:
    return ArtifactRef(
        uri=f"s3://models/loans/v{version}.skops", sha256=f"{version:02d}" * 32, size_bytes=1
    )


def card(version: int) -> ModelCard:
    return ModelCard("loans", version, artifact(version), "loans", 1, FEATURE_COLUMNS)


def change(version: int, **flags: Any) -> Change:
    return Change("loans", flags.pop("alias", CHAMPION), version, artifact(version), **flags)


class ConstantModel:
    """Answers the same probabilities for every row; `gate` holds predict_proba until set."""

    classes_ = np.array([0, 1])

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.entered = threading.Event()

    def predict(self, frame: Any) -> Any:
        return np.ones(len(frame), dtype=int)

    def predict_proba(self, frame: Any) -> Any:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        return np.tile([0.25, 0.75], (len(frame), 1))


def served(version: int, model: Any | None = None) -> ServedModel:
    schema = InputSchema.of(LOANS, FEATURE_COLUMNS)
    return ServedModel.build(card(version), model or ConstantModel(), schema)


@pytest.mark.parametrize(
    ("current", "made", "expected"),
    [
        (None, change(3), Verdict.LOAD),
        (2, change(3), Verdict.LOAD),
        (3, change(3), Verdict.SAME),
        (3, change(2), Verdict.OLDER),
        (3, change(2, rollback=True), Verdict.LOAD),
        (3, change(3, rollback=True), Verdict.SAME),
        (None, change(1, initial=True), Verdict.LOAD),
        (4, change(5, initial=True), Verdict.SUPERSEDED),
    ],
)
def test_which_change_loads(current: int | None, made: Change, expected: Verdict) -> None:
    assert verdict(current, made) == expected


def test_a_slot_swaps_by_reference_and_remembers_handled_events() -> None:
    slot = ModelSlot("loans")
    with pytest.raises(NoChampion, match="no champion for model 'loans' yet"):
        slot.champion()
    first, second = served(1), served(2)

    assert slot.swap(change(1, event_id="e1"), first) == Verdict.LOAD
    held = slot.champion()
    assert slot.swap(change(2, event_id="e2"), second) == Verdict.LOAD

    assert held is first, "a reference read before the swap still points at the old model"
    assert slot.champion() is second
    assert slot.verdict(change(2, event_id="e2")) == Verdict.DUPLICATE
    assert slot.swap(change(1, event_id="e3"), first) == Verdict.OLDER
    assert slot.champion() is second


def test_without_restriction_any_model_gets_a_slot_on_first_use_never_from_a_request() -> None:
    slots = ModelSlots()
    assert slots.names == [] and slots.accepts("iris") and slots.accepts("housing")

    with pytest.raises(NoChampion, match="no champion for model 'iris' yet"):
        slots.champion("iris")
    assert slots.names == [], "asking for a model makes no slot"

    slots.slot("iris")
    slots.slot("housing")
    assert slots.slot("iris") is slots.get("iris")
    assert sorted(slots.names) == ["housing", "iris"]
    with pytest.raises(NoChampion):
        slots.champion("iris")
    assert slots.blocked() == {}, "a model without champion is not an outage"


def test_a_restriction_serves_only_the_models_it_names() -> None:
    slots = ModelSlots(["loans", "fraud"])

    assert slots.names == ["fraud", "loans"]
    assert not slots.accepts("churn")
    with pytest.raises(NotServed, match=r"'churn' is not served here: .* to fraud, loans"):
        slots.champion("churn")
    with pytest.raises(NotServed):
        slots.slot("churn")


def test_a_known_champion_that_does_not_answer_blocks_until_it_is_swapped_in() -> None:
    slots = ModelSlots()
    slot = slots.slot("iris")
    slot.not_loaded = "version 2 could not load, retrying: MinIO down"

    with pytest.raises(ChampionNotLoaded, match="not loaded here: version 2 could not load"):
        slots.champion("iris")
    assert slots.blocked() == {"iris": "version 2 could not load, retrying: MinIO down"}
    assert slots.answering() == []

    slot.swap(change(2), served(2))

    assert slots.blocked() == {} and slot.waiting_for is None
    assert slots.answering() == ["iris"]


@dataclass
class ListRecorder:
    entries: list[LoggedPrediction] = field(default_factory=list)

    def record(self, entries: Any) -> None:
        self.entries.extend(entries)


class GatedStore:
    """An online store whose lookups wait until the test lets them answer."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()

    async def lookup(self, dataset: str, entities: list[str]) -> dict[str, OnlineFeatures]:
        self.asked.set()
        await self.answer.wait()
        return {e: OnlineFeatures(e, dict(RECORD), "app-1") for e in entities}


def test_a_request_being_scored_during_a_swap_finishes_on_its_model() -> None:
    gate = threading.Event()
    old, new = served(1, ConstantModel(gate)), served(2)
    slots = ModelSlots(["loans"])
    slots.get("loans").swap(change(1), old)
    recorder = ListRecorder()
    predictions = Predictions(slots, GatedStore(), recorder, max_batch_rows=64)

    def swap_while_scoring() -> None:  # as the lifecycle consumer's thread does
        assert old.estimator.entered.wait(10), "scoring never started"
        assert slots.get("loans").swap(change(2), new) == Verdict.LOAD
        gate.set()

    swapper = threading.Thread(target=swap_while_scoring)
    swapper.start()

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        first = await predictions.predict("loans", "r1", records=[RECORD])
        second = await predictions.predict("loans", "r2", records=[RECORD])
        return first, second

    first, second = asyncio.run(scenario())
    swapper.join(10)

    assert (first["version"], second["version"]) == (1, 2)
    assert [p["version"] for p in first["predictions"]] == [1]
    assert sorted((e.request_id, e.version) for e in recorder.entries) == [("r1", 1), ("r2", 2)]


class CountingModel(ConstantModel):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def predict_proba(self, frame: Any) -> Any:
        self.calls.append(len(frame))
        return super().predict_proba(frame)


def test_concurrent_requests_are_scored_in_one_call_and_a_lone_one_alone() -> None:
    model = served(1, CountingModel())
    slots = ModelSlots(["loans"])
    slots.get("loans").swap(change(1), model)
    predictions = Predictions(slots, GatedStore(), ListRecorder(), 64, max_wait_s=0.001)

    async def scenario() -> list[dict[str, Any]]:
        together = [predictions.predict("loans", f"r{n}", records=[RECORD]) for n in range(5)]
        answers = await asyncio.gather(*together)
        answers.append(await predictions.predict("loans", "alone", records=[RECORD, RECORD]))
        return answers

    answers = asyncio.run(scenario())

    assert model.estimator.calls == [5, 2]
    assert [a["request_id"] for a in answers] == ["r0", "r1", "r2", "r3", "r4", "alone"]
    assert [len(a["predictions"]) for a in answers] == [1, 1, 1, 1, 1, 2]


def test_a_request_waiting_for_features_during_a_swap_is_scored_by_the_model_it_started_with() -> (
    None
):
    slots = ModelSlots(["loans"])
    slots.get("loans").swap(change(1), served(1))
    store = GatedStore()
    predictions = Predictions(slots, store, ListRecorder(), max_batch_rows=64)

    async def scenario() -> dict[str, Any]:
        waiting = asyncio.create_task(predictions.predict("loans", "r1", entities=["applicant-1"]))
        await store.asked.wait()
        slots.get("loans").swap(change(2), served(2))
        store.answer.set()
        return await waiting

    answer = asyncio.run(scenario())

    assert answer["version"] == 1
    assert answer["predictions"][0]["entity"] == "applicant-1"
    assert answer["predictions"][0]["record_id"] == "app-1"


class InMemoryRegistry:
    """Versions by (model, version); `champions` by model."""

    def __init__(self, *cards: ModelCard) -> None:
        self.cards = {(c.name, c.version): c for c in cards}
        self.champions: dict[str, ModelCard] = {}
        self.down = False
        self.listed = 0

    def models(self) -> dict[str, dict[str, int]]:
        if self.down:
            raise RegistryUnavailable("connection refused")
        self.listed += 1
        names = {name for name, _ in self.cards} | set(self.champions)
        return {
            name: {CHAMPION: self.champions[name].version} if name in self.champions else {}
            for name in names
        }

    def alias(self, name: str, alias: str) -> ModelCard | None:
        if self.down:
            raise RegistryUnavailable("connection refused")
        return self.champions.get(name) if alias == CHAMPION else None

    def version(self, name: str, version: int) -> ModelCard:
        if self.down:
            raise RegistryUnavailable("connection refused")
        try:
            return self.cards[(name, version)]
        except KeyError:
            raise RegistryRefused(f"the registry has no version {version} of {name!r}") from None


class InMemoryArtifacts:
    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.refusals: dict[str, ArtifactRefused] = {}
        self.models: dict[str, Any] = {}

    def load(self, ref: ArtifactRef) -> Any:
        if ref.sha256 in self.refusals:
            raise self.refusals[ref.sha256]
        self.loaded.append(ref.uri)
        return self.models.get(ref.sha256) or ConstantModel()


class ShippedSpecs:
    def spec(self, dataset: str, version: int | None) -> DatasetSpec:
        if dataset not in SPECS:
            raise LookupError(f"unknown dataset {dataset!r}")
        return SPECS[dataset]


@dataclass
class Loading:
    slots: ModelSlots
    registry: InMemoryRegistry
    artifacts: InMemoryArtifacts
    loader: ModelLoader


@pytest.fixture
def loading() -> Loading:
    slots = ModelSlots()
    registry = InMemoryRegistry(card(1), card(2), card(3))
    artifacts = InMemoryArtifacts()
    return Loading(
        slots, registry, artifacts, ModelLoader(slots, registry, artifacts, ShippedSpecs())
    )


def refused(reason: str) -> float:
    labels = {"model": "loans", "reason": reason}
    return REGISTRY.get_sample_value("mlops_serving_models_refused_total", labels) or 0.0


def test_a_promotion_loads_warms_up_and_swaps_in(loading: Loading) -> None:
    assert loading.loader.apply(change(1, event_id="e1")) == Verdict.LOAD
    assert loading.loader.apply(change(2, event_id="e2")) == Verdict.LOAD

    assert loading.slots.get("loans").champion().version == 2
    assert loading.artifacts.loaded == [artifact(1).uri, artifact(2).uri]
    assert loading.loader.apply(change(2, event_id="e2")) == Verdict.DUPLICATE
    assert loading.loader.apply(change(1, event_id="e4")) == Verdict.OLDER
    assert loading.loader.apply(change(1, event_id="e5", rollback=True)) == Verdict.LOAD
    assert loading.slots.get("loans").champion().version == 1
    assert len(loading.artifacts.loaded) == 3, "ignored changes download nothing"


def test_only_versions_actually_swapped_in_are_announced_as_deployed() -> None:
    slots = ModelSlots(["loans"])
    registry = InMemoryRegistry(card(1), card(2))
    artifacts = InMemoryArtifacts()
    artifacts.refusals[artifact(2).sha256] = ArtifactRefused("sha256 mismatch: tampered")
    announced: list[Change] = []
    loader = ModelLoader(slots, registry, artifacts, ShippedSpecs(), announced.append)

    loader.apply(change(1, event_id="e1"))
    loader.apply(change(1, event_id="e1"))  # a duplicate
    loader.apply(change(2, event_id="e2"))  # refused

    assert [(c.version, c.event_id) for c in announced] == [(1, "e1")]
    deployed = deployed_event(announced[0], "serving-a").event
    assert deployed.type == "mlops.ModelDeployed"
    assert (deployed.data.version, deployed.data.instance) == (1, "serving-a")
    assert deployed.data.cause_event_id == "e1"


def test_a_failing_announcement_never_undoes_the_swap() -> None:
    slots = ModelSlots(["loans"])

    def broken(change: Change) -> None:
        raise BufferError("queue full")

    loader = ModelLoader(
        slots, InMemoryRegistry(card(1)), InMemoryArtifacts(), ShippedSpecs(), broken
    )
    assert loader.apply(change(1, event_id="e1")) == Verdict.LOAD
    assert slots.get("loans").champion().version == 1


def test_a_tampered_artifact_is_refused_and_the_old_model_keeps_serving(loading: Loading) -> None:
    loading.loader.apply(change(1))
    before = refused("sha256_mismatch")
    loading.artifacts.refusals[artifact(2).sha256] = ArtifactRefused("sha256 mismatch: expected")

    assert loading.loader.apply(change(2, event_id="bad")) is None

    assert loading.slots.get("loans").champion().version == 1
    assert refused("sha256_mismatch") == before + 1
    assert loading.loader.apply(change(2, event_id="bad")) == Verdict.DUPLICATE


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ArtifactRefused("artifact asks to trust types outside the allowlist: ['os.system']"), "untrusted_types"),
        (ArtifactRefused("not a skops artifact: BadZipFile: File is not a zip file"), "not_skops"),
        (ArtifactRefused("unloadable artifact: KeyError: 'x'"), "unloadable"),
        (ArtifactRefused("artifact not found: s3://models/x (NoSuchKey)"), "not_found"),
    ],
)  # fmt: skip
def test_each_kind_of_refused_artifact_is_counted_by_reason(
    loading: Loading, error: ArtifactRefused, reason: str
) -> None:
    before = refused(reason)
    loading.artifacts.refusals[artifact(1).sha256] = error

    assert loading.loader.apply(change(1)) is None

    assert refused(reason) == before + 1
    assert "was refused" in loading.slots.blocked()["loans"]


def test_an_event_whose_artifact_differs_from_the_registry_record_is_refused(
    loading: Loading,
) -> None:
    before = refused("registry_mismatch")
    forged = Change("loans", CHAMPION, 2, artifact(3), event_id="forged")

    assert loading.loader.apply(forged) is None

    assert refused("registry_mismatch") == before + 1
    assert loading.artifacts.loaded == [], "nothing is downloaded for a forged reference"


def test_a_model_failing_its_warm_up_never_takes_traffic(loading: Loading) -> None:
    loading.loader.apply(change(1))

    class Broken(ConstantModel):
        def predict_proba(self, frame: Any) -> Any:
            raise ValueError("X has 3 features, but the model expects 9")

    loading.artifacts.models[artifact(2).sha256] = Broken()
    before = refused("warm_up_failed")

    assert loading.loader.apply(change(2)) is None

    assert refused("warm_up_failed") == before + 1
    assert loading.slots.get("loans").champion().version == 1


def test_versions_unknown_to_the_registry_or_its_spec_are_refused(loading: Loading) -> None:
    assert loading.loader.apply(change(9)) is None
    loading.registry.cards["loans", 4] = ModelCard(
        "loans", 4, artifact(4), "churn", 1, FEATURE_COLUMNS
    )
    assert loading.loader.apply(change(4)) is None
    assert loading.slots.get("loans").current() is None


def test_a_change_that_cannot_load_now_is_deferred_and_retried(loading: Loading) -> None:
    loading.registry.down = True

    assert loading.loader.apply(change(1, event_id="e1")) == Verdict.DEFERRED
    loading.loader.retry_deferred()
    assert loading.slots.get("loans").current() is None
    assert "version 1 could not load, retrying" in loading.slots.blocked()["loans"]

    loading.registry.down = False
    loading.loader.retry_deferred()

    assert loading.slots.get("loans").champion().version == 1
    assert loading.loader.deferred == []
    assert loading.loader.apply(change(1, event_id="e1")) == Verdict.DUPLICATE


def test_a_deferred_rollback_never_undoes_a_later_promotion(loading: Loading) -> None:
    loading.loader.apply(change(2, event_id="e2"))
    loading.registry.down = True
    assert loading.loader.apply(change(1, event_id="back", rollback=True)) == Verdict.DEFERRED
    loading.registry.down = False

    assert loading.loader.apply(change(3, event_id="e3")) == Verdict.LOAD
    loading.loader.retry_deferred()

    assert loading.slots.get("loans").champion().version == 3
    assert loading.loader.deferred == []


def test_the_start_up_lookup_raises_what_is_worth_retrying(loading: Loading) -> None:
    loading.registry.down = True
    with pytest.raises(RegistryUnavailable):
        loading.loader.apply(change(1, initial=True))
    assert loading.loader.deferred == []


def cancer_card(version: int) -> ModelCard:
    ref = ArtifactRef(
        uri=f"s3://models/cancer/v{version}.skops", sha256=f"c{version}" * 32, size_bytes=1
    )
    return ModelCard("cancer", version, ref, "breast_cancer", 1, CANCER_COLUMNS)


def run_lookup(loading: Loading, shadow: bool = False) -> tuple[ChampionLookup, threading.Thread]:
    positioned = threading.Event()
    positioned.set()
    found = ChampionLookup(
        loading.slots, loading.registry, loading.loader, positioned, 0.01, shadow=shadow
    )
    stop = threading.Event()
    thread = threading.Thread(target=found.run, args=(stop,), daemon=True)
    thread.start()
    return found, thread


def test_with_no_champion_anywhere_serving_is_ready_and_a_later_promotion_loads_a_new_model(
    loading: Loading,
) -> None:
    found, thread = run_lookup(loading)
    thread.join(10)

    assert not thread.is_alive(), "nothing to load: the lookup ends"
    found.check()  # the registry's list was read
    assert loading.slots.blocked() == {}
    assert loading.slots.answering() == []

    cancer = cancer_card(1)
    loading.registry.cards["cancer", 1] = cancer
    promoted = Change("cancer", CHAMPION, 1, cancer.artifact, event_id="p1")
    assert loading.loader.apply(promoted) == Verdict.LOAD

    assert loading.slots.champion("cancer").card.dataset == "breast_cancer"
    assert loading.slots.answering() == ["cancer"]


def test_start_up_loads_the_champion_of_every_model_the_registry_lists(loading: Loading) -> None:
    cancer = cancer_card(3)
    loading.registry.cards["cancer", 3] = cancer
    loading.registry.champions = {"loans": card(2), "cancer": cancer}

    _, thread = run_lookup(loading)
    thread.join(10)

    assert not thread.is_alive()
    assert loading.slots.champion("loans").version == 2
    assert loading.slots.champion("cancer").version == 3
    assert sorted(loading.slots.answering()) == ["cancer", "loans"]


def test_until_the_registry_answers_its_list_serving_is_not_ready(loading: Loading) -> None:
    loading.registry.down = True
    loading.registry.champions = {"loans": card(1)}
    found, thread = run_lookup(loading)

    with pytest.raises(RuntimeError, match="the registry's list of models: connection refused"):
        wait_until(lambda: "connection refused" in found.waiting_for, what="a failed list")
        found.check()
    loading.registry.down = False
    thread.join(10)

    found.check()
    assert loading.slots.champion("loans").version == 1


def test_a_listed_champion_that_cannot_load_blocks_readiness_with_its_reason(
    loading: Loading,
) -> None:
    loading.registry.champions = {"loans": card(1)}
    loading.artifacts.refusals[artifact(1).sha256] = ArtifactRefused("sha256 mismatch: x")

    found, thread = run_lookup(loading)
    wait_until(lambda: "was refused" in loading.slots.blocked().get("loans", ""), what="refusal")

    found.check()  # the list was read; the champion is what is not ready
    with pytest.raises(ChampionNotLoaded, match="version 1 was refused"):
        loading.slots.champion("loans")
    loading.registry.champions = {"loans": card(2)}  # the alias moves: asked again
    thread.join(10)
    assert loading.slots.champion("loans").version == 2
    assert loading.slots.blocked() == {}


def test_a_restriction_leaves_other_models_unloaded(loading: Loading) -> None:
    slots = ModelSlots(["loans"])
    loader = ModelLoader(slots, loading.registry, loading.artifacts, ShippedSpecs())
    cancer = cancer_card(1)
    loading.registry.cards["cancer", 1] = cancer
    loading.registry.champions = {"loans": card(1), "cancer": cancer}
    positioned = threading.Event()
    positioned.set()

    ChampionLookup(slots, loading.registry, loader, positioned, 0.01, False).run(threading.Event())

    assert slots.names == ["loans"]
    assert slots.champion("loans").version == 1
    assert loading.artifacts.loaded == [artifact(1).uri]


def test_the_start_up_lookup_never_replaces_what_a_promotion_loaded(loading: Loading) -> None:
    loading.loader.apply(change(3, event_id="promoted"))
    loading.registry.champions = {"loans": card(2)}
    positioned = threading.Event()
    positioned.set()

    ChampionLookup(
        loading.slots, loading.registry, loading.loader, positioned, 0.01, shadow=False
    ).run(threading.Event())

    assert loading.slots.get("loans").champion().version == 3


def test_inline_records_are_read_with_the_spec_version_of_the_models_training() -> None:
    tighter = LOANS.model_copy(
        update={
            "features": [
                f.model_copy(update={"max": 30}) if f.name == "age" else f for f in LOANS.features
            ]
        }
    )

    class TwoVersions:
        def __init__(self) -> None:
            self.asked: list[tuple[str, int | None]] = []

        def spec(self, dataset: str, version: int | None) -> DatasetSpec:
            self.asked.append((dataset, version))
            return LOANS if version == 1 else tighter  # 2 is the latest

    specs = TwoVersions()
    slots = ModelSlots()
    loader = ModelLoader(slots, InMemoryRegistry(card(1)), InMemoryArtifacts(), specs)
    loader.apply(change(1, event_id="e1"))

    assert specs.asked == [("loans", 1)]
    schema = slots.champion("loans").schema
    assert isinstance(read_record(schema, {**RECORD, "age": 50}), ReadRecord)
    assert read_record(InputSchema.of(tighter, FEATURE_COLUMNS), {**RECORD, "age": 50}) != []
