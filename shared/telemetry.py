"""OpenTelemetry set-up and W3C trace context carried in Kafka headers."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import httpx
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from shared.settings import PlatformSettings

KafkaHeaders = list[tuple[str, bytes]]
TRACE_HEADERS = frozenset({"traceparent", "tracestate"})
log = logging.getLogger(__name__)


class _HeaderSetter(Setter[KafkaHeaders]):
    def set(self, carrier: KafkaHeaders, key: str, value: str) -> None:
        carrier.append((key, value.encode()))


class _HeaderGetter(Getter[Sequence[tuple[str, bytes | None]]]):
    def get(self, carrier: Sequence[tuple[str, bytes | None]], key: str) -> list[str] | None:
        found = [value.decode(errors="replace") for name, value in carrier if name == key and value]
        return found or None

    def keys(self, carrier: Sequence[tuple[str, bytes | None]]) -> list[str]:
        return [name for name, _ in carrier]


_SETTER = _HeaderSetter()
_GETTER = _HeaderGetter()


def inject_trace_headers(headers: KafkaHeaders) -> None:
    """Adds traceparent/tracestate for the current span to outgoing Kafka headers."""
    propagate.inject(headers, setter=_SETTER)


def inject_http_trace_headers(request: httpx.Request) -> None:
    """An httpx request hook: the current span's traceparent/tracestate go with the request, so
    the service called continues the caller's trace (its server span a child of the caller's
    span) instead of starting one of its own."""
    propagate.inject(request.headers)


def extract_trace_context(headers: Sequence[tuple[str, bytes | None]] | None) -> Context:
    """The trace context a producer put in a message's headers (empty if none)."""
    return propagate.extract(headers or [], getter=_GETTER)


def configure_tracing(service_name: str, settings: PlatformSettings) -> TracerProvider:
    """Installs the process-wide tracer provider, exporting over OTLP when an endpoint is set."""
    sampler = ParentBased(TraceIdRatioBased(settings.trace_sample_ratio))
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}), sampler=sampler
    )
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint, insecure=True)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    else:
        log.info("no OTLP endpoint configured: spans of %s are not exported", service_name)
    trace.set_tracer_provider(provider)
    return provider


def flush_spans(timeout_s: float) -> None:
    """Exports the spans still buffered, waiting at most `timeout_s`."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush(timeout_millis=int(timeout_s * 1000))


def shutdown_tracing() -> None:
    """Flushes spans still buffered; call it on the way out of a process."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush()
        provider.shutdown()
