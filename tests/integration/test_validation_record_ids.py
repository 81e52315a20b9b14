"""The record-id store on the platform's database (PostgreSQL under `make test`): concurrent
claims of one id from several processes' worth of connections agree on a single first."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from services.validation.adapters.record_ids import (
    SqlRecordIds,
    table_name,
)
from services.validation.domain.duplicates import Claim, Sighting, classify
from shared.events.records import SourcePosition
from shared.settings import PlatformSettings
from shared.sql import create_database_engine
from tests.integration.kafka_helpers import unique_name


def test_concurrent_claims_agree_and_redeliveries_are_told_from_duplicates(
    settings: PlatformSettings, tmp_path: Path
) -> None:
    url = settings.database_url_or_sqlite(str(tmp_path / "validation.sqlite"))
    namespace = unique_name("ids").replace("-", "")
    stores = [SqlRecordIds(create_database_engine(url), table_name(namespace)) for _ in range(4)]
    try:
        positions = [SourcePosition(topic="t", partition=n % 3, offset=n) for n in range(16)]
        with ThreadPoolExecutor(16) as pool:
            claims = list(
                pool.map(
                    lambda p: stores[p.offset % 4].claim("shop", "o-1", p, f"e{p.offset}"),
                    positions,
                )
            )
        assert sum(claim.inserted for claim in claims) == 1
        [first] = {claim.first for claim in claims}
        winner = f"e{first.offset}"
        assert all(claim.first_event_id == winner for claim in claims)

        again = stores[0].claim("shop", "o-1", first, winner)
        assert again == Claim(first, winner, inserted=False)
        assert classify(again, first) == Sighting.REDELIVERY
        other = SourcePosition(topic="t", partition=0, offset=999)
        assert classify(stores[1].claim("shop", "o-1", other, "e999"), other) == Sighting.DUPLICATE
        long_id = "x" * 200
        assert stores[2].claim("shop", long_id, other, "e999").inserted
    finally:
        stores[0].drop()
