from datetime import UTC, datetime, timedelta
from itertools import islice

import pytest
from river.datasets.synth import Agrawal

from shared.datasets.sources import agrawal_records, breast_cancer_records, snake_case
from shared.datasets.spec import DatasetSpec, FeatureSpec, FeatureType, shipped_specs
from shared.datasets.values import outside_expected

START = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def spec(name: str) -> DatasetSpec:
    return next(s for s in shipped_specs() if s.name == name)


def fits(feature: FeatureSpec, value: object) -> bool:
    """A small stand-in for validation's rules: type, range, categories."""
    if value is None:
        return feature.nullable
    if feature.type == FeatureType.CATEGORICAL:
        return isinstance(value, str) and value in (feature.categories or [])
    if feature.type == FeatureType.INTEGER and type(value) is not int:
        return False
    if feature.type == FeatureType.NUMERIC and not isinstance(value, int | float):
        return False
    low = feature.min if feature.min is not None else float("-inf")
    high = feature.max if feature.max is not None else float("inf")
    return low <= value <= high  # type: ignore[operator]


def test_agrawal_records_are_deterministic_for_a_seed_and_differ_across_seeds() -> None:
    first = list(agrawal_records(50, seed=11, start=START))
    again = list(agrawal_records(50, seed=11, start=START))
    other = list(agrawal_records(50, seed=12, start=START))
    assert first == again
    assert [r for r, _ in first] != [r for r, _ in other]


def test_agrawal_records_have_exactly_the_columns_of_the_loans_spec_with_json_types() -> None:
    loans = spec("loans")
    expected = {loans.entity_key, loans.event_time, loans.record_id} | {
        f.name for f in loans.features
    }
    for record, label in agrawal_records(200, seed=1, start=START):
        assert set(record) == expected
        assert loans.label is not None and loans.label.name not in record, "labels are feedback"
        assert label in (0, 1)
        for column in ("elevel", "car", "zipcode"):
            assert isinstance(record[column], str)
        for column in ("age", "hyears"):
            assert type(record[column]) is int
        for column in ("salary", "commission", "hvalue", "loan"):
            assert type(record[column]) is float
        assert isinstance(record["applicant_id"], str)
        assert datetime.fromisoformat(str(record["applied_at"])).tzinfo is not None


def test_agrawal_values_fit_the_loans_spec() -> None:
    loans = spec("loans")
    for record, _ in agrawal_records(5000, seed=5, start=START):
        for feature in loans.features:
            assert fits(feature, record[feature.name]), (feature.name, record[feature.name])


def test_agrawal_ids_times_and_entities() -> None:
    rows = [
        r for r, _ in agrawal_records(300, seed=4, start=START, seconds_between=2.5, entities=7)
    ]
    ids = [r["application_id"] for r in rows]
    assert len(set(ids)) == len(ids)
    assert ids[:2] == ["app-4-0", "app-4-1"]
    assert rows[0]["applied_at"] == START.isoformat()
    assert rows[2]["applied_at"] == (START + timedelta(seconds=5)).isoformat()
    assert {r["applicant_id"] for r in rows} <= {f"applicant-{i}" for i in range(7)}
    assert len({r["applicant_id"] for r in rows}) == 7


def test_start_index_continues_the_same_stream() -> None:
    whole = list(agrawal_records(30, seed=9, start=START))
    tail = list(agrawal_records(10, seed=9, start=START, start_index=20))
    for (full, label), (part, part_label) in zip(whole[20:], tail, strict=True):
        assert label == part_label
        assert {k: v for k, v in full.items() if k != "applied_at"} == {
            k: v for k, v in part.items() if k != "applied_at"
        }
    assert tail[0][0]["applied_at"] == START.isoformat(), "start is the first row yielded"


