"""When the feature stream has stopped without saying so.

faust-streaming can leave a worker whose agent no longer receives messages after a rebalance,
with nothing logged (faust-streaming issues 175 and 523): the process looks alive while records
wait. The watch sees it from outside the stream: records wait on the worker's partitions, no
batch is being computed (a batch retrying against a dependency that is down is busy, not
stalled), and neither a batch ended nor a committed offset moved for `timeout_s`. The process
then exits non-zero and its supervisor restarts it, as for any consumer loop that stopped.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StreamState:
    """What the watch reads of the stream at one moment."""

    waiting: int
    """Records on the worker's partitions beyond the group's committed offsets."""
    busy: bool
    """A batch is being computed, delivered or saved."""
    progress: Hashable
    """Anything that changes when the stream moves: batches done, committed offsets."""


@dataclass
class StallWatch:
    timeout_s: float
    _progress: Hashable = field(default=None, init=False)
    _since: float | None = field(default=None, init=False)

    def observe(self, now: float, state: StreamState) -> str | None:
        """Why the stream counts as stalled now, or None."""
        moved = state.progress != self._progress
        self._progress = state.progress
        if state.waiting <= 0 or state.busy:
            self._since = None
            return None
        if moved or self._since is None:
            self._since = now
            return None
        still = now - self._since
        if still < self.timeout_s:
            return None
        return (
            f"{state.waiting} record(s) wait on its partitions and the stream has not moved "
            f"for {still:.0f} s (MLOPS_FEATURE_STORE_STALL_TIMEOUT_S={self.timeout_s:g})"
        )
