"""Topic replay: copies a range of a topic, partition by partition, into another namespace.

Each message keeps its partition number, key, headers and original timestamp (as CreateTime),
so a copy of the pipeline started with MLOPS_NAMESPACE=<into> processes the range exactly as
production saw it, without touching production's topics, stores or models.

Writes are idempotent and acks=all. Progress is checkpointed (a JSON file per target topic)
only after a flush confirmed every write so far; on resume, messages confirmed after the last
checkpoint are found by the target partition's end offset and skipped, so a replay that is
interrupted (Ctrl-C, --limit, a crash) and run again never copies a message twice. That holds
as long as nothing but the replay writes to its target topic.

The copy itself runs in a native copier (shared/cli/native/replay_copy.c on librdkafka, driven
by shared/cli/native_copy.py) when it can be built, and in the Python loop `_Copy` otherwise.
"""

from __future__ import annotations

import fcntl
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any, Literal

from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from shared.cli.native_copy import (
    NativeCopy,
    NativeUnavailable,
    PartitionTask,
    Updates,
    ensure_copier,
)
from shared.cli.ranges import (
    Checkpoint,
    PartitionProgress,
    Position,
    RangeError,
    TopicNames,
    Watermarks,
    checkpoint_path,
    resolve_offset,
    to_millis,
    unrecorded_writes,
)
from shared.kafka.config import client_config
from shared.kafka.topics import TopicCatalog, ensure_topics, wait_for_leaders
from shared.settings import PlatformSettings

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT_DIR = Path(".local/replay")
CONSUME_BATCH = 10_000
CHECKPOINT_EVERY = 100_000
TIMEOUT_S = 10.0
LEADER_WAIT_S = 60.0
"""How long planning waits for partitions without a leader: after a broker dies, the controller
elects another once the broker's session has expired (9 s by default, longer on a loaded
machine); a replay started meanwhile waits for it rather than failing."""

Engine = Literal["auto", "native", "python"]
ENGINE_LABELS = {"native": "native copier (C, librdkafka)", "python": "Python (confluent-kafka)"}


class ReplayError(Exception):
    """The replay cannot start or did not complete; the message says why and what to do."""


class ReplayInterrupted(ReplayError):
    """Stopped on request; the checkpoint holds everything confirmed so far."""


def fast_consumer_config(settings: PlatformSettings, client_id: str) -> dict[str, Any]:
    """A reader of explicit offsets: no group membership, no commits, large fetches."""
    return {
        **client_config(settings, client_id),
        "group.id": f"mlops-replay-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        # An offset no longer stored is an error, never a silent jump to the end.
        "auto.offset.reset": "error",
        "fetch.max.bytes": 52_428_800,
        "max.partition.fetch.bytes": 8_388_608,
        "queued.min.messages": 200_000,
    }


def replay_producer_config(settings: PlatformSettings) -> dict[str, Any]:
    return {
        **client_config(settings, "mlops-replay"),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.size": 1_048_576,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "delivery.report.only.error": True,
        "message.max.bytes": max(settings.max_payload_bytes * 2, 1_048_576),
    }


@dataclass(frozen=True)
class ReplayRequest:
    names: TopicNames
    start: Position
    end: Position
    from_text: str
    to_text: str
    limit: int | None = None
    restart: bool = False


@dataclass
class ReplayResult:
    checkpoint: Checkpoint
    copied: int
    seconds: float
    engine: str = "python"

    @property
    def rate(self) -> float:
        return self.copied / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Failures:
    errors: list[str] = field(default_factory=list)

    def on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.errors.append(f"{message.topic()}[{message.partition()}]: {error}")


