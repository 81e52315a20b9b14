"""Replay planning's offset lookup: a partition answered without an offset (its leader died and
none is elected yet) is asked again until it has one, or the wait ends with the reason."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import OFFSET_INVALID, TopicPartition

from shared.cli import replay
from shared.cli.replay import ReplayError, list_offsets


@dataclass
class Answer:
    offset: int


class Admin:
    """Answers each ListOffsets with the next of the given rounds ({partition: offset})."""

    def __init__(self, *rounds: dict[int, int]) -> None:
        self.rounds = list(rounds)
        self.asked = 0

    def list_offsets(self, asked: dict[TopicPartition, Any], **_: Any) -> dict[Any, Future]:
        answers = self.rounds[min(self.asked, len(self.rounds) - 1)]
        self.asked += 1
        futures = {}
        for tp in asked:
            future: Future = Future()
            future.set_result(Answer(answers[tp.partition]))
            futures[tp] = future
        return futures


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay.time, "sleep", lambda _: None)


def test_a_partition_without_a_leader_is_asked_again_until_it_has_an_offset() -> None:
    admin = Admin({0: 5, 1: OFFSET_INVALID}, {0: 5, 1: OFFSET_INVALID}, {0: 5, 1: 7})
    found = list_offsets(admin, "t", [0, 1], replay.OffsetSpec.latest())  # type: ignore[arg-type]
    assert found == {0: 5, 1: 7} and admin.asked == 3


def test_a_partition_that_never_gets_a_leader_fails_the_plan_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(replay, "LEADER_WAIT_S", 0.0)
    admin = Admin({0: 5, 1: OFFSET_INVALID, 2: OFFSET_INVALID})
    with pytest.raises(ReplayError, match=r"offsets of t .*partitions \[1, 2\] answered no offset"):
        list_offsets(admin, "t", [0, 1, 2], replay.OffsetSpec.earliest())  # type: ignore[arg-type]
