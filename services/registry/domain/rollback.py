"""Which version a rollback returns an alias to, read from the audit trail.

The trail is replayed as a stack of holders: every promotion pushes its version, every
rollback pops the version it undid. A rollback goes to the holder below the current one, so
repeated rollbacks walk back through history (v3 -> v2 -> v1) instead of bouncing between two
versions.

>>> history = [AliasChange("promoted", 1), AliasChange("promoted", 2), AliasChange("promoted", 3)]
>>> rollback_target(history, current=3)
2
>>> rollback_target([*history, AliasChange("rolled_back", 2)], current=2)
1
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ROLLED_BACK = "rolled_back"


class NothingToRollBack(Exception):
    """The alias has no earlier holder to go back to."""


@dataclass(frozen=True)
class AliasChange:
    """One audit entry that moved the alias: its action and the version it went to."""

    action: str
    to_version: int


def holders(history: Iterable[AliasChange]) -> list[int]:
    """The alias's holders, oldest first, with rolled-back promotions taken out."""
    stack: list[int] = []
    for change in history:
        if change.action == ROLLED_BACK:
            if stack:
                stack.pop()
            if not stack or stack[-1] != change.to_version:
                stack.append(change.to_version)
        else:
            stack.append(change.to_version)
    return stack


def rollback_target(history: Iterable[AliasChange], current: int, alias: str = "champion") -> int:
    """The holder before `current`; NothingToRollBack when there is none."""
    earlier = holders(history)
    if earlier and earlier[-1] == current:
        earlier.pop()
    for version in reversed(earlier):
        if version != current:
            return version
    raise NothingToRollBack(f"{alias} v{current} has no earlier holder to roll back to")
