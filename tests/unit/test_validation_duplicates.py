"""Duplicate record ids versus at-least-once redeliveries, and the store that tells them apart."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine

from services.validation.adapters.record_ids import (
    MemoryRecordIds,
    SqlRecordIds,
    table_name,
)
from services.validation.domain.duplicates import (
    Claim,
    ClaimRequest,
    RecordIds,
    Sighting,
    classify,
    duplicate_error,
    rejected_id,
    resolve_claims,
    validated_id,
)
from shared.events.records import SourcePosition
from shared.sql import create_database_engine

FIRST = SourcePosition(topic="ns.data.raw", partition=1, offset=10)
LATER = SourcePosition(topic="ns.data.raw", partition=1, offset=99)
OTHER_PARTITION = SourcePosition(topic="ns.data.raw", partition=2, offset=10)


def test_a_new_id_is_first_the_same_position_a_redelivery_another_a_duplicate() -> None:
    assert classify(Claim(FIRST, "e1", inserted=True), FIRST) == Sighting.FIRST
    assert classify(Claim(FIRST, "e1", inserted=False), FIRST) == Sighting.REDELIVERY
    assert classify(Claim(FIRST, "e1", inserted=False), LATER) == Sighting.DUPLICATE
    assert classify(Claim(FIRST, "e1", inserted=False), OTHER_PARTITION) == Sighting.DUPLICATE


def test_a_duplicate_names_the_first_position() -> None:
    problem = duplicate_error("order_id", "o-1", Claim(FIRST, "e1", inserted=False))
    assert problem.rule == "duplicate_id" and problem.field == "order_id"
    assert "ns.data.raw[1]@10" in problem.message and "e1" in problem.message
    assert problem.value == "o-1"


def test_output_ids_are_deterministic_per_input_and_outcome() -> None:
    assert validated_id("e1") == validated_id("e1") != validated_id("e2")
    assert rejected_id("e1", FIRST) == rejected_id("e1", FIRST)
    assert rejected_id("e1", FIRST) != validated_id("e1")
    assert rejected_id("e1", FIRST) != rejected_id("e1", LATER), "two raw messages, two outputs"


def sqlite_ids() -> SqlRecordIds:
    return SqlRecordIds(create_database_engine("sqlite://"), table_name("unit-test"))


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest) -> RecordIds:
    return MemoryRecordIds() if request.param == "memory" else sqlite_ids()


def test_the_store_keeps_the_first_claim(store: RecordIds) -> None:
    first = store.claim("shop", "o-1", FIRST, "e1")
    assert first == Claim(FIRST, "e1", inserted=True)
    again = store.claim("shop", "o-1", FIRST, "e1")
    assert again == Claim(FIRST, "e1", inserted=False)
    assert classify(again, FIRST) == Sighting.REDELIVERY
    other = store.claim("shop", "o-1", LATER, "e9")
    assert other == Claim(FIRST, "e1", inserted=False)
    assert classify(other, LATER) == Sighting.DUPLICATE
    assert store.claim("other", "o-1", LATER, "e9").inserted, "ids are per dataset"


def test_concurrent_claims_agree_on_one_first(tmp_path) -> None:
    engine = create_database_engine(f"sqlite:///{tmp_path}/ids/record-ids.sqlite")
    store = SqlRecordIds(engine, table_name("race"))
    positions = [SourcePosition(topic="t", partition=0, offset=n) for n in range(8)]
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda p: store.claim("shop", "o-1", p, f"e{p.offset}"), positions))
    assert sum(c.inserted for c in claims) == 1
    assert len({c.first for c in claims}) == 1
    assert (tmp_path / "ids" / "record-ids.sqlite").exists(), "the folder is created"


def test_table_names_carry_the_namespace_and_fit_postgresql() -> None:
    assert table_name("mlops") == "validation_record_ids_mlops"
    assert table_name("replay-3") == "validation_record_ids_replay_3"
    long = table_name("n" * 100)
    assert len(long) <= 63 and long != table_name("n" * 99)


def test_the_sql_store_survives_a_new_engine_on_the_same_file(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/ids.sqlite"
    SqlRecordIds(create_database_engine(url), "ids").claim("shop", "o-1", FIRST, "e1")
    reopened = SqlRecordIds(create_engine(url), "ids")
    assert reopened.claim("shop", "o-1", LATER, "e2") == Claim(FIRST, "e1", inserted=False)


def test_resolved_batch_claims_make_later_requests_of_an_id_duplicates_of_the_first() -> None:
    first, second, third = (SourcePosition(topic="raw", partition=0, offset=n) for n in (1, 2, 3))
    held = SourcePosition(topic="raw", partition=1, offset=0)
    requests = [
        ClaimRequest("loans", "a", first, "e1"),
        ClaimRequest("loans", "a", second, "e2"),
        ClaimRequest("loans", "b", third, "e3"),
    ]
    holder = Claim(held, "e0", inserted=False)
    claims = resolve_claims(requests, won={("loans", "a")}, holders={("loans", "b"): holder})

    assert claims[0] == Claim(first, "e1", inserted=True)
    assert claims[1] == Claim(first, "e1", inserted=False)
    assert classify(claims[1], second) == Sighting.DUPLICATE
    assert claims[2] == holder


def test_a_batch_claim_the_store_neither_won_nor_found_is_an_error() -> None:
    request = ClaimRequest("loans", "a", SourcePosition(topic="raw", partition=0, offset=1), "e")
    with pytest.raises(LookupError, match="'a'"):
        resolve_claims([request], won=set(), holders={})
