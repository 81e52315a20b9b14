"""A steady load on a running platform while a fault happens, and what it must leave behind.

The load: loans applications, and the records of every other feed (the fault platform adds
Friedman readings: a regression dataset), through ingestion's HTTP API (batches of ten,
acknowledged by a 202) and published straight to data.raw (acknowledged by the broker,
acks=all), and single-record `/predict` calls, each from a thread of its own until stopped. Afterwards every
acknowledged record must end exactly once in data.validated or data.rejected (one event id
per record id), none dead-lettered; what it measures becomes one row of the fault matrix.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import httpx
from confluent_kafka import Consumer, Message, TopicPartition

from infra.demo.loop import DATASET, ENTITIES, Urls
from shared.datasets.sources import Record, agrawal_records, friedman_records
from shared.events import Event, RecordIngested
from shared.kafka.config import producer_config
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.kafka.watermarks import HighWatermarks
from shared.settings import PlatformSettings
from tests.integration.kafka_helpers import unique_name
from tests.waiting import wait_until

BATCH = 10
PAUSE_S = 0.2


@dataclass
class Row:
    """One scenario of the fault matrix."""

    scenario: str
    records_in: int
    records_out: int
    lost: int
    twice: int
    dead_lettered: int
    predict_ok: int
    predict_failed: int
    recovery_s: float
    effects: str = "-"
    """Other effects off (tests/faults/effects.py), where the scenario measures them."""

    def cells(self) -> list[str]:
        return [
            self.scenario,
            f"{self.records_in:,}",
            f"{self.records_out:,}",
            str(self.lost),
            str(self.twice),
            str(self.dead_lettered),
            f"{self.predict_ok:,}",
            str(self.predict_failed),
            f"{self.recovery_s:.1f}",
            self.effects,
        ]


HEADER = [
    "scenario",
    "records in (acknowledged)",
    "out (validated + rejected)",
    "lost",
    "applied twice",
    "dead-lettered",
    "/predict answered",
    "/predict failed",
    "recovery s",
    "off: vectors / labels / predictions logged",
]


@dataclass(frozen=True)
class Feed:
    """A dataset the load sends: a stream of its records and their labels per seed, the field
    naming a record and its entity, and the model `/predict` asks about its records."""

    dataset: str
    model: str
    record_id: str
    entity_key: str
    labelled: Callable[[int], Iterator[tuple[Record, Any]]]

    def stream(self, seed: int) -> Iterator[Record]:
        return (record for record, _ in self.labelled(seed))


def loans_feed(model: str) -> Feed:
    """Loan applications (classification, labels arriving later)."""

    def labelled(seed: int) -> Iterator[tuple[Record, Any]]:
        return agrawal_records(10**6, seed=seed, start=datetime.now(UTC), entities=ENTITIES)

    return Feed(DATASET, model, "application_id", "applicant_id", labelled)


def readings_feed(model: str) -> Feed:
    """Friedman readings (regression, targets arriving later)."""

    def labelled(seed: int) -> Iterator[tuple[Record, Any]]:
        return friedman_records(10**6, seed=seed, start=datetime.now(UTC))

    return Feed("friedman", model, "reading_id", "sensor_id", labelled)


@dataclass
class SteadyLoad:
    """Records in by HTTP and by Kafka, and /predict calls, for the loans model and every other
    feed, until `stop`."""

    settings: PlatformSettings
    namespace: str
    ingestion_url: str
    serving_url: str
    model: str
    seed: int
    other_feeds: tuple[Feed, ...] = ()
    pause_s: float = PAUSE_S
    """Between two batches of each feed."""
    acked: set[str] = field(default_factory=set)
    refused: list[str] = field(default_factory=list)
    labels_acked: set[str] = field(default_factory=set)
    """Record ids whose label ingestion acknowledged (posted after their record's batch)."""
    predicted: dict[str, float] = field(default_factory=dict)
    """Request id -> when (monotonic) a /predict call was answered 200."""
    predict_ok: int = 0
    predict_failures: list[str] = field(default_factory=list)
    predict_failed_at: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> SteadyLoad:
        for n, feed in enumerate((loans_feed(self.model), *self.other_feeds)):
            seed = self.seed + 1000 * n
            for target, args in (
                (self._post, (feed, feed.labelled(seed))),
                (self._publish, (feed, feed.stream(seed + 500))),
                (self._predict, (feed, list(islice(feed.stream(seed + 700), 200)))),
            ):
                thread = threading.Thread(target=target, args=args, daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)

    def _post(self, feed: Feed, labelled: Iterator[tuple[Record, Any]]) -> None:
        """Records by HTTP; the labels of a batch acknowledged go with the next one's turn."""
        labels_of: dict[str, Any] = {}
        due: list[dict[str, Any]] = []
        url = f"{self.ingestion_url}/datasets/{feed.dataset}"

        def records() -> Iterator[Record]:
            for record, label in labelled:
                labels_of[str(record[feed.record_id])] = label
                yield record

        with httpx.Client(timeout=30) as client:

            def sent(path: str, body: dict[str, Any]) -> str | None:
                try:
                    answer = client.post(f"{url}/{path}", json=body)
                except httpx.HTTPError as error:
                    return repr(error)
                ok = answer.status_code == 202
                return None if ok else f"{answer.status_code} {answer.text[:200]}"

            def post(batch: list[Record]) -> str | None:
                if due and sent("labels", {"labels": due}) is None:
                    with self._lock:
                        self.labels_acked.update(label["record_id"] for label in due)
                refusal = sent("records", {"records": batch})
                ids = [str(r[feed.record_id]) for r in batch]
                due[:] = [{"record_id": i, "label": labels_of.pop(i)} for i in ids]
                if refusal is not None:
                    due.clear()
                return refusal

            self._feed(feed, records(), post)

    def _publish(self, feed: Feed, stream: Iterator[Record]) -> None:
        producer = EventProducer(producer_config(self.settings, "fault-load"))
        topic = f"{self.namespace}.data.raw"

        def publish(batch: list[Record]) -> str | None:
            ingested = [
                RecordIngested(
                    dataset=feed.dataset,
                    entity=str(r[feed.entity_key]),
                    values=r,
                    ingested_at=datetime.now(UTC),
                )
                for r in batch
            ]
            messages = [
                OutgoingMessage.for_event(
                    topic, Event.create(record, source="fault-load"), record.entity
                )
                for record in ingested
            ]
            try:
                producer.publish_confirmed(messages, timeout=30)
            except Exception as error:
                return repr(error)
            return None

        try:
            self._feed(feed, stream, publish)
        finally:
            producer.close()

    def _feed(
        self, feed: Feed, stream: Iterator[Record], send: Callable[[list[Record]], str | None]
    ) -> None:
        """Sends the stream in batches until stopped; a batch `send` refuses (its reason) is
        not acknowledged."""
        while not self._stop.is_set():
            batch = list(islice(stream, BATCH))
            if not batch:
                return
            refusal = send(batch)
            with self._lock:
                if refusal is None:
                    self.acked.update(str(r[feed.record_id]) for r in batch)
                else:
                    self.refused.append(refusal)
            self._stop.wait(self.pause_s)

    def _predict(self, feed: Feed, pool: list[Record]) -> None:
        with httpx.Client(timeout=30) as client:
            sent = 0
            while not self._stop.is_set():
                record = pool[sent % len(pool)]
                sent += 1
                try:
                    answer = client.post(
                        f"{self.serving_url}/predict",
                        json={"model": feed.model, "records": [record]},
                    )
                    failure = None if answer.status_code == 200 else answer.text[:200]
                except httpx.HTTPError as error:
                    failure = repr(error)
                with self._lock:
                    if failure is None:
                        self.predict_ok += 1
                        self.predicted[answer.json()["request_id"]] = time.monotonic()
                    else:
                        self.predict_failures.append(failure)
                        self.predict_failed_at.append(time.monotonic())
                self._stop.wait(0.05)


def partition_ends(bootstrap: str, topic: str) -> dict[tuple[str, int], int]:
    ends = HighWatermarks({"bootstrap.servers": bootstrap}, unique_name("fault-ends"))
    try:
        return ends.of_topic(topic)
    finally:
        ends.close()


SETTLE_S = 240.0


def steady_load(
    settings: PlatformSettings,
    namespace: str,
    urls: Urls,
    model: str,
    seed: int,
    other_feeds: tuple[Feed, ...] = (),
) -> SteadyLoad:
    """A load on the platform at `urls`, started."""
    return SteadyLoad(
        settings, namespace, urls.ingestion, urls.serving, model, seed, other_feeds
    ).start()


def read_topic(bootstrap: str, topic: str) -> list[Message]:
    """Every message of a topic, from its start to its end now (assigned, not subscribed:
    no group to join, so the recovery time it measures is not the join's)."""
    ends = {p: end for (_, p), end in partition_ends(bootstrap, topic).items() if end > 0}
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("fault-read"),
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        seen = dict.fromkeys(ends, 0)
        out: list[Message] = []
        deadline = time.monotonic() + 60
        while any(seen[p] < end for p, end in ends.items()):
            assert time.monotonic() < deadline, f"{topic} not read to its end"
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    out.append(message)
                    seen[message.partition()] = message.offset() + 1
        return out
    finally:
        consumer.close()


@dataclass(frozen=True)
class Outputs:
    event_ids_by_record: dict[str, set[str]]
    dead_lettered_raw: int


def outputs(bootstrap: str, namespace: str) -> Outputs:
    by_record: dict[str, set[str]] = defaultdict(set)
    for name in ("data.validated", "data.rejected"):
        for message in read_topic(bootstrap, f"{namespace}.{name}"):
            event = json.loads(message.value())
            record_id = event["data"].get("record_id")
            if record_id is not None:
                by_record[record_id].add(event["id"])
    letters = read_topic(bootstrap, f"{namespace}.bus.dead-letter")
    raw = f"{namespace}.data.raw".encode()
    from_raw = sum(1 for m in letters if dict(m.headers() or []).get("dlq.original.topic") == raw)
    return Outputs(dict(by_record), from_raw)


def settle(acked: set[str], bootstrap: str, namespace: str, timeout_s: float) -> Outputs:
    """Waits until every record of `acked` has an outcome (or the time is up: the row then
    says what is missing)."""
    found: list[Outputs] = []

    def caught_up() -> bool:
        found[:] = [outputs(bootstrap, namespace)]
        return acked <= found[0].event_ids_by_record.keys()

    with contextlib.suppress(AssertionError):
        wait_until(
            caught_up,
            what="every acknowledged record validated or rejected",
            timeout_s=timeout_s,
            interval_s=2,
        )
    return found[0]


def row(scenario: str, load: SteadyLoad, found: Outputs, recovery_s: float) -> Row:
    ids = found.event_ids_by_record
    return Row(
        scenario=scenario,
        records_in=len(load.acked),
        records_out=sum(1 for record in load.acked if record in ids),
        lost=len(load.acked - ids.keys()),
        twice=sum(1 for record in load.acked if len(ids.get(record, ())) > 1),
        dead_lettered=found.dead_lettered_raw,
        predict_ok=load.predict_ok,
        predict_failed=len(load.predict_failures),
        recovery_s=recovery_s,
    )


def ask_training(training_url: str, model: str, dataset: str, reason: str) -> str:
    """POST /train, accepted (202); the command's id (GET /runs/{id})."""
    asked = httpx.post(
        f"{training_url}/train",
        json={"model_name": model, "dataset": dataset, "reason": reason},
        timeout=30,
    )
    assert asked.status_code == 202, asked.text
    return str(asked.json()["command_id"])


def time_to_settle(load: SteadyLoad, bootstrap: str, namespace: str) -> float:
    """Seconds until every record acknowledged by now has its outcome (the recovery time)."""
    started = time.monotonic()
    settle(set(load.acked), bootstrap, namespace, SETTLE_S)
    return time.monotonic() - started
