"""A version's lineage (the registry's GET /lineage document) as a graph laid out in columns,
for the version page's server-rendered SVG. Pure: no I/O, no markup (the template escapes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

NODE_WIDTH = 230
NODE_HEIGHT = 54
COLUMN_GAP = 60
ROW_GAP = 18
MARGIN = 10
MAX_TEXT = 34
MAX_DETAIL = 38

COLUMNS = {"spec": 0, "topic": 0, "drift": 0, "trigger": 1, "run": 2, "decision": 3}
COLUMNS["deployment"] = 4


@dataclass(frozen=True)
class Node:
    id: str
    kind: str
    title: str
    detail: str
    link: str | None
    x: int = 0
    y: int = 0
    full: str = ""
    """The whole title and detail (the drawing cuts them), for a tooltip."""

    @property
    def cx(self) -> int:
        return self.x + NODE_WIDTH // 2

    @property
    def right(self) -> int:
        return self.x + NODE_WIDTH

    @property
    def middle(self) -> int:
        return self.y + NODE_HEIGHT // 2


@dataclass(frozen=True)
class Edge:
    source: str
    target: str


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    width: int = 0
    height: int = 0

    def node(self, node_id: str) -> Node:
        return next(node for node in self.nodes if node.id == node_id)

    def lines(self) -> list[tuple[int, int, int, int]]:
        """Each edge from the right side of its source to the left side of its target."""
        lines = []
        for edge in self.edges:
            a, b = self.node(edge.source), self.node(edge.target)
            lines.append((a.right, a.middle, b.x, b.middle))
        return lines


def short(text: Any, limit: int = MAX_TEXT) -> str:
    value = "" if text is None else str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def drift_title(event: Mapping[str, Any] | None) -> str:
    """What the drift node says: the word drift, the signal and the detector."""
    data = (event or {}).get("data") or event or {}
    signal = data.get("signal", "?")
    detector = data.get("detector", "?")
    return f"drift: {signal} ({detector})"


def _offset_summary(ranges: list[Mapping[str, Any]]) -> str:
    parts = [
        f"p{r.get('partition')}:{r.get('first_offset')}-{r.get('last_offset')}" for r in ranges
    ]
    return " ".join(parts)


def lineage_graph(document: Mapping[str, Any]) -> Graph:
    model = str(document.get("model_name", ""))
    version = document.get("version")
    quoted = quote(model, safe="")
    dataset = str(document.get("dataset", ""))
    nodes: list[Node] = []
    edges: list[Edge] = []

    def trace_link(trace_id: Any, fallback: str | None) -> str | None:
        return f"/traces/{quote(str(trace_id), safe='')}" if trace_id else fallback

    data_page = f"/data/{quote(dataset, safe='')}" if dataset else None
    spec_version = document.get("spec_version")
    spec_link = f"{data_page}?version={spec_version}" if data_page and spec_version else data_page
    nodes.append(Node("spec", "spec", f"spec {dataset} v{spec_version}", _fp(document), spec_link))
    by_topic: dict[str, list[Mapping[str, Any]]] = {}
    for offset_range in document.get("offsets") or []:
        by_topic.setdefault(str(offset_range.get("topic")), []).append(offset_range)
    for index, (topic, ranges) in enumerate(sorted(by_topic.items())):
        nodes.append(Node(f"topic{index}", "topic", topic, _offset_summary(ranges), data_page))
    training = document.get("training") or {}
    run_title = f"run {short(training.get('run_id') or document.get('run_id'), 20)}"
    rows = document.get("rows")
    run_detail = f"{training.get('estimator', '')} rows={rows}"
    version_page = f"/models/{quoted}/versions/{version}"
    nodes.append(
        Node("run", "run", run_title, run_detail, trace_link(training.get("trace_id"), None))
    )
    trigger = document.get("trigger") or {}
    kind = trigger.get("kind", "?")
    nodes.append(
        Node(
            "trigger",
            "trigger",
            f"trigger: {kind}",
            str(trigger.get("reason") or ""),
            trace_link(trigger.get("trace_id"), f"/monitoring/{quoted}"),
        )
    )
    edges.append(Edge("trigger", "run"))
    if kind == "drift":
        event = trigger.get("event")
        data = (event or {}).get("data") or {}
        evidence = _evidence(data)
        nodes.append(
            Node(
                "drift",
                "drift",
                drift_title(event),
                evidence,
                trace_link(trigger.get("trace_id"), f"/monitoring/{quoted}"),
            )
        )
        edges.append(Edge("drift", "trigger"))
    for node in nodes:
        if node.kind in {"spec", "topic"}:
            edges.append(Edge(node.id, "run"))
    last = "run"
    for index, decision in enumerate(document.get("decisions") or []):
        node_id = f"decision{index}"
        alias = f" {decision.get('alias')}" if decision.get("alias") else ""
        nodes.append(
            Node(
                node_id,
                "decision",
                f"{decision.get('action')}{alias}",
                f"{decision.get('actor')}: {decision.get('reason')}",
                trace_link(decision.get("trace_id"), f"/models/{quoted}#audit"),
            )
        )
        edges.append(Edge("run", node_id))
        last = node_id
    for index, deployment in enumerate(document.get("deployments") or []):
        node_id = f"deployment{index}"
        nodes.append(
            Node(
                node_id,
                "deployment",
                f"deployed {deployment.get('alias')}",
                f"{deployment.get('instance')} {deployment.get('deployed_at')}",
                trace_link(deployment.get("trace_id"), version_page),
            )
        )
        edges.append(Edge(last, node_id))
    return _laid_out(nodes, edges)


def _fp(document: Mapping[str, Any]) -> str:
    fingerprint = document.get("spec_fingerprint")
    return f"fingerprint {str(fingerprint)[:12]}" if fingerprint else ""


def _evidence(data: Mapping[str, Any]) -> str:
    before = data.get("reference") or {}
    after = data.get("current") or {}
    mean_before, mean_after = before.get("mean"), after.get("mean")
    if isinstance(mean_before, int | float) and isinstance(mean_after, int | float):
        return f"mean {mean_before:.3g} → {mean_after:.3g} at #{data.get('position')}"
    return f"{data.get('signal_kind', '')} at #{data.get('position', '?')}"


def _laid_out(nodes: list[Node], edges: list[Edge]) -> Graph:
    """Columns by kind; within a column, nodes stacked in order."""
    rows: dict[int, int] = {}
    placed = []
    for node in nodes:
        column = COLUMNS[node.kind]
        row = rows.get(column, 0)
        rows[column] = row + 1
        x = MARGIN + column * (NODE_WIDTH + COLUMN_GAP)
        y = MARGIN + row * (NODE_HEIGHT + ROW_GAP)
        full = f"{node.title}\n{node.detail}".strip()
        placed.append(
            Node(
                node.id,
                node.kind,
                short(node.title),
                short(node.detail, MAX_DETAIL),
                node.link,
                x,
                y,
                full,
            )
        )
    width = MARGIN * 2 + (max(COLUMNS.values()) + 1) * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP
    height = MARGIN * 2 + max(rows.values(), default=1) * (NODE_HEIGHT + ROW_GAP) - ROW_GAP
    return Graph(placed, edges, width, height)
