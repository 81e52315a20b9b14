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
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from services.monitoring.handlers import Deps
from shared.events.models import MODEL_NAME


def monitoring_router(deps: Deps, limit: int, label_wait_s: float) -> APIRouter:
    router = APIRouter(tags=["monitoring"])

    @router.get("/drift")
    def drift() -> dict[str, Any]:
        with deps.lock:
            now = deps.clock()
            detectors = deps.monitor.detector_states()
            breakers = {m: deps.policy.breaker(m, now) for m in deps.policy.models()}
            reference = deps.references.report() if deps.references is not None else {}
        return {
            "drifts": deps.history.recent_drifts(limit),
            "detectors": detectors,
            "breakers": breakers,
            "policy": asdict(deps.policy.config),
            "decisions": deps.history.recent_decisions(limit),
            "outcomes": deps.history.recent_results(limit),
            "training_reference": reference,
        }

    @router.get("/performance")
    def performance() -> dict[str, Any]:
        with deps.lock:
            deps.monitor.expire(deps.clock())
            models = deps.monitor.performance()
            join = deps.monitor.join.counts()
        return {
            "models": models,
            "join": {**join, "label_wait_s": label_wait_s},
            "history": deps.history.performance_history(limit),
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
