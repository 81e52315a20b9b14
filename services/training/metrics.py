"""Training's Prometheus metrics, served at /metrics with the shared ones."""

from prometheus_client import Counter, Histogram

RUNS = Counter(
    "mlops_training_runs_total",
    "TrainModel commands handled, by model and outcome (trained, redelivered, refused, failed).",
    ["model", "outcome"],
)
RUN_SECONDS = Histogram(
    "mlops_training_run_seconds",
    "Wall time of a training run, from training-set request to stored artifact.",
    ["model"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
RETRAINS_TRIGGERED = Counter(
    "mlops_training_retrains_triggered_total",
    "TrainModel commands published by the data-volume trigger, by dataset.",
    ["dataset"],
)
