import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.kafka.consumer import RetryPolicy
from shared.telemetry import (
    extract_trace_context,
    flush_spans,
    inject_http_trace_headers,
    inject_trace_headers,
)


def test_trace_context_survives_a_trip_through_kafka_headers() -> None:
    tracer = TracerProvider().get_tracer("test")
    headers: list[tuple[str, bytes]] = [("ce_type", b"x")]
    with tracer.start_as_current_span("publish") as span:
        inject_trace_headers(headers)
        sent = span.get_span_context()
    assert any(name == "traceparent" for name, _ in headers)
    received = trace.get_current_span(extract_trace_context(headers)).get_span_context()
    assert received.trace_id == sent.trace_id
    assert received.span_id == sent.span_id


def test_messages_without_trace_headers_start_a_fresh_trace() -> None:
    context = extract_trace_context(None)
    assert not trace.get_current_span(context).get_span_context().is_valid


def test_retry_backoff_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(max_attempts=5, initial_backoff_s=0.1, max_backoff_s=0.3)
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.3, 0.3]


def test_an_http_request_carries_the_current_span_so_the_service_called_continues_it() -> None:
    tracer = TracerProvider().get_tracer("test")
    seen: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: seen.append(request) or httpx.Response(200))
    client = httpx.Client(transport=transport, event_hooks={"request": [inject_http_trace_headers]})

    with tracer.start_as_current_span("training set") as span:
        client.get("http://feature-store/training-sets")
        trace_id = f"{span.get_span_context().trace_id:032x}"
    client.get("http://feature-store/training-sets")

    assert seen[0].headers["traceparent"].split("-")[1] == trace_id
    assert "traceparent" not in seen[1].headers, "no span, nothing to continue"


def test_flushing_exports_the_buffered_spans_a_crash_would_otherwise_lose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exported, schedule_delay_millis=60_000))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    with provider.get_tracer("test").start_as_current_span("last words"):
        pass
    assert exported.get_finished_spans() == ()

    flush_spans(timeout_s=5)

    assert [span.name for span in exported.get_finished_spans()] == ["last words"]
