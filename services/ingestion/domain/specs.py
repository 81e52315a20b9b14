"""A dataset spec from a request body: JSON by default, YAML when the content type says so."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from services.ingestion.domain.batches import json_kind, parse_json
from services.ingestion.domain.errors import InvalidSpec, MalformedBody
from shared.datasets.spec import DatasetSpec

YAML_MEDIA_TYPES = frozenset({"application/yaml", "text/yaml", "application/x-yaml", "text/x-yaml"})


def media_type(content_type: str | None) -> str:
    """'text/csv; charset=utf-8' -> 'text/csv'."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _load_yaml(body: bytes) -> Any:
    try:
        # Aliases let a few bytes expand into a huge document: a spec never needs them.
        for event in yaml.parse(body, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise MalformedBody("YAML aliases (*name) are not accepted in a dataset spec")
        return yaml.safe_load(body)
    except yaml.YAMLError as error:
        raise MalformedBody(f"malformed YAML: {error}") from None


def validation_errors(error: ValidationError) -> list[dict[str, Any]]:
    return [
        {
            "loc": ".".join(str(part) for part in item["loc"]) or "<root>",
            "message": item["msg"],
            "type": item["type"],
        }
        for item in error.errors(include_url=False)
    ]


def parse_spec(body: bytes, content_type: str | None) -> DatasetSpec:
    """The DatasetSpec of a body; MalformedBody if unparseable, InvalidSpec listing every
    validation error otherwise."""
    is_yaml = media_type(content_type) in YAML_MEDIA_TYPES
    document = _load_yaml(body) if is_yaml else parse_json(body)
    if not isinstance(document, dict):
        raise InvalidSpec(
            f"a dataset spec is a {'YAML mapping' if is_yaml else 'JSON object'}, "
            f"not a {json_kind(document)}",
            errors=[],
        )
    try:
        return DatasetSpec.model_validate(document)
    except ValidationError as error:
        errors = validation_errors(error)
        first = f"{errors[0]['loc']}: {errors[0]['message']}"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InvalidSpec(f"invalid dataset spec: {first}{more}", errors=errors) from None
