"""Topic replay against the real broker: exactly the range, as it was, into another namespace;
resumable without duplicates; production untouched.

Replays run with the native copier unless a test names the Python engine (its fallback): a
machine where the copier cannot be built fails these tests instead of quietly testing the
fallback only."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from sqlalchemy import create_engine, func, inspect, select

from services.feature_store.adapters.online import online_table
from services.feature_store.adapters.online import table_name as online_table_name
from services.validation.adapters.record_ids import record_ids_table
from services.validation.adapters.record_ids import table_name as record_ids_table_name
from shared.cli.native_copy import CopyOutcome, NativeCopy, PartitionTask, Updates, ensure_copier
from shared.cli.ranges import Checkpoint, parse_position, topic_names
from shared.cli.replay import (
    Engine,
    Replayer,
    ReplayError,
    ReplayInterrupted,
    ReplayRequest,
    _Recorder,
    fast_consumer_config,
    replay_producer_config,
)
from shared.datasets.registry import SpecRegistry
from shared.datasets.sources import agrawal_records
from shared.datasets.spec import shipped_specs
from shared.kafka.config import client_config, producer_config
from shared.kafka.producer import EventProducer
from shared.kafka.topics import TopicCatalog, ensure_topics
from shared.settings import PlatformSettings
from tests.integration.kafka_helpers import unique_name
from tests.services import RunningService, namespace_topics, start_service
from tests.waiting import wait_until

LOANS = next(spec for spec in shipped_specs() if spec.name == "loans")

PER_PARTITION = 400
PARTITIONS = TopicCatalog.load()["data.raw"].partitions
BASE_MS = 1_700_000_000_000


@dataclass(frozen=True)
class Stored:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int

    def content(self) -> tuple[object, ...]:
        return (self.partition, self.key, self.value, self.headers, self.timestamp)


def namespace() -> str:
    return unique_name("rp").replace("-", "")


def fill(bootstrap: str, topic: str) -> None:
    """PER_PARTITION messages on every partition, each with its own key, headers and time."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(PER_PARTITION):
        for p in range(PARTITIONS):
            producer.produce(
                topic,
                json.dumps({"n": i, "p": p}).encode(),
                f"key-{p}-{i % 7}".encode(),
                partition=p,
                timestamp=BASE_MS + i * 1000,
                headers=[
                    ("traceparent", f"00-{i:032x}-{p:016x}-01".encode()),
                    ("n", str(i).encode()),
                ],
            )
    assert producer.flush(30) == 0


