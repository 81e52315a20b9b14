"""The record-id store on the platform's database (PostgreSQL under `make test`): concurrent
claims of one id from several processes' worth of connections agree on a single first."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from services.validation.adapters.record_ids import (
    SqlRecordIds,
    table_name,
)
from services.validation.domain.duplicates import Claim, ClaimRequest, Sighting, classify
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


def test_batch_claims_agree_with_one_by_one_claims_on_sqlite_and_the_platform_database(
    settings: PlatformSettings, tmp_path: Path
) -> None:
    namespace = unique_name("idsb").replace("-", "")
    urls = {
        "sqlite": f"sqlite:///{tmp_path / 'batch.sqlite'}",
        "platform": settings.database_url_or_sqlite(str(tmp_path / "platform.sqlite")),
    }
    for url in urls.values():
        store = SqlRecordIds(create_database_engine(url), table_name(namespace))
        try:
            held = SourcePosition(topic="t", partition=0, offset=1)
            assert store.claim("shop", "o-held", held, "e-held").inserted
            requests = [
                ClaimRequest(
                    "shop", f"o-{n}", SourcePosition(topic="t", partition=1, offset=n), f"e{n}"
                )
                for n in range(1200)
            ]
            again = ClaimRequest(
                "shop", "o-7", SourcePosition(topic="t", partition=2, offset=5), "x"
            )
            redelivered = ClaimRequest("shop", "o-held", held, "e-held")
            duplicate = ClaimRequest(
                "shop", "o-held", SourcePosition(topic="t", partition=2, offset=9), "y"
            )
            claims = store.claim_many([*requests, again, redelivered, duplicate])

            assert [c.inserted for c in claims[:1200]] == [True] * 1200
            assert claims[1200] == Claim(requests[7].position, "e7", inserted=False)
            assert classify(claims[1200], again.position) == Sighting.DUPLICATE
            assert classify(claims[1201], held) == Sighting.REDELIVERY
            assert classify(claims[1202], duplicate.position) == Sighting.DUPLICATE
            assert claims[1202].first_event_id == "e-held"
            replay = store.claim_many(requests[:3])
            assert [classify(c, r.position) for c, r in zip(replay, requests[:3], strict=True)] == [
                Sighting.REDELIVERY
            ] * 3
        finally:
            store.drop()
