"""Reproductions in the training service: what is compared and how a difference is said
(domain.reproduction), the book of reproductions (in SQLite here), its deadline and its
heartbeat lease (domain.reproductions, adapters.reproductions), the worker's bounds and the
HTTP contract (with fakes)."""

from __future__ import annotations

import math
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.training.adapters.database import create_training_engine
from services.training.adapters.errors import DependencyUnavailable
from services.training.adapters.registry import UnknownVersion
from services.training.adapters.reproductions import SqlReproductions
from services.training.domain.reproduction import (
    IDENTICAL,
    Check,
    compare_metrics,
    compare_predictions,
    compare_sources,
    compare_value,
    environment_notes,
    verdict,
)
from services.training.http import lineage_of, reproductions_router
from services.training.reproducer import (
    Compared,
    Job,
    QueueFull,
    ReproductionFailed,
    ReproductionWorker,
)

LINEAGE = {
    "dataset": "loans",
    "spec_version": 1,
    "spec_fingerprint": "abc",
    "offsets": [
        {"topic": "ns.data.validated", "partition": 0, "first_offset": 3, "last_offset": 9},
        {"topic": "ns.data.labels", "partition": 1, "first_offset": 0, "last_offset": 4},
    ],
    "training_set_sha256": "f" * 64,
    "rows": 10,
    "holdout_rows": 2,
    "feature_columns": ["age"],
    "code_version": "unknown",
    "trigger": {"kind": "drift", "since": "2026-11-21T10:00:00Z"},
}


def test_equal_checks_are_identical() -> None:
    checks = [
        compare_value("rows", 10, 10),
        compare_metrics({"roc_auc": 0.9, "accuracy": 0.8}, {"accuracy": 0.8, "roc_auc": 0.9}),
        compare_predictions(np.array([[0.1, 0.9], [0.5, 0.5]]), np.array([[0.1, 0.9], [0.5, 0.5]])),
    ]
    assert all(check.same for check in checks)
    assert verdict(checks) == IDENTICAL


def test_a_differing_value_is_named() -> None:
    check = compare_value("training-set hash", "a" * 64, "b" * 64)
    assert not check.same
    assert verdict([compare_value("rows", 3, 3), check]) == "differs: training-set hash"


def test_metrics_say_which_differ_and_by_how_much() -> None:
    check = compare_metrics(
        {"roc_auc": 0.9, "f1": 0.5, "log_loss": 0.3}, {"roc_auc": 0.875, "f1": 0.5}
    )
    assert not check.same
    assert check.difference == "metrics (log_loss missing, roc_auc -0.025)"


def test_metrics_must_match_exactly_not_nearly() -> None:
    assert not compare_metrics({"roc_auc": 0.9}, {"roc_auc": math.nextafter(0.9, 1)}).same
    assert compare_metrics({"x": float("nan")}, {"x": float("nan")}).same


def test_predictions_count_the_rows_that_differ_and_the_largest_gap() -> None:
    recorded = np.array([[0.1, 0.9], [0.5, 0.5], [0.2, 0.8]])
    reproduced = np.array([[0.1, 0.9], [0.4, 0.6], [0.2, 0.8]])
    check = compare_predictions(recorded, reproduced)
    assert not check.same
    assert check.difference == "predictions (1 of 3 rows differ, max |diff| 0.1)"


def test_predictions_of_other_shapes_differ() -> None:
    check = compare_predictions(np.zeros((3, 2)), np.zeros((4, 2)))
    assert not check.same and "shapes" in check.difference


def test_class_predictions_compare_without_a_gap() -> None:
    check = compare_predictions(np.array(["a", "b"]), np.array(["a", "c"]))
    assert check.difference == "predictions (1 of 2 rows differ)"


def test_verdict_lists_every_difference_in_order() -> None:
    checks = [
        Check("rows", "10", "8", False, "rows"),
        Check("spec fingerprint", "a", "a", True),
        Check("metrics", "", "", False, "metrics (accuracy +0.1)"),
    ]
    assert verdict(checks) == "differs: rows; metrics (accuracy +0.1)"


def test_a_lineage_is_read_bare_or_inside_a_version() -> None:
    bare = lineage_of(LINEAGE)
    wrapped = lineage_of({"model_name": "loans", "version": 2, "lineage": LINEAGE})
    assert bare == wrapped
    assert bare.trigger.since is not None


def test_a_document_that_is_no_lineage_is_refused() -> None:
    with pytest.raises(ValueError, match="not a training lineage"):
        lineage_of({"lineage": {"dataset": "loans"}})


def test_feature_events_must_be_of_the_records_they_name() -> None:
    assert compare_sources(1200, 0).same
    check = compare_sources(1200, 3)
    assert not check.same
    assert verdict([check]) == (
        "differs: feature sources (3 feature events name another record than their source message)"
    )


def test_environment_notes_name_changed_libraries_and_records_left_out() -> None:
    notes = environment_notes({"numpy": "1.0", "pandas": "2.0"}, {"numpy": "1.0"}, 2, 5)
    assert any("pandas" in note and "2.0 -> None" in note for note in notes)
    assert any("2 undecodable" in note for note in notes)
    assert any("5 records" in note for note in notes)
    assert len(environment_notes({"numpy": "1.0"}, {"numpy": "1.0"}, 0, 0)) == 1


