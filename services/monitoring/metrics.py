"""Monitoring's Prometheus metrics, served at /metrics with the shared ones."""

from prometheus_client import Counter, Gauge

DRIFTS = Counter(
    "mlops_monitoring_drifts_total",
    "DriftDetected events emitted, by model and signal kind (feature, prediction, error).",
    ["model", "signal_kind"],
)
DECISIONS = Counter(
    "mlops_monitoring_retrain_decisions_total",
    "Retraining decisions, by model and action (trigger, suppress, wait).",
    ["model", "action"],
)
BREAKER_OPEN = Gauge(
    "mlops_monitoring_breaker_open",
    "1 while a model's retraining circuit breaker is open.",
    ["model"],
)
ACCURACY = Gauge(
    "mlops_monitoring_accuracy",
    "Live accuracy of a model version over its last 1000 labelled predictions.",
    ["model", "version"],
)
MAE = Gauge(
    "mlops_monitoring_mae",
    "Live mean absolute error of a regression model version over its last 1000 labels.",
    ["model", "version"],
)
CHECKPOINTS = Counter(
    "mlops_monitoring_checkpoints_total",
    "Partition state checkpoints, by outcome: written, write_failed; on a partition's first "
    "input: restored, none (no checkpoint yet), unreadable (started afresh), replay_failed.",
    ["outcome"],
)
REPLAYED = Counter(
    "mlops_monitoring_checkpoint_replayed_total",
    "Inputs applied again, state only, between a restored checkpoint and the committed offset.",
)
