import copy
import json
import subprocess
from pathlib import Path

import pytest

from shared.events.catalog import EVENT_TYPES
from shared.events.schemas import all_schemas, check, event_schema, incompatibilities

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def schema() -> dict:
    return event_schema(EVENT_TYPES["mlops.RecordIngested"])


def test_committed_schemas_match_the_models() -> None:
    assert check() == []


def test_a_new_optional_property_is_compatible(schema: dict) -> None:
    grown = copy.deepcopy(schema)
    grown["$defs"]["RecordIngested"]["properties"]["source_file"] = {"type": "string"}
    assert incompatibilities(schema, grown) == []


def test_removing_a_property_is_incompatible(schema: dict) -> None:
    shrunk = copy.deepcopy(schema)
    del shrunk["$defs"]["RecordIngested"]["properties"]["entity"]
    assert incompatibilities(schema, shrunk) == ["$defs.RecordIngested.entity: property removed"]


def test_retyping_a_property_is_incompatible(schema: dict) -> None:
    retyped = copy.deepcopy(schema)
    retyped["$defs"]["RecordIngested"]["properties"]["dataset"]["type"] = "integer"
    expected = ["$defs.RecordIngested.dataset: definition changed"]
    assert incompatibilities(schema, retyped) == expected


def test_a_new_required_property_is_incompatible(schema: dict) -> None:
    stricter = copy.deepcopy(schema)
    definition = stricter["$defs"]["RecordIngested"]
    definition["properties"]["region"] = {"type": "string"}
    definition["required"].append("region")
    assert incompatibilities(schema, stricter) == ["$defs.RecordIngested.region: became required"]


def test_changing_only_descriptions_is_compatible(schema: dict) -> None:
    reworded = copy.deepcopy(schema)
    reworded["$defs"]["RecordIngested"]["properties"]["dataset"]["description"] = "other words"
    assert incompatibilities(schema, reworded) == []


def _committed_versions(path: Path) -> list[dict]:
    relative = path.relative_to(REPO)
    log = subprocess.run(
        ["git", "log", "--format=%H", "--", str(relative)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    versions = []
    for commit in log.stdout.split():
        shown = subprocess.run(
            ["git", "show", f"{commit}:{relative}"], cwd=REPO, capture_output=True, text=True
        )
        if shown.returncode == 0:
            versions.append(json.loads(shown.stdout))
    return versions


@pytest.mark.parametrize("path", sorted(all_schemas()), ids=lambda path: path.name)
def test_every_committed_version_of_a_schema_is_still_compatible(path: Path) -> None:
    current = all_schemas()[path]
    for previous in _committed_versions(path):
        assert incompatibilities(previous, current) == []
