"""The feature store's handlers: a batch of validated records becomes feature events, entity
states and dead letters, with replays recognised and ids derived from the inputs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.feature_store.domain.aggregates import EntityState
from services.feature_store.domain.vectors import SpecConflict, feature_columns, state_key
from services.feature_store.handlers import (
    Incoming,
    compute_features,
    offline_feature_rows,
    offline_label_rows,
    spec_keys,
)
from shared.datasets.spec import DatasetSpec, VersionedSpec, shipped_specs
from shared.events import Event, LabelRecorded, RecordValidated, SourcePosition
from shared.events.codec import InvalidJson
from shared.kafka.consumer import MessageInfo

LOANS = next(spec for spec in shipped_specs() if spec.name == "loans")
SPECS = {("loans", 1): VersionedSpec(version=1, fingerprint=LOANS.fingerprint(), spec=LOANS)}
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
TOPIC = "ns.data.validated"
VALUES = {
    "salary": 52000.0, "commission": 0.0, "age": 41, "elevel": "2", "car": "7", "zipcode": "4",
    "hvalue": 135000.0, "hyears": 9,
}  # fmt: skip


def incoming(
    offset: int,
    entity: str,
    minutes: float,
    loan: Any,
    *,
    version: int = 1,
    partition: int = 0,
    raw_partition: int = 0,
) -> Incoming:
    payload = RecordValidated(
        dataset="loans",
        spec_version=version,
        record_id=f"r{offset}",
        entity=entity,
        event_time=T0 + timedelta(minutes=minutes),
        values={**VALUES, "loan": loan},
        label=offset % 2,
        source=SourcePosition(topic="ns.data.raw", partition=raw_partition, offset=offset),
    )
    event = Event.create(payload, source="validation", subject=entity)
    info = MessageInfo(TOPIC, partition, offset, entity.encode(), None)
    headers = [("traceparent", f"00-{offset:032x}-{offset:016x}-01".encode())]
    return Incoming(info, event.to_json_bytes(), headers, event=event)


def no_state(key: str) -> EntityState | None:
    return None


def test_each_record_becomes_a_features_event_with_an_id_derived_from_its_own() -> None:
    item = incoming(5, "alice", 0, 100.0)
    outcome = compute_features([item], SPECS, no_state, grace_s=3600)
    [traced] = outcome.emits
    event = traced.emit.event
    assert traced.emit.topic == "data.features"
    assert traced.emit.key == "alice"
    assert traced.headers == item.headers, "published in the record's trace"
    assert event.id == str(uuid.uuid5(uuid.NAMESPACE_URL, f"{item.event.id}/features"))
    assert event.causationid == item.event.id
    assert event.correlationid == item.event.correlationid
    assert event.subject == "alice"
    data = event.data
    assert data.features == {
        **VALUES, "loan": 100.0, "applications_1h": 1, "loan_sum_1h": 100.0, "loan_mean_1d": 100.0,
    }  # fmt: skip
    assert data.source == SourcePosition(topic=TOPIC, partition=0, offset=5)
    assert data.label == 1
    assert outcome.computed == [data]


def test_the_same_input_gives_the_same_output_event() -> None:
    item = incoming(5, "alice", 0, 100.0)
    first = compute_features([item], SPECS, no_state, 3600).emits[0].emit.event
    again = compute_features([item], SPECS, no_state, 3600).emits[0].emit.event
    assert (first.id, first.data) == (again.id, again.data)


def test_records_of_one_entity_in_one_batch_build_on_each_other() -> None:
    batch = [
        incoming(0, "alice", 0, 100.0),
        incoming(1, "bob", 1, 7.0),
        incoming(2, "alice", 2, 50.0),
    ]
    outcome = compute_features(batch, SPECS, no_state, 3600)
    last = outcome.emits[2].emit.event.data.features
    assert (last["applications_1h"], last["loan_sum_1h"]) == (2, 150.0)
    assert outcome.states[state_key("loans", "alice")].offset == 2
    assert outcome.states[state_key("loans", "bob")].offset == 1


def test_records_the_saved_state_already_counts_are_replays_and_cause_nothing() -> None:
    first = compute_features([incoming(0, "alice", 0, 100.0)], SPECS, no_state, 3600)
    saved = first.states

    def load(key: str) -> EntityState | None:
        return saved.get(key)

    batch = [incoming(0, "alice", 0, 100.0), incoming(1, "alice", 5, 10.0)]
    outcome = compute_features(batch, SPECS, load, 3600)
    assert outcome.replayed == 1
    [traced] = outcome.emits
    assert traced.emit.event.data.record_id == "r1"
    assert traced.emit.event.data.features["applications_1h"] == 2, "built on the saved state"


def published_again(item: Incoming, offset: int) -> Incoming:
    """The same validated event at a later offset, as validation publishes it again when it
    crashed between publishing and committing (at-least-once, same event id)."""
    info = MessageInfo(TOPIC, item.info.partition, offset, item.info.key, None)
    return Incoming(info, item.value, item.headers, event=item.event)


def test_a_validated_event_published_again_is_counted_once_in_a_batch_and_across_batches() -> None:
    first, second = incoming(0, "alice", 0, 100.0), incoming(1, "alice", 1, 10.0)
    outcome = compute_features([first, second, published_again(first, 2)], SPECS, no_state, 3600)
    assert outcome.replayed == 1
    assert [t.emit.event.data.record_id for t in outcome.emits] == ["r0", "r1"]
    saved = outcome.states

    later = compute_features(
        [published_again(second, 3), incoming(4, "alice", 2, 1.0)], SPECS, saved.get, 3600
    )

    assert later.replayed == 1
    [traced] = later.emits
    assert traced.emit.event.data.features["applications_1h"] == 3, "each record counted once"


def test_a_record_from_another_raw_partition_is_new_whatever_its_offset() -> None:
    seen = compute_features([incoming(5, "alice", 0, 100.0)], SPECS, no_state, 3600).states
    other = incoming(2, "alice", 1, 10.0, raw_partition=1)
    other = Incoming(MessageInfo(TOPIC, 0, 6, b"alice", None), other.value, [], event=other.event)

    outcome = compute_features([other], SPECS, seen.get, 3600)

    assert outcome.replayed == 0
    assert outcome.emits[0].emit.event.data.features["applications_1h"] == 2


def test_undecodable_messages_and_unknown_specs_are_dead_lettered_and_the_rest_goes_on() -> None:
    junk = Incoming(MessageInfo(TOPIC, 0, 9, None, None), b"{", [], error=InvalidJson("bad"))
    unknown_version = incoming(10, "alice", 0, 1.0, version=7)
    batch = [junk, unknown_version, incoming(11, "bob", 0, 2.0)]
    outcome = compute_features(batch, SPECS, no_state, 3600)
    assert [(item.info.offset, type(error).__name__) for item, error in outcome.dead_letters] == [
        (9, "InvalidJson"),
        (10, "UnknownSpec"),
    ]
    assert [t.emit.event.data.record_id for t in outcome.emits] == ["r11"]
    assert state_key("loans", "alice") not in outcome.states


def test_a_value_that_cannot_be_aggregated_is_dead_lettered_with_its_reason() -> None:
    outcome = compute_features([incoming(3, "alice", 0, "a lot")], SPECS, no_state, 3600)
    [(item, error)] = outcome.dead_letters
    assert item.info.offset == 3
    assert error.reason == "aggregation_error"
    assert "needs a number" in str(error)
    assert not outcome.emits and not outcome.states


def test_a_spec_whose_names_collide_with_the_stores_columns_is_refused() -> None:
    clashing = DatasetSpec.model_validate(
        {**LOANS.model_dump(), "aggregations": [
            {"name": "source_count", "function": "count", "window_seconds": 60}]}
    )  # fmt: skip
    with pytest.raises(SpecConflict, match="source_count"):
        feature_columns(clashing)
    specs = {("loans", 1): VersionedSpec(version=1, fingerprint="x", spec=clashing)}
    outcome = compute_features([incoming(0, "alice", 0, 1.0)], specs, no_state, 3600)
    assert outcome.dead_letters[0][1].reason == "spec_conflict"


def test_a_batch_names_the_spec_versions_it_needs() -> None:
    junk = Incoming(MessageInfo(TOPIC, 0, 9, None, None), b"{", [], error=InvalidJson("bad"))
    batch = [incoming(0, "a", 0, 1.0), incoming(1, "b", 0, 1.0, version=2), junk]
    assert spec_keys(batch) == {("loans", 1), ("loans", 2)}


def test_offline_rows_say_where_their_data_came_from() -> None:
    features = compute_features([incoming(4, "alice", 0, 3.0, partition=2)], SPECS, no_state, 60)
    event = features.emits[0].emit.event
    [row] = offline_feature_rows(event, MessageInfo("ns.data.features", 1, 77, None, None))
    assert row.offset == 77 and row.dataset == "loans" and row.day.isoformat() == "2024-05-01"
    assert row.values["source_topic"] == TOPIC
    assert (row.values["source_partition"], row.values["source_offset"]) == (2, 4)
    assert row.values["loan_sum_1h"] == 3.0

    labelled = Event.create(
        LabelRecorded(dataset="loans", record_id="r4", label=1, labelled_at=T0), source="test"
    )
    [label_row] = offline_label_rows(labelled, MessageInfo("ns.data.labels", 0, 12, None, None))
    assert label_row.values == {
        "record_id": "r4", "entity": None, "label": 1, "labelled_at": T0,
        "source_topic": "ns.data.labels", "source_partition": 0, "source_offset": 12,
    }  # fmt: skip
