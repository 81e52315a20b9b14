"""Validation's HTTP API: the streaming data-quality statistics, and the latest rejected
records of each dataset (GET /rejections/{dataset}, kept in memory, bounded)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from services.validation.domain.quality import QualityStats
from services.validation.domain.recent import RecentRejections
from shared.datasets.spec import DatasetSpec


def stats_router(
    stats: QualityStats,
    known_datasets: Callable[[], list[str]],
    spec_of: Callable[[str], DatasetSpec | None],
    recent: RecentRejections | None = None,
) -> APIRouter:
    router = APIRouter(tags=["data quality"])

    @router.get("/stats")
    def all_stats() -> dict[str, Any]:
        """Datasets with statistics, and messages that belong to no known dataset."""
        return {
            "datasets": sorted(set(stats.datasets()) | set(known_datasets())),
            "unattributed": stats.unattributed_counts(),
        }

    @router.get("/stats/{dataset}")
    def dataset_stats(dataset: str) -> dict[str, Any]:
        """Counts, rejections per rule, and per-feature statistics of one dataset's raw stream
        since this process started (they are kept in memory)."""
        snapshot = stats.snapshot(dataset)
        if snapshot is not None:
            return snapshot
        spec = spec_of(dataset)
        if spec is None:
            known = sorted(set(stats.datasets()) | set(known_datasets()))
            detail = f"unknown dataset {dataset!r}; known: {', '.join(known) or 'none'}"
            raise HTTPException(status_code=404, detail=detail)
        stats.declare(spec)
        return stats.snapshot(dataset) or {}

    @router.get("/rejections/{dataset}")
    def rejections(
        dataset: str, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
    ) -> dict[str, Any]:
        """The dataset's latest rejected records, newest first: when, the rules they broke,
        each error, and the values as received (long ones cut), since this process started."""
        kept = recent.of(dataset, limit) if recent is not None else []
        return {"dataset": dataset, "rejections": kept}

    return router