def test_the_drift_switches_the_labelling_function_and_leaves_the_features_alone() -> None:
    drift_at = 400
    plain = list(agrawal_records(800, seed=2, start=START, function_before=0))
    drifted = list(agrawal_records(800, seed=2, start=START, function_before=0, drift_at=drift_at))
    assert [r for r, _ in plain] == [r for r, _ in drifted], "same features either way"

    def label_by(function: int, record: dict) -> int:
        x = {k: record[k] for k in Agrawal().feature_names}
        x.update(elevel=int(x["elevel"]), car=int(x["car"]), zipcode=int(x["zipcode"]))
        return getattr(Agrawal, f"_classification_function_{function}")(**x)

    for index, (record, label) in enumerate(drifted):
        assert label == label_by(0 if index < drift_at else 2, record), index
    changed = sum(
        a != b for (_, a), (_, b) in zip(plain[drift_at:], drifted[drift_at:], strict=True)
    )
    assert changed > 100, "function 2 labels a good part of the stream differently"
    assert [y for _, y in plain[:drift_at]] == [y for _, y in drifted[:drift_at]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": -1}, "count"),
        ({"entities": 0}, "entities"),
        ({"function_after": 10}, "0..9"),
        ({"start": datetime(2024, 1, 1)}, "timezone-aware"),
    ],
)
def test_agrawal_refuses_bad_arguments(kwargs: dict, message: str) -> None:
    arguments = {"count": 1, "seed": 0, "start": START, **kwargs}
    with pytest.raises(ValueError, match=message):
        list(agrawal_records(**arguments))


def test_breast_cancer_records_match_their_spec_and_carry_the_label() -> None:
    breast_cancer = spec("breast_cancer")
    assert breast_cancer.label is not None and breast_cancer.label.arrival == "with_record"
    expected = {
        breast_cancer.entity_key,
        breast_cancer.event_time,
        breast_cancer.record_id,
        breast_cancer.label.name,
    } | {f.name for f in breast_cancer.features}
    rows = list(breast_cancer_records(seed=0, start=START))
    assert len(rows) == 569
    assert {r["patient_id"] for r, _ in rows} == {f"patient-{i}" for i in range(569)}
    assert sorted({label for _, label in rows}) == [0, 1]
    for record, label in rows:
        assert set(record) == expected
        assert record["diagnosis"] == label
        for feature in breast_cancer.features:
            assert fits(feature, record[feature.name]), (feature.name, record[feature.name])


def test_breast_cancer_records_are_shuffled_by_seed_and_go_round_again() -> None:
    first = [r for r, _ in breast_cancer_records(20, seed=1, start=START)]
    again = [r for r, _ in breast_cancer_records(20, seed=1, start=START)]
    other = [r for r, _ in breast_cancer_records(20, seed=2, start=START)]
    assert first == again and first != other
    more = [r for r, _ in breast_cancer_records(1000, seed=1, start=START)]
    assert len({r["sample_id"] for r in more}) == 1000
    assert len({r["patient_id"] for r in more}) == 569
    tail = next(breast_cancer_records(1, seed=1, start=START, start_index=5))[0]
    assert {k: v for k, v in tail.items() if k != "examined_at"} == {
        k: v for k, v in first[5].items() if k != "examined_at"
    }


def test_column_names_become_snake_case() -> None:
    assert snake_case("mean concave points") == "mean_concave_points"
    assert snake_case(" Worst  Area ") == "worst_area"


def test_sources_are_lazy() -> None:
    assert len(list(islice(agrawal_records(10**9, seed=0, start=START), 3))) == 3


@pytest.mark.parametrize(
    ("name", "records"),
    [
        ("loans", lambda: agrawal_records(5000, seed=6, start=START)),
        ("breast_cancer", lambda: breast_cancer_records(seed=0, start=START)),
    ],
)
def test_a_shipped_dataset_s_own_values_are_inside_its_expected_ranges(name, records) -> None:
    """The demo's stream flags nothing: out_of_range is a signal only when the data shifts."""
    shipped = spec(name)
    ranged = [
        f for f in shipped.features if f.expected_min is not None or f.expected_max is not None
    ]
    assert ranged, f"{name} declares expected ranges"
    for record, _ in records():
        for feature in shipped.features:
            assert fits(feature, record[feature.name]), (feature.name, record[feature.name])
            assert not outside_expected(feature, record[feature.name]), (
                feature.name,
                record[feature.name],
            )
