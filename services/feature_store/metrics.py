"""Prometheus metrics of the feature store (shared ones live in shared.metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from services.feature_store.handlers import Outcome

FEATURES_COMPUTED = Counter(
    "mlops_feature_store_features_computed_total", "Feature vectors computed and published."
)
RECORDS_REPLAYED = Counter(
    "mlops_feature_store_records_replayed_total",
    "Records skipped because their entity state already counted them (replays).",
)
RECORDS_LATE = Counter(
    "mlops_feature_store_records_late_total",
    "Records older than their window's grace: counted with less history.",
)
RECORDS_DEAD_LETTERED = Counter(
    "mlops_feature_store_records_dead_lettered_total", "Records sent to the dead-letter topic."
)
OFFLINE_FILES = Counter(
    "mlops_feature_store_offline_files_total",
    "Parquet files written to the offline store.",
    ["kind"],
)
OFFLINE_ROWS = Counter(
    "mlops_feature_store_offline_rows_total", "Rows written to the offline store.", ["kind"]
)
BATCH_RECORDS = Histogram(
    "mlops_feature_store_batch_records",
    "Records per stream batch.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000),
)
BATCH_SECONDS = Histogram(
    "mlops_feature_store_batch_seconds",
    "Time a stream batch spends per step: compute, deliver (publish and online store), save "
    "(changelog).",
    ["step"],
)
TRAINING_SETS = Counter("mlops_feature_store_training_sets_total", "Training sets written.")


def record_batch(outcome: Outcome) -> None:
    FEATURES_COMPUTED.inc(len(outcome.computed))
    RECORDS_REPLAYED.inc(outcome.replayed)
    RECORDS_LATE.inc(outcome.late)
    RECORDS_DEAD_LETTERED.inc(len(outcome.dead_letters))
