"""`mlops publish`, `mlops tail` and `mlops replay`: the commands that talk to Kafka directly."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from shared.cli.common import CliError, kafka_admin, platform_settings
from shared.cli.ranges import Checkpoint, RangeError, check_order, parse_position, topic_names
from shared.cli.replay import DEFAULT_CHECKPOINT_DIR, Replayer, ReplayError, ReplayRequest
from shared.datasets.spec import shipped_specs
from shared.kafka.config import client_config, producer_config
from shared.kafka.topics import TopicCatalog
from shared.settings import PlatformSettings

err = Console(stderr=True)
DEFAULT_WORKERS = os.cpu_count() or 1
NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")  # as PlatformSettings.namespace


class RateColumn(ProgressColumn):
    """events/s over the task so far."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(
            f"{speed:,.0f} events/s" if speed else "- events/s", style="progress.data.speed"
        )


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def full_topic(topic: str, settings: PlatformSettings) -> str:
    """A catalog name (data.raw) is taken in the configured namespace; anything else as is."""
    return f"{settings.namespace}.{topic}" if topic in TopicCatalog.load().specs else topic


# -- publish ------------------------------------------------------------------------------


def read_lines(source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, JSON object) of a JSON Lines file, or of stdin for '-'."""
    stream = sys.stdin if source == "-" else Path(source).open(encoding="utf-8")  # noqa: SIM115
    try:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise CliError(f"{source}:{number}: not JSON ({error.msg})") from None
            if not isinstance(value, dict):
                raise CliError(f"{source}:{number}: expected a JSON object")
            yield number, value
    finally:
        if stream is not sys.stdin:
            stream.close()


def message_for(
    value: dict[str, Any], dataset: str | None, entity_key: str | None, key_field: str | None
) -> tuple[bytes, bytes | None]:
    """The message's value and key. With a dataset, a plain record becomes the raw topic's bare
    form keyed by its entity; an event envelope is keyed by its subject."""
    if dataset is not None:
        entity = value.get(entity_key) if entity_key else None
        value = {
            "dataset": dataset,
            "entity": None if entity is None else str(entity),
            "values": value,
        }
    if key_field is not None:
        key = value.get(key_field)
    elif dataset is not None:
        key = value["entity"]
    else:
        key = value.get("subject") if "specversion" in value else None
    encoded_key = None if key is None else str(key).encode()
    return json.dumps(value, allow_nan=True).encode(), encoded_key


def entity_key_of(dataset: str | None, entity_key: str | None) -> str | None:
    if dataset is None or entity_key is not None:
        return entity_key
    shipped = {spec.name: spec.entity_key for spec in shipped_specs()}
    if dataset not in shipped:
        raise CliError(f"dataset {dataset!r} is not shipped: name its --entity-key")
    return shipped[dataset]


def publish(
    topic: Annotated[str, typer.Argument(help="A catalog name (data.raw) or a full topic name.")],
    source: Annotated[str, typer.Argument(help="A JSON Lines file, or - for stdin.")],
    dataset: Annotated[
        str | None,
        typer.Option(help="Wrap each line as a raw record of this dataset (bare raw form)."),
    ] = None,
    entity_key: Annotated[
        str | None, typer.Option(help="The entity column (default: the shipped spec's).")
    ] = None,
    key: Annotated[str | None, typer.Option(help="Top-level field used as the Kafka key.")] = None,
) -> None:
    """Publish records or events, one JSON object per line, to a topic; every write is
    confirmed (acks=all) before it returns."""
    settings = platform_settings()
    kafka_admin(settings)
    target = full_topic(topic, settings)
    column = entity_key_of(dataset, entity_key)
    failures: list[str] = []

    def delivered(error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    producer = Producer({**producer_config(settings, "mlops-cli"), "on_delivery": delivered})
    count = 0
    with progress_bar() as progress:
        task = progress.add_task(f"publish {target}", total=None)
        for _number, value in read_lines(source):
            payload, message_key = message_for(value, dataset, column, key)
            while True:
                try:
                    producer.produce(target, payload, message_key)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            count += 1
            progress.advance(task)
        unconfirmed = producer.flush(60)
    if failures or unconfirmed:
        raise CliError(
            f"{len(failures) + unconfirmed} of {count} writes to {target} were not confirmed: "
            f"{(failures or ['timed out'])[0]}"
        )
    err.print(f"published {count} messages to {target}")


# -- tail ---------------------------------------------------------------------------------


def describe(value: bytes | None) -> str:
    """One line per message: an event as type, subject and data; other JSON compactly."""
    if value is None:
        return "(tombstone)"
    try:
        decoded = json.loads(value)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"(not JSON, {len(value)} bytes) {value[:120]!r}"
    if isinstance(decoded, dict) and "specversion" in decoded:
        data = json.dumps(decoded.get("data"), separators=(",", ":"), default=str)
        return f"{decoded.get('type')} {decoded.get('subject') or '-'} {decoded.get('time')} {data}"
    return json.dumps(decoded, separators=(",", ":"))


def tail(
    topic: Annotated[str, typer.Argument(help="A catalog name (data.raw) or a full topic name.")],
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest message, not the end.")
    ] = False,
    max_messages: Annotated[
        int | None, typer.Option("--max", min=1, help="Stop after this many messages.")
    ] = None,
    idle_timeout: Annotated[
        float | None, typer.Option(help="Stop after this many seconds without a message.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each value as received (JSON Lines).")
    ] = False,
) -> None:
    """Follow a topic, decoded: partition/offset, key and the event's type, subject and data."""
    settings = platform_settings()
    admin = kafka_admin(settings)
    name = full_topic(topic, settings)
    metadata = admin.list_topics(topic=name, timeout=10).topics.get(name)
    if metadata is None or metadata.error is not None:
        raise CliError(f"topic {name!r} does not exist")
    consumer = Consumer(
        {
            **client_config(settings, "mlops-tail"),
            "group.id": f"mlops-tail-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
        }
    )
    start = -2 if from_beginning else -1  # OFFSET_BEGINNING, OFFSET_END
    consumer.assign([TopicPartition(name, p, start) for p in metadata.partitions])
    shown, idle = 0, 0.0
    try:
        while max_messages is None or shown < max_messages:
            message = consumer.poll(0.5)
            if message is None:
                idle += 0.5
                if idle_timeout is not None and idle >= idle_timeout:
                    break
                continue
            idle = 0.0
            if message.error() is not None:
                continue
            if as_json:
                sys.stdout.write((message.value() or b"null").decode(errors="replace") + "\n")
            else:
                key = message.key().decode(errors="replace") if message.key() else "-"
                print(f"{message.partition()}/{message.offset()} {key} {describe(message.value())}")
            sys.stdout.flush()
            shown += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


