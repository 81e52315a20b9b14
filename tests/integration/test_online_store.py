"""The online store on SQLite and the platform's database, with and without its lookup cache:
the newest vector per entity wins, in SQL and in the cache alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.feature_store.adapters.online import OnlineStore
from services.feature_store.domain.lookup_cache import LookupCache
from shared.events.records import FeaturesComputed, SourcePosition
from shared.settings import PlatformSettings
from shared.sql import create_database_engine
from tests.integration.kafka_helpers import unique_name

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def computed(entity: str, minutes: int, offset: int, amount: float) -> FeaturesComputed:
    return FeaturesComputed(
        dataset="loans", spec_version=1, record_id=f"r-{entity}-{offset}", entity=entity,
        event_time=T0 + timedelta(minutes=minutes), features={"amount": amount},
        source=SourcePosition(topic="ns.data.validated", partition=0, offset=offset),
    )  # fmt: skip


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "platform"])
def database_url(request: pytest.FixtureRequest, settings: PlatformSettings, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'online.sqlite'}"
    return settings.database_url_or_sqlite(str(tmp_path / "platform.sqlite"))


def test_the_newest_vector_wins_in_sql_and_in_the_cache(database_url: str) -> None:
    namespace = unique_name("online").replace("-", "")
    engine = create_database_engine(database_url)
    clock = Clock()
    writer = OnlineStore(engine, namespace, LookupCache(100, 30, clock))
    other_worker = OnlineStore(engine, namespace, LookupCache(100, 30, clock))
    uncached = OnlineStore(engine, namespace)
    try:
        writer.upsert(
            [computed("a", 10, 1, 1.0), computed("a", 20, 2, 2.0), computed("b", 5, 3, 9.0)]
        )
        writer.upsert([computed("a", 15, 4, 99.0)])  # late and older: never replaces a's newest
        for store in (writer, uncached):
            assert store.get("loans", "a").features == {"amount": 2.0}
            assert store.get("loans", "b").features == {"amount": 9.0}
            assert store.get("loans", "nobody") is None
        assert len(writer.cache) == 2 and len(uncached.cache) == 0

        assert other_worker.get("loans", "a").features == {"amount": 2.0}  # read-through
        writer.upsert([computed("a", 30, 5, 3.0)])
        assert uncached.get("loans", "a").features == {"amount": 3.0}
        assert writer.get("loans", "a").features == {"amount": 3.0}
        assert other_worker.get("loans", "a").features == {"amount": 2.0}  # within its TTL
        clock.now += 30
        assert other_worker.get_many("loans", ["a", "b", "c"]).keys() == {"a", "b"}
        assert other_worker.get("loans", "a").features == {"amount": 3.0}
    finally:
        writer.table.drop(engine, checkfirst=True)
