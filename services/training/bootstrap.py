"""Wires training together: settings, the spec registry, the feature store and registry
clients, MinIO, the SQL run and label stores, the two consumer loops and the HTTP API."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI
from sqlalchemy import Engine

from services.training.adapters.code_version import code_version
from services.training.adapters.database import create_training_engine, ping
from services.training.adapters.feature_store import FeatureStoreClient
from services.training.adapters.kafka import CommandPublisher
from services.training.adapters.labels import SqlLabelCounter
from services.training.adapters.leases import SqlLeases
from services.training.adapters.objects import ObjectStore
from services.training.adapters.positions import KafkaPositions, Upstream
from services.training.adapters.registry import RegistryClient
from services.training.adapters.reproductions import SqlReproductions
from services.training.adapters.runs import SqlRuns
from services.training.domain.waiting import Waiting
from services.training.exclusive import ExclusionConfig, ModelExclusion
from services.training.handlers import COMMANDS, Deps, command_routes, label_routes
from services.training.http import reproductions_router, training_router
from services.training.reproducer import (
    Reproducer,
    ReproducerConfig,
    ReproductionWorker,
)
from services.training.settings import TrainingSettings
from services.training.trainer import Trainer, TrainerConfig
from shared.datasets.registry import SpecRegistries, SpecRegistry, UnknownDataset
from shared.http_limits import BodyLimit
from shared.kafka.config import client_config, consumer_config, producer_config
from shared.kafka.consumer import ConsumerRunner, RetryPolicy
from shared.kafka.producer import EventProducer
from shared.kafka.routes import bind
from shared.kafka.topics import TopicCatalog
from shared.service import ServiceRuntime, create_app, kafka_reachable, serve
from shared.settings import PlatformSettings
from shared.storage import minio_client, object_store_reachable
from shared.telemetry import configure_tracing

NAME = "training"
WAITED_FOR = ("data.validated", "data.labels")
"""The topics a run waits for: records (and labels inside them) and late labels."""
DEFAULT_MAX_POLL_INTERVAL_MS = 300_000


def build(platform: PlatformSettings, settings: TrainingSettings) -> FastAPI:
    catalog = TopicCatalog.load()
    namespace = platform.namespace
    producer = EventProducer(producer_config(platform, NAME))
    specs = SpecRegistry(
        client_config(platform, f"{NAME}-specs"), catalog.name("data.specs", namespace), NAME
    )
    engine = create_training_engine(settings.database_url_for(platform), settings.database_schema)
    runs = SqlRuns(engine, namespace)
    objects = ObjectStore(minio_client(platform))
    feature_store = FeatureStoreClient(settings.feature_store_url, settings.http_timeout_s)
    registry = RegistryClient(settings.registry_url, settings.http_timeout_s)
    positions = KafkaPositions(
        client_config(platform, f"{NAME}-positions"),
        [catalog.name(topic, namespace) for topic in WAITED_FOR],
        Upstream(
            raw=catalog.name("data.raw", namespace),
            validated=catalog.name("data.validated", namespace),
            group_id=settings.validation_group_id or f"{namespace}.validation",
        ),
    )
    trainer = Trainer(
        trainer_config(namespace, settings), specs, feature_store, registry, objects, positions
    )
    deps = Deps(
        trainer=trainer,
        runs=runs,
        labels=SqlLabelCounter(engine, namespace),
        exclusion=model_exclusion(engine, namespace, settings),
        retrain_every_labels=settings.retrain_every_labels,
        model_name_for=settings.model_name_for,
        attempts=settings.handler_attempts,
    )
    runners = _runners(platform, settings, catalog, producer, deps)
    runtime = ServiceRuntime(
        name=NAME,
        settings=platform,
        producer=producer,
        runners=runners,
        readiness_checks={
            "kafka": kafka_reachable(platform),
            "database": lambda: ping(engine),
            "object_store": object_store_reachable(platform),
            "feature_store": feature_store.ping,
            "registry": registry.ping,
        },
    )
    publisher = CommandPublisher(
        producer, catalog.name(COMMANDS, namespace), settings.publish_timeout_s
    )
    router = training_router(publisher, _known_dataset(specs), runs, deps.running)
    worker = ReproductionWorker(
        SqlReproductions(
            engine,
            namespace,
            settings.reproductions_kept,
            settings.reproduction_timeout_s,
            settings.reproduction_lease_s,
        ),
        Reproducer(
            ReproducerConfig(
                holdout_fraction=settings.holdout_fraction,
                classification_metric=settings.classification_metric,
                regression_metric=settings.regression_metric,
                rebuild_timeout_s=settings.reproduction_timeout_s,
            ),
            SpecRegistries(
                lambda ns: client_config(platform, f"{NAME}-specs-{ns}"), NAME, {namespace: specs}
            ),
            feature_store,
            objects,
        ),
        settings.reproduction_queue,
    )
    worker.start()
    reproductions = reproductions_router(worker, registry, feature_store.ping)
    return create_app(runtime, [router, reproductions], body_limit=BodyLimit.of(settings))


def model_exclusion(engine: Engine, namespace: str, settings: TrainingSettings) -> ModelExclusion:
    """One run of a model at a time across replicas: a lease per model in training's database."""
    return ModelExclusion(
        SqlLeases(engine, namespace, settings.lease_ttl_s),
        ExclusionConfig(ttl_s=settings.lease_ttl_s, wait_s=settings.lease_wait_s),
    )


