"""The data.raw handler: exactly one output per message, duplicates versus redeliveries,
record-level rules, and the statistics it feeds (with a fake registry, no Kafka)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.validation.adapters.record_ids import MemoryRecordIds
from services.validation.domain.decoding import RawDecoder
from services.validation.domain.duplicates import rejected_id, validated_id
from services.validation.domain.quality import QualityStats
from services.validation.domain.recent import RecentRejections
from services.validation.handlers import Deps, Validator, routes
from services.validation.http import stats_router
from shared.datasets.registry import UnknownDataset
from shared.datasets.spec import DatasetSpec, VersionedSpec
from shared.events import Event, RecordIngested, RecordRejected, RecordValidated
from shared.kafka.consumer import Emit, MessageInfo
from tests.unit.test_validation_rules import EXPECTED, a_spec, good_values

TOPIC = "ns.data.raw"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class FakeSpecs:
    def __init__(self, *specs: DatasetSpec) -> None:
        self.versions: dict[str, dict[int, VersionedSpec]] = {}
        self.refreshes = 0
        for spec in specs:
            self.add(spec)

    def add(self, spec: DatasetSpec) -> VersionedSpec:
        versions = self.versions.setdefault(spec.name, {})
        versioned = VersionedSpec(
            version=len(versions) + 1, fingerprint=spec.fingerprint(), spec=spec
        )
        versions[versioned.version] = versioned
        return versioned

    def refresh(self, timeout_s: float = 10.0) -> None:
        self.refreshes += 1

    def names(self) -> list[str]:
        return sorted(self.versions)

    def latest(self, name: str) -> VersionedSpec:
        if name not in self.versions:
            raise UnknownDataset(name, self.names())
        return self.versions[name][max(self.versions[name])]

    def get(self, name: str, version: int) -> VersionedSpec:
        if name not in self.versions:
            raise UnknownDataset(name, self.names())
        try:
            return self.versions[name][version]
        except KeyError:
            raise LookupError(f"dataset {name!r} has no version {version}") from None


class Harness:
    def __init__(self, *specs: DatasetSpec) -> None:
        self.specs = FakeSpecs(*(specs or (a_spec(),)))
        self.ids = MemoryRecordIds()
        self.stats = QualityStats()
        self.clock = 0.0
        self.validator = Validator(
            Deps(self.specs, self.ids, self.stats, refresh_interval_s=5, clock=lambda: self.clock)
        )
        self.decoder = RawDecoder(max_bytes=100_000)

    def send(self, value: bytes | None, offset: int, partition: int = 0) -> Emit:
        info = MessageInfo(TOPIC, partition, offset, None, int(NOW.timestamp() * 1000))
        emits = self.validator.handle(self.decoder.decode(value, info), info)
        assert len(emits) == 1, "exactly one output per raw message"
        return emits[0]


def envelope(values: dict[str, Any], **fields: Any) -> Event[RecordIngested]:
    record = RecordIngested(
        dataset=fields.pop("dataset", "shop"), values=values, ingested_at=NOW, **fields
    )
    return Event.create(record, source="test")


def bare(values: dict[str, Any], dataset: str = "shop") -> bytes:
    return json.dumps({"dataset": dataset, "values": values}).encode()


def test_a_valid_envelope_is_validated_typed_with_lineage() -> None:
    harness = Harness()
    sent = envelope(good_values(amount="7"))
    emit = harness.send(sent.to_json_bytes(), offset=3)
    assert emit.topic == "data.validated" and emit.key == "c-1"
    out = emit.event
    assert isinstance(out.data, RecordValidated)
    assert out.id == validated_id(sent.id)
    assert out.causationid == sent.id and out.correlationid == sent.correlationid
    assert out.data.values["amount"] == 7.0 and out.data.label == 0
    assert out.data.record_id == "o-1" and out.data.entity == "c-1" and out.data.spec_version == 1
    assert out.data.source.model_dump() == {"topic": TOPIC, "partition": 0, "offset": 3}
    Event[RecordValidated].model_validate_json(out.to_json_bytes())


def test_an_invalid_record_is_rejected_with_every_error_and_its_values_as_received() -> None:
    harness = Harness()
    emit = harness.send(bare(good_values(amount=float("nan"), items=99)), offset=5)
    assert emit.topic == "data.rejected"
    out = emit.event.data
    assert isinstance(out, RecordRejected)
    assert {(e.field, e.rule) for e in out.errors} == {("amount", "not_finite"), ("items", "range")}
    assert out.values["amount"] == "NaN" and out.values["items"] == 99
    assert out.record_id == "o-1" and out.entity == "c-1" and out.spec_version == 1
    assert emit.event.id == rejected_id(emit.event.causationid, out.source)
    json.loads(emit.event.to_json_bytes())  # strict JSON, no NaN token


def test_the_same_record_id_at_another_position_is_a_duplicate() -> None:
    harness = Harness()
    first = harness.send(envelope(good_values()).to_json_bytes(), offset=1)
    second = harness.send(envelope(good_values(amount=1)).to_json_bytes(), offset=2)
    assert first.topic == "data.validated"
    assert second.topic == "data.rejected"
    [problem] = second.event.data.errors
    assert problem.rule == "duplicate_id" and problem.field == "order_id"
    assert f"{TOPIC}[0]@1" in problem.message


def test_the_same_envelope_published_twice_is_a_duplicate_of_its_event_id() -> None:
    harness = Harness(a_spec(record_id=None))
    sent = envelope({k: v for k, v in good_values().items() if k != "order_id"})
    first = harness.send(sent.to_json_bytes(), offset=1)
    again = harness.send(sent.to_json_bytes(), offset=2)
    assert first.topic == "data.validated" and first.event.data.record_id == sent.id
    assert again.topic == "data.rejected"
    assert again.event.data.errors[0].rule == "duplicate_id"


def test_a_redelivery_emits_the_same_result_with_the_same_id_and_counts_once() -> None:
    harness = Harness()
    valid, invalid = bare(good_values()), bare(good_values(order_id="o-2", amount=-1))
    first = [harness.send(valid, offset=1), harness.send(invalid, offset=2)]
    again = [harness.send(valid, offset=1), harness.send(invalid, offset=2)]
    assert [e.topic for e in again] == ["data.validated", "data.rejected"]
    assert [e.event.id for e in again] == [e.event.id for e in first]
    assert again[0].event.data == first[0].event.data
    assert harness.stats.snapshot("shop")["validated"] == 1


def test_a_rejected_record_claims_no_id_so_its_correction_is_accepted() -> None:
    harness = Harness()
    assert harness.send(bare(good_values(amount=-1)), offset=1).topic == "data.rejected"
    assert harness.send(bare(good_values()), offset=2).topic == "data.validated"


def test_unknown_datasets_and_versions_are_rejected_naming_what_is_known() -> None:
    harness = Harness()
    unknown = harness.send(bare(good_values(), dataset="nope"), offset=1).event.data
    assert [(e.field, e.rule) for e in unknown.errors] == [(None, "unknown_dataset")]
    assert "known: shop" in unknown.errors[0].message and unknown.dataset == "nope"
    version = harness.send(envelope(good_values(), spec_version=9).to_json_bytes(), offset=2)
    assert [e.rule for e in version.event.data.errors] == ["unknown_version"]
    assert version.event.data.spec_version == 9


def test_the_version_a_record_names_is_the_one_it_is_checked_against() -> None:
    harness = Harness()
    stricter = a_spec(features=[{"name": "amount", "type": "numeric", "max": 5}])
    harness.specs.add(stricter)
    old = harness.send(envelope(good_values(), spec_version=1).to_json_bytes(), offset=1)
    assert old.topic == "data.validated" and old.event.data.spec_version == 1
    latest = harness.send(bare(good_values(order_id="o-2")), offset=2)
    assert latest.topic == "data.rejected" and latest.event.data.spec_version == 2
    assert ("amount", "range") in {(e.field, e.rule) for e in latest.event.data.errors}


def test_junk_is_rejected_as_malformed_never_dropped() -> None:
    harness = Harness()
    for offset, junk in enumerate([b"not json", b"NaN", None, b'{"dataset": "shop"}']):
        emit = harness.send(junk, offset=offset)
        assert emit.topic == "data.rejected"
        [problem] = emit.event.data.errors
        assert problem.rule == "malformed" and problem.field is None
    assert harness.stats.unattributed_counts() == {"malformed": 3}
    assert harness.stats.snapshot("shop")["rejected_by_rule"] == {"malformed": 1}


def test_the_registry_is_reread_at_most_every_refresh_interval() -> None:
    harness = Harness()
    harness.send(bare(good_values()), offset=1)
    harness.send(bare(good_values(order_id="o-2")), offset=2)
    assert harness.specs.refreshes == 1
    harness.clock = 5.0
    harness.send(bare(good_values(order_id="o-3")), offset=3)
    assert harness.specs.refreshes == 2


def test_statistics_follow_the_raw_stream() -> None:
    harness = Harness()
    harness.send(bare(good_values(discount=0.5, channel="web")), offset=1)
    harness.send(bare(good_values(order_id="o-2", discount=None, channel="store")), offset=2)
    harness.send(bare(good_values(order_id="o-3", channel="mail", amount=-3)), offset=3)
    snapshot = harness.stats.snapshot("shop")
    assert (snapshot["records"], snapshot["validated"], snapshot["rejected"]) == (3, 2, 1)
    assert snapshot["rejected_by_rule"] == {"category": 1, "range": 1}
    assert snapshot["errors_by_field"] == {"amount": {"range": 1}, "channel": {"category": 1}}
    discount = snapshot["features"]["discount"]
    assert discount["missing"] == 2 and discount["missing_rate"] == 2 / 3
    channel = snapshot["features"]["channel"]
    assert channel["categories"] == {"web": 1, "store": 1, "mail": 1}
    assert snapshot["features"]["amount"]["min"] == -3


def test_routes_declare_the_raw_topic_and_both_outputs() -> None:
    [route] = routes(Deps(FakeSpecs(), MemoryRecordIds(), QualityStats()))
    assert route.consumes == "data.raw"
    assert route.emits == ("data.validated", "data.rejected")


def test_a_failed_registry_refresh_keeps_validating_with_the_versions_known() -> None:
    harness = Harness()

    def broken(timeout_s: float = 10.0) -> None:
        raise TimeoutError("no broker")

    harness.specs.refresh = broken  # type: ignore[method-assign]
    assert harness.send(bare(good_values()), offset=1).topic == "data.validated"


def test_a_shifted_value_is_validated_flagged_and_counted_while_a_hard_one_is_rejected() -> None:
    harness = Harness(EXPECTED)
    inside = harness.send(bare(good_values(amount=50.0)), offset=1)
    shifted = harness.send(bare(good_values(order_id="o-2", amount=700, items=1)), offset=2)
    beyond = harness.send(bare(good_values(order_id="o-3", amount=1500)), offset=3)
    again = harness.send(bare(good_values(order_id="o-2", amount=700, items=1)), offset=2)

    assert inside.topic == "data.validated" and inside.event.data.out_of_range == []
    assert shifted.topic == "data.validated"
    assert shifted.event.data.out_of_range == ["amount", "items"]
    assert shifted.event.data.values["amount"] == 700.0
    assert again.event.id == shifted.event.id, "a redelivery re-emits the same event"
    assert beyond.topic == "data.rejected"
    assert {(e.field, e.rule) for e in beyond.event.data.errors} == {("amount", "range")}
    features = harness.stats.snapshot("shop")["features"]
    amount, items = features["amount"], features["items"]
    assert (amount["out_of_range"], amount["out_of_range_rate"]) == (1, 0.5), "redelivery not"
    assert (amount["rejected"], amount["rejected_rate"]) == (1, 1 / 3)
    assert (amount["expected_min"], amount["expected_max"]) == (None, 200)
    assert (items["out_of_range"], items["rejected"]) == (1, 0)
    assert features["discount"]["out_of_range"] == 0


def test_rejections_are_kept_for_people_newest_first_bounded_and_once() -> None:
    harness = Harness()
    harness.validator = Validator(
        Deps(harness.specs, harness.ids, harness.stats, recent=RecentRejections(per_dataset=2))
    )
    first = harness.send(bare(good_values(amount=float("nan"))), offset=1)
    harness.send(bare(good_values(items=99)), offset=2)
    harness.send(bare(good_values(items=98)), offset=3)
    harness.send(bare(good_values(items=98)), offset=3)  # redelivered: kept once
    harness.send(bare(good_values()), offset=4)  # validated: not a rejection
    recent = harness.validator._deps.recent
    assert recent is not None
    kept = recent.of("shop", 10)
    assert [k["record"]["items"] for k in kept] == [98, 99]
    assert kept[0]["rules"] == ["range"] and kept[0]["errors"][0]["field"] == "items"
    assert first.event.id not in {k["id"] for k in kept}
    assert recent.of("shop", 1) == kept[:1] and recent.of("other", 10) == []
    app = FastAPI()
    app.include_router(stats_router(QualityStats(), list, lambda _: None, recent))
    body = TestClient(app).get("/rejections/shop", params={"limit": 1}).json()
    assert body == {"dataset": "shop", "rejections": kept[:1]}
