"""The topic catalog (infra/topics.yaml) and the command that creates it on a cluster.

python -m shared.kafka.topics ensure [--namespace NS]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec, TopicMetadata

from shared.kafka.config import client_config
from shared.settings import PlatformSettings

DEFAULT_CATALOG = Path(__file__).resolve().parents[2] / "infra" / "topics.yaml"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    kind: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)
    description: str = ""

    def full_name(self, namespace: str) -> str:
        return f"{namespace}.{self.name}"


@dataclass(frozen=True)
class TopicCatalog:
    specs: dict[str, TopicSpec]

    @classmethod
    def load(cls, path: Path = DEFAULT_CATALOG) -> TopicCatalog:
        document: dict[str, Any] = yaml.safe_load(path.read_text())
        defaults = document.get("defaults", {})
        kinds = document["kinds"]
        specs = {}
        for name, entry in document["topics"].items():
            kind = entry["kind"]
            if kind not in kinds:
                raise ValueError(f"topic {name}: unknown kind {kind!r}; known: {sorted(kinds)}")
            specs[name] = TopicSpec(
                name=name,
                kind=kind,
                partitions=int(entry.get("partitions", defaults.get("partitions", 1))),
                replication_factor=int(
                    entry.get("replication_factor", defaults.get("replication_factor", 1))
                ),
                config={k: str(v) for k, v in {**kinds[kind], **entry.get("config", {})}.items()},
                description=entry.get("description", ""),
            )
        return cls(specs)

    def __getitem__(self, name: str) -> TopicSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise KeyError(
                f"no topic {name!r} in the catalog; known: {sorted(self.specs)}"
            ) from None

    def name(self, short_name: str, namespace: str) -> str:
        return self[short_name].full_name(namespace)


def new_topic(spec: TopicSpec, namespace: str, broker_count: int) -> NewTopic:
    replication = max(1, min(spec.replication_factor, broker_count))
    config = dict(spec.config)
    config.setdefault("min.insync.replicas", "2" if replication >= 3 else "1")
    return NewTopic(
        spec.full_name(namespace),
        num_partitions=spec.partitions,
        replication_factor=replication,
        config=config,
    )


def ensure_topics(
    admin: AdminClient, specs: list[TopicSpec], namespace: str, timeout_s: float = 30.0
) -> list[str]:
    """Creates the topics that do not exist yet; returns the names it created."""
    metadata = admin.list_topics(timeout=timeout_s)
    broker_count = len(metadata.brokers)
    missing = [s for s in specs if s.full_name(namespace) not in metadata.topics]
    if not missing:
        return []
    futures = admin.create_topics(
        [new_topic(s, namespace, broker_count) for s in missing], operation_timeout=timeout_s
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except Exception as error:
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise
    wait_for_leaders(admin, created, timeout_s)
    return created


def wait_for_leaders(admin: AdminClient, names: list[str], timeout_s: float = 30.0) -> None:
    """Returns once every partition of `names` has a leader that answers an offset request: a
    topic just created answers NOT_LEADER_FOR_PARTITION to reads and writes until then, and
    its metadata can name a leader a moment before that leader serves it."""
    deadline = time.monotonic() + timeout_s
    waiting = set(names)
    while waiting:
        topics = admin.list_topics(timeout=timeout_s).topics
        waiting = {name for name in waiting if not _led(topics.get(name))}
        if not waiting:
            waiting = {name for name in names if not _serving(admin, name, topics[name])}
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"no leader after {timeout_s}s for: {', '.join(sorted(waiting))}")
        time.sleep(0.05)


def _serving(admin: AdminClient, name: str, topic: TopicMetadata) -> bool:
    asked = {TopicPartition(name, p): OffsetSpec.latest() for p in topic.partitions}
    try:
        for future in admin.list_offsets(asked, request_timeout=5).values():
            future.result()
    except KafkaException:
        return False
    return True


def _led(topic: TopicMetadata | None) -> bool:
    if topic is None or topic.error is not None or not topic.partitions:
        return False
    return all(p.leader >= 0 and p.error is None for p in topic.partitions.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.kafka.topics")
    sub = parser.add_subparsers(dest="command", required=True)
    ensure = sub.add_parser("ensure", help="create every catalog topic that does not exist yet")
    ensure.add_argument("--namespace", help="topic prefix (default: MLOPS_NAMESPACE or mlops)")
    ensure.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG)
    sub.add_parser("list", help="print the catalog")
    args = parser.parse_args(argv)
    settings = PlatformSettings()
    if args.command == "list":
        for spec in TopicCatalog.load().specs.values():
            print(f"{spec.full_name(settings.namespace):40} {spec.kind:6} {spec.description}")
        return 0
    catalog = TopicCatalog.load(args.catalog)
    namespace = args.namespace or settings.namespace
    admin = AdminClient(client_config(settings, "topics-cli"))
    created = ensure_topics(admin, list(catalog.specs.values()), namespace)
    print(
        f"topics in namespace {namespace!r}: {len(catalog.specs)} declared, {len(created)} created"
    )
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
