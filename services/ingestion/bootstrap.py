"""Wires ingestion: settings, the Kafka producer and spec registry, the use cases, the HTTP app.

It is the only module that knows every part; tests build the same app with fakes by calling
`build_app` with their own `Ingestion`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from services.ingestion.adapters.kafka import (
    KafkaPublisher,
    RegistryCatalog,
    ShippedSpecRegistration,
)
from services.ingestion.domain.ingestion import Ingestion
from services.ingestion.handlers import PUBLISHES, SOURCE
from services.ingestion.http import body_limit, build_router, install_refusal_handler
from services.ingestion.settings import IngestionSettings
from shared.datasets.registry import SpecRegistry
from shared.datasets.spec import shipped_specs
from shared.kafka.config import client_config, producer_config
from shared.kafka.producer import EventProducer
from shared.kafka.topics import TopicCatalog
from shared.service import ReadinessCheck, ServiceRuntime, create_app, kafka_reachable
from shared.settings import PlatformSettings
from shared.telemetry import configure_tracing


@dataclass
class IngestionService:
    app: FastAPI
    settings: IngestionSettings
    registration: ShippedSpecRegistration


def build_app(
    runtime: ServiceRuntime, ingestion: Ingestion, settings: IngestionSettings
) -> FastAPI:
    app = create_app(runtime, [build_router(ingestion, settings)], body_limit=body_limit(settings))
    install_refusal_handler(app)
    return app


def bootstrap(
    platform: PlatformSettings | None = None, settings: IngestionSettings | None = None
) -> IngestionService:
    platform = platform or PlatformSettings()
    settings = settings or IngestionSettings()
    configure_tracing("ingestion", platform)
    # librdkafka gives up on a write after delivery_timeout_s, so a failed write is reported
    # (and answered 503) instead of lingering in the queue to be delivered after the answer.
    producer = EventProducer(
        {
            **producer_config(platform, "ingestion"),
            "message.timeout.ms": int(settings.delivery_timeout_s * 1000),
        }
    )
    catalog = TopicCatalog.load()
    topics = {name: catalog.name(name, platform.namespace) for name in PUBLISHES}
    registry = SpecRegistry(
        client_config(platform, "ingestion-specs"), topics["data.specs"], source=SOURCE
    )
    specs = RegistryCatalog(registry, producer, timeout_s=settings.registry_timeout_s)
    publisher = KafkaPublisher(
        producer,
        {name: topic for name, topic in topics.items() if name != "data.specs"},
        max_record_bytes=platform.max_record_bytes,
        timeout_s=settings.delivery_timeout_s + 5.0,
        retry_after_s=settings.broker_retry_after_s,
    )
    runtime = ServiceRuntime(name="ingestion", settings=platform, producer=producer)
    registration = ShippedSpecRegistration(specs, shipped_specs(), runtime.stop)
    checks: dict[str, ReadinessCheck] = {
        "kafka": kafka_reachable(platform),
        "shipped_specs": registration.check,
    }
    runtime.readiness_checks = checks
    app = build_app(runtime, Ingestion(specs, publisher), settings)
    return IngestionService(app=app, settings=settings, registration=registration)
