"""Reading raw values as declared types: what each type accepts, and the rule a misfit breaks."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from shared.datasets.spec import FeatureSpec, FeatureType
from shared.datasets.values import (
    Invalid,
    as_boolean,
    as_category,
    as_integer,
    as_number,
    as_timestamp,
    check_range,
    is_non_finite,
    outside_expected,
    wire,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(3, 3.0), (2.5, 2.5), (-1, -1.0), ("52000.5", 52000.5), (" 1e3 ", 1000.0), (".5", 0.5)],
)
def test_numeric_accepts_numbers_ints_and_numeric_strings(raw: object, expected: float) -> None:
    assert as_number(raw) == expected
    assert isinstance(as_number(raw), float)


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (True, "type"),
        ("12abc", "type"),
        ("1_000", "type"),
        ("", "type"),
        ([1], "type"),
        (math.nan, "not_finite"),
        (math.inf, "not_finite"),
        (-math.inf, "not_finite"),
        ("NaN", "not_finite"),
        ("inf", "not_finite"),
        ("-Infinity", "not_finite"),
        ("1e999", "not_finite"),
        (10**400, "range"),
    ],
)
def test_numeric_refuses_with_the_rule_broken(raw: object, rule: str) -> None:
    with pytest.raises(Invalid) as refused:
        as_number(raw)
    assert refused.value.rule == rule


@pytest.mark.parametrize(("raw", "expected"), [(3, 3), (3.0, 3), ("4", 4), ("4.0", 4), (-2, -2)])
def test_integer_accepts_integral_values(raw: object, expected: int) -> None:
    assert as_integer(raw) == expected
    assert type(as_integer(raw)) is int


@pytest.mark.parametrize(
    ("raw", "rule"),
    [(3.5, "type"), ("3.5", "type"), (False, "type"), ("x", "type"), (math.nan, "not_finite")],
)
def test_integer_refuses_fractions_and_junk(raw: object, rule: str) -> None:
    with pytest.raises(Invalid) as refused:
        as_integer(raw)
    assert refused.value.rule == rule
    if rule == "type":
        assert "integer" in refused.value.message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("FALSE", False),
        (1, True),
        (0, False),
        ("1", True),
    ],
)
def test_boolean_accepts_bools_true_false_strings_and_0_1(raw: object, expected: bool) -> None:
    assert as_boolean(raw) is expected


@pytest.mark.parametrize("raw", ["yes", 2, 1.0, "", None])
def test_boolean_refuses_anything_else(raw: object) -> None:
    with pytest.raises(Invalid, match="boolean") as refused:
        as_boolean(raw)
    assert refused.value.rule == "type"


@pytest.mark.parametrize(
    ("raw", "expected"), [("web", "web"), (1, "1"), (1.0, "1"), (True, "true"), ("1", "1")]
)
def test_categories_are_compared_as_strings(raw: object, expected: str) -> None:
    assert as_category(raw, ["web", "1", "true"]) == expected


def test_a_value_outside_the_categories_names_them() -> None:
    with pytest.raises(Invalid, match="'mail' is not one of: web, 1") as refused:
        as_category("mail", ["web", "1"])
    assert refused.value.rule == "category"
    with pytest.raises(Invalid) as nan:
        as_category("NaN", ["web"])
    assert nan.value.rule == "not_finite"
    assert as_category("NaN", ["NaN"]) == "NaN", "a category literally named NaN is allowed"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T14:00:00+02:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        (1714564800, datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("1714564800.0", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ],
)
def test_timestamps_are_iso_8601_or_epoch_seconds_in_utc(raw: object, expected: datetime) -> None:
    assert as_timestamp(raw) == expected


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("yesterday", "type"),
        (True, "type"),
        (1e20, "type"),
        ("NaN", "not_finite"),
        (math.inf, "not_finite"),
    ],
)
def test_unreadable_timestamps_are_refused(raw: object, rule: str) -> None:
    with pytest.raises(Invalid) as refused:
        as_timestamp(raw)
    assert refused.value.rule == rule


def test_ranges_are_inclusive() -> None:
    check_range(0, 0, 10)
    check_range(10, 0, 10)
    check_range(5, None, None)
    with pytest.raises(Invalid, match="below the minimum 0"):
        check_range(-0.5, 0, 10)
    with pytest.raises(Invalid, match="above the maximum 10"):
        check_range(11, 0, 10)


def test_non_finite_values_travel_as_strict_json_strings() -> None:
    assert [wire(math.nan), wire(math.inf), wire(-math.inf), wire(1.5)] == [
        "NaN",
        "Infinity",
        "-Infinity",
        1.5,
    ]
    assert is_non_finite("  -inf ") and is_non_finite(math.nan)
    assert not is_non_finite("info") and not is_non_finite(3.0)


def _ranged(kind: str, **bounds: float) -> FeatureSpec:
    return FeatureSpec.model_validate({"name": "x", "type": kind, **bounds})


@pytest.mark.parametrize(
    ("kind", "value", "outside"),
    [
        ("numeric", 9.99, True),
        ("numeric", 10.0, False),
        ("numeric", 15.5, False),
        ("numeric", 20.0, False),
        ("numeric", 20.01, True),
        ("numeric", "25", True),
        ("numeric", -1e9, True),
        ("integer", 9, True),
        ("integer", 10, False),
        ("integer", 20, False),
        ("integer", 21, True),
        ("integer", "21", True),
    ],
)
def test_a_value_outside_the_expected_range_is_flagged_on_both_sides(
    kind: str, value: object, outside: bool
) -> None:
    feature = _ranged(kind, expected_min=10, expected_max=20)
    assert outside_expected(feature, value) is outside


@pytest.mark.parametrize("value", [None, math.nan, "lots", True, float("inf")])
def test_missing_and_unreadable_values_are_not_flagged_the_hard_rules_judge_them(
    value: object,
) -> None:
    assert outside_expected(_ranged("numeric", expected_min=10, expected_max=20), value) is False


def test_a_one_sided_expected_range_flags_one_side_only() -> None:
    above = _ranged("integer", expected_max=5)
    below = _ranged("numeric", expected_min=0)
    assert outside_expected(above, 6) and not outside_expected(above, -1_000)
    assert outside_expected(below, -0.1) and not outside_expected(below, 1e12)


def test_hard_bounds_alone_flag_nothing_and_other_types_are_never_flagged() -> None:
    assert not outside_expected(_ranged("numeric", min=0, max=1), 5)
    category = FeatureSpec(name="c", type=FeatureType.CATEGORICAL, categories=["a"])
    assert not outside_expected(category, "b")
