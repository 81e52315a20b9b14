"""The streaming side on faust: an agent over data.validated and a table of entity states
backed by its changelog topic, so a restarted worker recovers every entity's windows.

One batch at a time (at most `batch_max` records or `within` seconds), the agent:
  1. decodes the messages and looks up the spec versions they name,
  2. computes their feature vectors from the entities' states (handlers.compute_features),
  3. publishes the vectors and dead letters, confirmed by the broker, and upserts the online
     store (retried until they hold: both are idempotent),
  4. saves the entities' new states in the table and waits until the changelog has them,
  5. only then acknowledges the batch, so faust may commit its offsets.
A crash anywhere replays the batch; records whose entity state already counts their offset
are skipped, so the replay neither counts a record twice nor publishes a different vector.

faust topics (app id ``<namespace>-feature-store``): the consumer group of that name, and
the changelog ``<namespace>-feature-store-entity-state-changelog`` (compacted, as many
partitions as data.validated), created here before the worker starts. The leader-election
topic is disabled (no timers run on a leader).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust
from confluent_kafka.admin import AdminClient, NewTopic
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from services.feature_store import metrics
from services.feature_store.adapters.kafka import (
    ChangelogWriter,
    OutcomePublisher,
    SavedState,
    Stopping,
    retry_until_done,
)
from services.feature_store.adapters.online import OnlineStore
from services.feature_store.domain.aggregates import EntityState
from services.feature_store.handlers import (
    Incoming,
    Outcome,
    SpecKey,
    compute_features,
    spec_keys,
)
from shared.datasets.registry import SpecRegistry
from shared.datasets.spec import VersionedSpec
from shared.events.codec import EventDecoder, UndecodableMessage
from shared.kafka.consumer import MessageInfo
from shared.telemetry import KafkaHeaders

log = logging.getLogger(__name__)
TABLE = "entity-state"
AGENT = "features"


class _ResumeKeepsBufferedMessages(FlowControlEvent):
    """Flow control that does not empty the stream buffers when flow resumes.

    faust-streaming 0.15.3 resumes flow after table recovery with ``flow_control.resume()``,
    which also clears every stream buffer; by then the stream partitions were already resumed
    and sought to their committed offsets, so messages fetched in between are dropped. Once a
    later offset of the partition is acknowledged, faust commits past them: they are lost.
    (Seen against our broker: the first message of a partition after a restart, in about one
    run of three.) Buffers are still emptied where it is safe, when a rebalance suspends the
    flow (``App._on_partitions_revoked`` calls ``flow_control.clear()``).
    """

    def resume(self) -> None:
        self._suspend.clear()
        self._resume.set()


class StreamingApp(faust.App):
    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return _ResumeKeepsBufferedMessages(loop=self.loop)


def app_id(namespace: str) -> str:
    return f"{namespace}-feature-store"


def changelog_topic(namespace: str) -> str:
    return f"{app_id(namespace)}-{TABLE}-changelog"


FAUST_DATA_ROOT = Path(".local/data/faust")


def streaming_app(
    namespace: str,
    bootstrap_servers: str,
    replication: int,
    session_timeout_s: float = 10.0,
    commit_interval_s: float = 2.8,
    instance: str = "",
) -> StreamingApp:
    """The faust app; a worker that died is out of the group after `session_timeout_s`, so
    its restart gets the partitions back that soon (faust's default is 60 s). Replicas
    (`instance` names each) share the group and the partitions, each with its own data folder."""
    FAUST_DATA_ROOT.mkdir(parents=True, exist_ok=True)
    return StreamingApp(
        app_id(namespace),
        broker=[f"kafka://{host.strip()}" for host in bootstrap_servers.split(",")],
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_replication_factor=replication,
        topic_disable_leader=True,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        producer_acks=-1,
        broker_session_timeout=session_timeout_s,
        broker_commit_interval=commit_interval_s,
        broker_heartbeat_interval=min(3.0, session_timeout_s / 3),
        autodiscover=False,
        # faust keeps a data folder per app id; without this it lands in the working directory.
        datadir=str(
            FAUST_DATA_ROOT.resolve() / ("{conf.name}-data" + (f"-{instance}" if instance else ""))
        ),
    )


def ensure_changelog(
    admin: AdminClient, namespace: str, partitions: int, replication: int, timeout_s: float = 30
) -> str:
    """Creates the changelog before faust starts: faust creates its own too, but an agent
    that writes before the new topic reached the consumer's metadata crashes
    (PartitionsMismatch), and faust then acknowledges the message it was handling."""
    name = changelog_topic(namespace)
    if name not in admin.list_topics(timeout=timeout_s).topics:
        topic = NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replication,
            config={
                "cleanup.policy": "compact",
                "min.insync.replicas": "2" if replication >= 3 else "1",
            },
        )
        for future in admin.create_topics([topic], operation_timeout=timeout_s).values():
            try:
                future.result(timeout=timeout_s)
            except Exception as error:
                if "TOPIC_ALREADY_EXISTS" not in str(error):
                    raise
    deadline = time.monotonic() + timeout_s
    while name not in admin.list_topics(timeout=timeout_s).topics:
        if time.monotonic() > deadline:
            raise TimeoutError(f"changelog topic {name} did not appear in {timeout_s}s")
        time.sleep(0.1)
    return name


def partition_count(admin: AdminClient, topic: str, timeout_s: float = 30) -> int:
    metadata = admin.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise LookupError(
            f"topic {topic} does not exist; create the namespace's topics first "
            "(python -m shared.kafka.topics ensure)"
        )
    return len(metadata.partitions)


def _headers(raw: Any) -> KafkaHeaders:
    if not raw:
        return []
    items = raw.items() if isinstance(raw, Mapping) else raw
    return [(str(name), bytes(value or b"")) for name, value in items]


class FeaturePipeline:
    """Steps 1-4 of a batch (see the module docstring); never acknowledges anything itself."""

    def __init__(
        self,
        *,
        decoder: EventDecoder,
        specs: SpecRegistry,
        publisher: OutcomePublisher,
        changelog: ChangelogWriter,
        online: OnlineStore,
        grace_s: int,
        stop: threading.Event,
        max_backoff_s: float,
    ) -> None:
        self._decoder = decoder
        self._specs = specs
        self._publisher = publisher
        self._changelog = changelog
        self._online = online
        self._grace_s = grace_s
        self._stop = stop
        self._max_backoff_s = max_backoff_s
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feature-io")
        self.batches = 0
        """Batches done: the stall watch's sign that the stream moves."""
        self.busy = False
        """A batch is being computed, delivered (retried while a dependency is down) or saved."""

    async def process(self, events: Sequence[faust.types.EventT], table: Any) -> Outcome:
        self.busy = True
        try:
            return await self._process(events, table)
        finally:
            self.busy = False
            self.batches += 1

    async def _process(self, events: Sequence[faust.types.EventT], table: Any) -> Outcome:
        loop = asyncio.get_running_loop()
        metrics.BATCH_RECORDS.observe(len(events))
        with metrics.BATCH_SECONDS.labels("compute").time():
            batch = [self._incoming(event) for event in events]
            specs = await loop.run_in_executor(self._io, self._resolve_specs, spec_keys(batch))
            outcome = compute_features(batch, specs, _state_loader(table), self._grace_s)
        with metrics.BATCH_SECONDS.labels("deliver").time():
            await loop.run_in_executor(self._io, self._deliver, outcome)
        with metrics.BATCH_SECONDS.labels("save").time():
            saved = [_saved(key, state) for key, state in outcome.states.items()]
            for state in saved:
                table.data[state.key] = state.value
            await loop.run_in_executor(self._io, self._save, saved)
        metrics.record_batch(outcome)
        return outcome

    def _incoming(self, event: faust.types.EventT) -> Incoming:
        message = event.message
        info = MessageInfo(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
        )
        headers = _headers(message.headers)
        try:
            decoded = self._decoder.decode(message.value, info)
        except UndecodableMessage as error:
            return Incoming(info, message.value, headers, error=error)
        return Incoming(info, message.value, headers, event=decoded)

    def _resolve_specs(self, keys: Iterable[SpecKey]) -> dict[SpecKey, VersionedSpec]:
        found: dict[SpecKey, VersionedSpec] = {}
        for name, version in keys:
            try:
                found[(name, version)] = retry_until_done(
                    lambda n=name, v=version: self._specs.get(n, v),
                    f"reading spec {name} v{version}",
                    self._stop,
                    self._max_backoff_s,
                )
            except LookupError as error:
                log.warning("no spec for %s v%d: %s", name, version, error)
        return found

    def _deliver(self, outcome: Outcome) -> None:
        retry_until_done(
            lambda: self._publisher.publish(outcome),
            "publishing features",
            self._stop,
            self._max_backoff_s,
        )
        retry_until_done(
            lambda: self._online.upsert(outcome.computed),
            "updating the online store",
            self._stop,
            self._max_backoff_s,
        )

    def _save(self, states: Sequence[SavedState]) -> None:
        retry_until_done(
            lambda: self._changelog.write(states),
            "saving entity states to the changelog",
            self._stop,
            self._max_backoff_s,
        )

    def close(self) -> None:
        self._io.shutdown(wait=True, cancel_futures=True)


def _saved(key: str, state: EntityState) -> SavedState:
    assert state.partition is not None, "a state saved has applied a record"
    return SavedState(key, state.to_json(), state.partition)


def _state_loader(table: Any) -> Callable[[str], EntityState | None]:
    def load(key: str) -> EntityState | None:
        value = table.get(key)
        return EntityState.from_json(value) if value is not None else None

    return load


class FeatureStream:
    """The faust agent and table of the feature pipeline."""

    def __init__(
        self,
        app: StreamingApp,
        source_topic: str,
        partitions: int,
        pipeline: FeaturePipeline,
        batch_max: int,
        within_s: float,
    ) -> None:
        self.app = app
        self._pipeline = pipeline
        self._batch_max = batch_max
        self._within_s = within_s
        self.failed: list[str] = []
        self.topic = app.topic(source_topic, key_type=bytes, value_type=bytes)
        # Keys and values are str (faust's JSON codec), not bytes: with raw bytes, faust
        # 0.15.3 still decodes the changelog's keys as JSON when it recovers the table, fails
        # on every message, and recovery never completes.
        self.table = app.Table(
            TABLE,
            default=None,
            partitions=partitions,
            key_type=str,
            value_type=str,
        )
        self.source_topic = source_topic
        app.agent(self.topic, name=AGENT)(self._run)

    def assigned(self) -> set[tuple[str, int]] | None:
        """The source partitions this worker holds once its table is recovered (None before,
        and while a rebalance changes them)."""
        if not self.app.tables.recovery.completed.is_set():
            return None
        try:
            held = list(self.app.consumer.assignment())
        except RuntimeError:  # the set changed size while read from another thread
            return None
        return {(tp.topic, tp.partition) for tp in held if tp.topic == self.source_topic}

    async def _run(self, stream: faust.StreamT) -> None:
        try:
            async for events in stream.noack_take(self._batch_max, within=self._within_s):
                await self._pipeline.process(events, self.table)
                for event in events:
                    await stream.ack(event)
        except Stopping:
            log.info("stream stopped with a batch unacknowledged: it is replayed at restart")
        except Exception as error:
            # Going on after a failed batch would let later records of its entities be counted
            # first, and the failed ones then be skipped as replays: stop, and let a restart
            # replay from the committed offsets, in order.
            self.failed.append(f"{type(error).__name__}: {error}")
            log.critical("the feature stream failed; stopping the worker", exc_info=True)
            await self.app.crash(error)

    def ready(self) -> None:
        """Raises until the worker has its partitions and recovered its table."""
        if self.failed:
            raise RuntimeError(f"the stream failed: {self.failed[0]}")
        recovery = self.app.tables.recovery
        if not recovery.completed.is_set():
            raise RuntimeError("the stream is still recovering its state from the changelog")
