"""Serving's Prometheus metrics (exposed on /metrics with the shared ones)."""

from prometheus_client import Counter, Gauge, Histogram

PREDICTIONS = Counter(
    "mlops_serving_predictions_total",
    "Records scored, by model, version and whether a shadow (challenger) scored them.",
    ["model", "version", "shadow"],
)
REQUESTS_REFUSED = Counter(
    "mlops_serving_requests_refused_total",
    "Prediction requests refused, by reason (no_champion, not_served, champion_not_loaded, "
    "invalid_records, ...).",
    ["reason"],
)
OUT_OF_EXPECTED_RANGE = Counter(
    "mlops_serving_out_of_expected_range_total",
    "Values scored although outside their feature's expected range (expected_min/max), "
    "by model and feature.",
    ["model", "feature"],
)
MODELS_LOADED = Counter(
    "mlops_serving_models_loaded_total",
    "Versions loaded, warmed up and swapped in, by model and alias.",
    ["model", "alias"],
)
MODELS_REFUSED = Counter(
    "mlops_serving_models_refused_total",
    "Versions refused (tampered, untrusted or unloadable artifact, failed warm-up, ...); "
    "the model served before keeps serving.",
    ["model", "reason"],
)
LOADS_DEFERRED = Counter(
    "mlops_serving_loads_deferred_total",
    "Versions that could not load for a reason worth retrying (registry, MinIO, Kafka down); "
    "retried in the background.",
    ["model"],
)
LIFECYCLE_IGNORED = Counter(
    "mlops_serving_lifecycle_ignored_total",
    "Lifecycle changes that swapped nothing (duplicate, same, older, superseded).",
    ["model", "verdict"],
)
SERVED_VERSION = Gauge(
    "mlops_serving_model_version",
    "The version answering for each model and alias.",
    ["model", "alias"],
)
LOG_DROPPED = Counter(
    "mlops_serving_prediction_log_dropped_total",
    "Predictions not logged because the prediction log queue was full or closed.",
)
LOG_FAILURES = Counter(
    "mlops_serving_prediction_log_failures_total",
    "Flushes of the prediction log in which Kafka did not confirm some writes "
    "(each failed write also counts in mlops_delivery_failures_total).",
)
SHADOW_SKIPPED = Counter(
    "mlops_serving_shadow_skipped_total",
    "Batches the challenger did not score, by reason (backlog, error).",
    ["model", "reason"],
)
BATCH_ROWS = Histogram(
    "mlops_serving_batch_rows",
    "Rows per predict call (concurrent requests are scored together).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
COLD_LOADS = Counter(
    "mlops_serving_cold_loads_total",
    "Champions loaded because a request asked for a model not in memory (first request, or "
    "after an eviction), by model and outcome (loaded, refused, failed, no_room).",
    ["model", "outcome"],
)
COLD_LOAD_SECONDS = Histogram(
    "mlops_serving_cold_load_seconds",
    "How long a load a request waited for took (registry, MinIO, skops, warm-up).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
EVICTIONS = Counter(
    "mlops_serving_evictions_total",
    "Loaded models dropped to make room for another (least recently used first), by model.",
    ["model"],
)
MODEL_BYTES = Gauge(
    "mlops_serving_model_memory_bytes",
    "Retained size of each loaded model (its object graph), by model and alias.",
    ["model", "alias"],
)
MEMORY_USED = Gauge(
    "mlops_serving_models_memory_used_bytes", "Retained size of every loaded model, summed."
)
MEMORY_LIMIT = Gauge(
    "mlops_serving_models_memory_limit_bytes",
    "The limit on loaded models' memory (MLOPS_SERVING_MODEL_MEMORY_MB).",
)
MODELS_RESIDENT = Gauge("mlops_serving_models_resident", "Models (and challengers) in memory.")
