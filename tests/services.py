"""Running platform services as real processes for a test, in the test's own namespace
(the code lives in infra/processes.py, which `make demo` uses too)."""

from infra.processes import RunningService, free_port, namespace_topics, start_service

__all__ = ["RunningService", "free_port", "namespace_topics", "start_service"]
