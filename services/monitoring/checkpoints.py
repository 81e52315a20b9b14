"""Checkpoints of the state monitoring owns per monitoring.inputs partition.

A partition's state is everything its inputs changed that decides what comes next: the
detectors of its datasets, their model versions' mode indicators, holdout checks and scores,
what waits in the label join for their records, the retraining policy of their models
(episodes, triggers, retrains in flight), the drifts an episode may still trigger from and
the retrains awaiting their outcome. It is pickled (River's detectors are picklable) with
the offset of the first input it does not hold, into the SQL history, every
`checkpoint_every` inputs or `checkpoint_interval_s` seconds (whichever comes first, once the
runner stored the offsets: every input before it handled and what it emitted confirmed), and
when the partition leaves this replica (rebalance, clean stop).

The first input of a partition this replica reads (start-up, or the partition moved here)
restores it: the checkpoint at offset C, the consumer at the group's committed offset K.

- C < K: the inputs [C, K) were applied and what they produced was written and published
  before the restart; they are read again (a reader outside the group) and applied to the
  state only (`handlers.replayer`): no DriftDetected, decision or TrainModel twice.
- C > K: the checkpoint was written after offsets were stored but before they were
  committed; the inputs [K, C) are in the state and their outputs out: they are skipped.

From then on, inputs are handled as always, so the state equals that of an uninterrupted
run over the same inputs. A checkpoint that cannot be read (corrupt, an older format) is
logged and counted (`mlops_monitoring_checkpoints_total{outcome="unreadable"}`), and the
partition starts afresh from the committed offsets, as without checkpoints.

Not checkpointed: what no detection depends on (the performance snapshots' label count,
the in-memory performance series, the live feature comparisons of /drift), and what every
replica rebuilds from its own reading of models.lifecycle (which models are champions).
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from services.monitoring import metrics
from services.monitoring.domain.monitor import MonitorPart
from services.monitoring.domain.retrains import Retrain
from services.monitoring.handlers import Deps, replayer
from shared.events.envelope import Event
from shared.events.models import DriftDetected
from shared.failures import Failure, classify
from shared.kafka.consumer import MessageInfo

log = logging.getLogger(__name__)

FORMAT: Final = 1
"""Bumped whenever PartitionState or what it holds changes shape: older ones are unreadable."""


@dataclass
class PartitionState:
    datasets: frozenset[str]
    monitor: MonitorPart
    policy: dict[str, Any]
    drifts: list[str]
    """The episode drifts (DriftDetected as JSON), oldest first."""
    retrains: list[Retrain]
    retrain_versions: dict[tuple[str, int], str]


class UnreadableCheckpoint(Exception):
    pass


def export_state(deps: Deps, datasets: frozenset[str]) -> PartitionState:
    """The datasets' share of the state (the caller holds deps.lock and pickles at once)."""
    retrains = [r for r in deps._retrains.values() if r.dataset in datasets]
    commands = {r.command_id for r in retrains}
    return PartitionState(
        datasets=datasets,
        monitor=deps.monitor.export(datasets),
        policy=deps.policy.export(deps.monitor.models_of(datasets)),
        drifts=[
            drift.model_dump_json()
            for drift, _ in deps._episode_drifts.values()
            if drift.data.dataset in datasets
        ],
        retrains=retrains,
        retrain_versions={k: c for k, c in deps._retrain_versions.items() if c in commands},
    )


def forget_state(deps: Deps, datasets: frozenset[str]) -> None:
    deps.policy.forget(deps.monitor.models_of(datasets))
    deps.monitor.forget(datasets)
    for drift_id in [i for i, (d, _) in deps._episode_drifts.items() if d.data.dataset in datasets]:
        del deps._episode_drifts[drift_id]
    gone = {c for c, r in deps._retrains.items() if r.dataset in datasets}
    for command_id in gone:
        del deps._retrains[command_id]
    for key in [k for k, c in deps._retrain_versions.items() if c in gone]:
        del deps._retrain_versions[key]


