"""The feature store's online store over HTTP: the latest feature vector of entities.

    POST /features/{dataset}/batch {"entities": [...]}
      -> {"found": [{"entity": "...", "features": {...}, "record_id": "..."?}, ...], ...}

Entities the answer leaves out of "found" are unknown to the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from shared.events.records import FieldValue


class FeatureStoreUnavailable(Exception):
    """The store did not answer in time, or failed: the request cannot be scored now."""


class FeatureStoreRefused(Exception):
    """The store refused the lookup (e.g. a dataset it does not know)."""


@dataclass(frozen=True)
class OnlineFeatures:
    entity: str
    features: dict[str, FieldValue]
    record_id: str | None = None


def _found(item: Any) -> OnlineFeatures:
    if not isinstance(item, dict) or not isinstance(item.get("features"), dict):
        raise FeatureStoreRefused(f"unreadable entry in the store's answer: {str(item)[:200]}")
    record_id = item.get("record_id")
    return OnlineFeatures(
        entity=str(item["entity"]),
        features=item["features"],
        record_id=str(record_id) if record_id is not None else None,
    )


class FeatureStoreClient:
    def __init__(self, base_url: str, timeout_s: float) -> None:
        self.base_url = base_url
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s)

    async def lookup(self, dataset: str, entities: list[str]) -> dict[str, OnlineFeatures]:
        """The features of each entity the store knows, by entity."""
        path = f"/features/{dataset}/batch"
        try:
            response = await self._client.post(path, json={"entities": entities})
        except httpx.HTTPError as error:
            raise FeatureStoreUnavailable(
                f"feature store at {self.base_url}: {type(error).__name__}: {error}"
            ) from None
        if response.status_code >= 500:
            raise FeatureStoreUnavailable(f"{self.base_url}{path} answered {response.status_code}")
        if response.status_code != 200:
            raise FeatureStoreRefused(
                f"{self.base_url}{path} answered {response.status_code}: {response.text[:300]}"
            )
        found = response.json().get("found", [])
        return {entry.entity: entry for entry in map(_found, found)}

    async def close(self) -> None:
        await self._client.aclose()