# -- the book of reproductions ---------------------------------------------------------------


def reproductions(
    kept: int, timeout_s: float, clock: Callable[[], datetime] | None = None
) -> SqlReproductions:
    """The SQL book on a SQLite file of its own (the worker's thread writes beside the test's,
    which one shared in-memory connection would not allow)."""
    engine = create_training_engine(f"sqlite:///{tempfile.mkdtemp()}/training.sqlite")
    if clock is None:
        return SqlReproductions(engine, "ns", kept, timeout_s)
    return SqlReproductions(engine, "ns", kept, timeout_s, lease_s=3600, clock=clock)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 6, 3, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_a_reproduction_runs_until_its_outcome_and_keeps_the_first_one() -> None:
    book = reproductions(kept=10, timeout_s=60)
    item = book.start("loans", 3)
    assert (item.status, item.finished_at) == ("running", None)
    book.compared(item.id, [compare_value("rows", 1, 1)], ["a note"], {"rows": 1})
    done = book.get(item.id)
    assert done is not None and done.status == "identical" and done.reason is None
    assert done.finished_at is not None and done.notes == ("a note",)
    book.failed(item.id, "too late")
    assert book.get(item.id) == done


def test_a_difference_is_the_reason_of_differs() -> None:
    book = reproductions(kept=10, timeout_s=60)
    item = book.start("loans", 3)
    book.compared(item.id, [compare_value("rows", 10, 8)], [], {})
    answer = book.get(item.id)
    assert answer is not None
    assert (answer.status, answer.reason) == ("differs", "differs: rows")
    assert answer.as_json()["checks"] == [
        {"name": "rows", "recorded": "10", "reproduced": "8", "same": False, "difference": "rows"}
    ]


def test_nothing_stays_running_past_its_deadline() -> None:
    clock = Clock()
    book = reproductions(kept=10, timeout_s=30, clock=clock)
    item = book.start("loans", 3)
    clock.now += timedelta(seconds=29)
    assert book.get(item.id).status == "running"  # type: ignore[union-attr]
    clock.now += timedelta(seconds=2)
    expired = book.get(item.id)
    assert expired is not None and expired.status == "failed"
    assert expired.reason is not None and "timed out" in expired.reason
    assert book.is_over(item.id)
    # a run that ends after its deadline changes nothing
    book.compared(item.id, [compare_value("rows", 1, 1)], [], {})
    assert book.get(item.id) == expired


def test_the_book_keeps_the_newest_and_lists_them_first() -> None:
    book = reproductions(kept=3, timeout_s=60)
    items = [book.start("loans" if i % 2 else "friedman", i + 1) for i in range(5)]
    assert book.get(items[0].id) is None and book.get(items[1].id) is None
    assert [r.version for r in book.recent()] == [5, 4, 3]
    assert [r.version for r in book.recent("loans")] == [4]
    assert [r.version for r in book.recent(limit=1)] == [5]


# -- the worker ------------------------------------------------------------------------------


class Gate:
    """A reproducer that waits until released, then answers what it was told to."""

    def __init__(self, answer: Compared | Exception) -> None:
        self.answer = answer
        self.release = threading.Event()
        self.started = threading.Event()

    def run(self, job: Job) -> Compared:
        self.started.set()
        assert self.release.wait(10)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def job(book: SqlReproductions, version: int = 1) -> Job:
    item = book.start("loans", version)
    return Job(item.id, "loans", version, {}, lineage_of(LINEAGE))


def test_a_failure_of_the_run_is_the_reason_and_an_unexpected_one_too() -> None:
    book = reproductions(kept=10, timeout_s=60)
    failing = ReproductionWorker(book, Gate(ReproductionFailed("no longer in Kafka: x")), 1)
    first = job(book)
    failing._reproducer.release.set()  # type: ignore[attr-defined]
    failing.run_one(first)
    assert book.get(first.id).reason == "no longer in Kafka: x"  # type: ignore[union-attr]
    broken = ReproductionWorker(book, Gate(KeyError("evaluation")), 1)
    second = job(book, 2)
    broken._reproducer.release.set()  # type: ignore[attr-defined]
    broken.run_one(second)
    answer = book.get(second.id)
    assert answer is not None and answer.status == "failed"
    assert answer.reason == "unexpected error: KeyError: 'evaluation'"


def test_the_worker_runs_one_at_a_time_and_refuses_more_than_its_queue() -> None:
    book = reproductions(kept=10, timeout_s=60)
    gate = Gate(Compared([compare_value("rows", 1, 1)], [], {}))
    worker = ReproductionWorker(book, gate, queue_limit=1)
    worker.start()
    try:
        running, waiting = job(book, 1), job(book, 2)
        worker.submit(running)
        assert gate.started.wait(10)
        worker.submit(waiting)
        with pytest.raises(QueueFull, match="1 reproductions are waiting"):
            worker.submit(job(book, 3))
        gate.release.set()
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while not book.is_over(waiting.id) and datetime.now(UTC) < deadline:
            threading.Event().wait(0.01)
        assert book.get(running.id).status == "identical"  # type: ignore[union-attr]
        assert book.get(waiting.id).status == "identical"  # type: ignore[union-attr]
    finally:
        worker.stop()