def import_state(deps: Deps, state: PartitionState) -> None:
    """The datasets' state as the checkpoint holds it, instead of what deps held of them."""
    forget_state(deps, state.datasets)
    deps.monitor.restore(state.monitor)
    deps.policy.restore(state.policy)
    for text in state.drifts:
        drift = Event[DriftDetected].model_validate_json(text)
        deps.remember_drift(drift)  # no trace to link to any more: a restart lost it
    for retrain in state.retrains:
        deps.remember_retrain(retrain)
    deps._retrain_versions.update(state.retrain_versions)


def dumps(state: PartitionState) -> bytes:
    return pickle.dumps({"format": FORMAT, "state": state}, protocol=pickle.HIGHEST_PROTOCOL)


def loads(blob: bytes) -> PartitionState:
    try:
        kept = pickle.loads(blob)  # written by monitoring itself, in its own database
    except Exception as error:
        raise UnreadableCheckpoint(f"{type(error).__name__}: {error}") from error
    if not isinstance(kept, dict) or kept.get("format") != FORMAT:
        found = kept.get("format") if isinstance(kept, dict) else type(kept).__name__
        raise UnreadableCheckpoint(f"format {found!r}, not {FORMAT}")
    state = kept.get("state")
    if not isinstance(state, PartitionState):
        raise UnreadableCheckpoint(f"holds a {type(state).__name__}")
    return state


class CheckpointStore(Protocol):
    def load_checkpoint(self, group: str, topic: str, partition: int) -> tuple[int, bytes] | None:
        """The partition's checkpoint: the offset of its first input not in it, the state."""

    def save_checkpoint(
        self, group: str, topic: str, partition: int, next_offset: int, state: bytes
    ) -> None: ...


Replay = Callable[[int, int, int], Iterable[tuple[Event[Any], MessageInfo]]]
"""(partition, start, end) -> the partition's inputs from start to end (excluded), again."""


@dataclass
class _Partition:
    """What the checkpoints know of one partition while this replica owns it."""

    datasets: set[str] = field(default_factory=set)
    applied: int = -1
    """The offset after the last input applied to the state."""
    stored: int = -1
    """The offset after the last input the runner stored (done, outputs confirmed)."""
    skip_below: int = -1
    since_checkpoint: int = 0
    checkpointed_at: float = 0.0


