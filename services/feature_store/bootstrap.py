"""Wires the feature store together and runs it in one process:

- the faust worker (the streaming aggregates) in the main thread, which owns the signals:
  SIGTERM/SIGINT stop it gracefully;
- the HTTP app (shared skeleton: /live, /ready, /metrics, and the store's routes) under
  uvicorn in a thread;
- the offline store's two writers (data.features, data.labels) in threads;
- the stall watch (domain/stall.py) in a thread: a stream that stopped ends the process.

When the worker stops, the writers write what they hold and commit, then HTTP stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import faust
import uvicorn
from confluent_kafka.admin import AdminClient
from fastapi import FastAPI

from services.feature_store.adapters.kafka import ChangelogWriter, OutcomePublisher
from services.feature_store.adapters.kafka_ranges import RangeReader
from services.feature_store.adapters.objects import ObjectStore
from services.feature_store.adapters.offline_sink import OfflineSink, SinkConfig
from services.feature_store.adapters.online import OnlineStore
from services.feature_store.adapters.rebuilt_sets import RebuiltSets
from services.feature_store.adapters.stall_probe import StreamProbe
from services.feature_store.adapters.stream_progress import StreamProgress
from services.feature_store.adapters.streaming import (
    FeaturePipeline,
    FeatureStream,
    app_id,
    ensure_changelog,
    partition_count,
    streaming_app,
)
from services.feature_store.adapters.training_sets import TrainingSets
from services.feature_store.domain.lookup_cache import LookupCache
from services.feature_store.domain.offline import FileBatch, Kind, feature_schema, label_schema
from services.feature_store.domain.stall import StallWatch
from services.feature_store.handlers import (
    CONSUMES,
    DEAD_LETTER,
    FEATURES,
    LABELS,
    offline_feature_rows,
    offline_label_rows,
)
from services.feature_store.http import HttpDeps, install
from services.feature_store.settings import FeatureStoreSettings
from shared.datasets.registry import SpecRegistries, SpecRegistry
from shared.datasets.spec import DatasetSpec
from shared.events.codec import EventDecoder
from shared.events.records import FeaturesComputed, LabelRecorded, RecordValidated
from shared.http_limits import BodyLimit
from shared.kafka.config import client_config, producer_config
from shared.kafka.producer import EventProducer
from shared.kafka.topics import TopicCatalog
from shared.service import ServiceRuntime, create_app, kafka_reachable, server_config
from shared.settings import PlatformSettings
from shared.sql import create_database_engine
from shared.storage import minio_client, object_store_reachable
from shared.telemetry import configure_tracing

NAME = "feature-store"
log = logging.getLogger(__name__)


@dataclass
class FeatureStoreProcess:
    """Everything the process runs; `run` blocks until the worker stops."""

    settings: FeatureStoreSettings
    stream: FeatureStream
    pipeline: FeaturePipeline
    sinks: list[OfflineSink]
    http: FastAPI
    producer: EventProducer
    stop: threading.Event
    runtime: ServiceRuntime
    probe: StreamProbe
    progress: StreamProgress

    def run(self) -> None:
        server = uvicorn.Server(server_config(self.http, self.settings.host, self.settings.port))
        writers = [
            _thread(f"offline-{sink.config.kind}", lambda s=sink: self._run_sink(s))
            for sink in self.sinks
        ]
        http = _thread("http", server.run)
        _thread("stall-watch", self._watch_stream)
        self.stream.app.on_before_shutdown.connect(self._on_worker_stopping)
        worker = faust.Worker(
            self.stream.app,
            loglevel="INFO",
            quiet=True,
            redirect_stdouts=False,
            override_logging=False,
        )
        try:
            worker.execute_from_commandline()
        finally:
            self.stop.set()
            for writer in writers:
                writer.join(60)
            # Out of the load balancer since the worker began stopping; stop accepting only
            # once the drain is over (shared/service.py's DrainingServer does this elsewhere).
            time.sleep(self.runtime.drain_left_s())
            server.should_exit = True
            http.join(30)
            self.pipeline.close()
            self.probe.close()
            self.progress.close()
            self.producer.close()  # tracing was flushed by the HTTP app's shutdown

    async def _on_worker_stopping(self, app: faust.App, **_: object) -> None:
        self.runtime.begin_stopping()
        self.stop.set()

    def _watch_stream(self) -> None:
        watch = StallWatch(self.settings.stall_timeout_s)
        while not self.stop.wait(min(5.0, self.settings.stall_timeout_s / 4)):
            try:
                state = self.probe.state()
            except Exception as error:  # Kafka unreachable: nothing to conclude
                log.warning("the stall watch could not read the stream's offsets: %s", error)
                continue
            reason = None if state is None else watch.observe(time.monotonic(), state)
            if reason is not None:
                log.critical("the feature stream stopped: %s", reason)
                self.runtime.crashed.append(f"stream: {reason}")
                self.runtime.on_crash(self.runtime)  # exits non-zero: its supervisor restarts it
                return

    def _run_sink(self, sink: OfflineSink) -> None:
        try:
            sink.run(self.stop)
        except Exception:
            log.exception("offline writer of %s stopped on an error", sink.config.topic)
            self.runtime.crashed.append(f"offline-{sink.config.kind}")
            self.runtime.on_crash(self.runtime)  # exits non-zero: its supervisor restarts it


def build(platform: PlatformSettings, settings: FeatureStoreSettings) -> FeatureStoreProcess:
    catalog = TopicCatalog.load()
    namespace = platform.namespace
    topics = {name: catalog.name(name, namespace) for name in (FEATURES, LABELS, DEAD_LETTER)}
    stop = threading.Event()
    admin = AdminClient(client_config(platform, f"{NAME}-admin"))
    replication = 3 if platform.kafka_brokers >= 3 else 1
    source_topic = catalog.name(CONSUMES, namespace)
    partitions = partition_count(admin, source_topic)
    changelog = ensure_changelog(admin, namespace, partitions, replication)

    producer = EventProducer(producer_config(platform, NAME))
    specs = SpecRegistry(
        client_config(platform, f"{NAME}-specs"), catalog.name("data.specs", namespace), NAME
    )
    store = ObjectStore(minio_client(platform), settings.bucket)
    store.ensure_bucket()
    online = OnlineStore(
        create_database_engine(platform.database_url_or_sqlite(settings.sqlite_path)),
        namespace,
        LookupCache(settings.lookup_cache_entries, settings.lookup_cache_ttl_s),
    )
    pipeline = FeaturePipeline(
        decoder=EventDecoder([RecordValidated], platform.max_payload_bytes),
        specs=specs,
        publisher=OutcomePublisher(producer, topics, source_topic, app_id(namespace)),
        changelog=ChangelogWriter(producer, changelog),
        online=online,
        grace_s=settings.window_grace_s,
        stop=stop,
        max_backoff_s=settings.retry_max_backoff_s,
    )
    app = streaming_app(
        namespace,
        platform.kafka_bootstrap_servers,
        replication,
        settings.session_timeout_s,
        settings.commit_interval_s,
        platform.instance,
    )
    stream = FeatureStream(
        app, source_topic, partitions, pipeline, settings.batch_max_records, settings.batch_within_s
    )
    sinks = _offline_sinks(platform, settings, topics, specs, store, producer)
    runtime = ServiceRuntime(
        name=NAME,
        settings=platform,
        readiness_checks={
            "kafka": kafka_reachable(platform),
            "database": online.ping,
            "object_store": object_store_reachable(platform, settings.bucket),
            "stream": stream.ready,
        },
        stop=stop,
    )
    progress = StreamProgress(
        client_config(platform, f"{NAME}-progress"),
        app_id(namespace),
        source_topic,
        topics[FEATURES],
    )
    deps = HttpDeps(
        online=online,
        training_sets=TrainingSets(store, namespace, progress.read),
        known_dataset=lambda name: _require_spec(specs, name),
        max_lookup_entities=settings.max_lookup_entities,
        rebuilt_sets=RebuiltSets(
            RangeReader(
                client_config(platform, f"{NAME}-rebuild"), settings.rebuild_read_timeout_s
            ),
            SpecRegistries(
                lambda ns: client_config(platform, f"{NAME}-specs-{ns}"), NAME, {namespace: specs}
            ),
            platform.max_payload_bytes,
        ),
    )
    http = create_app(
        runtime,
        telemetry={"operation_spans": False},
        exclude_spans=("receive", "send"),
        body_limit=BodyLimit.of(settings),
    )
    install(http, deps)
    probe = StreamProbe(
        stream, pipeline, client_config(platform, f"{NAME}-stall-watch"), app_id(namespace)
    )
    return FeatureStoreProcess(
        settings, stream, pipeline, sinks, http, producer, stop, runtime, probe, progress
    )


def _offline_sinks(
    platform: PlatformSettings,
    settings: FeatureStoreSettings,
    topics: dict[str, str],
    specs: SpecRegistry,
    store: ObjectStore,
    producer: EventProducer,
) -> list[OfflineSink]:
    def versions_of(batch: FileBatch) -> list[DatasetSpec]:
        found = []
        for version in sorted({int(row["spec_version"]) for row in batch.rows}):
            try:
                found.append(specs.get(batch.dataset, version).spec)
            except LookupError:
                log.warning("no spec %s v%d: columns typed as found", batch.dataset, version)
        return found

    def latest_of(batch: FileBatch) -> DatasetSpec | None:
        try:
            return specs.latest(batch.dataset).spec
        except LookupError:
            return None

    def config(kind: Kind, topic: str) -> SinkConfig:
        return SinkConfig(
            kind=kind,
            namespace=platform.namespace,
            topic=topic,
            group_id=f"{app_id(platform.namespace)}-offline-{kind}",
            dead_letter_topic=topics[DEAD_LETTER],
            flush_rows=settings.offline_flush_rows,
            flush_s=settings.offline_flush_s,
            max_backoff_s=settings.retry_max_backoff_s,
        )

    features = OfflineSink(
        config("features", topics[FEATURES]),
        client_config(platform, f"{NAME}-offline-features"),
        EventDecoder([FeaturesComputed], platform.max_payload_bytes),
        offline_feature_rows,
        lambda batch: feature_schema(versions_of(batch)),
        store,
        producer,
    )
    labels = OfflineSink(
        config("labels", topics[LABELS]),
        client_config(platform, f"{NAME}-offline-labels"),
        EventDecoder([LabelRecorded], platform.max_payload_bytes),
        offline_label_rows,
        lambda batch: label_schema(latest_of(batch)),
        store,
        producer,
    )
    return [features, labels]


def _thread(name: str, target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, name=name)
    thread.start()
    return thread


def _require_spec(specs: SpecRegistry, name: str) -> None:
    specs.latest(name)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    platform = PlatformSettings()
    settings = FeatureStoreSettings()
    configure_tracing(NAME, platform)
    build(platform, settings).run()
