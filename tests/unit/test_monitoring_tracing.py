"""Monitoring's retrain decision is a span in the trace the DriftDetected was published in,
so the retraining (training, registry, serving) continues that trace; made on a later
message than the drift, it links to that message's trace."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.monitoring import handlers as monitoring_handlers
from tests.unit.test_monitoring_handlers import feed_shift, handler, info, label, make, prediction


def test_a_retrain_decided_on_a_later_label_runs_in_the_drift_s_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    monkeypatch.setattr(monitoring_handlers, "_tracer", tracer)
    deps, _, _ = make(min_labels=3)

    with tracer.start_as_current_span("data.validated process") as drift_span:
        feed_shift(deps)
    serve, labels = handler(deps, "serving.predictions"), handler(deps, "data.labels")
    with tracer.start_as_current_span("data.labels process") as label_span:
        emitted = []
        for i in range(3):
            serve(prediction(i, 1), info("p", i))
            emitted += labels(label(i, 1), info("l", i))

    [retrain] = [s for s in exporter.get_finished_spans() if s.name == "retrain loans"]
    drift_trace = drift_span.get_span_context().trace_id
    assert retrain.parent is not None
    assert retrain.context.trace_id == drift_trace
    assert [link.context.trace_id for link in retrain.links] == [
        label_span.get_span_context().trace_id
    ]
    [command] = [e for e in emitted if e.topic == "training.requests"]
    assert command.parent == retrain.context, "the TrainModel is published under the retrain span"
