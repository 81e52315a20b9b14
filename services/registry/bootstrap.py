"""Wires the registry together: settings, database (migrated to head at start-up), the
promotion policy, the models.trained consumer and the HTTP API, on the shared skeleton."""

from __future__ import annotations

import gc
import logging

from fastapi import FastAPI

from services.registry.adapters.database import create_registry_engine, migrate
from services.registry.adapters.kafka import LifecyclePublisher
from services.registry.domain.events import LIFECYCLE
from services.registry.domain.policy import PromotionPolicy
from services.registry.handlers import Deps, routes
from services.registry.http import RegistryApi, install
from services.registry.lifecycle import Registry
from services.registry.settings import RegistrySettings
from shared.http_limits import BodyLimit
from shared.kafka.config import consumer_config, producer_config
from shared.kafka.consumer import ConsumerRunner, RetryPolicy
from shared.kafka.producer import EventProducer
from shared.kafka.routes import bind
from shared.kafka.topics import TopicCatalog
from shared.service import ServiceRuntime, create_app, kafka_reachable, serve
from shared.settings import PlatformSettings
from shared.telemetry import configure_tracing

NAME = "registry"
log = logging.getLogger(__name__)


def build_registry(platform: PlatformSettings, settings: RegistrySettings) -> Registry:
    """The registry on its database, migrated to the latest schema."""
    engine = create_registry_engine(settings.database_url_for(platform), settings.database_schema)
    migrate(engine)
    policy = PromotionPolicy(settings.promotion_margin, settings.manual_approval)
    return Registry(engine, policy)


def build(platform: PlatformSettings, settings: RegistrySettings) -> FastAPI:
    catalog = TopicCatalog.load()
    namespace = platform.namespace
    group_id = settings.group_id or f"{namespace}.{NAME}"
    registry = build_registry(platform, settings)
    producer = EventProducer(producer_config(platform, NAME))
    runner = ConsumerRunner(
        group_id=group_id,
        subscriptions=bind(routes(Deps(registry)), namespace, platform.max_payload_bytes, catalog),
        consumer_config=consumer_config(platform, NAME, group_id),
        producer=producer,
        dead_letter_topic=catalog.name("bus.dead-letter", namespace),
        max_message_bytes=platform.max_payload_bytes,
        retry=RetryPolicy(max_attempts=settings.handler_attempts),
    )
    runtime = ServiceRuntime(
        name=NAME,
        settings=platform,
        producer=producer,
        runners=[runner],
        readiness_checks={"kafka": kafka_reachable(platform), "database": registry.ping},
    )
    publish = LifecyclePublisher(
        platform, catalog.name(LIFECYCLE, namespace), settings.publish_timeout_s
    )
    if not settings.api_keys:
        log.warning("MLOPS_REGISTRY_API_KEYS is empty: every change over HTTP is refused")
    app = create_app(runtime, body_limit=BodyLimit.of(settings))
    install(app, RegistryApi(registry, publish, settings.api_keys))
    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    platform = PlatformSettings()
    settings = RegistrySettings()
    configure_tracing(NAME, platform)
    app = build(platform, settings)
    # What start-up built (modules, app, engine) lives as long as the process: frozen, the
    # oldest generation's collections stop scanning it, which kept GET /models' slowest
    # answers (1,000 models' objects per request) several times its median.
    gc.freeze()
    serve(app, settings.host, settings.port)