class Checkpoints:
    """Restores a partition's state on its first input, checkpoints it as the runner stores
    offsets (the runner's PartitionListener) and when it leaves; deps.gate."""

    def __init__(
        self,
        deps: Deps,
        store: CheckpointStore,
        replay: Replay,
        group: str,
        topic: str,
        every: int,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._deps = deps
        self._store = store
        self._replay = replay
        self._reapply = replayer(deps)
        self._group = group
        self._topic = topic
        self._every = every
        self._interval_s = interval_s
        self._clock = clock
        self._partitions: dict[int, _Partition] = {}

    def admit(self, event: Event[Any], info: MessageInfo) -> bool:
        kept = self._partitions.get(info.partition)
        if kept is None:
            kept = self._restore(info.partition, info.offset)
        if info.offset < kept.skip_below:
            return False
        self._applied(kept, event, info)
        return True

    def stored(self, next_offsets: Mapping[tuple[str, int], int]) -> None:
        for (topic, partition), offset in next_offsets.items():
            kept = self._partitions.get(partition)
            if topic != self._topic or kept is None:
                continue
            kept.stored = offset
            due = kept.since_checkpoint >= self._every or (
                kept.since_checkpoint and self._clock() - kept.checkpointed_at >= self._interval_s
            )
            if due:
                self._checkpoint(partition, kept)

    def revoked(self, partitions: Sequence[tuple[str, int]]) -> None:
        for topic, partition in partitions:
            kept = self._partitions.get(partition) if topic == self._topic else None
            if kept is None:
                continue
            if kept.since_checkpoint:
                self._checkpoint(partition, kept)
            with self._deps.lock:
                forget_state(self._deps, frozenset(kept.datasets))
                self._drop_unsaved(partition)
            del self._partitions[partition]

    def _applied(self, kept: _Partition, event: Event[Any], info: MessageInfo) -> None:
        dataset = getattr(event.data, "dataset", None)
        if dataset is not None:
            kept.datasets.add(dataset)
        kept.applied = max(kept.applied, info.offset + 1)
        kept.since_checkpoint += 1

    def _restore(self, partition: int, first: int) -> _Partition:
        """The partition's state from its checkpoint and the inputs after it up to `first`
        (the group's committed offset, where the consumer starts)."""
        kept = _Partition(applied=first, checkpointed_at=self._clock())
        loaded = self._store.load_checkpoint(self._group, self._topic, partition)
        with self._deps.lock:
            self._drop_unsaved(partition)
        if loaded is None:
            metrics.CHECKPOINTS.labels("none").inc()
            self._partitions[partition] = kept
            return kept
        offset, blob = loaded
        state: PartitionState | None = None
        try:
            state = loads(blob)
            with self._deps.lock:
                import_state(self._deps, state)
        except Exception as error:  # corrupt, older, or a shape it cannot be taken back in
            if state is not None:
                with self._deps.lock:
                    forget_state(self._deps, frozenset(state.datasets))
            log.error(
                "checkpoint of %s[%d] unreadable (%s): starting afresh",
                self._topic,
                partition,
                error,
            )
            metrics.CHECKPOINTS.labels("unreadable").inc()
            self._partitions[partition] = kept
            return kept
        kept.datasets = set(state.datasets)
        if offset > first:
            kept.skip_below = kept.applied = offset
        elif offset < first:
            try:
                self._reapply_range(partition, kept, offset, first)
            except Exception as error:
                if classify(error) is Failure.TRANSIENT:
                    raise  # the consumer waits; the next try restores again
                log.exception("%s[%d] not restored: starting afresh", self._topic, partition)
                kept = _Partition(applied=first, checkpointed_at=self._clock())
                self._partitions[partition] = kept
                return kept
        metrics.CHECKPOINTS.labels("restored").inc()
        log.info(
            "%s[%d] restored from its checkpoint at %d (consumer at %d)",
            self._topic,
            partition,
            offset,
            first,
        )
        self._partitions[partition] = kept
        return kept

    def _reapply_range(self, partition: int, kept: _Partition, start: int, end: int) -> None:
        """Applies the inputs [start, end) again, state only. Fails whole (the state
        dropped, to be restored again on the next try) if they cannot all be read."""
        try:
            for event, info in self._replay(partition, start, end):
                with self._deps.lock:
                    try:
                        self._reapply(event, info)
                    except Exception:  # it failed the first time too: dead-lettered then
                        log.exception(
                            "input %s[%d]@%d failed again", info.topic, info.partition, info.offset
                        )
                self._applied(kept, event, info)
                metrics.REPLAYED.inc()
        except Exception:
            metrics.CHECKPOINTS.labels("replay_failed").inc()
            with self._deps.lock:
                forget_state(self._deps, frozenset(kept.datasets))
            raise
        kept.applied = end

    def _checkpoint(self, partition: int, kept: _Partition) -> None:
        """Writes the state with its offset when every input it holds is done (else the
        next store does): a checkpoint never holds an input whose outputs may be lost."""
        if kept.stored < 0 or kept.applied > kept.stored or kept.stored < kept.skip_below:
            return
        with self._deps.lock:
            if self._has_unsaved(partition):
                return
            blob = dumps(export_state(self._deps, frozenset(kept.datasets)))
        try:
            self._store.save_checkpoint(self._group, self._topic, partition, kept.stored, blob)
        except Exception as error:
            log.warning("checkpoint of %s[%d] not written: %s", self._topic, partition, error)
            metrics.CHECKPOINTS.labels("write_failed").inc()
            return
        metrics.CHECKPOINTS.labels("written").inc()
        kept.since_checkpoint = 0
        kept.checkpointed_at = self._clock()

    def _has_unsaved(self, partition: int) -> bool:
        return any(t == self._topic and p == partition for t, p, _ in self._deps._unsaved)

    def _drop_unsaved(self, partition: int) -> None:
        """Outcomes computed on the state before it was restored or handed over."""
        for key in [k for k in self._deps._unsaved if k[:2] == (self._topic, partition)]:
            del self._deps._unsaved[key]
