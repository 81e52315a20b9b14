"""Wires serving together: settings, the registry, feature store, MinIO and spec adapters, the
model slots and loader, the models.lifecycle consumer, the prediction log and the HTTP API,
on the shared service skeleton.

Start-up order: the lifecycle consumer's group is positioned at the topic's end first, then
the registry is asked for every model and its champion, so a promotion made in between is
read from the topic rather than lost. /ready answers 503 until the registry's list was read
and while a champion serving knows of is not loaded (loading, retried, refused); a model
without champion is not an outage.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from fastapi import FastAPI

from services.serving.adapters.artifacts import ArtifactStore
from services.serving.adapters.feature_store import FeatureStoreClient
from services.serving.adapters.kafka import LifecycleFollower, PredictionLog, start_at_end
from services.serving.adapters.registry import RegistryClient
from services.serving.adapters.specs import SpecSource
from services.serving.domain.eviction import MemoryBudget
from services.serving.domain.slots import CHALLENGER, CHAMPION, Change, ModelSlots
from services.serving.handlers import (
    CONSUMES,
    PUBLISHES,
    SOURCE,
    Deps,
    deployed_event,
    log_prediction,
    routes,
)
from services.serving.http import ServingApi, install
from services.serving.lazy import LazyChampions
from services.serving.loading import ChampionLookup, DeferredLoads, ModelLoader
from services.serving.memory import ModelMemory
from services.serving.predictions import Predictions, ShadowScorer
from services.serving.settings import ServingSettings
from shared.datasets.registry import SpecRegistry
from shared.http_limits import BodyLimit
from shared.kafka.config import client_config, consumer_config, producer_config
from shared.kafka.consumer import ConsumerRunner
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.kafka.routes import bind
from shared.kafka.topics import TopicCatalog
from shared.service import ServiceRuntime, create_app, kafka_reachable, serve
from shared.settings import PlatformSettings
from shared.storage import minio_client
from shared.telemetry import configure_tracing

NAME = SOURCE
log = logging.getLogger(__name__)


def champions_loaded(slots: ModelSlots) -> Any:
    """Readiness: every champion serving knows of answers (no champion at all is fine)."""

    def check() -> None:
        blocked = slots.blocked()
        if blocked:
            raise RuntimeError("; ".join(f"{name}: {why}" for name, why in sorted(blocked.items())))

    return check


def build(platform: PlatformSettings, settings: ServingSettings) -> FastAPI:
    catalog = TopicCatalog.load()
    namespace = platform.namespace
    group_id = settings.group_id or f"{namespace}.{NAME}.{uuid.uuid4().hex[:8]}"
    slots = ModelSlots(settings.models or None)
    registry = RegistryClient(settings.registry_url, settings.registry_timeout_s)
    specs = SpecRegistry(
        client_config(platform, f"{NAME}-specs"), catalog.name("data.specs", namespace), NAME
    )
    producer = EventProducer(producer_config(platform, NAME))
    lifecycle = catalog.name(CONSUMES, namespace)

    def announce(change: Change) -> None:
        emit = deployed_event(change, group_id)
        producer.publish([OutgoingMessage.for_event(lifecycle, emit.event, emit.key)])

    budget = MemoryBudget(int(settings.model_memory_mb * 1_048_576), settings.max_loaded_models)
    memory = ModelMemory(slots, budget)
    loader = ModelLoader(
        slots, registry, ArtifactStore(minio_client(platform)), SpecSource(specs), announce, memory
    )
    champions = LazyChampions(
        slots, memory, loader, settings.model_load_timeout_s, settings.load_threads
    )
    prediction_log = PredictionLog(
        producer,
        {name: catalog.name(name, namespace) for name in PUBLISHES},
        log_prediction,
        settings.log_queue_size,
    )
    threads = settings.predict_threads
    shadow = ShadowScorer(prediction_log, native_threads=threads) if settings.shadow else None
    aliases = (CHAMPION, CHALLENGER) if settings.shadow else (CHAMPION,)
    consumer = consumer_config(platform, NAME, group_id)
    runner = ConsumerRunner(
        group_id=group_id,
        subscriptions=bind(
            routes(Deps(loader, slots.accepts, frozenset(aliases))),
            namespace,
            platform.max_payload_bytes,
            catalog,
        ),
        consumer_config=consumer,
        producer=producer,
        dead_letter_topic=catalog.name("bus.dead-letter", namespace),
        max_message_bytes=platform.max_payload_bytes,
    )
    positioned = threading.Event()
    follower = LifecycleFollower(runner, lambda: start_at_end(consumer, lifecycle), positioned)
    lookup = ChampionLookup(
        slots, registry, loader, positioned, settings.champion_retry_s, settings.shadow
    )
    # The skeleton runs each of these on its own thread until shutdown, then closes the
    # producer: the prediction log is last, so it drains what the others still queue.
    retries = DeferredLoads(loader, settings.champion_retry_s)
    loops: list[Any] = [follower, lookup, retries, *([shadow] if shadow else []), prediction_log]
    runtime = ServiceRuntime(
        name=NAME,
        settings=platform,
        producer=producer,
        runners=loops,
        readiness_checks={
            "kafka": kafka_reachable(platform),
            "registry": lookup.check,
            "champions": champions_loaded(slots),
        },
    )
    predictions = Predictions(
        slots,
        FeatureStoreClient(settings.feature_store_url, settings.feature_store_timeout_s),
        prediction_log,
        settings.max_batch_rows,
        shadow,
        threads,
        settings.batch_wait_ms / 1000,
        champions,
    )
    # One span per request: FastAPI's dependency/endpoint spans and the ASGI send/receive
    # spans cost a third of a single-record prediction's time and tell nothing more.
    app = create_app(
        runtime,
        telemetry={"operation_spans": False},
        exclude_spans=("receive", "send"),
        body_limit=BodyLimit.of(settings),
    )
    install(app, ServingApi(predictions, slots, settings.max_records, memory))
    log.info(
        "models in memory: at most %.0f MB%s, loaded on request",
        settings.model_memory_mb,
        f" and {settings.max_loaded_models} models" if settings.max_loaded_models else "",
    )
    log.info(
        "serving %s (shadow %s), registry %s, feature store %s, lifecycle group %s",
        ", ".join(settings.models) if settings.models else "every model with a champion",
        "on" if settings.shadow else "off",
        settings.registry_url,
        settings.feature_store_url,
        group_id,
    )
    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    platform = PlatformSettings()
    settings = ServingSettings()
    configure_tracing(NAME, platform)
    serve(build(platform, settings), settings.host, settings.port)
