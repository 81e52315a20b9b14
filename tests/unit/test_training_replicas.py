"""Training as several replicas, on one SQLite file (the service's own stores): the lease of a
model (taken, refused, expired, lost), a command waiting for it or failing after the wait,
and reproductions kept in SQL that every replica reads and that end failed when their
replica stops beating."""

from __future__ import annotations

import os
import socket
import tempfile
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from services.training.adapters.database import create_training_engine
from services.training.adapters.labels import SqlLabelCounter
from services.training.adapters.leases import SqlLeases, new_token
from services.training.adapters.reproductions import SqlReproductions
from services.training.adapters.runs import SqlRuns
from services.training.domain.reproduction import compare_value
from services.training.exclusive import ExclusionConfig, LeaseLost, ModelBusy, ModelExclusion
from services.training.handlers import Deps, train_model, trained_event
from shared.events.models import TrainingFailed
from tests.unit.test_training_handlers import CountingTrainer, info, train_command, trained


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 6, 3, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def engine() -> Engine:
    """One SQLite file: what two replicas on one host would share."""
    return create_training_engine(f"sqlite:///{tempfile.mkdtemp()}/training.sqlite")


# -- leases ----------------------------------------------------------------------------------


def test_a_held_lease_is_refused_to_another_until_released(engine: Engine) -> None:
    leases = SqlLeases(engine, "ns", ttl_s=60, clock=Clock())
    first = leases.acquire("loans", "a", "command-1")
    assert first is not None and first.holder == "a"
    second = leases.acquire("loans", "b", "command-2")
    assert second is not None and (second.holder, second.command_id) == ("a", "command-1")
    assert leases.acquire("friedman", "b", "command-3").holder == "b"  # type: ignore[union-attr]
    leases.release("loans", "a")
    assert leases.acquire("loans", "b", "command-2").holder == "b"  # type: ignore[union-attr]


def test_an_expired_lease_is_taken_over_and_its_old_holder_cannot_renew_it(
    engine: Engine,
) -> None:
    clock = Clock()
    leases = SqlLeases(engine, "ns", ttl_s=30, clock=clock)
    leases.acquire("loans", "dead", "command-1")
    clock.advance(29)
    assert leases.acquire("loans", "b", "command-2").holder == "dead"  # type: ignore[union-attr]
    clock.advance(2)
    assert leases.acquire("loans", "b", "command-2").holder == "b"  # type: ignore[union-attr]
    assert not leases.renew("loans", "dead")
    assert leases.renew("loans", "b")
    leases.release("loans", "dead")  # releases nothing it does not hold
    assert leases.holder("loans").holder == "b"  # type: ignore[union-attr]


def test_namespaces_have_leases_of_their_own(engine: Engine) -> None:
    clock = Clock()
    SqlLeases(engine, "prod", ttl_s=60, clock=clock).acquire("loans", "a", "c1")
    replay = SqlLeases(engine, "replay", ttl_s=60, clock=clock)
    assert replay.acquire("loans", "b", "c2").holder == "b"  # type: ignore[union-attr]


def test_a_holder_token_is_this_process_and_one_random_part_new_for_each_acquisition() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    host_and_pid = {token.rsplit(":", 1)[0] for token in tokens}
    assert host_and_pid == {f"{socket.gethostname()}:{os.getpid()}"}


# -- one run of a model at a time ------------------------------------------------------------


class ReleasingSleep:
    """A sleep that releases another holder's lease on its n-th call."""

    def __init__(self, leases: SqlLeases, holder: str, on_call: int) -> None:
        self.leases, self.holder, self.on_call, self.calls = leases, holder, on_call, 0

    def __call__(self, seconds: float) -> None:
        self.calls += 1
        if self.calls == self.on_call:
            self.leases.release("loans", self.holder)


def test_a_second_run_waits_for_the_lease_then_holds_it(engine: Engine) -> None:
    leases = SqlLeases(engine, "ns", ttl_s=60)
    leases.acquire("loans", "other-replica", "command-1")
    sleep = ReleasingSleep(leases, "other-replica", on_call=3)
    exclusion = ModelExclusion(leases, ExclusionConfig(wait_s=60), sleep=sleep)
    with exclusion.hold("loans", "command-2") as held:
        assert held.lease.command_id == "command-2"
        assert leases.holder("loans").command_id == "command-2"  # type: ignore[union-attr]
    assert sleep.calls == 3
    assert leases.holder("loans") is None


def test_a_run_that_waits_in_vain_is_busy_and_names_the_holder(engine: Engine) -> None:
    leases = SqlLeases(engine, "ns", ttl_s=60)
    leases.acquire("loans", "replica-a", "command-1")
    ticks = iter(range(100))
    exclusion = ModelExclusion(
        leases,
        ExclusionConfig(wait_s=5),
        monotonic=lambda: float(next(ticks)),
        sleep=lambda seconds: None,
    )
    with (
        pytest.raises(ModelBusy, match="command command-1 on replica replica-a"),
        exclusion.hold("loans", "command-2"),
    ):
        pytest.fail("the block must not run")


