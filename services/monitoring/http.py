"""Monitoring's HTTP API.

GET /drift        recent DriftDetected events (from SQL), detector state per dataset, model
                  version and signal, the circuit breaker per model, the policy, and the
                  latest retraining decisions (trigger / suppress / wait / ignore, and why;
                  a trigger with its outcome: trained vN, failed: why, promoted, rejected:
                  why), the latest retrain outcomes, and per
                  model version served its live feature values against its training
                  reference (the lineage's statistics)
GET /performance/{model}/history
                  the model's performance over time for plots: the latest snapshots per
                  version kept in memory (at most MLOPS_MONITORING_HISTORY_POINTS each), or
                  the SQL history's latest rows of the model after a restart
GET /performance  live accuracy (classification) or MAE and RMSE (regression) per model
                  version (overall, last 100, last 1000), served,
                  joined and expired counts, and the SQL history of snapshots (for plots)

With several replicas each owns some datasets' state in memory: /drift and /performance
gather the other replicas' own answers (`?scope=local`, found through the consumer group) with
theirs, and name any replica that did not answer in `unreachable`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from services.monitoring.handlers import Deps
from shared.events.models import MODEL_NAME
from shared.kafka.peers import Peers

Scope = Annotated[Literal["all", "local"], Query(description="local: this replica's own state")]


def monitoring_router(
    deps: Deps, limit: int, label_wait_s: float, peers: Peers | None = None
) -> APIRouter:
    router = APIRouter(tags=["monitoring"])

    def gathered(path: str, scope: str, own: dict[str, Any]) -> list[dict[str, Any]]:
        if scope == "local" or peers is None:
            return [own]
        answers, missing = peers.gather(path)
        if missing:
            own["unreachable"] = missing
        return [own, *answers]

    @router.get("/drift")
    def drift(scope: Scope = "all") -> dict[str, Any]:
        with deps.lock:
            now = deps.clock()
            own: dict[str, Any] = {
                "detectors": deps.monitor.detector_states(),
                "breakers": {m: deps.policy.breaker(m, now) for m in deps.policy.models()},
                "training_reference": (
                    deps.references.report() if deps.references is not None else {}
                ),
            }
        parts = gathered("/drift", scope, own)
        return {
            "drifts": deps.history.recent_drifts(limit),
            "detectors": [d for part in parts for d in part["detectors"]],
            "breakers": {m: b for part in parts for m, b in part["breakers"].items()},
            "policy": asdict(deps.policy.config),
            "decisions": deps.history.recent_decisions(limit),
            "outcomes": deps.history.recent_results(limit),
            "training_reference": {
                m: r for part in parts for m, r in part["training_reference"].items()
            },
            **({"unreachable": own["unreachable"]} if "unreachable" in own else {}),
        }

    @router.get("/performance")
    def performance(scope: Scope = "all") -> dict[str, Any]:
        with deps.lock:
            deps.monitor.expire(deps.clock())
            own: dict[str, Any] = {
                "models": deps.monitor.performance(),
                "join": deps.monitor.join.counts(),
            }
        parts = gathered("/performance", scope, own)
        join = {k: sum(part["join"].get(k, 0) for part in parts) for k in own["join"]}
        return {
            "models": [m for part in parts for m in part["models"]],
            "join": {**join, "label_wait_s": label_wait_s},
            "history": deps.history.performance_history(limit),
            **({"unreachable": own["unreachable"]} if "unreachable" in own else {}),
        }

    @router.get("/performance/{model}/history")
    def performance_history(
        model: Annotated[str, Path(pattern=MODEL_NAME)],
    ) -> JSONResponse:
        """Snapshots of the model's live performance, oldest first per version: accuracy
        (overall, last 100, last 1000) or MAE/RMSE, with labelled and served counts. Answered
        as plain JSON (thousands of flat points: FastAPI's encoder would cost more than the
        query)."""
        points = deps.series.of(model) if deps.series is not None else []
        source = "memory"
        if not points:
            source = "sql"
            per_version = deps.series.points_per_version if deps.series is not None else limit
            points = deps.history.model_performance(model, per_version)
            if deps.series is not None and points and deps.series.restore(model, points):
                points = deps.series.of(model)  # the same shape; later requests from memory
        return JSONResponse({"model": model, "source": source, "points": points})

    return router