def trainer_config(namespace: str, settings: TrainingSettings) -> TrainerConfig:
    return TrainerConfig(
        namespace=namespace,
        bucket=settings.models_bucket,
        default_seed=settings.default_seed,
        holdout_fraction=settings.holdout_fraction,
        waiting=Waiting(wait_s=settings.data_wait_s, poll_s=settings.data_poll_s),
        pin_training_set_to_command_time=settings.pin_training_set_to_command_time,
        min_training_rows=settings.min_training_rows,
        code_version=code_version(),
    )


def _runners(
    platform: PlatformSettings,
    settings: TrainingSettings,
    catalog: TopicCatalog,
    producer: EventProducer,
    deps: Deps,
) -> list[ConsumerRunner]:
    """Commands one at a time (a run may take minutes, after waiting for its model's lease:
    Kafka is told to wait that long), and labels in batches, each in a consumer group of its
    own."""
    namespace = platform.namespace
    dead_letters = catalog.name("bus.dead-letter", namespace)
    max_bytes = platform.max_payload_bytes
    retry = RetryPolicy(max_attempts=settings.handler_attempts, initial_backoff_s=0.5)
    commands_group = settings.group_id or f"{namespace}.{NAME}"
    labels_group = settings.labels_group_id or f"{namespace}.{NAME}-labels"
    longest_s = settings.max_training_seconds + settings.lease_wait_s
    poll_interval_ms = max(DEFAULT_MAX_POLL_INTERVAL_MS, int(longest_s * 1000))
    commands = ConsumerRunner(
        group_id=commands_group,
        subscriptions=bind(command_routes(deps), namespace, max_bytes, catalog),
        consumer_config={
            **consumer_config(platform, NAME, commands_group),
            "max.poll.interval.ms": poll_interval_ms,
        },
        producer=producer,
        dead_letter_topic=dead_letters,
        max_message_bytes=platform.max_payload_bytes,
        retry=retry,
        batch_size=1,
    )
    labels = ConsumerRunner(
        group_id=labels_group,
        subscriptions=bind(label_routes(deps), namespace, max_bytes, catalog),
        consumer_config=consumer_config(platform, f"{NAME}-labels", labels_group),
        producer=producer,
        dead_letter_topic=dead_letters,
        max_message_bytes=platform.max_payload_bytes,
        retry=retry,
    )
    return [commands, labels]


def _known_dataset(specs: SpecRegistry) -> Callable[[str], bool]:
    def known(name: str) -> bool:
        try:
            specs.latest(name)
        except UnknownDataset:
            return False
        return True

    return known


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    platform = PlatformSettings()
    settings = TrainingSettings()
    configure_tracing(NAME, platform)
    serve(build(platform, settings), settings.host, settings.port)
