"""A service's topic declaration, in one place: what it consumes, and where it may publish.

A service's handlers module lists its routes with catalog names (no namespace)::

    def routes(deps: Deps) -> list[Route]:
        return [Route("data.raw", (RecordIngested,), validate_record(deps),
                      emits=("data.validated", "data.rejected"))]

and bootstrap binds them to the real topics of its namespace with `bind`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.events.codec import EventDecoder
from shared.events.envelope import Payload
from shared.kafka.consumer import BatchHandler, Handler, Subscription
from shared.kafka.topics import TopicCatalog


@dataclass(frozen=True)
class Route:
    consumes: str
    payloads: tuple[type[Payload], ...]
    handler: Handler
    emits: tuple[str, ...] = ()
    batch_handler: BatchHandler | None = None


def bind(
    routes: Iterable[Route],
    namespace: str,
    max_payload_bytes: int,
    catalog: TopicCatalog | None = None,
) -> list[Subscription]:
    """Subscriptions on the namespaced topics; unknown catalog names fail here, at start-up."""
    catalog = catalog or TopicCatalog.load()
    return [
        Subscription(
            topic=catalog.name(route.consumes, namespace),
            decoder=EventDecoder(route.payloads, max_payload_bytes),
            handler=route.handler,
            emits={name: catalog.name(name, namespace) for name in route.emits},
            batch_handler=route.batch_handler,
        )
        for route in routes
    ]
