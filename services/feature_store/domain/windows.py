"""Time windows over event time: which windows a moment falls in, and which one answers
"as of" that moment.

A window is ``[start, start + size)`` in seconds since the epoch; windows start every ``hop``
seconds (a tumbling window has ``hop == size``, so each moment falls in exactly one). Moments
are handled as integer microseconds, so window boundaries never suffer float rounding.

>>> hourly = WindowShape(size_s=3600, hop_s=3600)
>>> window_starts(hourly, 5_000 * MICROS)
[3600]
>>> daily_by_hour = WindowShape(size_s=86400, hop_s=3600)
>>> starts = window_starts(daily_by_hour, 90_000 * MICROS)
>>> len(starts), starts[0], starts[-1]
(24, 7200, 90000)
>>> trailing_start(daily_by_hour, 90_000 * MICROS)
7200
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.datasets.spec import Aggregation

MICROS = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class WindowShape:
    size_s: int
    hop_s: int

    def __post_init__(self) -> None:
        if self.size_s <= 0 or self.hop_s <= 0:
            raise ValueError(f"window size and hop must be positive, not {self}")
        if self.hop_s > self.size_s:
            raise ValueError(f"a hop of {self.hop_s}s leaves gaps in windows of {self.size_s}s")

    @classmethod
    def of(cls, aggregation: Aggregation) -> WindowShape:
        hop = aggregation.hop_seconds or aggregation.window_seconds
        return cls(size_s=aggregation.window_seconds, hop_s=hop)

    @property
    def tumbling(self) -> bool:
        return self.hop_s == self.size_s

    def end_s(self, start_s: int) -> int:
        return start_s + self.size_s


def epoch_micros(moment: datetime) -> int:
    """Microseconds since the epoch; naive times are refused rather than guessed."""
    if moment.tzinfo is None:
        raise ValueError(f"event time {moment.isoformat()} has no time zone")
    return (moment - EPOCH) // timedelta(microseconds=1)


def window_starts(shape: WindowShape, moment_us: int) -> list[int]:
    """Starts (seconds) of every window containing the moment, earliest first."""
    hop_us = shape.hop_s * MICROS
    first = (moment_us - shape.size_s * MICROS) // hop_us + 1
    last = moment_us // hop_us
    return [k * shape.hop_s for k in range(first, last + 1)]


def trailing_start(shape: WindowShape, moment_us: int) -> int:
    """The window that answers "as of" the moment: of those containing it, the one that
    started first, so it covers the most of the ``size`` seconds up to the moment (for a
    hopping window: the last ``size`` seconds, to within one hop)."""
    return ((moment_us - shape.size_s * MICROS) // (shape.hop_s * MICROS) + 1) * shape.hop_s
