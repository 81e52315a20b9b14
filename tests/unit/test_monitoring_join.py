"""Joining predictions and labels by record id, either order, with a bounded wait."""

from __future__ import annotations

from services.monitoring.domain.join import LabelJoin


def test_label_after_prediction_joins() -> None:
    join: LabelJoin[str] = LabelJoin(wait_s=10)
    assert join.add_prediction("r1", "p", now=0) is None
    joined = join.add_label("r1", 1, now=5)
    assert joined is not None and (joined.prediction, joined.label) == ("p", 1)
    assert join.counts()["joined"] == 1 and join.pending_predictions == 0


def test_label_before_prediction_joins() -> None:
    join: LabelJoin[str] = LabelJoin(wait_s=10)
    assert join.add_label("r1", 0, now=0) is None
    joined = join.add_prediction("r1", "p", now=1)
    assert joined is not None and joined.label == 0


def test_unlabelled_predictions_expire_and_are_counted() -> None:
    join: LabelJoin[str] = LabelJoin(wait_s=10)
    join.add_prediction("r1", "p1", now=0)
    join.add_prediction("r2", "p2", now=5)
    assert join.expire(now=10) == ["p1"]
    assert join.expire(now=20) == ["p2"]
    assert join.counts()["expired_predictions"] == 2
    assert join.add_label("r1", 1, now=21) is None  # too late: waits as an orphan label


def test_orphan_labels_expire_too() -> None:
    join: LabelJoin[str] = LabelJoin(wait_s=1)
    join.add_label("x", 1, now=0)
    join.expire(now=2)
    assert join.counts()["expired_labels"] == 1 and join.pending_labels == 0


def test_pending_is_bounded() -> None:
    join: LabelJoin[str] = LabelJoin(wait_s=100, max_pending=2)
    for i in range(3):
        join.add_prediction(f"r{i}", "p", now=i)
    assert join.pending_predictions == 2 and join.expired_predictions == 1
