"""No single message stops the consumer runner (issue 12), against the real broker.

Whatever fails while handling, serializing or publishing one message's outputs dead-letters
that message with a reason and consumption moves on; a deterministic failure is never
retried; a transient one is waited out, never dead-lettered; and a loop that stops on its
own ends its process non-zero, so a supervisor restarts it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import psycopg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import exc as sql

from shared.events import Event, RecordIngested
from shared.events.codec import EventDecoder
from shared.kafka.config import consumer_config, producer_config
from shared.kafka.consumer import ConsumerRunner, Emit, MessageInfo, RetryPolicy, Subscription
from shared.kafka.producer import EventProducer
from shared.service import CRASH_EXIT_CODE
from shared.settings import PlatformSettings
from tests.integration.kafka_helpers import read_all, unique_name

OUT_TOPIC_LIMIT = 65_536  # the output topic's max.message.bytes, below the runner's limit
RUNNER_LIMIT = 4 * 1_048_576  # above the producer's own message.max.bytes (2 MiB)


def record(n: int, action: str = "forward") -> bytes:
    data = RecordIngested(
        dataset="runner-test", entity=f"e-{n}", values={"n": n, "action": action},
        ingested_at=datetime.now(UTC),
    )  # fmt: skip
    return Event.create(data, source="test", subject=f"e-{n}").to_json_bytes()


@contextmanager
def topics_with_limits(admin: AdminClient, **limits: int | None) -> Iterator[dict[str, str]]:
    names = {role: unique_name(f"runner-{role}") for role in limits}
    new = [
        NewTopic(names[role], 1, 1, config={"max.message.bytes": str(limit)} if limit else {})
        for role, limit in limits.items()
    ]
    for future in admin.create_topics(new).values():
        future.result(timeout=30)
    try:
        yield names
    finally:
        admin.delete_topics(list(names.values()), operation_timeout=10)


SEQUENCE = [
    (1, "forward", None),
    (2, "unserializable", "output_unserializable"),
    (3, "forward", None),
    (4, "over_topic_limit", "output_refused"),
    (5, "forward", None),
    (6, "over_producer_limit", "output_refused"),
    (7, "forward", None),
    (8, "over_runner_limit", "output_too_large"),
    (9, "forward", None),
    (10, "data_error", "data_error"),
    (11, "forward", None),
    (12, "transient", None),
    (13, "forward", None),
]


def test_one_message_failing_anywhere_is_dead_lettered_and_the_rest_go_on(
    settings: PlatformSettings, admin: AdminClient, bootstrap: str
) -> None:
    with topics_with_limits(admin, source=None, out=OUT_TOPIC_LIMIT, dead=None) as names:
        raw = Producer({"bootstrap.servers": bootstrap})
        for n, action, _ in SEQUENCE:
            raw.produce(names["source"], value=record(n, action))
        assert raw.flush(10) == 0

        handled: list[int] = []
        attempts: dict[int, int] = {}

        def handle(event: Event, info: MessageInfo) -> list[Emit]:
            n, action = event.data.values["n"], event.data.values["action"]
            attempts[n] = attempts.get(n, 0) + 1
            if action == "data_error":
                raise sql.DataError("INSERT", {}, psycopg.DataError("NUL (0x00) in text"))
            if action == "transient" and attempts[n] < 3:
                raise sql.OperationalError("SELECT 1", {}, psycopg.OperationalError("down"))
            padding = {
                "unserializable": "\ud800",
                "over_topic_limit": "x" * 100_000,
                "over_producer_limit": "x" * 3_000_000,
                "over_runner_limit": "x" * 5_000_000,
            }.get(action, "")
            values = {**event.data.values, "padding": padding}
            out = Event.create(event.data.model_copy(update={"values": values}), source="test")
            handled.append(n)
            return [Emit("out", out)]

        group = unique_name("runner-group")
        runner = ConsumerRunner(
            group_id=group,
            subscriptions=[
                Subscription(
                    names["source"],
                    EventDecoder([RecordIngested], 10_000),
                    handle,
                    emits={"out": names["out"]},
                )
            ],
            consumer_config=consumer_config(settings, "runner-test", group),
            producer=EventProducer(producer_config(settings, "runner-test")),
            dead_letter_topic=names["dead"],
            retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.05),
            max_message_bytes=RUNNER_LIMIT,
        )
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop,))
        thread.start()
        try:
            expected_letters = [(n, reason) for n, _, reason in SEQUENCE if reason]
            letters = read_all(
                bootstrap, names["dead"], expected=len(expected_letters), timeout_s=60
            )
            forwarded = [n for n, action, reason in SEQUENCE if reason is None]
            outputs = read_all(bootstrap, names["out"], expected=len(forwarded), timeout_s=60)
            assert thread.is_alive(), "the runner is still consuming"
        finally:
            stop.set()
            thread.join(30)

    reasons = {
        int(headers["dlq.original.offset"]) + 1: headers["dlq.reason"]
        for headers in ({k: v.decode() for k, v in letter.headers()} for letter in letters)
    }
    assert reasons == dict(expected_letters)
    forwarded_ns = [
        Event[RecordIngested].model_validate_json(m.value()).data.values["n"] for m in outputs
    ]
    assert forwarded_ns == forwarded, "the outputs of the good messages, in order, once each"
    assert attempts[10] == 1, "a deterministic failure is never retried"
    assert attempts[12] == 3, "a transient failure is retried until it passes"
    assert handled.count(13) == 1 and handled.count(11) == 1


def test_a_loop_that_stops_on_its_own_ends_the_process_non_zero() -> None:
    """Another loop of the process is stopped cleanly, and the process exits 70 within its
    grace period instead of serving /live with a dead loop."""
    script = textwrap.dedent(
        """
        import threading
        from shared.service import ServiceRuntime
        from shared.settings import PlatformSettings

        class Broken:
            group_id = "broken"
            def run(self, stop):
                raise RuntimeError("the loop itself broke")

        class Waiting:
            group_id = "waiting"
            def run(self, stop):
                stop.wait()
                print("waiting loop stopped cleanly", flush=True)

        runtime = ServiceRuntime(name="t", settings=PlatformSettings(), runners=[Waiting(), Broken()])
        runtime.start_consumers()
        threading.Event().wait(60)  # stands for uvicorn serving /live
        """
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=90
    )
    assert done.returncode == CRASH_EXIT_CODE, done.stderr[-2000:]
    assert time.monotonic() - started < 30
    assert "waiting loop stopped cleanly" in done.stdout
    assert "the loop itself broke" in done.stderr
