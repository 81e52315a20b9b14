"""Ingestion's Prometheus counters (exposed on /metrics with the shared ones)."""

from prometheus_client import Counter

RECORDS_ACCEPTED = Counter(
    "mlops_ingestion_records_accepted_total",
    "Records acknowledged (confirmed by Kafka), by dataset and way in (batch or file).",
    ["dataset", "via"],
)
LABELS_ACCEPTED = Counter(
    "mlops_ingestion_labels_accepted_total",
    "Labels acknowledged (confirmed by Kafka), by dataset.",
    ["dataset"],
)
SPECS_REGISTERED = Counter(
    "mlops_ingestion_specs_registered_total",
    "Spec registrations, by outcome (created, unchanged).",
    ["outcome"],
)
REFUSALS = Counter(
    "mlops_ingestion_refusals_total",
    "Requests refused, by reason (malformed_body, too_large, unknown_dataset, ...).",
    ["reason"],
)
