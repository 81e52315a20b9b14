"""The model registry over HTTP: every model with its aliases, the version holding an alias,
and one version's record.

    GET /models                            [{"name", "aliases": {"champion": 3}, ...}, ...]
    GET /models/{name}/aliases/{alias}     {"model_name", "alias", "version": {...version...}}
    GET /models/{name}/versions/{version}  {"model_name", "version", "artifact", "lineage", ...}

A version's lineage names its dataset, spec version and feature columns (the model's input).
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import ValidationError

from services.serving.domain.served import ModelCard
from shared.events.models import ArtifactRef


class RegistryUnavailable(Exception):
    """The registry did not answer, or answered with a server error: worth retrying."""


class RegistryRefused(Exception):
    """The registry answered, and the answer cannot be used: a missing version, a bad record."""


def card_of(version: dict[str, Any]) -> ModelCard:
    """A version record of the registry's API as serving reads it."""
    try:
        lineage = version["lineage"]
        columns = lineage["feature_columns"]
        spec_version = lineage.get("spec_version")
        if (
            not isinstance(columns, list)
            or not columns
            or not all(isinstance(c, str) for c in columns)
        ):
            raise RegistryRefused(f"lineage.feature_columns is not a list of names: {columns!r}")
        return ModelCard(
            name=str(version["model_name"]),
            version=int(version["version"]),
            artifact=ArtifactRef.model_validate(version["artifact"]),
            dataset=str(lineage["dataset"]),
            spec_version=int(spec_version) if spec_version is not None else None,
            feature_columns=tuple(columns),
        )
    except (KeyError, TypeError, ValueError, ValidationError) as error:
        raise RegistryRefused(
            f"unreadable version record: {type(error).__name__}: {error}"
        ) from None


class RegistryClient:
    def __init__(self, base_url: str, timeout_s: float) -> None:
        self.base_url = base_url
        self._client = httpx.Client(base_url=base_url, timeout=timeout_s)

    def models(self) -> dict[str, dict[str, int]]:
        """Every registered model and the version holding each of its aliases."""
        answer = self._get_json("/models")
        if not isinstance(answer, list):
            raise RegistryRefused(f"/models answered {type(answer).__name__}, not a list")
        try:
            return {
                str(model["name"]): {str(a): int(v) for a, v in model["aliases"].items()}
                for model in answer
            }
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise RegistryRefused(
                f"unreadable model list: {type(error).__name__}: {error}"
            ) from None

    def alias(self, name: str, alias: str) -> ModelCard | None:
        """The version holding the alias, or None when no version holds it (or no such model)."""
        answer = self._get(f"/models/{name}/aliases/{alias}")
        if answer is None:
            return None
        return card_of(answer["version"])

    def version(self, name: str, version: int) -> ModelCard:
        answer = self._get(f"/models/{name}/versions/{version}")
        if answer is None:
            raise RegistryRefused(f"the registry has no version {version} of {name!r}")
        return card_of(answer)

    def _get(self, path: str) -> dict[str, Any] | None:
        body: dict[str, Any] | None = self._get_json(path)
        return body

    def _get_json(self, path: str) -> Any:
        """The JSON answer of a GET; None on 404."""
        try:
            response = self._client.get(path)
        except httpx.HTTPError as error:
            raise RegistryUnavailable(f"{self.base_url}: {type(error).__name__}: {error}") from None
        if response.status_code == 404:
            return None
        if response.status_code >= 500:
            raise RegistryUnavailable(f"{self.base_url}{path} answered {response.status_code}")
        if response.status_code != 200:
            raise RegistryRefused(
                f"{self.base_url}{path} answered {response.status_code}: {response.text[:300]}"
            )
        try:
            return response.json()
        except ValueError as error:
            raise RegistryRefused(f"{self.base_url}{path} answered no JSON: {error}") from None

    def close(self) -> None:
        self._client.close()
