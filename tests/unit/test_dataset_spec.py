from typing import Any

import pytest
from pydantic import ValidationError

from shared.datasets.spec import DatasetSpec, FeatureSpec, shipped_specs


def a_spec(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": "loans",
        "entity_key": "applicant_id",
        "event_time": "applied_at",
        "features": [
            {"name": "salary", "type": "numeric", "min": 0, "max": 10},
            {"name": "zipcode", "type": "categorical", "categories": ["1", "2"]},
        ],
        "label": {"name": "approved", "type": "integer"},
    }
    document.update(changes)
    return document


def test_shipped_specs_are_valid_and_include_the_agrawal_loans() -> None:
    names = {spec.name for spec in shipped_specs()}
    assert "loans" in names


def test_equal_content_has_an_equal_fingerprint_and_a_change_does_not() -> None:
    first, again = DatasetSpec.model_validate(a_spec()), DatasetSpec.model_validate(a_spec())
    assert first.fingerprint() == again.fingerprint()
    changed = DatasetSpec.model_validate(a_spec(description="now with words"))
    assert changed.fingerprint() != first.fingerprint()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"features": [{"name": "z", "type": "categorical"}]}, "needs its categories"),
        ({"features": [{"name": "z", "type": "boolean", "min": 1}]}, "min/max apply to"),
        ({"features": [{"name": "z", "type": "numeric", "min": 5, "max": 1}]}, "above max"),
        (
            {"features": [{"name": "a", "type": "numeric"}, {"name": "a", "type": "integer"}]},
            "twice",
        ),
        ({"features": [{"name": "applied_at", "type": "timestamp"}]}, "also declared as features"),
        (
            {"aggregations": [{"name": "s", "function": "sum", "window_seconds": 60}]},
            "needs a feature",
        ),
        (
            {
                "aggregations": [
                    {"name": "s", "function": "sum", "feature": "nope", "window_seconds": 60}
                ]
            },
            "no feature 'nope'",
        ),
        ({"name": "Loans!"}, "name"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_an_inconsistent_spec_is_refused_with_a_reason(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        DatasetSpec.model_validate(a_spec(**changes))


def test_an_expected_range_must_lie_within_the_hard_range() -> None:
    inside = FeatureSpec(
        name="age", type="integer", min=0, max=130, expected_min=18, expected_max=90
    )
    assert (inside.expected_min, inside.expected_max) == (18, 90)
    for bounds in ({"min": 0, "expected_min": -1}, {"max": 130, "expected_max": 131}):
        with pytest.raises(ValidationError, match="reaches past the hard range"):
            FeatureSpec(name="age", type="integer", **bounds)
