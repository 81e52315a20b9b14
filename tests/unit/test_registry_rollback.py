"""Choosing the version a rollback returns to, from the audit trail's alias changes."""

from __future__ import annotations

import pytest

from services.registry.domain.rollback import (
    AliasChange,
    NothingToRollBack,
    holders,
    rollback_target,
)


def promoted(*versions: int) -> list[AliasChange]:
    return [AliasChange("promoted", version) for version in versions]


def test_a_rollback_returns_to_the_previous_champion() -> None:
    assert rollback_target(promoted(1, 2, 3), current=3) == 2


def test_repeated_rollbacks_walk_back_through_history() -> None:
    history = [*promoted(1, 2, 3), AliasChange("rolled_back", 2)]
    assert holders(history) == [1, 2]
    assert rollback_target(history, current=2) == 1


def test_after_the_first_champion_there_is_nothing_to_roll_back_to() -> None:
    history = [*promoted(1, 2), AliasChange("rolled_back", 1)]
    with pytest.raises(NothingToRollBack, match="champion v1 has no earlier holder"):
        rollback_target(history, current=1)


def test_a_single_champion_cannot_be_rolled_back() -> None:
    with pytest.raises(NothingToRollBack):
        rollback_target(promoted(1), current=1)


def test_a_manual_change_back_to_an_old_version_is_undone_by_a_rollback() -> None:
    history = [*promoted(1, 2), AliasChange("alias_set", 1)]
    assert rollback_target(history, current=1) == 2


def test_every_kind_of_promotion_counts_as_a_holder() -> None:
    history = [
        AliasChange("promoted", 1),
        AliasChange("approved", 2),
        AliasChange("alias_set", 4),
    ]
    assert rollback_target(history, current=4) == 2


def test_a_promotion_after_a_rollback_is_rolled_back_to_the_rollback_target() -> None:
    history = [*promoted(1, 2, 3), AliasChange("rolled_back", 2), AliasChange("promoted", 4)]
    assert rollback_target(history, current=4) == 2