def list_offsets(
    admin: AdminClient, topic: str, partitions: list[int], spec: OffsetSpec
) -> dict[int, int]:
    """One ListOffsets request for every partition (earliest, latest or for a timestamp);
    waits out a leader election (a new topic's, or one after a broker died)."""
    deadline = time.monotonic() + LEADER_WAIT_S
    while True:
        asked = {TopicPartition(topic, p): spec for p in partitions}
        try:
            futures = admin.list_offsets(asked, request_timeout=TIMEOUT_S)
            found = {tp.partition: future.result().offset for tp, future in futures.items()}
            unanswered = sorted(p for p, offset in found.items() if offset == OFFSET_INVALID)
            if not unanswered:
                return found
            why = f"partitions {unanswered} answered no offset (no leader yet)"
        except KafkaException as error:
            why = error.args[0].str()
        if time.monotonic() > deadline:
            raise ReplayError(f"offsets of {topic} after {LEADER_WAIT_S:.0f} s: {why}")
        time.sleep(0.2)


def end_offsets(admin: AdminClient, topic: str, partitions: list[int]) -> dict[int, int]:
    return list_offsets(admin, topic, partitions, OffsetSpec.latest())


class Replayer:
    """Plans (resolves the range, prepares the target) and runs one replay."""

    def __init__(
        self,
        settings: PlatformSettings,
        checkpoint_dir: Path = DEFAULT_CHECKPOINT_DIR,
        catalog: TopicCatalog | None = None,
        engine: Engine = "auto",
    ) -> None:
        """engine: "native" requires the native copier, "python" never uses it, "auto" uses
        it when it can be built and says why not otherwise."""
        self.settings = settings
        self.checkpoint_dir = checkpoint_dir
        self.catalog = catalog or TopicCatalog.load()
        self.admin = AdminClient(client_config(settings, "mlops-replay-admin"))
        self.engine = engine

    # -- planning -------------------------------------------------------------------------

    def partition_count(self, topic: str) -> int:
        metadata = self.admin.list_topics(topic=topic, timeout=TIMEOUT_S)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise ReplayError(f"topic {topic!r} does not exist")
        return len(found.partitions)

    def prepare_target(self, names: TopicNames, partitions: int, into: str) -> None:
        """The whole pipeline's topics under the target namespace, the replayed one included,
        with the source's partition count."""
        if names.logical in self.catalog.specs:
            ensure_topics(self.admin, list(self.catalog.specs.values()), into, TIMEOUT_S)
        else:
            self._create(names.target, partitions)
        try:
            wait_for_leaders(self.admin, [names.target], TIMEOUT_S)
        except TimeoutError:
            raise ReplayError(
                f"topic {names.target!r} has no leader for every partition yet"
            ) from None
        have = self.partition_count(names.target)
        if have < partitions:
            raise ReplayError(
                f"{names.target} has {have} partitions, the source {partitions}: "
                "partitions cannot be kept; delete the target topic or replay elsewhere"
            )

    def _create(self, topic: str, partitions: int) -> None:
        metadata = self.admin.list_topics(timeout=TIMEOUT_S)
        if topic in metadata.topics:
            return
        replication = min(3, len(metadata.brokers))
        future = self.admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=replication)],
            operation_timeout=TIMEOUT_S,
        )[topic]
        try:
            future.result(timeout=TIMEOUT_S)
        except KafkaException as error:
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise

    def plan(self, request: ReplayRequest, into: str) -> Checkpoint:
        """The checkpoint to continue from: the saved one for the same request, or a new one
        with the range resolved on every partition now (so `end` stays fixed across runs)."""
        names = request.names
        partitions = self.partition_count(names.source)
        self.prepare_target(names, partitions, into)
        path = checkpoint_path(self.checkpoint_dir, names.target)
        saved = None if request.restart else Checkpoint.load(path)
        if saved is not None:
            if not saved.same_request(
                names.source, names.target, request.from_text, request.to_text
            ):
                raise ReplayError(
                    f"{path} holds a replay of {saved.source_topic} "
                    f"[{saved.from_position}, {saved.to_position}) into {saved.target_topic}; "
                    "run that again to resume it, or pass --restart to start this one"
                )
            return saved
        progress = self._resolve(names, partitions, request)
        return Checkpoint(
            source_topic=names.source,
            target_topic=names.target,
            from_position=request.from_text,
            to_position=request.to_text,
            partitions=progress,
        )

    def _resolve(
        self, names: TopicNames, partitions: int, request: ReplayRequest
    ) -> dict[int, PartitionProgress]:
        numbers = list(range(partitions))
        lows = list_offsets(self.admin, names.source, numbers, OffsetSpec.earliest())
        highs = end_offsets(self.admin, names.source, numbers)
        marks = {p: Watermarks(lows[p], highs[p]) for p in numbers}
        starts = self._bounds(names.source, request.start, marks)
        ends = self._bounds(names.source, request.end, marks)
        target_ends = end_offsets(self.admin, names.target, numbers)
        return {
            p: PartitionProgress(
                start=starts[p],
                end=max(ends[p], starts[p]),
                next_offset=starts[p],
                target_end=target_ends[p],
            )
            for p in numbers
        }

    def _bounds(
        self, topic: str, position: Position, marks: dict[int, Watermarks]
    ) -> dict[int, int]:
        by_time: dict[int, int | None] = dict.fromkeys(marks)
        if isinstance(position, datetime):
            spec = OffsetSpec.for_timestamp(to_millis(position))
            by_time.update(list_offsets(self.admin, topic, list(marks), spec))
        return {p: resolve_offset(position, marks[p], by_time[p]) for p in marks}

    # -- running --------------------------------------------------------------------------

    def _native_copier(self) -> Path | None:
        if self.engine == "python":
            return None
        try:
            return ensure_copier()
        except NativeUnavailable as error:
            if self.engine == "native":
                raise ReplayError(f"native copier: {error}") from None
            log.warning(
                "replay: native copier unavailable (%s); using the slower Python copy", error
            )
            return None

    @contextmanager
    def _locked(self, target: str) -> Iterator[Path]:
        path = checkpoint_path(self.checkpoint_dir, target)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.with_suffix(".lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ReplayError(f"another replay into {target} is running") from None
            yield path

    def run(
        self,
        request: ReplayRequest,
        into: str,
        on_progress: Callable[[int], None] = lambda copied: None,
        should_stop: Callable[[], bool] = lambda: False,
        on_plan: Callable[[Checkpoint], None] = lambda checkpoint: None,
        workers: int = 1,
    ) -> ReplayResult:
        """Copies what is left of the range. With workers > 1 (and no --limit) the partitions
        are shared among that many processes, each with its own consumer and producer."""
        with self._locked(request.names.target) as path:
            try:
                checkpoint = self.plan(request, into)
                on_plan(checkpoint)
                if checkpoint.complete:
                    return ReplayResult(checkpoint, 0, 0.0)
                recorder = _Recorder(checkpoint, path)
                groups = partition_groups(checkpoint, workers if request.limit is None else 1)
                binary = self._native_copier()
                started = time.perf_counter()
                if binary is not None:
                    copied = _run_native(
                        binary, self.settings, self.admin, checkpoint, groups, request.limit,
                        recorder, on_progress, should_stop,
                    )  # fmt: skip
                    seconds = time.perf_counter() - started
                    return ReplayResult(checkpoint, copied, seconds, "native")
                if len(groups) > 1:
                    copied = _run_workers(
                        self.settings, checkpoint, groups, recorder, on_progress, should_stop
                    )
                else:
                    copied = _Copy(
                        self.settings,
                        checkpoint,
                        checkpoint.partitions,
                        request.limit,
                        recorder.record,
                    ).run(on_progress, should_stop)
                return ReplayResult(checkpoint, copied, time.perf_counter() - started)
            except KafkaException as error:
                raise ReplayError(f"Kafka: {error.args[0]}") from None


def partition_groups(checkpoint: Checkpoint, workers: int) -> list[list[int]]:
    """The partitions still open, dealt round-robin to at most `workers` groups."""
    open_partitions = [p for p, s in sorted(checkpoint.partitions.items()) if s.remaining]
    count = max(1, min(workers, len(open_partitions)))
    return [group for group in (open_partitions[i::count] for i in range(count)) if group]


class _Recorder:
    """Merges confirmed progress into the checkpoint and saves it."""

    def __init__(self, checkpoint: Checkpoint, path: Path) -> None:
        self.checkpoint = checkpoint
        self.path = path

    def record(self, updates: Updates, copied: int) -> None:
        for p, (next_offset, target_end) in updates.items():
            progress = self.checkpoint.partitions[p]
            progress.next_offset, progress.target_end = next_offset, target_end
        self.checkpoint.replayed += copied
        self.checkpoint.complete = self.checkpoint.remaining == 0
        self.checkpoint.save(self.path)


def _run_workers(
    settings: PlatformSettings,
    checkpoint: Checkpoint,
    groups: list[list[int]],
    recorder: _Recorder,
    on_progress: Callable[[int], None],
    should_stop: Callable[[], bool],
) -> int:
    """One forked process per group; the parent relays progress and writes the checkpoint."""
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    pipes, processes = [], []
    for group in groups:
        receiver, sender = context.Pipe(duplex=False)
        partitions = {p: checkpoint.partitions[p] for p in group}
        process = context.Process(
            target=_worker, args=(settings, checkpoint, partitions, sender, stop), daemon=True
        )
        process.start()
        sender.close()
        pipes.append(receiver)
        processes.append(process)
    copied, failures, interrupted = 0, [], False
    live = list(pipes)
    while live:
        if should_stop():
            stop.set()
        for pipe in multiprocessing.connection.wait(live, timeout=0.2):
            try:
                kind, *payload = pipe.recv()
            except EOFError:
                live.remove(pipe)
                continue
            if kind == "progress":
                on_progress(payload[0])
            elif kind == "saved":
                recorder.record(payload[0], payload[1])
                copied += payload[1]
            elif kind == "interrupted":
                interrupted = True
            elif kind == "error":
                failures.append(payload[0])
                stop.set()
    for process in processes:
        process.join(30)
    if failures:
        raise ReplayError(failures[0])
    if interrupted:
        raise ReplayInterrupted("interrupted")
    if recorder.checkpoint.remaining and not stop.is_set():
        raise ReplayError("a replay worker ended before its partitions were copied")
    return copied


def writes_to_skip(
    partitions: dict[int, PartitionProgress], target_ends: dict[int, int]
) -> dict[int, int]:
    """Per partition, the writes confirmed on the target after the last checkpoint: the next
    source messages, to be read but not written again."""
    try:
        return {
            p: unrecorded_writes(progress, target_ends[p]) for p, progress in partitions.items()
        }
    except RangeError as error:
        raise ReplayError(str(error)) from None


def _run_native(
    binary: Path,
    settings: PlatformSettings,
    admin: AdminClient,
    checkpoint: Checkpoint,
    groups: list[list[int]],
    limit: int | None,
    recorder: _Recorder,
    on_progress: Callable[[int], None],
    should_stop: Callable[[], bool],
) -> int:
    """One native copier process per group; this process relays progress and writes the
    checkpoint after each of their confirmed flushes."""
    partitions = {p: checkpoint.partitions[p] for group in groups for p in group}
    target_ends = end_offsets(admin, checkpoint.target_topic, list(partitions))
    skips = writes_to_skip(partitions, target_ends)
    tasks = [
        [
            PartitionTask(p, partitions[p].next_offset, partitions[p].end, skips[p], target_ends[p])
            for p in group
        ]
        for group in groups
    ]
    copy = NativeCopy(
        binary,
        # Smaller fetches than a plain reader's: the first messages arrive (and writing starts)
        # while the rest of the range is still being fetched.
        {**fast_consumer_config(settings, "mlops-replay"), "max.partition.fetch.bytes": 1_048_576},
        replay_producer_config(settings),
        recorder.record,
    )
    outcome = copy.run(
        checkpoint.source_topic, checkpoint.target_topic, tasks, CONSUME_BATCH, CHECKPOINT_EVERY,
        limit, on_progress, should_stop,
    )  # fmt: skip
    if outcome.failures:
        raise ReplayError(
            f"{outcome.failures[0]}; nothing after the last checkpoint is recorded: "
            "run the same command again to resume"
        )
    if outcome.stopped:
        raise ReplayInterrupted("interrupted")
    if limit is None and recorder.checkpoint.remaining:
        raise ReplayError("a native copier ended before its partitions were copied")
    return outcome.copied


def _worker(
    settings: PlatformSettings,
    checkpoint: Checkpoint,
    partitions: dict[int, PartitionProgress],
    pipe: Connection,
    stop: EventType,
) -> None:
    """A forked copy of some partitions. It builds its own Kafka clients (the parent's are not
    usable after fork) and leaves with os._exit, so the parent's clients are never torn down
    here."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    code = 0
    try:
        copy = _Copy(
            settings,
            checkpoint,
            partitions,
            None,
            lambda updates, copied: pipe.send(("saved", updates, copied)),
        )
        copy.run(lambda copied: pipe.send(("progress", copied)), stop.is_set)
    except ReplayInterrupted:
        pipe.send(("interrupted",))
    except Exception as error:
        pipe.send(("error", str(error)))
        code = 1
    finally:
        pipe.close()
        os._exit(code)


class _Copy:
    """The copy loop: consume batches, produce each message to the same partition, flush and
    checkpoint every CHECKPOINT_EVERY messages and at the end."""

    def __init__(
        self,
        settings: PlatformSettings,
        checkpoint: Checkpoint,
        partitions: dict[int, PartitionProgress],
        limit: int | None,
        record: Callable[[Updates, int], None],
    ) -> None:
        self.settings = settings
        self.admin = AdminClient(client_config(settings, "mlops-replay-admin"))
        self.source = checkpoint.source_topic
        self.target = checkpoint.target_topic
        self.partitions = partitions
        self.limit = limit
        self.record = record
        self.failures = _Failures()
        self.producer = Producer(
            {**replay_producer_config(settings), "on_delivery": self.failures.on_delivery}
        )
        self.next_offset = {p: s.next_offset for p, s in partitions.items()}
        self.end = {p: s.end for p, s in partitions.items()}
        self.skip: dict[int, int] = {}
        self.copied = 0
        self.recorded = 0

    def run(self, on_progress: Callable[[int], None], should_stop: Callable[[], bool]) -> int:
        consumer = Consumer(fast_consumer_config(self.settings, "mlops-replay"))
        try:
            self._skip_unrecorded()
            open_partitions = {p for p in self.end if self.next_offset[p] < self.end[p]}
            consumer.assign(
                [
                    TopicPartition(self.source, p, self.next_offset[p])
                    for p in sorted(open_partitions)
                ]
            )
            since_checkpoint = 0
            while open_partitions and not self._limit_reached():
                if should_stop():
                    self._save()
                    raise ReplayInterrupted("interrupted")
                copied = self._copy_batch(consumer, open_partitions)
                since_checkpoint += copied
                on_progress(copied)
                if since_checkpoint >= CHECKPOINT_EVERY:
                    self._save()
                    since_checkpoint = 0
            self._save()
        except KeyboardInterrupt:
            self._save()
            raise ReplayInterrupted("interrupted") from None
        finally:
            consumer.close()
        return self.copied

    def _limit_reached(self) -> bool:
        return self.limit is not None and self.copied >= self.limit

    def _skip_unrecorded(self) -> None:
        skips = writes_to_skip(self.partitions, self._target_ends())
        self.skip = {p: extra for p, extra in skips.items() if extra}

    def _target_ends(self) -> dict[int, int]:
        return end_offsets(self.admin, self.target, list(self.partitions))

    def _copy_batch(self, consumer: Consumer, open_partitions: set[int]) -> int:
        produce = self.producer.produce
        target = self.target
        end, next_offset, skip = self.end, self.next_offset, self.skip
        budget = None if self.limit is None else self.limit - self.copied
        # Asking for no more than what is left lets the last batch return as soon as it is
        # there, instead of waiting out the timeout for messages the range does not have.
        left = sum(end[p] - next_offset[p] + skip.get(p, 0) for p in open_partitions)
        wanted = min(CONSUME_BATCH, max(left, 1), budget if budget is not None else CONSUME_BATCH)
        batch = consumer.consume(wanted, 0.5)
        copied = 0
        limit = CONSUME_BATCH if budget is None else budget
        for message in batch:
            if message.error() is not None:
                self._on_consume_error(message, message.error(), open_partitions)
                continue
            partition = message.partition()
            offset = message.offset()
            # Closed partitions have next_offset >= end, so this also drops their messages.
            if not next_offset[partition] <= offset < end[partition]:
                if offset >= end[partition]:  # a compaction gap ran past the end
                    next_offset[partition] = max(next_offset[partition], end[partition])
                continue
            if skip and skip.get(partition):
                skip[partition] -= 1
            else:
                timestamp = message.timestamp()[1]
                try:
                    produce(
                        target,
                        message.value(),
                        message.key(),
                        partition=partition,
                        timestamp=timestamp if timestamp > 0 else 0,
                        headers=message.headers(),
                    )
                except BufferError:
                    self._produce_when_room(target, message, partition, timestamp)
                copied += 1
            # Advanced only once the write is queued: an interruption in between leaves a
            # write the resume finds on the target and skips, never a gap.
            next_offset[partition] = offset + 1
            if copied >= limit:
                break
        open_partitions -= {p for p in open_partitions if next_offset[p] >= end[p]}
        self.producer.poll(0)
        self.copied += copied
        return copied

    def _produce_when_room(
        self, target: str, message: Message, partition: int, timestamp: int
    ) -> None:
        """The local queue is full: serve delivery reports until the write fits."""
        while True:
            self.producer.poll(0.05)
            try:
                self.producer.produce(
                    target,
                    message.value(),
                    message.key(),
                    partition=partition,
                    timestamp=timestamp if timestamp > 0 else 0,
                    headers=message.headers(),
                )
                return
            except BufferError:
                continue

    def _on_consume_error(
        self, message: Message, error: KafkaError, open_partitions: set[int]
    ) -> None:
        partition = message.partition()
        if error.code() == KafkaError._PARTITION_EOF:
            # Compaction can leave the last offsets of a range empty: the end is reached.
            if partition in open_partitions and message.offset() >= self.end[partition]:
                self.next_offset[partition] = self.end[partition]
                open_partitions.discard(partition)
            return
        if error.fatal() or not error.retriable():
            raise ReplayError(f"reading {message.topic()}[{partition}] failed: {error.str()}")

    def _save(self) -> None:
        """Flush (every write confirmed), then record how far each partition got."""
        remaining = self.producer.flush(60)
        if remaining or self.failures.errors:
            shown = "; ".join(self.failures.errors[:3]) or f"{remaining} writes unconfirmed"
            raise ReplayError(
                f"Kafka did not confirm every write ({shown}); nothing after the last "
                "checkpoint is recorded: run the same command again to resume"
            )
        target_ends = self._target_ends()
        updates = {p: (self.next_offset[p], target_ends[p]) for p in self.partitions}
        self.record(updates, self.copied - self.recorded)
        self.recorded = self.copied
