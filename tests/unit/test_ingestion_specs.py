"""A spec in a request body: JSON by default, YAML by content type; every error listed."""

import json
from pathlib import Path

import pytest

from services.ingestion.domain.errors import InvalidSpec, MalformedBody
from services.ingestion.domain.specs import media_type, parse_spec
from shared.datasets.spec import SHIPPED_SPECS, DatasetSpec

LOANS_YAML = (SHIPPED_SPECS / "loans.yaml").read_bytes()
LOANS = DatasetSpec.from_file(Path(SHIPPED_SPECS / "loans.yaml"))


@pytest.mark.parametrize(
    "content_type", ["application/yaml", "text/yaml", "application/x-yaml; charset=utf-8"]
)
def test_a_yaml_spec_is_read_when_the_content_type_says_yaml(content_type: str) -> None:
    assert parse_spec(LOANS_YAML, content_type).fingerprint() == LOANS.fingerprint()


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain"])
def test_a_json_spec_is_the_default(content_type: str | None) -> None:
    body = json.dumps(LOANS.model_dump(mode="json")).encode()
    assert parse_spec(body, content_type) == LOANS


def test_an_invalid_spec_lists_every_validation_error() -> None:
    document = LOANS.model_dump(mode="json")
    document["features"][0]["min"] = 10
    document["features"][0]["max"] = 1
    document["surprise"] = True
    with pytest.raises(InvalidSpec) as refused:
        parse_spec(json.dumps(document).encode(), "application/json")
    body = refused.value.body()
    assert body["reason"] == "invalid_spec" and refused.value.status == 422
    locations = {error["loc"] for error in body["errors"]}
    assert {"features.0", "surprise"} <= locations
    assert body["detail"].startswith("invalid dataset spec: ")


@pytest.mark.parametrize(
    ("body", "content_type", "refusal", "message"),
    [
        (b"name: [unclosed", "application/yaml", MalformedBody, "malformed YAML"),
        (b"a: &x [1]\nb: *x\n", "text/yaml", MalformedBody, "aliases"),
        (b"{not json", "application/json", MalformedBody, "malformed JSON"),
        (b"[1, 2]", "application/json", InvalidSpec, "a dataset spec is a JSON object"),
        (b"- 1\n", "text/yaml", InvalidSpec, "a dataset spec is a YAML mapping"),
    ],
)
def test_what_is_not_a_spec_is_refused(
    body: bytes, content_type: str, refusal: type, message: str
) -> None:
    with pytest.raises(refusal, match=message):
        parse_spec(body, content_type)


def test_media_type_drops_parameters() -> None:
    assert media_type("Text/CSV; charset=utf-8") == "text/csv"
    assert media_type(None) == ""
