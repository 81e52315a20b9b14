"""The feature store's offline store over HTTP: point-in-time-correct training sets.

    POST /training-sets {"dataset": "loans", "until": "2024-01-01T00:00:00+00:00"?}
      -> 201 {"id", "dataset", "until", "uri": "s3://bucket/key.parquet", "location",
              "rows": 1000, "columns": [...], "spec_version": 1,
              "lineage": {"offsets": [{"topic", "partition", "first_offset", "last_offset"}],
                          "features": [...], "labels": [...]}, "counts": {...}}
      (404: unknown dataset; 422: nothing labelled to train on yet)
    GET /training-sets/coverage -> {"coverage": [{"topic", "partition", "offset"}]}: how far
      the offline store is written (next offsets of data.validated, data.labels, ...)

    POST /training-sets/rebuild {"dataset", "offsets": [...], "cut_off": ISO?}
      -> 200 Parquet: the set a lineage names, rebuilt from Kafka alone; header
         X-Rebuild-Summary: JSON counts (410: a range no longer in Kafka; 404 unknown spec)

The store (services/feature_store/http.py) joins each label with its record's features as
they were at the record's event time, writes the set as Parquet to MinIO and answers where
it is, its size, its columns, and the exact Kafka ranges (data.validated for the features,
data.labels for the labels) its rows were built from.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pandas as pd
from pydantic import ValidationError

from services.training.adapters.errors import DependencyRefused, DependencyUnavailable
from services.training.domain.waiting import Positions
from shared.events.models import OffsetRange
from shared.telemetry import inject_http_trace_headers


@dataclass(frozen=True)
class TrainingSetRef:
    """Where the feature store put a training set, and what it was built from."""

    uri: str
    rows: int
    columns: list[str]
    offsets: list[OffsetRange]
    spec_version: int | None = None


def training_set_ref(answer: Any) -> TrainingSetRef:
    """The feature store's answer, read; an answer without uri, rows or lineage is refused."""
    if not isinstance(answer, dict):
        raise DependencyRefused(f"the feature store's answer is not an object: {str(answer)[:200]}")
    try:
        lineage = answer["lineage"]
        ranges = lineage.get("offsets", []) if isinstance(lineage, dict) else lineage
        spec_version = answer.get("spec_version")
        return TrainingSetRef(
            uri=str(answer["uri"]),
            rows=int(answer["rows"]),
            columns=[str(c) for c in answer.get("columns", [])],
            offsets=[OffsetRange.model_validate(r) for r in ranges],
            spec_version=int(spec_version) if spec_version is not None else None,
        )
    except (KeyError, TypeError, ValueError, ValidationError) as error:
        raise DependencyRefused(
            f"unreadable training-set answer ({type(error).__name__}: {error}): {str(answer)[:300]}"
        ) from None


def coverage_of(answer: Any) -> Positions:
    """The feature store's coverage answer, read: {"coverage": [{"topic", "partition",
    "offset"}]}."""
    try:
        return {
            (str(item["topic"]), int(item["partition"])): int(item["offset"])
            for item in answer["coverage"]
        }
    except (KeyError, TypeError, ValueError) as error:
        raise DependencyRefused(
            f"unreadable coverage answer ({type(error).__name__}: {error}): {str(answer)[:300]}"
        ) from None


@dataclass(frozen=True)
class RebuiltSet:
    """A training set the feature store rebuilt from Kafka, and what it read for it."""

    frame: pd.DataFrame
    summary: dict[str, int]


class FeatureStoreClient:
    def __init__(self, base_url: str, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=timeout_s,
            event_hooks={"request": [inject_http_trace_headers]},
        )

    def training_set(self, dataset: str, until: datetime | None = None) -> TrainingSetRef:
        body: dict[str, Any] = {"dataset": dataset}
        if until is not None:
            body["until"] = until.isoformat()
        try:
            response = self._client.post("/training-sets", json=body)
        except httpx.HTTPError as error:
            raise DependencyUnavailable(
                f"feature store at {self.base_url}: {type(error).__name__}: {error}"
            ) from None
        if response.status_code >= 500:
            raise DependencyUnavailable(
                f"{self.base_url}/training-sets answered {response.status_code}: "
                f"{response.text[:300]}"
            )
        if response.status_code not in (200, 201):
            raise DependencyRefused(
                f"{self.base_url}/training-sets refused {dataset!r} with "
                f"{response.status_code}: {response.text[:300]}"
            )
        return training_set_ref(response.json())

    def rebuild_training_set(
        self,
        dataset: str,
        offsets: list[OffsetRange],
        cut_off: datetime | None,
        timeout_s: float,
    ) -> RebuiltSet:
        """The training set of exactly these ranges, rebuilt from Kafka by the store."""
        body = {
            "dataset": dataset,
            "offsets": [r.model_dump(mode="json") for r in offsets],
            "cut_off": cut_off.isoformat() if cut_off else None,
        }
        path = "/training-sets/rebuild"
        try:
            response = self._client.post(path, json=body, timeout=timeout_s)
        except httpx.HTTPError as error:
            raise DependencyUnavailable(
                f"feature store at {self.base_url}: {type(error).__name__}: {error}"
            ) from None
        if response.status_code == 429 or response.status_code >= 500:
            raise DependencyUnavailable(
                f"feature store at {self.base_url}: {path} answered {response.status_code}: "
                f"{_detail(response)}"
            )
        if response.status_code != 200:
            raise DependencyRefused(
                f"the feature store could not rebuild the set ({response.status_code}): "
                f"{_detail(response)}"
            )
        try:
            frame = pd.read_parquet(io.BytesIO(response.content))
            summary = json.loads(response.headers.get("x-rebuild-summary") or "{}")
        except Exception as error:
            raise DependencyRefused(
                f"unreadable rebuilt set ({type(error).__name__}: {error})"
            ) from None
        return RebuiltSet(frame, {str(k): int(v) for k, v in summary.items()})

    def coverage(self) -> Positions:
        """How far the offline store is written: (topic, partition) -> next offset."""
        try:
            response = self._client.get("/training-sets/coverage")
        except httpx.HTTPError as error:
            raise DependencyUnavailable(
                f"feature store at {self.base_url}: {type(error).__name__}: {error}"
            ) from None
        if response.status_code != 200:
            raise DependencyUnavailable(
                f"{self.base_url}/training-sets/coverage answered {response.status_code}: "
                f"{response.text[:300]}"
            )
        return coverage_of(response.json())

    def ping(self) -> None:
        self._client.get("/live", timeout=2.0).raise_for_status()

    def close(self) -> None:
        self._client.close()


def _detail(response: httpx.Response) -> str:
    """A FastAPI refusal's reason ({"detail": ...}), else the start of the body."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else response.text[:300]
