"""The loop page's timeline: the events that matter, gathered from several services' answers
and merged newest first. Pure: it reads the JSON the services answered."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote


@dataclass(frozen=True)
class TimelineEvent:
    type: str
    at: datetime
    model: str | None
    version: int | None
    text: str

    @property
    def link(self) -> str | None:
        if self.model is None:
            return None
        name = quote(self.model, safe="")
        if self.version is None:
            return f"/models/{name}"
        return f"/models/{name}/versions/{self.version}"

    def as_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "at": self.at.isoformat(),
            "model": self.model,
            "version": self.version,
            "text": self.text,
            "link": self.link,
        }


def parse_time(value: Any) -> datetime | None:
    """An ISO string or epoch seconds as an aware datetime (UTC when naive)."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def drift_events(drifts: Iterable[Mapping[str, Any]]) -> list[TimelineEvent]:
    """Monitoring's recent DriftDetected envelopes."""
    events = []
    for envelope in drifts:
        data = envelope.get("data") or {}
        at = parse_time(data.get("detected_at") or envelope.get("time"))
        if at is None:
            continue
        text = (
            f"drift in {data.get('signal', '?')} ({data.get('signal_kind', '?')}) "
            f"by {data.get('detector', '?')} on {data.get('dataset', '?')}"
        )
        events.append(
            TimelineEvent(
                "DriftDetected", at, data.get("model_name"), data.get("model_version"), text
            )
        )
    return events


def decision_events(decisions: Iterable[Mapping[str, Any]]) -> list[TimelineEvent]:
    """Monitoring's retraining decisions; only triggers are retrains decided."""
    events = []
    for row in decisions:
        if row.get("action") != "trigger":
            continue
        at = parse_time(row.get("decided_at"))
        if at is None:
            continue
        outcome = f" ({row['outcome']})" if row.get("outcome") else ""
        text = f"retrain decided: {row.get('reason', '')}{outcome}"
        events.append(TimelineEvent("RetrainDecided", at, row.get("model_name"), None, text))
    return events


def version_events(versions: Iterable[Mapping[str, Any]]) -> list[TimelineEvent]:
    """The registry's versions: each one is a training that ended in a ModelTrained."""
    events = []
    for version in versions:
        at = parse_time(version.get("created_at"))
        if at is None:
            continue
        metric = version.get("primary_metric")
        value = version.get("primary_metric_value")
        score = f", {metric}={_number(value)}" if metric else ""
        trigger = version.get("trigger") or "unknown trigger"
        text = f"trained v{version.get('version')} ({trigger}{score})"
        events.append(
            TimelineEvent(
                "ModelTrained", at, version.get("model_name"), version.get("version"), text
            )
        )
    return events


AUDIT_TYPES = {
    "promoted": "ModelPromoted",
    "approved": "ModelPromoted",
    "alias_set": "ModelPromoted",
    "rejected": "ModelRejected",
    "awaiting_approval": "AwaitingApproval",
    "rolled_back": "ModelRolledBack",
}
"""The registry's audit actions the timeline shows (registrations are the ModelTrained)."""


def audit_events(model: str, audit: Iterable[Mapping[str, Any]]) -> list[TimelineEvent]:
    """A model's audit trail: promotions, rejections and rollbacks (tags are left out)."""
    events = []
    for entry in audit:
        kind = _audit_type(entry)
        at = parse_time(entry.get("at"))
        if kind is None or at is None:
            continue
        version = entry.get("to_version") or entry.get("from_version")
        alias = f" to {entry['alias']}" if entry.get("alias") else ""
        text = f"{entry.get('action')}{alias} v{version} by {entry.get('actor')}: {entry.get('reason')}"
        events.append(TimelineEvent(kind, at, model, version, text))
    return events


def deployment_events(
    model: str, version: int, deployments: Iterable[Mapping[str, Any]]
) -> list[TimelineEvent]:
    events = []
    for deployment in deployments:
        at = parse_time(deployment.get("deployed_at"))
        if at is None:
            continue
        text = f"v{version} deployed as {deployment.get('alias')} on {deployment.get('instance')}"
        events.append(TimelineEvent("ModelDeployed", at, model, version, text))
    return events


def merge(groups: Sequence[Iterable[TimelineEvent]], limit: int) -> list[TimelineEvent]:
    """Every group's events, newest first, the same event once, at most `limit`."""
    seen: set[tuple[str, datetime, str | None, int | None, str]] = set()
    merged = []
    for group in groups:
        for event in group:
            key = (event.type, event.at, event.model, event.version, event.text)
            if key not in seen:
                seen.add(key)
                merged.append(event)
    merged.sort(key=lambda event: event.at, reverse=True)
    return merged[:limit]


def _audit_type(entry: Mapping[str, Any]) -> str | None:
    return AUDIT_TYPES.get(str(entry.get("action") or ""))


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
