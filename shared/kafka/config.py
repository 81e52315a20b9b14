"""librdkafka configuration dictionaries built from the platform settings."""

from __future__ import annotations

from typing import Any

from shared.settings import PlatformSettings


def client_config(settings: PlatformSettings, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": client_id,
        **settings.kafka_client_extra,
    }


def producer_config(settings: PlatformSettings, client_id: str) -> dict[str, Any]:
    """Idempotent, acks=all: a write is confirmed only once every in-sync replica has it."""
    return {
        **client_config(settings, client_id),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.max.bytes": max(settings.max_payload_bytes * 2, 1_048_576),
    }


def consumer_config(settings: PlatformSettings, client_id: str, group_id: str) -> dict[str, Any]:
    """Offsets are stored by the runner after a message is handled, then auto-committed."""
    return {
        **client_config(settings, client_id),
        "group.id": group_id,
        "enable.auto.commit": True,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
    }
