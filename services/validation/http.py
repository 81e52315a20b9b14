"""Validation's HTTP API: the streaming data-quality statistics, and the latest rejected
records of each dataset (GET /rejections/{dataset}, kept in memory, bounded)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query

from services.validation.domain.merge import merge_dataset_snapshots
from services.validation.domain.quality import QualityStats
from services.validation.domain.recent import RecentRejections
from shared.datasets.spec import DatasetSpec
from shared.kafka.peers import Peers

Scope = Annotated[
    Literal["all", "local"], Query(description="local: this replica's own, not the others'")
]


def stats_router(
    stats: QualityStats,
    known_datasets: Callable[[], list[str]],
    spec_of: Callable[[str], DatasetSpec | None],
    recent: RecentRejections | None = None,
    peers: Peers | None = None,
) -> APIRouter:
    router = APIRouter(tags=["data quality"])

    def others(path: str, scope: str, **params: Any) -> list[dict[str, Any]]:
        return [] if scope == "local" or peers is None else peers.gather(path, params)[0]

    @router.get("/stats")
    def all_stats(scope: Scope = "all") -> dict[str, Any]:
        """Datasets with statistics, and messages that belong to no known dataset (every
        replica's, unless `scope=local`)."""
        parts = [
            {
                "datasets": sorted(set(stats.datasets()) | set(known_datasets())),
                "unattributed": stats.unattributed_counts(),
            },
            *others("/stats", scope),
        ]
        unattributed: Counter[str] = Counter()
        for part in parts:
            unattributed.update(part["unattributed"])
        return {
            "datasets": sorted({d for part in parts for d in part["datasets"]}),
            "unattributed": dict(unattributed),
        }

    @router.get("/stats/{dataset}")
    def dataset_stats(dataset: str, scope: Scope = "all") -> dict[str, Any]:
        """Counts, rejections per rule, and per-feature statistics of one dataset's raw stream
        since the replicas started (kept in memory; each replica's over the partitions it
        reads, merged: see domain/merge.py)."""
        own = stats.snapshot(dataset)
        if own is None and (spec := spec_of(dataset)) is not None:
            stats.declare(spec)
            own = stats.snapshot(dataset)
        parts = [*([own] if own is not None else []), *others(f"/stats/{dataset}", scope)]
        if not parts:
            known = sorted(set(stats.datasets()) | set(known_datasets()))
            detail = f"unknown dataset {dataset!r}; known: {', '.join(known) or 'none'}"
            raise HTTPException(status_code=404, detail=detail)
        return merge_dataset_snapshots(parts)

    @router.get("/rejections/{dataset}")
    def rejections(
        dataset: str, limit: Annotated[int, Query(ge=1, le=10_000)] = 100, scope: Scope = "all"
    ) -> dict[str, Any]:
        """The dataset's latest rejected records, newest first: when, the rules they broke,
        each error, and the values as received (long ones cut), since the replicas started."""
        kept = recent.of(dataset, limit) if recent is not None else []
        for part in others(f"/rejections/{dataset}", scope, limit=limit):
            kept += part["rejections"]
        kept.sort(key=lambda entry: entry["at"], reverse=True)
        return {"dataset": dataset, "rejections": kept[:limit]}

    return router