def read_range(bootstrap: str, topic: str) -> list[Stored]:
    """Every message of a topic, up to its current end, ordered by partition and offset."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("rd"),
            "enable.partition.eof": True,
        }
    )
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)
            for p in range(PARTITIONS)
        }
        wanted = {p for p, (low, high) in ends.items() if high > low}
        consumer.assign([TopicPartition(topic, p, ends[p][0]) for p in sorted(wanted)])
        found: list[Stored] = []
        while wanted:
            left = sum(ends[p][1] for p in wanted) - sum(1 for s in found if s.partition in wanted)
            for m in consumer.consume(max(1, min(1000, left)), 5):
                if m.error() is not None:
                    # The end can be a transaction marker, which is never returned.
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        wanted.discard(m.partition())
                    continue
                found.append(
                    Stored(m.partition(), m.offset(), m.key(), m.value(),
                           tuple(m.headers() or ()), m.timestamp()[1])
                )  # fmt: skip
                if m.offset() + 1 >= ends[m.partition()][1]:
                    wanted.discard(m.partition())
    finally:
        consumer.close()
    return sorted(found, key=lambda s: (s.partition, s.offset))


def end_offsets(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("wm")})
    try:
        return {
            (topic, p): consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
            for topic in topics
            for p in range(TopicCatalog.load()[topic.split(".", 1)[1]].partitions)
        }
    finally:
        consumer.close()


@pytest.fixture
def source(admin: AdminClient, bootstrap: str) -> Iterator[str]:
    ns = namespace()
    with namespace_topics(admin, ns):
        fill(bootstrap, f"{ns}.data.raw")
        yield ns


@pytest.fixture
def target(admin: AdminClient) -> Iterator[str]:
    ns = namespace()
    yield ns
    catalog = TopicCatalog.load()
    admin.delete_topics(
        [spec.full_name(ns) for spec in catalog.specs.values()], operation_timeout=10
    )


def request(src: str, into: str, start: str, end: str, limit: int | None = None) -> ReplayRequest:
    names = topic_names("data.raw", src, into, set(TopicCatalog.load().specs))
    return ReplayRequest(names, parse_position(start), parse_position(end), start, end, limit)


def replayer(src: str, tmp_path: Path, engine: Engine = "native") -> Replayer:
    return Replayer(PlatformSettings(namespace=src), tmp_path / "checkpoints", engine=engine)


ENGINES = pytest.mark.parametrize("engine", ["native", "python"])


def test_a_middle_range_arrives_exactly_as_it_was_and_production_is_untouched(
    source: str, target: str, bootstrap: str, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    catalog_topics = [spec.full_name(source) for spec in TopicCatalog.load().specs.values()]
    before = end_offsets(bootstrap, catalog_topics)
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "replay", "--topic", "data.raw", "--into", target,
         "--from", "100", "--to", "300", "--checkpoint-dir", str(tmp_path)],
        env={**subprocess_env, "MLOPS_NAMESPACE": source}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"replayed {200 * PARTITIONS} messages" in " ".join(result.stderr.split())
    assert "native copier unavailable" not in result.stderr

    expected = [s for s in read_range(bootstrap, f"{source}.data.raw") if 100 <= s.offset < 300]
    copied = read_range(bootstrap, f"{target}.data.raw")
    assert [s.content() for s in copied] == [s.content() for s in expected]
    assert [s.offset for s in copied if s.partition == 0] == list(range(200))
    tailed = subprocess.run(
        [sys.executable, "-m", "shared.cli", "tail", f"{target}.data.raw", "--from-beginning",
         "--max", "3"],
        env=subprocess_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert tailed.returncode == 0, tailed.stderr
    shown = tailed.stdout.splitlines()
    assert len(shown) == 3
    assert all(re.match(r"^\d/\d+ key-\d-\d ", line) for line in shown), shown
    assert all(json.loads(line.split(" ", 2)[2])["n"] >= 100 for line in shown)
    assert end_offsets(bootstrap, catalog_topics) == before, "production topics unchanged"
    every_target_topic = TopicCatalog.load().specs.values()
    assert len(end_offsets(bootstrap, [s.full_name(target) for s in every_target_topic])) > 0


def test_a_time_range_selects_messages_by_their_timestamps_on_every_partition(
    source: str, target: str, bootstrap: str, tmp_path: Path
) -> None:
    start, end = "2023-11-14T22:15:00Z", "2023-11-14T22:16:00Z"  # 1_700_000_100_000 + 60 s
    low, high = 1_700_000_100_000, 1_700_000_160_000
    result = replayer(source, tmp_path).run(request(source, target, start, end), target)
    expected = [s for s in read_range(bootstrap, f"{source}.data.raw") if low <= s.timestamp < high]
    assert result.copied == len(expected) == 60 * PARTITIONS
    copied = read_range(bootstrap, f"{target}.data.raw")
    assert [s.content() for s in copied] == [s.content() for s in expected]


@ENGINES
def test_an_interrupted_replay_resumes_where_it_stopped_without_duplicates(
    source: str, target: str, bootstrap: str, tmp_path: Path, engine: Engine
) -> None:
    replay = replayer(source, tmp_path, engine)
    runs = []
    while True:
        result = replay.run(request(source, target, "earliest", "end", limit=250), target)
        assert result.engine == engine
        runs.append(result.copied)
        if result.checkpoint.complete:
            break
        assert len(runs) < 10, "the replay never completed"
    assert runs[0] == 250 and sum(runs) == PER_PARTITION * PARTITIONS
    copied = read_range(bootstrap, f"{target}.data.raw")
    source_messages = read_range(bootstrap, f"{source}.data.raw")
    assert [s.content() for s in copied] == [s.content() for s in source_messages]
    again = replay.run(request(source, target, "earliest", "end"), target)
    assert again.copied == 0, "a complete replay run again copies nothing"


@ENGINES
def test_writes_confirmed_after_the_last_checkpoint_are_not_copied_again(
    source: str, target: str, bootstrap: str, tmp_path: Path, engine: Engine
) -> None:
    """A crash after Kafka confirmed writes but before the checkpoint was saved: simulated by
    putting back an older checkpoint. The resume finds those writes on the target and skips
    them."""
    replay = replayer(source, tmp_path, engine)
    first = replay.run(request(source, target, "0", "end", limit=300), target)
    path = tmp_path / "checkpoints" / f"{target}.data.raw.json"
    older = path.read_bytes()
    second = replay.run(request(source, target, "0", "end", limit=300), target)
    assert (first.copied, second.copied) == (300, 300)
    path.write_bytes(older)  # the second run's progress was "lost"
    assert Checkpoint.load(path).replayed == 300

    last = replay.run(request(source, target, "0", "end"), target)
    assert last.checkpoint.complete
    assert last.copied == PER_PARTITION * PARTITIONS - 600
    copied = read_range(bootstrap, f"{target}.data.raw")
    assert len(copied) == PER_PARTITION * PARTITIONS, "nothing copied twice"
    source_messages = read_range(bootstrap, f"{source}.data.raw")
    assert [s.content() for s in copied] == [s.content() for s in source_messages]


def test_the_python_loop_checkpoints_only_confirmed_writes(
    source: str, target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.cli.replay.CHECKPOINT_EVERY", 100)
    monkeypatch.setattr("shared.cli.replay.CONSUME_BATCH", 20)
    saved: list[tuple[dict[int, tuple[int, int]], int]] = []
    record = _Recorder.record

    def spy(recorder: _Recorder, updates: dict[int, tuple[int, int]], copied: int) -> None:
        saved.append((dict(updates), copied))
        record(recorder, updates, copied)

    monkeypatch.setattr(_Recorder, "record", spy)
    result = replayer(source, tmp_path, "python").run(request(source, target, "50", "end"), target)
    assert result.checkpoint.complete and len(saved) > 3
    assert sum(copied for _, copied in saved) == result.copied == (PER_PARTITION - 50) * PARTITIONS
    for updates, _ in saved:
        for next_offset, target_end in updates.values():
            # The target was empty: every source message before next_offset is on it, no more.
            assert target_end == next_offset - 50


def test_the_native_copier_checkpoints_confirmed_writes_while_it_copies(
    source: str, target: str, admin: AdminClient, bootstrap: str
) -> None:
    """The copier is given a range twice as long as the topic: it cannot finish, so a
    checkpoint seen before the rest is produced was taken mid-copy, from delivery reports."""
    settings = PlatformSettings(namespace=source)
    ensure_topics(admin, list(TopicCatalog.load().specs.values()), target)
    saved: list[tuple[Updates, int]] = []
    copy = NativeCopy(
        ensure_copier(),
        fast_consumer_config(settings, "replay-test"),
        replay_producer_config(settings),
        lambda updates, copied: saved.append((updates, copied)),
    )
    tasks = [[PartitionTask(p, 0, 2 * PER_PARTITION, 0, 0) for p in range(PARTITIONS)]]
    outcomes: list[CopyOutcome] = []
    copying = threading.Thread(
        target=lambda: outcomes.append(
            copy.run(f"{source}.data.raw", f"{target}.data.raw", tasks, 1000, 100, None,
                     lambda copied: None, lambda: False)
        )
    )  # fmt: skip
    copying.start()
    try:
        wait_until(lambda: bool(saved), what="a checkpoint while the range is incomplete")
        assert copying.is_alive()
    finally:
        fill(bootstrap, f"{source}.data.raw")  # the second half: now the copier can finish
        copying.join(60)
    assert outcomes and not outcomes[0].failures and not outcomes[0].stopped
    assert len(saved) >= 2 and sum(copied for _, copied in saved) == 2 * PER_PARTITION * PARTITIONS
    for updates, _ in saved:
        for next_offset, target_end in updates.values():
            assert target_end == next_offset, "every source message before next_offset is copied"
    assert saved[-1][0] == {p: (2 * PER_PARTITION, 2 * PER_PARTITION) for p in range(PARTITIONS)}
    copied = read_range(bootstrap, f"{target}.data.raw")
    assert [s.content() for s in copied] == [
        s.content() for s in read_range(bootstrap, f"{source}.data.raw")
    ]


@ENGINES
def test_worker_processes_share_the_partitions_and_a_stopped_run_resumes_exactly(
    source: str,
    target: str,
    bootstrap: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    engine: Engine,
) -> None:
    monkeypatch.setattr("shared.cli.replay.CONSUME_BATCH", 20)  # many batches: time to stop
    replay = replayer(source, tmp_path, engine)
    progressed: list[int] = []
    with pytest.raises(ReplayInterrupted):
        replay.run(
            request(source, target, "earliest", "end"),
            target,
            on_progress=progressed.append,
            should_stop=lambda: bool(progressed),
            workers=PARTITIONS,
        )
    stopped = Checkpoint.load(tmp_path / "checkpoints" / f"{target}.data.raw.json")
    assert stopped is not None and not stopped.complete
    last = replay.run(request(source, target, "earliest", "end"), target, workers=PARTITIONS)
    assert last.checkpoint.complete
    assert stopped.replayed + last.copied == PER_PARTITION * PARTITIONS
    copied = read_range(bootstrap, f"{target}.data.raw")
    source_messages = read_range(bootstrap, f"{source}.data.raw")
    assert [s.content() for s in copied] == [s.content() for s in source_messages]


@ENGINES
def test_a_range_ending_in_transaction_markers_completes(
    admin: AdminClient, target: str, bootstrap: str, tmp_path: Path, engine: Engine
) -> None:
    """A transactional producer leaves a commit marker after its messages: the end offset is
    one past the last message a consumer ever sees, so the range ends at the partition's end
    (EOF), not at a message."""
    ns = namespace()
    with namespace_topics(admin, ns):
        producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique_name("tx")})
        producer.init_transactions(30)
        producer.begin_transaction()
        for i in range(10 * PARTITIONS):
            producer.produce(f"{ns}.data.raw", b"v%d" % i, b"k%d" % i, partition=i % PARTITIONS,
                             timestamp=BASE_MS + i, headers=[("n", b"%d" % i)])  # fmt: skip
        producer.commit_transaction(30)
        result = replayer(ns, tmp_path, engine).run(request(ns, target, "earliest", "end"), target)
        assert result.checkpoint.complete and result.copied == 10 * PARTITIONS
        assert all(p.next_offset == p.end == 11 for p in result.checkpoint.partitions.values())
        copied = read_range(bootstrap, f"{target}.data.raw")
        expected = read_range(bootstrap, f"{ns}.data.raw")
        assert [s.content() for s in copied] == [s.content() for s in expected]


@ENGINES
def test_a_range_whose_messages_were_deleted_meanwhile_fails_clearly_and_records_nothing(
    source: str, target: str, admin: AdminClient, tmp_path: Path, engine: Engine
) -> None:
    replay = replayer(source, tmp_path, engine)
    first = replay.run(request(source, target, "earliest", "end", limit=30), target)
    assert first.copied == 30
    deleted = admin.delete_records(
        [TopicPartition(f"{source}.data.raw", p, 200) for p in range(PARTITIONS)]
    )
    for future in deleted.values():
        future.result(10)
    with pytest.raises(ReplayError, match=r"(?i)offset"):
        replay.run(request(source, target, "earliest", "end"), target)
    saved = Checkpoint.load(tmp_path / "checkpoints" / f"{target}.data.raw.json")
    assert saved is not None and saved.replayed == 30 and not saved.complete


def test_a_different_range_into_the_same_target_is_refused_until_restart(
    source: str, target: str, tmp_path: Path
) -> None:
    replayer(source, tmp_path).run(request(source, target, "0", "10", limit=5), target)
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "replay", "--topic", "data.raw", "--into", target,
         "--from", "0", "--to", "20", "--checkpoint-dir", str(tmp_path / "checkpoints")],
        env={**os.environ, "MLOPS_NAMESPACE": source}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "--restart" in result.stderr and "Traceback" not in result.stderr


# --- acceptance: a replay runs through a parallel pipeline, production untouched -----------


def online_rows(url: str, ns: str) -> int:
    table = online_table(online_table_name(ns))
    with create_engine(url).connect() as connection:
        if not inspect(connection).has_table(table.name):
            return 0
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def record_id_rows(url: str, ns: str) -> int:
    table = record_ids_table(record_ids_table_name(ns))
    with create_engine(url).connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def count_messages(bootstrap: str, topic: str) -> int:
    ends = end_offsets(bootstrap, [topic])
    return sum(ends.values())


def replay_cli(env: dict[str, str], *arguments: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "replay", *arguments],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def start_pipelines(namespaces: list[str], env: dict[str, str], logs: Path) -> list[RunningService]:
    """Validation and the feature store in each namespace, all started at once."""
    started = []
    for ns in namespaces:
        (logs / ns).mkdir()
        started += [
            start_service(name, ns, env, logs / ns, wait_ready=False)
            for name in ("validation", "feature_store")
        ]
    try:
        for service in started:
            wait_until(service.is_ready, what=f"{service.name} to be ready", timeout_s=120)
    except BaseException:
        for service in started:
            service.stop()
        raise
    return started


@pytest.fixture
def two_namespaces(
    admin: AdminClient, settings: PlatformSettings, tmp_path: Path
) -> Iterator[tuple[str, str, str]]:
    production, replica = namespace(), namespace()
    url = settings.database_url_or_sqlite(str(tmp_path / "replay.sqlite"))
    try:
        with namespace_topics(admin, production):
            # The replica's pipeline starts beside production's, before the replay (which
            # would create these topics itself), to start all services at once.
            ensure_topics(admin, list(TopicCatalog.load().specs.values()), replica)
            yield production, replica, url
    finally:
        catalog = TopicCatalog.load()
        admin.delete_topics(
            [spec.full_name(replica) for spec in catalog.specs.values()], operation_timeout=10
        )
        engine = create_engine(url)
        for ns in (production, replica):
            online_table(online_table_name(ns)).drop(engine, checkfirst=True)
            record_ids_table(record_ids_table_name(ns)).drop(engine, checkfirst=True)


def test_a_replayed_range_runs_through_a_parallel_pipeline_and_production_is_untouched(
    two_namespaces: tuple[str, str, str],
    bootstrap: str,
    settings: PlatformSettings,
    subprocess_env: dict[str, str],
    tmp_path: Path,
) -> None:
    production, replica, url = two_namespaces
    env = {**subprocess_env, "MLOPS_DATABASE_URL": url}
    registry = SpecRegistry(
        client_config(settings, "replay-test"), f"{production}.data.specs", "replay-test"
    )
    spec_producer = EventProducer(producer_config(settings, "replay-test"))

    def registered() -> bool:
        try:
            registry.register(LOANS, spec_producer)
        except KafkaException:  # the new topic's leader is not elected yet
            return False
        return True

    wait_until(registered, what="the loans spec to be registered")
    records = [
        row
        for row, _ in agrawal_records(
            450, seed=5, start=datetime(2026, 1, 1, tzinfo=UTC), entities=200
        )
    ]
    lines = tmp_path / "records.jsonl"
    lines.write_text("".join(json.dumps(record) + "\n" for record in records))
    published = subprocess.run(
        [sys.executable, "-m", "shared.cli", "publish", "data.raw", str(lines), "--dataset", "loans"],
        env={**env, "MLOPS_NAMESPACE": production}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    assert count_messages(bootstrap, f"{production}.data.raw") == len(records)
    keyed = read_range(bootstrap, f"{production}.data.raw")
    assert {m.key for m in keyed} == {r["applicant_id"].encode() for r in records}

    services = start_pipelines([production, replica], env, tmp_path)
    try:
        outcomes = [f"{production}.data.validated", f"{production}.data.rejected"]
        wait_until(
            lambda: sum(count_messages(bootstrap, t) for t in outcomes) == len(records),
            what="production to validate every record", timeout_s=120,
        )  # fmt: skip
        wait_until(
            lambda: count_messages(bootstrap, f"{production}.data.features")
            == count_messages(bootstrap, outcomes[0]),
            what="production's features", timeout_s=120,
        )  # fmt: skip
        wait_until(lambda: online_rows(url, production) > 0, what="production's online store")
        production_topics = [s.full_name(production) for s in TopicCatalog.load().specs.values()]
        offsets_before = end_offsets(bootstrap, production_topics)
        rows_before = (online_rows(url, production), record_id_rows(url, production))

        cli_env = {**env, "MLOPS_NAMESPACE": production}
        checkpoints = str(tmp_path / "checkpoints")
        replay_cli(
            cli_env, "--topic", "data.specs", "--into", replica, "--checkpoint-dir", checkpoints
        )
        replay_cli(cli_env, "--topic", "data.raw", "--into", replica, "--from", "30", "--to", "120",
                   "--checkpoint-dir", checkpoints)  # fmt: skip
        raw = read_range(bootstrap, f"{production}.data.raw")
        replayed = [m for m in raw if 30 <= m.offset < 120]
        assert count_messages(bootstrap, f"{replica}.data.raw") == len(replayed) > 0

        replica_outcomes = [f"{replica}.data.validated", f"{replica}.data.rejected"]
        wait_until(
            lambda: sum(count_messages(bootstrap, t) for t in replica_outcomes) == len(replayed),
            what="the replica to validate the replayed range", timeout_s=120,
        )  # fmt: skip
        validated = count_messages(bootstrap, replica_outcomes[0])
        wait_until(
            lambda: count_messages(bootstrap, f"{replica}.data.features") == validated,
            what="the replica's features", timeout_s=120,
        )  # fmt: skip
        entities = {m.key for m in replayed}
        wait_until(
            lambda: 0 < online_rows(url, replica) <= len(entities),
            what="the replica's online store",
        )
        assert record_id_rows(url, replica) == validated

        assert end_offsets(bootstrap, production_topics) == offsets_before, "production topics"
        assert (online_rows(url, production), record_id_rows(url, production)) == rows_before
    finally:
        for service in services:
            service.stop()
