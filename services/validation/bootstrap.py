"""Wires validation together: settings, spec registry, record-id store, statistics, the
data.raw consumer and the HTTP API, on the shared service skeleton."""

from __future__ import annotations

import dataclasses
import logging

from confluent_kafka.admin import AdminClient
from fastapi import FastAPI

from services.validation import metrics
from services.validation.adapters.record_ids import (
    SqlRecordIds,
    table_name,
)
from services.validation.adapters.specs import WatermarkedSpecs, topic_end_offsets
from services.validation.domain.decoding import RawDecoder
from services.validation.domain.quality import QualityStats
from services.validation.domain.recent import RecentRejections
from services.validation.handlers import CONSUMES, Deps, declared_spec, routes
from services.validation.http import stats_router
from services.validation.settings import ValidationSettings
from shared.datasets.registry import SpecRegistry
from shared.http_limits import BodyLimit
from shared.kafka.config import client_config, consumer_config, producer_config
from shared.kafka.consumer import ConsumerRunner, RetryPolicy
from shared.kafka.peers import Peers, client_id_for, group_members
from shared.kafka.producer import EventProducer
from shared.kafka.routes import bind
from shared.kafka.topics import TopicCatalog
from shared.service import ServiceRuntime, create_app, kafka_reachable, serve
from shared.settings import PlatformSettings
from shared.sql import create_database_engine
from shared.telemetry import configure_tracing

NAME = "validation"


def build(platform: PlatformSettings, settings: ValidationSettings) -> FastAPI:
    catalog = TopicCatalog.load()
    namespace = platform.namespace
    group_id = settings.group_id or f"{namespace}.{NAME}"
    producer = EventProducer(producer_config(platform, NAME))
    specs_topic = catalog.name("data.specs", namespace)
    specs_client = client_config(platform, f"{NAME}-specs")
    specs = WatermarkedSpecs(
        SpecRegistry(specs_client, specs_topic, NAME), topic_end_offsets(specs_client, specs_topic)
    )
    engine = create_database_engine(platform.database_url_or_sqlite(settings.sqlite_path))
    record_ids = SqlRecordIds(engine, table_name(namespace))
    stats = QualityStats()
    metrics.register(stats)
    deps = Deps(
        specs,
        record_ids,
        stats,
        refresh_interval_s=settings.spec_refresh_seconds,
        max_rejection_bytes=platform.max_rejection_bytes,
        recent=RecentRejections(settings.recent_rejections),
    )

    raw_topic = catalog.name(CONSUMES, namespace)
    subscriptions = [
        # Bare records and junk are records too here: the raw topic gets validation's decoder.
        dataclasses.replace(s, decoder=RawDecoder(platform.max_record_bytes))
        if s.topic == raw_topic
        else s
        for s in bind(routes(deps), namespace, platform.max_payload_bytes, catalog)
    ]
    own_url = settings.own_url
    runner = ConsumerRunner(
        group_id=group_id,
        subscriptions=subscriptions,
        consumer_config=consumer_config(platform, client_id_for(NAME, own_url), group_id),
        producer=producer,
        dead_letter_topic=catalog.name("bus.dead-letter", namespace),
        retry=RetryPolicy(max_attempts=settings.handler_attempts),
        max_message_bytes=platform.max_payload_bytes,
    )
    runtime = ServiceRuntime(
        name=NAME,
        settings=platform,
        producer=producer,
        runners=[runner],
        readiness_checks={"kafka": kafka_reachable(platform), "database": record_ids.ping},
    )
    peers = Peers(
        NAME,
        group_members(AdminClient(client_config(platform, f"{NAME}-peers")), group_id),
        own_url,
    )
    router = stats_router(
        stats, specs.names, lambda name: declared_spec(specs, name), deps.recent, peers
    )
    return create_app(runtime, [router], body_limit=BodyLimit.of(settings))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    platform = PlatformSettings()
    settings = ValidationSettings()
    configure_tracing(NAME, platform)
    serve(build(platform, settings), settings.host, settings.port)
