from datetime import UTC, datetime
from typing import Any

import pytest

from shared.events import Event, RecordIngested
from shared.kafka.consumer import Emit, MessageInfo, UndeclaredTopic, _declared_topic
from shared.kafka.routes import Route, bind


def echo(event: Event[Any], info: MessageInfo) -> list[Emit]:
    return [Emit("data.validated", event)]


def an_event() -> Event[RecordIngested]:
    record = RecordIngested(dataset="d", values={"a": 1}, ingested_at=datetime.now(UTC))
    return Event.create(record, source="test")


def test_routes_bind_catalog_names_to_the_namespace() -> None:
    [subscription] = bind(
        [Route("data.raw", (RecordIngested,), echo, emits=("data.validated", "data.rejected"))],
        namespace="replay-3",
        max_payload_bytes=1000,
    )
    assert subscription.topic == "replay-3.data.raw"
    assert subscription.emits == {
        "data.validated": "replay-3.data.validated",
        "data.rejected": "replay-3.data.rejected",
    }
    assert subscription.decoder.decode(an_event().to_json_bytes()).data.dataset == "d"


def test_a_route_on_a_topic_missing_from_the_catalog_fails_at_start_up() -> None:
    with pytest.raises(KeyError, match=r"data\.nowhere"):
        bind([Route("data.nowhere", (RecordIngested,), echo)], "mlops", 1000)


def test_an_emit_to_an_undeclared_topic_is_refused_with_the_declared_ones() -> None:
    [subscription] = bind(
        [Route("data.raw", (RecordIngested,), echo, emits=("data.rejected",))], "ns", 1000
    )
    assert _declared_topic(subscription, Emit("data.rejected", an_event())) == "ns.data.rejected"
    with pytest.raises(UndeclaredTopic, match=r"'data\.validated'; declared: data\.rejected"):
        _declared_topic(subscription, Emit("data.validated", an_event()))
