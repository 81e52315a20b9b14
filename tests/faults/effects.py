"""The effects besides a record's outcome that a fault must neither lose nor apply twice:

- each validated record's feature vector: every FeaturesComputed of the record (a replay may
  publish it again) carries the vector an uninterrupted feature store computes, from its
  entity's records in the order of data.validated (an aggregate applied twice, or missed,
  shows in that record's vector or in a later one of its entity);
- each label ingestion acknowledged: on data.labels under one event id;
- each /predict answered 200: logged once on serving.predictions (by request id), for
  monitoring's join with its label. The log is written in the background so that /predict
  never waits for Kafka: a SIGKILL of serving loses what it had not sent yet, the predictions
  answered within LOG_LOSS_WINDOW_S before it (a SIGTERM flushes them). Those are counted
  apart; any other prediction missing from the log, or logged twice, is off.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from services.feature_store.domain.aggregates import replay
from shared.datasets.registry import SpecRegistry
from tests.faults.harness import SETTLE_S, Row, SteadyLoad, read_topic, row, settle
from tests.waiting import wait_until

WINDOW_GRACE_S = 86_400  # the feature store's default
LOG_LOSS_WINDOW_S = 1.0


@dataclass(frozen=True)
class Effects:
    features_in: int
    features_off: int
    """Validated records of the load whose vector is missing or not an uninterrupted run's."""
    labels_in: int
    labels_off: int
    """Acknowledged labels missing from data.labels or recorded twice."""
    predictions_in: int
    predictions_off: int
    """Answered predictions not logged, or logged twice."""
    predictions_killed: int = 0
    """Answered predictions not logged because serving was SIGKILLed right after."""
    vectors_missing: int = 0
    examples: tuple[str, ...] = ()
    """A few vectors off: the record, what an uninterrupted run computes, what was emitted."""

    @property
    def off(self) -> int:
        return self.features_off + self.labels_off + self.predictions_off

    @property
    def asserted_off(self) -> int:
        return self.off

    def cell(self) -> str:
        killed = (
            f" (+{self.predictions_killed} unsent at SIGKILL)" if self.predictions_killed else ""
        )
        return (
            f"{self.features_off} of {self.features_in:,} / {self.labels_off} of "
            f"{self.labels_in:,} / {self.predictions_off} of {self.predictions_in:,}{killed}"
        )


def measure(
    load: SteadyLoad, bootstrap: str, namespace: str, serving_killed: Sequence[float] = ()
) -> Effects:
    """The effects of the load; `serving_killed`: when serving was SIGKILLed (monotonic)."""
    vectors_off, validated, missing, examples = _features_off(load.acked, bootstrap, namespace)
    labels = _event_ids_by_key(bootstrap, f"{namespace}.data.labels", "record_id")
    logged: dict[str, int] = defaultdict(int)
    for event in _events(bootstrap, f"{namespace}.serving.predictions"):
        if not event["data"].get("shadow"):
            logged[event["data"]["request_id"]] += 1

    def unsent_at_a_kill(answered_at: float) -> bool:
        return any(0 <= kill - answered_at <= LOG_LOSS_WINDOW_S for kill in serving_killed)

    unlogged = [r for r in load.predicted if logged.get(r, 0) == 0]
    killed = sum(1 for r in unlogged if unsent_at_a_kill(load.predicted[r]))
    return Effects(
        features_in=validated,
        features_off=vectors_off,
        labels_in=len(load.labels_acked),
        labels_off=sum(1 for r in load.labels_acked if len(labels.get(r, ())) != 1),
        predictions_in=len(load.predicted),
        predictions_off=len(unlogged)
        - killed
        + sum(1 for r in load.predicted if logged.get(r, 0) > 1),
        predictions_killed=killed,
        vectors_missing=missing,
        examples=examples,
    )


def settled_effects(
    load: SteadyLoad,
    bootstrap: str,
    namespace: str,
    serving_killed: Sequence[float] = (),
    timeout_s: float = 180,
) -> Effects:
    """The effects once every one is there (none asserted off, no vector missing), or as they
    are when the time is up."""
    found: list[Effects] = []

    def none_off() -> bool:
        found[:] = [measure(load, bootstrap, namespace, serving_killed)]
        return found[0].asserted_off == 0 and found[0].vectors_missing == 0

    with contextlib.suppress(AssertionError):
        wait_until(none_off, what="every effect applied once", timeout_s=timeout_s, interval_s=3)
    return found[0]


