"""Wires monitoring together: settings, the SQL history, the monitor and policy, three consumer
loops (the inputs forwarded by dataset, the dataset-keyed inputs, the models' events), the
background fetch of lineages from the registry, and the HTTP API."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka.admin import AdminClient
from fastapi import FastAPI

from services.monitoring.adapters.history import History
from services.monitoring.adapters.inputs import PartitionReader
from services.monitoring.adapters.registry import BackgroundLineages, LineageClient
from services.monitoring.adapters.specs import DatasetTasks
from services.monitoring.checkpoints import Checkpoints
from services.monitoring.domain.join import LabelJoin
from services.monitoring.domain.monitor import Monitor, Served
from services.monitoring.domain.policy import RetrainPolicy
from services.monitoring.domain.reference import TrainingReferences
from services.monitoring.domain.series import PerformanceSeries
from services.monitoring.handlers import (
    FORWARDED,
    INPUTS,
    Deps,
    forwarding_routes,
    model_routes,
    routes,
)
from services.monitoring.http import monitoring_router
from services.monitoring.settings import MonitoringSettings
from shared.datasets.registry import SpecRegistry
from shared.events.codec import EventDecoder
from shared.http_limits import BodyLimit
from shared.kafka.config import client_config, consumer_config, producer_config
from shared.kafka.consumer import ConsumerRunner, PartitionListener
from shared.kafka.peers import Peers, client_id_for, group_members
from shared.kafka.producer import EventProducer
from shared.kafka.routes import Route, bind
from shared.kafka.topics import TopicCatalog
from shared.service import ServiceRuntime, create_app, kafka_reachable, serve
from shared.settings import PlatformSettings
from shared.sql import create_database_engine
from shared.telemetry import configure_tracing

NAME = "monitoring"


def build(platform: PlatformSettings, settings: MonitoringSettings) -> FastAPI:
    catalog = TopicCatalog.load()
    namespace = platform.namespace
    settings.detectors_for("")  # builds every dataset's detectors: a bad one fails at start-up
    producer = EventProducer(producer_config(platform, NAME))
    history = History(create_database_engine(settings.database_url_for(platform)), namespace)
    registry = LineageClient(settings.registry_url)
    lineages = BackgroundLineages(registry.lineage)
    specs = SpecRegistry(
        client_config(platform, f"{NAME}-specs"), catalog.name("data.specs", namespace), NAME
    )
    tasks = DatasetTasks(specs, settings.tasks)
    deps = Deps(
        monitor=Monitor(
            settings.detectors_for,
            settings.model_name_for,
            LabelJoin[Served](settings.label_wait_s),
            task_for=tasks.task,
            holdout_metrics=holdout_metrics(lineages),
        ),
        policy=RetrainPolicy(settings.policy()),
        history=history,
        history_every=settings.history_every,
        retrain_since_drift=settings.retrain_since_drift,
        references=TrainingReferences(lineages.lineage),
        series=PerformanceSeries(settings.history_points),
    )
    group = settings.group_id or f"{namespace}.{NAME}"
    # Every replica reads the models' events: a group per replica (its name in the stack).
    models_group = f"{group}-models.{platform.instance or uuid.uuid4().hex[:12]}"
    dead_letters = catalog.name("bus.dead-letter", namespace)

    own_url = settings.own_url
    checkpoints = None
    if settings.checkpoint_every:
        inputs = catalog.name(INPUTS, namespace)
        reader = PartitionReader(
            {**client_config(platform, f"{NAME}-replay"), "group.id": f"{group}-replay"},
            inputs,
            EventDecoder([payload for _, payload in FORWARDED], platform.max_payload_bytes),
        )
        checkpoints = deps.gate = Checkpoints(
            deps,
            history,
            reader.read,
            group,
            inputs,
            settings.checkpoint_every,
            settings.checkpoint_interval_s,
        )

    def runner(
        group_id: str,
        bound: list[Route],
        client_id: str = NAME,
        listener: PartitionListener | None = None,
    ) -> ConsumerRunner:
        return ConsumerRunner(
            group_id=group_id,
            subscriptions=bind(bound, namespace, platform.max_payload_bytes, catalog),
            consumer_config=consumer_config(platform, client_id, group_id),
            producer=producer,
            dead_letter_topic=dead_letters,
            max_message_bytes=platform.max_payload_bytes,
            listener=listener,
        )

    runners = [
        runner(f"{group}-router", forwarding_routes()),
        runner(group, routes(deps), client_id_for(NAME, own_url), checkpoints),
        runner(models_group, model_routes(deps)),
    ]
    runtime = ServiceRuntime(
        name=NAME,
        settings=platform,
        producer=producer,
        runners=[*runners, lineages],
        readiness_checks={"kafka": kafka_reachable(platform), "database": history.ping},
        closing=[registry.close],
    )
    admin = AdminClient(client_config(platform, f"{NAME}-peers"))
    peers = Peers(NAME, group_members(admin, group), own_url)
    router = monitoring_router(deps, settings.recent_limit, settings.label_wait_s, peers)
    return create_app(runtime, [router], body_limit=BodyLimit.of(settings))


def holdout_metrics(lineages: BackgroundLineages) -> Callable[[str, int], Mapping[str, Any] | None]:
    """A version's holdout metrics from its lineage, once fetched (never waits)."""

    def metrics(model: str, version: int) -> Mapping[str, Any] | None:
        lineage = lineages.lineage(model, version)
        if lineage is None:
            return None
        return (lineage.get("evaluation") or {}).get("metrics")

    return metrics


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    platform = PlatformSettings()
    settings = MonitoringSettings()
    configure_tracing(NAME, platform)
    serve(build(platform, settings), settings.host, settings.port)
