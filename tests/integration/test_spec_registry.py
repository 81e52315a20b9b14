"""The spec registry lives in a compacted Kafka topic; every reader sees the same versions."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient

from shared.datasets.registry import SpecRegistry, UnknownDataset
from shared.datasets.spec import DatasetSpec, shipped_specs
from shared.kafka.config import client_config, producer_config
from shared.kafka.producer import EventProducer
from shared.kafka.topics import TopicCatalog, ensure_topics
from shared.settings import PlatformSettings
from tests.integration.kafka_helpers import unique_name


def test_a_changed_spec_gets_the_next_version_and_other_readers_see_it(
    settings: PlatformSettings, admin: AdminClient
) -> None:
    namespace = unique_name("specs").replace("-", "")
    spec_topic = TopicCatalog.load()["data.specs"]
    ensure_topics(admin, [spec_topic], namespace)
    topic = spec_topic.full_name(namespace)
    try:
        producer = EventProducer(producer_config(settings, "spec-test"))
        writer = SpecRegistry(client_config(settings, "w"), topic, source="test")
        loans = next(s for s in shipped_specs() if s.name == "loans")
        first = writer.register(loans, producer)
        assert first.version == 1
        assert writer.register(loans, producer) == first, "same content, same version"
        changed = DatasetSpec.model_validate({**loans.model_dump(), "description": "v2"})
        second = writer.register(changed, producer)
        assert second.version == 2

        reader = SpecRegistry(client_config(settings, "r"), topic, source="test")
        assert reader.latest("loans") == second
        assert reader.get("loans", 1) == first
        with pytest.raises(UnknownDataset, match="known: loans"):
            reader.latest("nope")
        with pytest.raises(LookupError, match="no version 7"):
            reader.get("loans", 7)
    finally:
        admin.delete_topics([topic], operation_timeout=10)
