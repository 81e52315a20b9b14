"""The phishing and friedman generators: deterministic, cut-independent, in their specs'
columns, and shifting exactly where asked."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.datasets.sources import PHISHING_SHIFTED, friedman_records, phishing_records
from shared.datasets.spec import shipped_specs

START = datetime(2024, 1, 1, tzinfo=UTC)
SPECS = {spec.name: spec for spec in shipped_specs()}


def _columns(name: str) -> set[str]:
    spec = SPECS[name]
    label = {spec.label.name} if spec.label and spec.label.arrival == "with_record" else set()
    ids = {spec.entity_key, spec.event_time, spec.record_id}
    return {f.name for f in spec.features} | ids | label


def test_phishing_records_hold_the_spec_columns_and_their_label() -> None:
    for record, label in phishing_records(50, seed=3, start=START):
        assert set(record) == _columns("phishing")
        assert record["is_phishing"] == label and label in (0, 1)


def test_friedman_records_hold_the_spec_columns_but_not_their_label() -> None:
    for record, target in friedman_records(50, seed=3, start=START):
        assert set(record) == _columns("friedman")
        assert "y" not in record and isinstance(target, float)


@pytest.mark.parametrize(
    ("source", "time_column"), [(phishing_records, "seen_at"), (friedman_records, "measured_at")]
)
def test_a_stream_is_the_same_however_it_is_cut(source, time_column: str) -> None:
    def untimed(pairs) -> list[tuple[dict, object]]:
        return [({k: v for k, v in r.items() if k != time_column}, y) for r, y in pairs]

    whole = untimed(source(30, seed=5, start=START))
    cut = untimed(source(12, seed=5, start=START))
    cut += untimed(source(18, seed=5, start=START, start_index=12))
    assert cut == whole


def test_phishing_shift_recodes_only_the_shifted_features_from_shift_at() -> None:
    plain = list(phishing_records(40, seed=2, start=START))
    shifted = list(phishing_records(40, seed=2, start=START, shift_at=25))
    for index, ((before, y0), (after, y1)) in enumerate(zip(plain, shifted, strict=True)):
        assert y0 == y1
        for name, value in before.items():
            moved = index >= 25 and name in PHISHING_SHIFTED
            assert after[name] == (1.0 - value if moved else value), (index, name)


def test_friedman_drift_changes_the_targets_from_drift_at_only() -> None:
    plain = [y for _, y in friedman_records(60, seed=4, start=START)]
    drifted = [y for _, y in friedman_records(60, seed=4, start=START, drift_at=30)]
    assert plain[:30] == drifted[:30]
    assert sum(a != b for a, b in zip(plain[30:], drifted[30:], strict=True)) > 25


def test_phishing_refuses_an_unknown_shifted_feature() -> None:
    with pytest.raises(ValueError, match="no phishing feature"):
        next(phishing_records(1, seed=1, start=START, shifted=("nope",)))


def test_a_label_task_and_metric_come_from_each_new_spec() -> None:
    assert SPECS["phishing"].model.metric_for("classification") == ("accuracy", True)
    assert SPECS["friedman"].task == "regression"
    assert SPECS["friedman"].model.metric_for("regression") == ("mae", False)