# -- replay -------------------------------------------------------------------------------


class StopFlag:
    """Ctrl-C and SIGTERM ask the replay to stop between batches, after a checkpoint."""

    def __init__(self) -> None:
        self.stop = False

    def __call__(self) -> bool:
        return self.stop

    def handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.stop = True


def replay(
    topic: Annotated[
        str, typer.Option("--topic", help="Catalog name (data.raw) or full name of the source.")
    ],
    into: Annotated[
        str, typer.Option("--into", help="The namespace whose topics receive the copy.")
    ],
    from_: Annotated[
        str, typer.Option("--from", help="First message: offset, ISO time, or 'earliest'.")
    ] = "earliest",
    to: Annotated[
        str, typer.Option("--to", help="First message NOT replayed: offset, ISO time, or 'end'.")
    ] = "end",
    limit: Annotated[
        int | None, typer.Option(min=1, help="Copy at most this many now; rerun to continue.")
    ] = None,
    restart: Annotated[
        bool, typer.Option(help="Forget this replay's checkpoint and start it again.")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(min=1, help="Processes sharing the partitions (default: one per CPU)."),
    ] = DEFAULT_WORKERS,
    checkpoint_dir: Annotated[
        Path, typer.Option(help="Where progress is kept, one JSON file per target topic.")
    ] = DEFAULT_CHECKPOINT_DIR,
) -> None:
    """Re-publish a range of a topic into another namespace: same partitions, keys, headers
    and timestamps. The range is [--from, --to), per partition. Resumable: run the same
    command again after an interruption; confirmed messages are never copied twice."""
    settings = platform_settings()
    try:
        start, end = parse_position(from_), parse_position(to)
        check_order(start, end)
        names = topic_names(topic, settings.namespace, into, set(TopicCatalog.load().specs))
    except RangeError as error:
        raise typer.BadParameter(str(error)) from None
    if not NAMESPACE.match(into):
        raise typer.BadParameter(f"{into!r} is not a namespace ({NAMESPACE.pattern})")
    kafka_admin(settings)
    request = ReplayRequest(names, start, end, from_, to, limit, restart)
    stop = StopFlag()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop.handle)
    replayer = Replayer(settings, checkpoint_dir)
    try:
        with progress_bar() as progress:
            task = progress.add_task(f"replay {names.source} -> {names.target}", total=None)

            def advance(copied: int) -> None:
                progress.advance(task, copied)

            def planned(checkpoint: Checkpoint) -> None:
                progress.update(task, total=checkpoint.remaining, completed=0)

            result = replayer.run(request, into, advance, stop, planned, workers)
    except ReplayError as error:
        raise CliError(f"replay: {error}; run the same command again to resume") from None
    checkpoint = result.checkpoint
    state = "complete" if checkpoint.complete else f"{checkpoint.remaining} left (run again)"
    err.print(
        f"replayed {result.copied} messages from {names.source} into {names.target} "
        f"in {result.seconds:.1f}s ({result.rate:,.0f} events/s); "
        f"{checkpoint.replayed} in total, {state}"
    )
