"""Joining predictions and labels by record id, either order, with a bounded wait; one
record's label joins the prediction of every slot (model) that scored it, each once."""

from __future__ import annotations

from services.monitoring.domain.join import LabelJoin


def test_label_after_prediction_joins() -> None:
    join: LabelJoin[str] = LabelJoin(wait_s=10)
    assert join.add_prediction("r1", "p", now=0) is None
    [joined] = join.add_label("r1", 1, now=5)
    assert (joined.prediction, joined.label) == ("p", 1)
    assert join.counts()["joined"] == 1 and join.pending_predictions == 0


def test_label_before_prediction_joins() -> None:
    join: LabelJoin[str] = LabelJoin(wait_s=10)
    assert join.add_label("r1", 0, now=0) == []
    joined = join.add_prediction("r1", "p", now=1)
    assert joined is not None and joined.label == 0
    assert join.pending_labels == 0


def test_a_label_joins_every_model_that_scored_its_record_in_either_order() -> None:
    join: LabelJoin[str] = LabelJoin(wait_s=10)
    join.add_prediction("r1", "a", now=0, slot="model-a")
    join.add_prediction("r1", "b", now=0, slot="model-b")
    assert sorted(j.prediction for j in join.add_label("r1", 1, now=1)) == ["a", "b"]
    later = join.add_prediction("r1", "c", now=2, slot="model-c")  # after its label
    assert later is not None and later.label == 1
    assert join.counts() == {
        "joined": 3,
        "expired_predictions": 0,
        "expired_labels": 0,
        "pending_predictions": 0,
        "pending_labels": 0,
    }
    join.expire(now=100)
    assert join.expired_labels == 0, "a label that joined predictions did not expire unused"


def test_redeliveries_join_nothing_twice() -> None:
    join: LabelJoin[str] = LabelJoin(wait_s=10)
    join.add_prediction("r1", "a", now=0, slot="model-a")
    assert len(join.add_label("r1", 1, now=1)) == 1
    assert join.add_prediction("r1", "a", now=2, slot="model-a") is None
    assert join.add_label("r1", 1, now=3) == []
    assert join.joined == 1 and join.pending_predictions == 0


def test_a_prediction_waiting_again_for_its_slot_replaces_the_first() -> None:
    join: LabelJoin[str] = LabelJoin(wait_s=10)
    join.add_prediction("r1", "first", now=0, slot="m")
    join.add_prediction("r1", "again", now=1, slot="m")
    assert [j.prediction for j in join.add_label("r1", 1, now=2)] == ["again"]


def test_unlabelled_predictions_expire_and_are_counted() -> None:
    join: LabelJoin[str] = LabelJoin(wait_s=10)
    join.add_prediction("r1", "p1", now=0)
    join.add_prediction("r2", "p2", now=5)
    assert join.expire(now=10) == ["p1"]
    assert join.expire(now=20) == ["p2"]
    assert join.counts()["expired_predictions"] == 2
    assert join.add_label("r1", 1, now=21) == []  # too late: waits as an orphan label


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
    for i in range(3):
        join.add_label(f"x{i}", 1, now=i)
    assert join.pending_labels == 2 and join.expired_labels == 1
