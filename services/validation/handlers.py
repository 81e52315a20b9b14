"""What validation consumes and emits: data.raw in, exactly one of data.validated or
data.rejected out per raw message, whatever the message holds.

For each message: decode (domain/decoding.py) -> find the spec version the record names, or
the latest -> run every rule (domain/rules.py) -> claim the record id (domain/duplicates.py)
-> emit, and update the data-quality statistics (domain/quality.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from services.validation.domain.decoding import MalformedRaw
from services.validation.domain.duplicates import (
    Claim,
    ClaimRequest,
    RecordIds,
    Sighting,
    classify,
    duplicate_error,
    rejected_id,
    validated_id,
)
from services.validation.domain.quality import QualityStats
from services.validation.domain.recent import RecentRejections
from services.validation.domain.rejections import bounded
from services.validation.domain.rules import Checked, check_record, error
from shared.datasets.registry import UnknownDataset
from shared.datasets.spec import DatasetSpec, VersionedSpec
from shared.datasets.values import wire
from shared.events.envelope import Event
from shared.events.records import (
    FieldError,
    RecordIngested,
    RecordRejected,
    RecordValidated,
    SourcePosition,
)
from shared.kafka.consumer import Emit, MessageInfo
from shared.kafka.routes import Route

log = logging.getLogger(__name__)

SOURCE: Final = "validation"
CONSUMES: Final = "data.raw"
VALIDATED: Final = "data.validated"
REJECTED: Final = "data.rejected"


class Specs(Protocol):
    """What validation needs of shared.datasets.registry.SpecRegistry."""

    def refresh(self, timeout_s: float = 10.0) -> None: ...
    def names(self) -> list[str]: ...
    def latest(self, name: str) -> VersionedSpec: ...
    def get(self, name: str, version: int) -> VersionedSpec: ...


@dataclass
class Deps:
    specs: Specs
    record_ids: RecordIds
    stats: QualityStats
    refresh_interval_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    max_rejection_bytes: int = 262_144
    """PlatformSettings.max_rejection_bytes: longer rejections are summarized."""
    recent: RecentRejections | None = None
    """The latest rejections per dataset, for GET /rejections/{dataset}."""


@dataclass(frozen=True)
class _Passed:
    """A record that passed every rule; only its id's claim is left to decide."""

    event: Event[Any]
    record: RecordIngested
    position: SourcePosition
    versioned: VersionedSpec
    checked: Checked

    @property
    def claim_request(self) -> ClaimRequest:
        assert self.checked.record_id is not None
        return ClaimRequest(
            self.record.dataset, self.checked.record_id, self.position, self.event.id
        )