def _events(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return [json.loads(m.value()) for m in read_topic(bootstrap, topic)]


def _event_ids_by_key(bootstrap: str, topic: str, key: str) -> dict[str, set[str]]:
    ids: dict[str, set[str]] = defaultdict(set)
    for event in _events(bootstrap, topic):
        ids[str(event["data"][key])].add(event["id"])
    return ids


def _features_off(
    acked: set[str], bootstrap: str, namespace: str
) -> tuple[int, int, int, tuple[str, ...]]:
    """(how many of the acknowledged records that were validated have a vector missing or
    wrong, how many were validated, how many have none, a few examples)."""
    expected = _uninterrupted_vectors(bootstrap, namespace)
    emitted: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in _events(bootstrap, f"{namespace}.data.features"):
        emitted[event["data"]["record_id"]].append(event["data"]["features"])
    scope = [record for record in acked if record in expected]
    off = [
        record
        for record in scope
        if not emitted.get(record) or any(v != expected[record] for v in emitted[record])
    ]
    missing = sum(1 for record in off if not emitted.get(record))
    examples = tuple(
        f"{record}: expected {_differing(expected[record], emitted.get(record, []))}"
        for record in sorted(off)[:3]
    )
    return len(off), len(scope), missing, examples


def _differing(expected: dict[str, Any], emitted: list[dict[str, Any]]) -> str:
    """The features where the emitted vectors differ from the expected one."""
    if not emitted:
        return "a vector, none emitted"
    keys = sorted({k for v in emitted for k in v if v.get(k) != expected.get(k)})
    return "; ".join(f"{k}={expected.get(k)!r} got {[v.get(k) for v in emitted]}" for k in keys[:4])


@functools.cache
def _specs(bootstrap: str, namespace: str) -> SpecRegistry:
    """One reader of a namespace's data.specs for the session (it refreshes on a new version)."""
    return SpecRegistry({"bootstrap.servers": bootstrap}, f"{namespace}.data.specs", "faults")


def _uninterrupted_vectors(bootstrap: str, namespace: str) -> dict[str, dict[str, Any]]:
    """Record id -> the vector a feature store that never failed computes for it, with the
    aggregations of the spec each record was validated against (read from data.specs, so any
    dataset the scenario sends counts, not only the shipped ones)."""
    specs = _specs(bootstrap, namespace)
    messages = read_topic(bootstrap, f"{namespace}.data.validated")
    messages.sort(key=lambda m: (m.partition(), m.offset()))
    by_entity: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    seen: set[tuple[str, int, int]] = set()
    for message in messages:
        data = json.loads(message.value())["data"]
        raw = (data["source"]["topic"], data["source"]["partition"], data["source"]["offset"])
        if raw in seen:  # a copy validation published again (at-least-once): counted once
            continue
        seen.add(raw)
        by_entity[(data["dataset"], data["entity"])].append(data)
    vectors = {}
    for records in by_entity.values():
        inputs = [
            (datetime.fromisoformat(r["event_time"]), r["values"], 0, n)
            for n, r in enumerate(records)
        ]
        # An entity's records share a spec version unless the dataset's spec changed midway,
        # which no fault scenario does: its first record's version stands for all.
        spec = specs.get(records[0]["dataset"], records[0]["spec_version"]).spec
        aggregated = replay(inputs, spec.aggregations, WINDOW_GRACE_S)
        for record, aggregates in zip(records, aggregated, strict=True):
            vectors[record["record_id"]] = {**record["values"], **aggregates}
    return vectors


def settled_row(
    scenario: str,
    load: SteadyLoad,
    bootstrap: str,
    namespace: str,
    recovery_s: float,
    matrix: list[Row],
    serving_killed: Sequence[float] = (),
) -> Row:
    """The scenario's row, in the matrix, once the stopped load's every acknowledged record
    has its outcome and every effect was applied; fails when a record was lost, came out twice
    or was dead-lettered, or an effect is off."""
    found = settle(set(load.acked), bootstrap, namespace, SETTLE_S)
    effects = settled_effects(load, bootstrap, namespace, serving_killed)
    outcome = replace(row(scenario, load, found, recovery_s), effects=effects.cell())
    matrix.append(outcome)
    assert outcome.records_in > 0
    assert (outcome.lost, outcome.twice, outcome.dead_lettered) == (0, 0, 0), outcome
    assert effects.asserted_off == 0, effects
    assert min(effects.features_in, effects.labels_in, effects.predictions_in) > 0, effects
    return outcome
