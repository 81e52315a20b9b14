"""The time split: the latest rows by event time are the holdout, the rest is for fitting.

A model is judged on rows later than every row it learned from (ties on the boundary time
are split by record id, as the frame is sorted), the way it will meet data once deployed.

>>> import pandas as pd
>>> holdout_size(1000, 0.2), holdout_size(7, 0.2)
(200, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from services.training.domain.errors import NotEnoughData
from services.training.domain.frames import TrainingFrame


@dataclass(frozen=True)
class TimeSplit:
    train: pd.DataFrame
    holdout: pd.DataFrame
    fraction: float
    holdout_from: datetime
    """The event time of the holdout's first row."""

    def describe(self) -> str:
        return (
            f"last {self.fraction:.0%} by event time: {len(self.holdout)} rows from "
            f"{self.holdout_from.isoformat()}"
        )


def holdout_size(rows: int, fraction: float) -> int:
    """How many of `rows` are held out: the fraction, rounded, and at least one."""
    if not 0 < fraction < 1:
        raise ValueError(f"the holdout fraction must lie between 0 and 1, not {fraction}")
    return max(1, round(rows * fraction))


def time_split(training: TrainingFrame, fraction: float) -> TimeSplit:
    """Splits the (sorted) frame: its last `fraction` of rows are the holdout."""
    frame = training.frame
    held = holdout_size(len(frame), fraction)
    cut = len(frame) - held
    if cut < 1:
        raise NotEnoughData(f"{len(frame)} rows leave none to fit after holding out {held}")
    train = frame.iloc[:cut].reset_index(drop=True)
    holdout = frame.iloc[cut:].reset_index(drop=True)
    if training.task == "classification" and train[training.columns.label].nunique() < 2:
        raise NotEnoughData("the rows to fit on hold a single class: a classifier needs two")
    start = pd.Timestamp(holdout[training.columns.event_time].iloc[0]).to_pydatetime()
    return TimeSplit(train=train, holdout=holdout, fraction=fraction, holdout_from=start)