class Validator:
    """The data.raw handler: one RecordValidated or RecordRejected per message."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._refreshed_at: float | None = None

    def known_datasets(self) -> list[str]:
        return self._deps.specs.names()

    def _specs(self) -> Specs:
        """The registry, re-read at most every refresh_interval_s for new spec versions."""
        now = self._deps.clock()
        if self._refreshed_at is None or now - self._refreshed_at >= self._deps.refresh_interval_s:
            self._refreshed_at = now
            try:
                self._deps.specs.refresh()
            except Exception as problem:  # the versions already read still serve
                log.warning("spec registry refresh failed, using the versions known: %s", problem)
        return self._deps.specs

    def handle(self, event: Event[Any], info: MessageInfo) -> list[Emit]:
        checked = self._check(event, info)
        if isinstance(checked, Emit):
            return [checked]
        claim = self._deps.record_ids.claim_many([checked.claim_request])[0]
        return [self._claimed(checked, claim)]

    def handle_batch(self, items: Sequence[tuple[Event[Any], MessageInfo]]) -> list[list[Emit]]:
        """`handle` for a run of messages, with one record-id store round trip for all."""
        checked = [self._check(event, info) for event, info in items]
        passed = [c for c in checked if isinstance(c, _Passed)]
        claims = iter(self._deps.record_ids.claim_many([p.claim_request for p in passed]))
        return [[c] if isinstance(c, Emit) else [self._claimed(c, next(claims))] for c in checked]

    def _check(self, event: Event[Any], info: MessageInfo) -> Emit | _Passed:
        """The rejection of a message, or the record that passed every rule but the id's."""
        position = SourcePosition(topic=info.topic, partition=info.partition, offset=info.offset)
        if isinstance(event.data, MalformedRaw):
            return self._malformed(event, event.data, position)
        record: RecordIngested = event.data
        specs = self._specs()
        try:
            if record.spec_version is None:
                versioned = specs.latest(record.dataset)
            else:
                versioned = specs.get(record.dataset, record.spec_version)
        except UnknownDataset as unknown:
            self._deps.stats.observe_unattributed("unknown_dataset")
            problem = error(None, "unknown_dataset", str(unknown), record.dataset)
            return self._rejected(event, record, position, [problem])
        except LookupError as unknown:
            latest = specs.latest(record.dataset)
            problem = error(None, "unknown_version", str(unknown), record.spec_version)
            self._deps.stats.observe(record.dataset, latest.spec, record.values, [problem])
            return self._rejected(event, record, position, [problem])

        spec = versioned.spec
        checked = check_record(record, spec, event.id, info.key)
        if not checked.ok:
            self._deps.stats.observe(record.dataset, spec, record.values, checked.errors)
            return self._rejected(event, record, position, checked.errors, versioned, checked)
        return _Passed(event, record, position, versioned, checked)

    def _claimed(self, passed: _Passed, claim: Claim) -> Emit:
        event, record, position = passed.event, passed.record, passed.position
        versioned, checked = passed.versioned, passed.checked
        sighting = classify(claim, position)
        if sighting == Sighting.DUPLICATE:
            assert checked.record_id is not None
            problem = duplicate_error(versioned.spec.record_id, checked.record_id, claim)
            self._deps.stats.observe(record.dataset, versioned.spec, record.values, [problem])
            return self._rejected(event, record, position, [problem], versioned, checked)
        if sighting == Sighting.FIRST:  # a redelivery was counted the first time
            self._deps.stats.observe(
                record.dataset, versioned.spec, record.values, [], checked.out_of_range
            )
        return self._validated(event, record, position, versioned, checked)

    def _malformed(
        self, event: Event[Any], malformed: MalformedRaw, position: SourcePosition
    ) -> Emit:
        problems = malformed.errors or [error(None, "malformed", malformed.reason)]
        name = malformed.dataset
        if name is not None and name in self.known_datasets():
            self._deps.stats.observe(name, None, None, problems)
        else:
            self._deps.stats.observe_unattributed(problems[0].rule)
        payload = RecordRejected(
            dataset=malformed.dataset,
            entity=malformed.entity,
            values=malformed.values,
            errors=problems,
            source=position,
        )
        payload = bounded(payload, self._deps.max_rejection_bytes)
        output = _output(rejected_id(event.id, position), payload, event, malformed.entity)
        self._remember(output, payload)
        return Emit(REJECTED, output, key=malformed.entity)

    def _rejected(
        self,
        event: Event[Any],
        record: RecordIngested,
        position: SourcePosition,
        errors: list[FieldError],
        versioned: VersionedSpec | None = None,
        checked: Checked | None = None,
    ) -> Emit:
        entity = checked.entity if checked is not None and checked.entity else record.entity
        payload = RecordRejected(
            dataset=record.dataset,
            spec_version=versioned.version if versioned is not None else record.spec_version,
            record_id=checked.record_id if checked is not None else None,
            entity=entity,
            values={name: wire(value) for name, value in record.values.items()},
            errors=errors,
            source=position,
        )
        payload = bounded(payload, self._deps.max_rejection_bytes)
        output = _output(rejected_id(event.id, position), payload, event, entity)
        self._remember(output, payload)
        return Emit(REJECTED, output, key=entity)

    def _remember(self, output: Event[Any], payload: RecordRejected) -> None:
        if self._deps.recent is not None:
            self._deps.recent.add(output.id, output.time, payload)

    def _validated(
        self,
        event: Event[Any],
        record: RecordIngested,
        position: SourcePosition,
        versioned: VersionedSpec,
        checked: Checked,
    ) -> Emit:
        assert checked.entity is not None and checked.record_id is not None
        assert checked.event_time is not None
        payload = RecordValidated(
            dataset=record.dataset,
            spec_version=versioned.version,
            record_id=checked.record_id,
            entity=checked.entity,
            event_time=checked.event_time,
            values=checked.values,
            label=checked.label,
            source=position,
            out_of_range=checked.out_of_range,
        )
        output = _output(validated_id(event.id), payload, event, checked.entity)
        return Emit(VALIDATED, output, key=checked.entity)


def _output(event_id: str, payload: Any, caused_by: Event[Any], subject: str | None) -> Event[Any]:
    """An output event with a deterministic id, carrying the input's correlation."""
    return Event[type(payload)](  # type: ignore[misc]
        id=event_id,
        source=SOURCE,
        type=payload.event_type,
        subject=subject,
        correlationid=caused_by.correlationid or caused_by.id,
        causationid=caused_by.id,
        data=payload,
    )


def declared_spec(specs: Specs, name: str) -> DatasetSpec | None:
    try:
        return specs.latest(name).spec
    except LookupError:
        return None


def routes(deps: Deps) -> list[Route]:
    """data.raw -> data.validated | data.rejected. Bootstrap swaps the decoder for RawDecoder,
    which also accepts bare records and turns junk into MalformedRaw instead of dead letters."""
    validator = Validator(deps)
    return [
        Route(
            CONSUMES,
            (RecordIngested,),
            validator.handle,
            emits=(VALIDATED, REJECTED),
            batch_handler=validator.handle_batch,
        )
    ]