def test_a_lease_taken_over_while_running_is_lost(engine: Engine) -> None:
    clock = Clock()
    leases = SqlLeases(engine, "ns", ttl_s=3, clock=clock)
    exclusion = ModelExclusion(leases, ExclusionConfig(ttl_s=0.03, wait_s=0))
    with exclusion.hold("loans", "command-1") as held:
        clock.advance(10)
        leases.acquire("loans", "thief", "command-2")
        assert held.lost.wait(5), "the renewer did not notice the lease was taken"
        with pytest.raises(LeaseLost, match="another replica may have trained"):
            held.check()
    assert leases.holder("loans").holder == "thief"  # type: ignore[union-attr]


def replica(engine: Engine, trainer: CountingTrainer, wait_s: float = 0) -> Deps:
    leases = SqlLeases(engine, "ns", ttl_s=60)
    return Deps(
        trainer,
        SqlRuns(engine, "ns"),
        SqlLabelCounter(engine, "ns"),
        ModelExclusion(leases, ExclusionConfig(wait_s=wait_s, poll_s=0.01)),
        sleep=lambda seconds: None,
    )


def test_a_command_another_replica_finished_while_this_one_waited_is_not_trained_again(
    engine: Engine,
) -> None:
    command = train_command()
    leases = SqlLeases(engine, "ns", ttl_s=60)
    leases.acquire("loans", "replica-a", command.id)
    finished = trained_event(command, trained("run-a"))

    def replica_a_finishes(seconds: float) -> None:
        SqlRuns(engine, "ns").record(command.id, finished)
        leases.release("loans", "replica-a")

    trainer = CountingTrainer()
    deps = replica(engine, trainer)
    deps.exclusion = ModelExclusion(leases, ExclusionConfig(wait_s=60), sleep=replica_a_finishes)
    # replica B was handed the command before A recorded it: it finds it once it holds the lease
    deps.runs = NotYetFinished(SqlRuns(engine, "ns"))
    [emit] = train_model(deps)(command, info())
    assert trainer.calls == 0
    assert emit.event.id == finished.id and emit.event.data.run_id == "run-a"


class NotYetFinished:
    """Runs as the replica saw them when the command arrived: not finished; then as stored."""

    def __init__(self, runs: SqlRuns) -> None:
        self.runs, self.asked = runs, 0

    def finished(self, command_id: str):  # type: ignore[no-untyped-def]
        self.asked += 1
        return None if self.asked == 1 else self.runs.finished(command_id)

    def record(self, command_id: str, outcome):  # type: ignore[no-untyped-def]
        return self.runs.record(command_id, outcome)


def test_a_command_whose_model_stays_busy_ends_failed_with_the_reason_and_is_kept(
    engine: Engine,
) -> None:
    SqlLeases(engine, "ns", ttl_s=600).acquire("loans", "replica-a", "command-1")
    trainer = CountingTrainer()
    deps = replica(engine, trainer, wait_s=0.05)
    command = train_command()
    [emit] = train_model(deps)(command, info())
    failed = emit.event.data
    assert isinstance(failed, TrainingFailed) and trainer.calls == 0
    assert (failed.outcome, failed.error) == ("failed", "ModelBusy")
    assert "command command-1 on replica replica-a" in failed.reason
    assert deps.runs.finished(command.id) == emit.event


# -- reproductions seen by every replica -----------------------------------------------------


def test_a_reproduction_started_on_one_replica_is_read_and_finished_on_another(
    engine: Engine,
) -> None:
    clock = Clock()
    a = SqlReproductions(engine, "ns", 10, 600, lease_s=30, replica="a", clock=clock)
    b = SqlReproductions(engine, "ns", 10, 600, lease_s=30, replica="b", clock=clock)
    item = a.start("loans", 3)
    seen = b.get(item.id)
    assert seen is not None and (seen.status, seen.replica) == ("running", "a")
    assert [r.id for r in b.recent("loans")] == [item.id]
    a.compared(item.id, [compare_value("rows", 10, 10)], [], {"rows": 10})
    b.failed(item.id, "too late")  # the first outcome is kept
    assert b.get(item.id).status == "identical"  # type: ignore[union-attr]
    assert SqlReproductions(engine, "other", 10, 600).get(item.id) is None


def test_a_reproduction_whose_replica_stopped_beating_fails_naming_it(engine: Engine) -> None:
    clock = Clock()
    dead = SqlReproductions(engine, "ns", 10, 600, lease_s=30, replica="dead", clock=clock)
    alive = SqlReproductions(engine, "ns", 10, 600, lease_s=30, replica="alive", clock=clock)
    orphan, kept = dead.start("loans", 1), alive.start("loans", 2)
    for _ in range(4):
        clock.advance(10)
        assert alive.beat() == 1
    assert alive.get(kept.id).status == "running"  # type: ignore[union-attr]
    failed = alive.get(orphan.id)
    assert failed is not None and failed.status == "failed"
    assert failed.reason is not None and "replica dead stopped" in failed.reason
    assert dead.get(orphan.id) == failed  # written once, the same for everyone
