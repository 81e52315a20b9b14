"""Duplicates versus redeliveries, and the ids of what validation emits. Pure.

The first raw message that passes every rule with a given (dataset, record id) claims it,
at its position (topic, partition, offset). Seeing the id again:

- at the same position is an at-least-once redelivery of that very message (a crash or a
  rebalance before its offset was committed): the same result is emitted again, with the same
  event id, and downstream deduplicates it by id;
- at another position is a real duplicate: it is rejected with rule `duplicate_id`, naming the
  first position.

Only records that pass every other rule claim their id, so a corrected resubmission of a
rejected record is accepted, and a rejected record is never also reported as a duplicate.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from shared.events.records import FieldError, SourcePosition


class Sighting(StrEnum):
    FIRST = "first"
    REDELIVERY = "redelivery"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Claim:
    """Who holds a record id: the first position and event id seen with it."""

    first: SourcePosition
    first_event_id: str
    inserted: bool


@dataclass(frozen=True)
class ClaimRequest:
    dataset: str
    record_id: str
    position: SourcePosition
    event_id: str

    @property
    def key(self) -> tuple[str, str]:
        return self.dataset, self.record_id


class RecordIds(Protocol):
    """Stores (dataset, record id) -> first position; `claim` and `claim_many` are atomic."""

    def claim(
        self, dataset: str, record_id: str, position: SourcePosition, event_id: str
    ) -> Claim: ...

    def claim_many(self, requests: Sequence[ClaimRequest]) -> list[Claim]:
        """The claims of `requests` in order, as if claimed one after the other."""
        ...


def resolve_claims(
    requests: Sequence[ClaimRequest],
    won: set[tuple[str, str]],
    holders: Mapping[tuple[str, str], Claim],
) -> list[Claim]:
    """Claims in request order, once the store said which first requests per id it inserted
    (`won`) and who holds the other ids (`holders`): a later request for an id claimed earlier
    in the same batch sees that earlier request as the holder."""
    claims: list[Claim] = []
    held: dict[tuple[str, str], Claim] = dict(holders)
    for request in requests:
        holder = held.get(request.key)
        if holder is None and request.key in won:
            claims.append(Claim(request.position, request.event_id, inserted=True))
            held[request.key] = Claim(request.position, request.event_id, inserted=False)
            continue
        if holder is None:
            raise LookupError(f"no holder for record id {request.record_id!r}")
        claims.append(holder)
    return claims


def classify(claim: Claim, position: SourcePosition) -> Sighting:
    if claim.inserted:
        return Sighting.FIRST
    if claim.first == position:
        return Sighting.REDELIVERY
    return Sighting.DUPLICATE


def describe(position: SourcePosition) -> str:
    return f"{position.topic}[{position.partition}]@{position.offset}"


def duplicate_error(field: str | None, record_id: str, claim: Claim) -> FieldError:
    return FieldError(
        field=field,
        rule="duplicate_id",
        message=(
            f"record id {record_id!r} was first seen at {describe(claim.first)} "
            f"(event {claim.first_event_id})"
        ),
        value=record_id,
    )


def validated_id(input_event_id: str) -> str:
    """The id of the RecordValidated for an input event: the same on every redelivery."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{input_event_id}/validated"))


def rejected_id(input_event_id: str, position: SourcePosition) -> str:
    """The id of the RecordRejected for an input message: the same on every redelivery.

    It also names the position: the same envelope published twice is two raw messages, and
    each must give its own rejection, or validated + rejected would fall short of raw.
    """
    key = f"{input_event_id}/rejected/{position.topic}/{position.partition}/{position.offset}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key))
