"""A Jaeger trace (its query API's JSON) as waterfall rows: each span's service, operation,
depth, and where it starts and ends as a share of the trace's duration. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_TAGS = 12


@dataclass(frozen=True)
class SpanRow:
    span_id: str
    service: str
    operation: str
    depth: int
    start_ms: float
    duration_ms: float
    left_pct: float
    width_pct: float
    tags: list[tuple[str, str]]
    error: bool


@dataclass(frozen=True)
class Waterfall:
    trace_id: str
    duration_ms: float
    services: list[str]
    spans: list[SpanRow]


def waterfall(trace: Mapping[str, Any]) -> Waterfall:
    spans = list(trace.get("spans") or [])
    processes = trace.get("processes") or {}
    if not spans:
        return Waterfall(str(trace.get("traceID", "")), 0.0, [], [])
    start = min(int(s.get("startTime", 0)) for s in spans)
    end = max(int(s.get("startTime", 0)) + int(s.get("duration", 0)) for s in spans)
    total = max(end - start, 1)
    by_id = {s.get("spanID"): s for s in spans}

    def parent(span: Mapping[str, Any]) -> str | None:
        for reference in span.get("references") or []:
            if reference.get("refType") == "CHILD_OF" and reference.get("spanID") in by_id:
                return str(reference["spanID"])
        return None

    children: dict[str | None, list[Mapping[str, Any]]] = {}
    for span in spans:
        children.setdefault(parent(span), []).append(span)
    rows: list[SpanRow] = []

    def visit(span: Mapping[str, Any], depth: int) -> None:
        begin = int(span.get("startTime", 0)) - start
        duration = int(span.get("duration", 0))
        process = processes.get(span.get("processID")) or {}
        tags = [(str(t.get("key")), str(t.get("value"))) for t in span.get("tags") or []]
        rows.append(
            SpanRow(
                span_id=str(span.get("spanID")),
                service=str(process.get("serviceName", "?")),
                operation=str(span.get("operationName", "?")),
                depth=depth,
                start_ms=begin / 1000,
                duration_ms=duration / 1000,
                left_pct=round(100 * begin / total, 3),
                width_pct=max(round(100 * duration / total, 3), 0.2),
                tags=tags[:MAX_TAGS],
                error=any(k == "error" and v.lower() == "true" for k, v in tags)
                or any(k == "otel.status_code" and v == "ERROR" for k, v in tags),
            )
        )
        for child in sorted(children.get(str(span.get("spanID")), []), key=_start):
            visit(child, depth + 1)

    for root in sorted(children.get(None, []), key=_start):
        visit(root, 0)
    services = sorted({row.service for row in rows})
    return Waterfall(str(trace.get("traceID", "")), total / 1000, services, rows)


def _start(span: Mapping[str, Any]) -> int:
    return int(span.get("startTime", 0))
