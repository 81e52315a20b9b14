"""Prometheus metrics shared by the Kafka adapters; each service's /metrics exposes them."""

from prometheus_client import Counter

MESSAGES_PUBLISHED = Counter(
    "mlops_messages_published_total",
    "Messages handed to the producer (failures counted apart).",
    ["topic"],
)
DELIVERY_FAILURES = Counter(
    "mlops_delivery_failures_total", "Messages the broker did not confirm.", ["topic"]
)
MESSAGES_HANDLED = Counter(
    "mlops_messages_handled_total", "Messages a consumer handled successfully.", ["topic", "group"]
)
MESSAGES_DEAD_LETTERED = Counter(
    "mlops_messages_dead_lettered_total",
    "Messages sent to the dead-letter topic.",
    ["topic", "group", "reason"],
)
CONSUMER_WAITS = Counter(
    "mlops_consumer_dependency_waits_total",
    "Times a consumer waited for an unavailable dependency (broker, database, object store) "
    "before trying the same message again.",
    ["group"],
)
HANDLER_RETRIES = Counter(
    "mlops_handler_retries_total",
    "Handler attempts that failed and were retried.",
    ["topic", "group"],
)