# -- the HTTP contract -----------------------------------------------------------------------

VERSION = {"version": 3, "lineage": LINEAGE}


class FakeRegistry:
    def __init__(self, down: bool = False) -> None:
        self.down = down

    def latest_version(self, model_name: str) -> int:
        if self.down:
            raise DependencyUnavailable("registry at http://x: ConnectError")
        if model_name != "loans":
            raise UnknownVersion(f"unknown model {model_name!r}")
        return 3

    def version(self, model_name: str, version: int) -> dict[str, Any]:
        self.latest_version(model_name)
        if version != 3:
            raise UnknownVersion(f"model 'loans' has no version {version}")
        return VERSION


def client_of(
    registry: FakeRegistry | None = None,
    feature_store_up: bool = True,
    queue_limit: int = 4,
) -> tuple[TestClient, list[Job]]:
    submitted: list[Job] = []

    class Recording(ReproductionWorker):
        def submit(self, job: Job) -> None:
            if len(submitted) >= queue_limit:
                raise QueueFull("the queue is full")
            submitted.append(job)

    def ping() -> None:
        if not feature_store_up:
            raise ConnectionError("connection refused")

    worker = Recording(
        reproductions(kept=10, timeout_s=60), Gate(ReproductionFailed("unused")), queue_limit
    )
    app = FastAPI()
    app.include_router(reproductions_router(worker, registry or FakeRegistry(), ping))
    return TestClient(app), submitted


@pytest.mark.parametrize(
    "body", [{"model": "loans", "version": 3}, {"model": "loans", "latest": True}]
)
def test_post_answers_202_running_and_get_shows_it(body: dict[str, Any]) -> None:
    client, submitted = client_of()
    answer = client.post("/reproductions", json=body)
    assert answer.status_code == 202, answer.text
    started = answer.json()
    assert started["status"] == "running"
    assert (started["model"], started["version"]) == ("loans", 3)
    assert set(started) == {"id", "model", "version", "status", "started_at"}
    [queued] = submitted
    assert queued.id == started["id"] and queued.lineage == lineage_of(LINEAGE)
    shown = client.get(f"/reproductions/{started['id']}").json()
    assert shown["status"] == "running" and shown["finished_at"] is None
    assert shown["checks"] == [] and shown["reason"] is None
    assert [r["id"] for r in client.get("/reproductions", params={"model": "loans"}).json()] == [
        started["id"]
    ]


def test_a_lineage_given_replaces_the_versions() -> None:
    client, submitted = client_of()
    edited = {**LINEAGE, "rows": 7}
    answer = client.post("/reproductions", json={"model": "loans", "version": 3, "lineage": edited})
    assert answer.status_code == 202
    assert submitted[0].lineage.rows == 7
    bad = client.post("/reproductions", json={"model": "loans", "version": 3, "lineage": {"x": 1}})
    assert bad.status_code == 422 and "not a training lineage" in bad.json()["detail"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"model": "loans", "version": 9}, "no version 9"),
        ({"model": "ghost", "latest": True}, "unknown model 'ghost'"),
    ],
)
def test_an_unknown_model_or_version_is_404_with_the_reason(
    body: dict[str, Any], reason: str
) -> None:
    client, submitted = client_of()
    answer = client.post("/reproductions", json=body)
    assert answer.status_code == 404 and reason in answer.json()["detail"]
    assert not submitted


@pytest.mark.parametrize(
    "body",
    [
        {"model": "loans"},
        {"model": "loans", "version": 3, "latest": True},
        {"model": "loans", "version": 0},
        {"model": "Bad Name", "version": 1},
        {"model": "loans", "version": 3, "extra": 1},
    ],
)
def test_a_bad_body_is_422(body: dict[str, Any]) -> None:
    client, _ = client_of()
    assert client.post("/reproductions", json=body).status_code == 422


def test_an_unreachable_dependency_is_503_naming_it() -> None:
    client, _ = client_of(registry=FakeRegistry(down=True))
    answer = client.post("/reproductions", json={"model": "loans", "version": 3})
    assert answer.status_code == 503 and "registry" in answer.json()["detail"]
    client, _ = client_of(feature_store_up=False)
    answer = client.post("/reproductions", json={"model": "loans", "version": 3})
    assert answer.status_code == 503 and "feature store" in answer.json()["detail"]


def test_a_full_queue_is_429_and_that_reproduction_is_failed() -> None:
    client, _ = client_of(queue_limit=0)
    answer = client.post("/reproductions", json={"model": "loans", "version": 3})
    assert answer.status_code == 429 and "full" in answer.json()["detail"]
    [listed] = client.get("/reproductions").json()
    assert listed["status"] == "failed" and "full" in listed["reason"]


def test_an_unknown_id_is_404() -> None:
    client, _ = client_of()
    assert client.get("/reproductions/nope").status_code == 404
