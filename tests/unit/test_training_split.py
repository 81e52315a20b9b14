"""The time split: the latest rows by event time are the holdout."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from services.training.domain.errors import NotEnoughData
from services.training.domain.frames import prepare
from services.training.domain.split import holdout_size, time_split
from shared.datasets.sources import agrawal_records
from shared.datasets.spec import shipped_specs

SPECS = {spec.name: spec for spec in shipped_specs()}


def loans(count: int) -> pd.DataFrame:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = [
        {**record, "approved": label}
        for record, label in agrawal_records(count, seed=2, start=start)
    ]
    return pd.DataFrame(rows)


def test_the_holdout_is_the_last_fifth_by_event_time_whatever_the_stored_order() -> None:
    raw = loans(100).sample(frac=1, random_state=1)
    split = time_split(prepare(raw, SPECS["loans"]), 0.2)
    assert len(split.train) == 80 and len(split.holdout) == 20
    assert split.train["applied_at"].max() <= split.holdout["applied_at"].min()
    assert split.holdout_from == split.holdout["applied_at"].min().to_pydatetime()
    assert split.describe().startswith("last 20% by event time: 20 rows from 2024-01-01T")


def test_the_fraction_is_configurable() -> None:
    split = time_split(prepare(loans(100), SPECS["loans"]), 0.35)
    assert (len(split.train), len(split.holdout)) == (65, 35)


@pytest.mark.parametrize(("rows", "fraction", "held"), [(10, 0.2, 2), (3, 0.2, 1), (7, 0.5, 4)])
def test_holdout_size_rounds_and_keeps_at_least_one_row(
    rows: int, fraction: float, held: int
) -> None:
    assert holdout_size(rows, fraction) == held


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_a_fraction_outside_zero_and_one_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        holdout_size(10, fraction)


def test_one_row_leaves_nothing_to_fit() -> None:
    with pytest.raises(NotEnoughData, match="none to fit"):
        time_split(prepare(loans(1), SPECS["loans"]), 0.2)


def test_a_single_class_to_fit_on_is_refused() -> None:
    raw = loans(20)
    raw["approved"] = 1
    with pytest.raises(NotEnoughData, match="single class"):
        time_split(prepare(raw, SPECS["loans"]), 0.2)
