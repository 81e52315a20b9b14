"""The registry's use cases: register a trained model, move aliases, roll back, approve, tag.

Each use case is one database transaction. Changes made over HTTP publish their lifecycle
event (`publish`, which waits for Kafka's confirmation) before the transaction commits, so a
change Kafka did not confirm is rolled back. Registration returns its events instead: the
consumer runner publishes them, and a redelivered ModelTrained gets the very same events back
from the audit trail.

Several registries may share the database (replicas, a rebalance that hands a ModelTrained to
two of them). Every change to a model locks its row first (SELECT ... FOR UPDATE; on SQLite
every writer takes the database lock), so changes to one model apply one after the other:
version numbers are taken under the lock, promotions are audited and the alias set in the
order they commit, and registration looks for its event again once it holds the lock. The
first version of a new model is the one race the lock cannot cover (there is no row to lock
yet): the unique model name refuses the second insert, and registration starts over
(`REGISTRATION_ATTEMPTS`), finding the model, or the version, the other registry committed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from services.registry.adapters.database import ping, reader
from services.registry.adapters.orm import (
    AuditEntry,
    Deployment,
    DriftRecord,
    ModelVersion,
    RegisteredModel,
)
from services.registry.adapters.repository import Repository
from services.registry.domain.errors import Conflict, NotFound
from services.registry.domain.events import (
    CHALLENGER,
    CHAMPION,
    Action,
    caused_event,
    new_event,
)
from services.registry.domain.policy import Decision, Outcome, PromotionPolicy
from services.registry.domain.rollback import NothingToRollBack, rollback_target
from shared.events.catalog import payload_type
from shared.events.envelope import Event, utc_now
from shared.events.models import (
    ArtifactRef,
    DriftDetected,
    ModelDeployed,
    ModelPromoted,
    ModelRegistered,
    ModelRejected,
    ModelRolledBack,
    ModelTrained,
)

POLICY = "policy"
REGISTRATION_ATTEMPTS = 3
"""Tries of a registration that lost a race on a unique constraint (see the docstring)."""
Publish = Callable[[Sequence[Event[Any]]], None]
"""Writes lifecycle events and returns once Kafka confirmed them; raises PublishFailed."""


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def artifact_of(version: ModelVersion) -> ArtifactRef:
    return ArtifactRef(
        uri=version.artifact_uri,
        sha256=version.artifact_sha256,
        format=version.artifact_format,  # type: ignore[arg-type]
        size_bytes=version.artifact_size_bytes,
        trusted_types=list(version.artifact_trusted_types),
    )


def stored_event(document: str) -> Event[Any]:
    """An event as the audit trail kept it, typed again."""
    kind = payload_type(json.loads(document)["type"])
    return Event[kind].model_validate_json(document)  # type: ignore[valid-type]


class Registry:
    def __init__(
        self,
        engine: Engine,
        policy: PromotionPolicy,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self._clock = clock
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(reader(engine), expire_on_commit=False)

    @contextmanager
    def unit(self) -> Iterator[Repository]:
        """One transaction: committed when the block ends, rolled back when it raises."""
        with self._sessions.begin() as session:
            yield Repository(session)

    @contextmanager
    def reading(self) -> Iterator[Repository]:
        """One read-only transaction."""
        with self._read_sessions.begin() as session:
            yield Repository(session)

    def ping(self) -> None:
        ping(self.engine)

    # --- ModelTrained ------------------------------------------------------------------------

    def register_trained(self, event: Event[ModelTrained]) -> list[Event[Any]]:
        """Registers the next version and applies the policy, once per event id; a redelivered
        event registers nothing and gets the events of its first delivery again, whichever
        registry handled it first."""
        for attempt in range(1, REGISTRATION_ATTEMPTS + 1):
            try:
                return self._register_once(event)
            except IntegrityError:
                if attempt == REGISTRATION_ATTEMPTS:
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _register_once(self, event: Event[ModelTrained]) -> list[Event[Any]]:
        with self.unit() as repo:
            if repo.version_by_source_event(event.id) is not None:
                return self._emitted_for(repo, event)
            model = repo.model(event.data.model_name, lock=True)
            if model is None:
                model = repo.add_model(event.data.model_name, self._clock())
            elif repo.version_by_source_event(event.id) is not None:
                return self._emitted_for(repo, event)  # registered while this one waited
            return self._register(repo, model, event)

    @staticmethod
    def _emitted_for(repo: Repository, event: Event[ModelTrained]) -> list[Event[Any]]:
        return [stored_event(document) for document in repo.emitted_for(event.id)]

    def _register(
        self, repo: Repository, model: RegisteredModel, event: Event[ModelTrained]
    ) -> list[Event[Any]]:
        trained, now = event.data, self._clock()
        version = repo.add_version(
            _version_row(model, repo.latest_version_number(model) + 1, event, now)
        )
        registered = caused_event(
            ModelRegistered(
                model_name=model.name,
                version=version.version,
                run_id=trained.run_id,
                artifact=trained.artifact,
                evaluation=trained.evaluation,
            ),
            model.name,
            event,
        )
        self._audit(
            repo,
            model,
            Action.REGISTERED,
            POLICY,
            _registration_reason(trained),
            to_version=version.version,
            caused_by=event,
            emitted=registered,
        )
        champion = repo.alias_holder(model, CHAMPION)
        decision = self.policy.decide(
            trained.evaluation, trained.baseline, champion.version if champion else None
        )
        return [registered, self._apply(repo, model, version, decision, event)]

    def _apply(
        self,
        repo: Repository,
        model: RegisteredModel,
        version: ModelVersion,
        decision: Decision,
        event: Event[ModelTrained],
    ) -> Event[Any]:
        if decision.outcome is Outcome.REJECT:
            rejected = caused_event(
                ModelRejected(
                    model_name=model.name, version=version.version, reason=decision.reason
                ),
                model.name,
                event,
            )
            self._audit(
                repo,
                model,
                Action.REJECTED,
                POLICY,
                decision.reason,
                to_version=version.version,
                caused_by=event,
                emitted=rejected,
            )
            return rejected
        promote = decision.outcome is Outcome.PROMOTE
        alias = CHAMPION if promote else CHALLENGER
        action = Action.PROMOTED if promote else Action.AWAITING_APPROVAL
        return self._move_alias(
            repo, model, alias, version, decision.reason, POLICY, action, caused_by=event
        )

    # --- what lineage keeps beside the versions ----------------------------------------------

    def record_drift(self, event: Event[DriftDetected]) -> bool:
        """Keeps a DriftDetected and the trace it came in; False when it was kept already (by
        this registry or another)."""
        try:
            return self._record_drift(event)
        except IntegrityError:
            return False

    def _record_drift(self, event: Event[DriftDetected]) -> bool:
        with self.unit() as repo:
            if repo.drift(event.id) is not None:
                return False
            repo.add_drift(
                DriftRecord(
                    event_id=event.id,
                    model_name=event.data.model_name,
                    event_json=event.to_json_bytes().decode(),
                    trace_id=current_trace_id(),
                    received_at=self._clock(),
                )
            )
            return True

    def record_deployment(self, event: Event[ModelDeployed]) -> bool:
        """Keeps a serving instance's ModelDeployed; False when it was kept already (by this
        registry or another)."""
        try:
            return self._record_deployment(event)
        except IntegrityError:
            return False

    def _record_deployment(self, event: Event[ModelDeployed]) -> bool:
        deployed = event.data
        with self.unit() as repo:
            if repo.deployment(event.id) is not None:
                return False
            repo.add_deployment(
                Deployment(
                    event_id=event.id,
                    model_name=deployed.model_name,
                    version=deployed.version,
                    alias=deployed.alias,
                    instance=deployed.instance,
                    cause_event_id=deployed.cause_event_id,
                    deployed_at=_utc(deployed.deployed_at),
                    trace_id=current_trace_id(),
                )
            )
            return True

    # --- changes over HTTP -------------------------------------------------------------------

    def set_alias(
        self, name: str, alias: str, number: int, reason: str, owner: str, publish: Publish
    ) -> dict[str, Any]:
        with self.unit() as repo:
            model = existing_model(repo, name, lock=True)
            version = existing_version(repo, model, number)
            holder = repo.alias_holder(model, alias)
            if holder is not None and holder.id == version.id:
                return _change(model.name, False, alias, number, number, reason=reason)
            promoted = self._move_alias(
                repo, model, alias, version, reason, owner, Action.ALIAS_SET
            )
            publish([promoted])
            return _announced(promoted)

    def approve(
        self, name: str, number: int, reason: str | None, owner: str, publish: Publish
    ) -> dict[str, Any]:
        with self.unit() as repo:
            model = existing_model(repo, name, lock=True)
            version = existing_version(repo, model, number)
            challenger = repo.alias_holder(model, CHALLENGER)
            if challenger is None or challenger.id != version.id:
                waiting = f"v{challenger.version} is" if challenger else "no version is"
                raise Conflict(f"v{number} of {name} is not waiting for approval ({waiting})")
            champion = repo.alias_holder(model, CHAMPION)
            if champion is not None and champion.id == version.id:
                raise Conflict(f"v{number} of {name} is the champion already")
            why = reason or f"approved by {owner}"
            promoted = self._move_alias(repo, model, CHAMPION, version, why, owner, Action.APPROVED)
            repo.remove_alias(model, CHALLENGER)
            publish([promoted])
            return _announced(promoted)

    def rollback(
        self, name: str, alias: str, reason: str, owner: str, publish: Publish
    ) -> dict[str, Any]:
        with self.unit() as repo:
            model = existing_model(repo, name, lock=True)
            current = repo.alias_holder(model, alias)
            if current is None:
                raise Conflict(f"{name} has no {alias} to roll back")
            try:
                number = rollback_target(repo.alias_history(model, alias), current.version, alias)
            except NothingToRollBack as nothing:
                raise Conflict(f"{name}: {nothing}") from None
            target = existing_version(repo, model, number)
            repo.set_alias(model, alias, target, self._clock())
            rolled_back = new_event(
                ModelRolledBack(
                    model_name=model.name,
                    version=number,
                    from_version=current.version,
                    alias=alias,
                    artifact=artifact_of(target),
                    reason=reason,
                    decided_by=owner,
                ),
                model.name,
            )
            self._audit(
                repo,
                model,
                Action.ROLLED_BACK,
                owner,
                reason,
                alias=alias,
                from_version=current.version,
                to_version=number,
                emitted=rolled_back,
            )
            publish([rolled_back])
            return _announced(rolled_back)

    def set_tag(
        self, name: str, number: int | None, key: str, value: str, owner: str
    ) -> dict[str, Any]:
        with self.unit() as repo:
            model = existing_model(repo, name, lock=True)
            now = self._clock()
            if number is None:
                repo.set_model_tag(model, key, value, now)
            else:
                repo.set_version_tag(existing_version(repo, model, number), key, value, now)
            reason = f"tag {key}={value!r}" + (f" on v{number}" if number else "")
            self._audit(repo, model, Action.TAG_SET, owner, reason, to_version=number)
            return _change(model.name, True, version=number, reason=reason)

    def delete_tag(self, name: str, number: int | None, key: str, owner: str) -> dict[str, Any]:
        with self.unit() as repo:
            model = existing_model(repo, name, lock=True)
            if number is None:
                deleted = repo.delete_model_tag(model, key)
            else:
                deleted = repo.delete_version_tag(existing_version(repo, model, number), key)
            where = f"{name} v{number}" if number else name
            if not deleted:
                raise NotFound(f"{where} has no tag {key!r}")
            reason = f"tag {key} removed" + (f" from v{number}" if number else "")
            self._audit(repo, model, Action.TAG_DELETED, owner, reason, to_version=number)
            return _change(model.name, True, version=number, reason=reason)

    # --- shared steps ------------------------------------------------------------------------

    def _move_alias(
        self,
        repo: Repository,
        model: RegisteredModel,
        alias: str,
        version: ModelVersion,
        reason: str,
        actor: str,
        action: str,
        caused_by: Event[Any] | None = None,
    ) -> Event[Any]:
        previous = repo.alias_holder(model, alias)
        repo.set_alias(model, alias, version, self._clock())
        payload = ModelPromoted(
            model_name=model.name,
            version=version.version,
            alias=alias,
            previous_version=previous.version if previous else None,
            artifact=artifact_of(version),
            reason=reason,
            decided_by=actor,
        )
        if caused_by is None:
            promoted = new_event(payload, model.name)
        else:
            promoted = caused_event(payload, model.name, caused_by)
        self._audit(
            repo,
            model,
            action,
            actor,
            reason,
            alias=alias,
            from_version=payload.previous_version,
            to_version=version.version,
            caused_by=caused_by,
            emitted=promoted,
        )
        return promoted

    def _audit(
        self,
        repo: Repository,
        model: RegisteredModel,
        action: str,
        actor: str,
        reason: str,
        *,
        alias: str | None = None,
        from_version: int | None = None,
        to_version: int | None = None,
        caused_by: Event[Any] | None = None,
        emitted: Event[Any] | None = None,
    ) -> None:
        repo.append(
            AuditEntry(
                model_id=model.id,
                at=self._clock(),
                action=action,
                actor=actor,
                reason=reason,
                alias=alias,
                from_version=from_version,
                to_version=to_version,
                caused_by_event_id=caused_by.id if caused_by else None,
                event_id=emitted.id if emitted else None,
                event_type=emitted.type if emitted else None,
                event_json=emitted.to_json_bytes().decode() if emitted else None,
                trace_id=current_trace_id(),
            )
        )


def existing_model(repo: Repository, name: str, lock: bool = False) -> RegisteredModel:
    model = repo.model(name, lock=lock)
    if model is None:
        names = [m.name for m in repo.models()]
        known = (
            ", ".join(names[:20]) + (", ..." if len(names) > 20 else "") if names else "none yet"
        )
        raise NotFound(f"no model named {name!r} (models: {known})")
    return model


def existing_version(repo: Repository, model: RegisteredModel, number: int) -> ModelVersion:
    version = repo.version(model, number)
    if version is None:
        latest = repo.latest_version_number(model)
        known = f"its versions are 1..{latest}" if latest else "it has no versions"
        raise NotFound(f"{model.name} has no version {number} ({known})")
    return version


def _version_row(
    model: RegisteredModel, number: int, event: Event[ModelTrained], now: datetime
) -> ModelVersion:
    trained = event.data
    return ModelVersion(
        model_id=model.id,
        version=number,
        run_id=trained.run_id,
        estimator=trained.estimator,
        params=trained.params,
        seed=trained.seed,
        artifact_uri=trained.artifact.uri,
        artifact_sha256=trained.artifact.sha256,
        artifact_format=trained.artifact.format,
        artifact_size_bytes=trained.artifact.size_bytes,
        artifact_trusted_types=list(trained.artifact.trusted_types),
        evaluation=trained.evaluation.model_dump(mode="json"),
        baseline=trained.baseline.model_dump(mode="json") if trained.baseline else None,
        lineage=trained.lineage.model_dump(mode="json"),
        trigger=trained.lineage.trigger.model_dump(mode="json"),
        trained_at=_utc(trained.trained_at),
        created_at=now,
        source_event_id=event.id,
        source_trace_id=current_trace_id(),
    )


def _utc(moment: datetime) -> datetime:
    """A time without a zone is taken to be UTC, the platform's only zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _registration_reason(trained: ModelTrained) -> str:
    trigger = trained.lineage.trigger
    why = f"{trigger.kind} trigger" + (f" ({trigger.reason})" if trigger.reason else "")
    who = f", requested by {trigger.requested_by}" if trigger.requested_by else ""
    return (
        f"run {trained.run_id} trained {trained.estimator} on {trained.lineage.dataset}: {why}{who}"
    )


def _change(
    name: str,
    changed: bool,
    alias: str | None = None,
    version: int | None = None,
    previous: int | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    return {
        "model_name": name,
        "changed": changed,
        "alias": alias,
        "version": version,
        "previous_version": previous,
        "reason": reason,
    }


def _announced(event: Event[Any]) -> dict[str, Any]:
    data = event.data
    previous = getattr(data, "previous_version", None) or getattr(data, "from_version", None)
    answer = _change(data.model_name, True, data.alias, data.version, previous, data.reason)
    return {**answer, "event_id": event.id, "event_type": event.type}
