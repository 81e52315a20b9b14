"""The closed loop's settings and helpers, shared by the e2e modules that use it (the
fixtures that run it are in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from infra.demo.loop import (
    FEATURE_DETECTORS,
    EventWatcher,
    LoopStream,
    StreamPlan,
    StreamStats,
    Urls,
)
from tests.services import RunningService

MODEL = "loans"
SEED = 31
FIRST_MODEL_RECORDS = 1000
RATE = 40.0
STREAM = 800  # applications per stream; the drift stream switches after SWITCH_AFTER
SWITCH_AFTER = 300
DROP_LABEL_EVERY = 25
MONITORING = {
    "MLOPS_MONITORING_LABEL_WAIT_S": "5",
    "MLOPS_MONITORING_DEBOUNCE_S": "600",
    "MLOPS_MONITORING_COOLDOWN_S": "600",
    "MLOPS_MONITORING_MIN_LABELS_AFTER_DRIFT": "400",
    "MLOPS_MONITORING_MAX_RETRAINS_PER_HOUR": "2",
    "MLOPS_MONITORING_DETECTORS": FEATURE_DETECTORS,
}


@dataclass
class Loop:
    services: dict[str, RunningService]
    urls: Urls
    watcher: EventWatcher
    first_version: int
    next_index: int


def stream(loop: Loop, drift_at: int | None) -> LoopStream:
    plan = StreamPlan(
        model=MODEL,
        seed=SEED,
        start_index=loop.next_index,
        rate=RATE,
        drift_at=drift_at,
        drop_label_every=DROP_LABEL_EVERY,
    )
    return LoopStream(loop.urls, plan).start()


def performance(loop: Loop, version: int) -> dict:
    rows = httpx.get(f"{loop.urls.monitoring}/performance", timeout=10).json()["models"]
    return next((r for r in rows if r["model_version"] == version), {})


@dataclass
class DriftRetrain:
    """What the drift scenario left: the stream's figures and the retrained version."""

    stats: StreamStats
    new_version: int
