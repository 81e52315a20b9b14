"""The loop page's diagram: where services and topics sit, the arrows between them, and which
consumer groups belong to which service. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.console.settings import SERVICES

BOX_W, BOX_H = 120, 40
TOPIC_W, TOPIC_H = 150, 30


@dataclass(frozen=True)
class Box:
    name: str
    x: int
    y: int
    w: int
    h: int

    @property
    def cx(self) -> int:
        return self.x + self.w // 2

    @property
    def cy(self) -> int:
        return self.y + self.h // 2


SERVICE_BOXES = {
    name: Box(name, x, y, BOX_W, BOX_H)
    for name, x, y in (
        ("ingestion", 10, 40),
        ("validation", 330, 40),
        ("feature_store", 650, 40),
        ("serving", 10, 300),
        ("monitoring", 330, 300),
        ("training", 650, 300),
        ("registry", 870, 170),
    )
}
TOPIC_BOXES = {
    name: Box(name, x, y, TOPIC_W, TOPIC_H)
    for name, x, y in (
        ("data.raw", 160, 45),
        ("data.validated", 480, 45),
        ("data.rejected", 315, 130),
        ("data.labels", 480, 230),
        ("serving.predictions", 160, 305),
        ("monitoring.drift", 480, 305),
        ("models.trained", 820, 305),
        ("models.lifecycle", 160, 190),
        ("data.features", 820, 45),
    )
}
EDGES = (
    ("ingestion", "data.raw"),
    ("data.raw", "validation"),
    ("validation", "data.validated"),
    ("validation", "data.rejected"),
    ("data.validated", "feature_store"),
    ("feature_store", "data.features"),
    ("data.labels", "monitoring"),
    ("data.labels", "training"),
    ("serving", "serving.predictions"),
    ("serving.predictions", "monitoring"),
    ("monitoring", "monitoring.drift"),
    ("monitoring.drift", "training"),
    ("training", "models.trained"),
    ("models.trained", "registry"),
    ("registry", "models.lifecycle"),
    ("models.lifecycle", "serving"),
)
WIDTH, HEIGHT = 1000, 360


def box(name: str) -> Box:
    return SERVICE_BOXES.get(name) or TOPIC_BOXES[name]


def arrows() -> list[tuple[int, int, int, int]]:
    """Each edge from its source's centre side to its target's, as x1, y1, x2, y2."""
    lines = []
    for source, target in EDGES:
        a, b = box(source), box(target)
        lines.append((*_border(a, b.cx, b.cy), *_border(b, a.cx, a.cy)))
    return lines


def _border(b: Box, towards_x: int, towards_y: int) -> tuple[int, int]:
    """Where the line from b's centre towards a point leaves b."""
    dx, dy = towards_x - b.cx, towards_y - b.cy
    if dx == 0 and dy == 0:
        return b.cx, b.cy
    scale_x = (b.w / 2) / abs(dx) if dx else float("inf")
    scale_y = (b.h / 2) / abs(dy) if dy else float("inf")
    scale = min(scale_x, scale_y)
    return round(b.cx + dx * scale), round(b.cy + dy * scale)


def service_of_group(group: str, namespace: str) -> str | None:
    """The service a consumer group belongs to: <ns>.<service>[...] or <ns>-feature-store..."""
    for separator in (".", "-"):
        prefix = f"{namespace}{separator}"
        if group.startswith(prefix):
            rest = group[len(prefix) :].replace("-", "_")
            for name in sorted(SERVICES, key=len, reverse=True):
                if rest.startswith(name):
                    return name
    return None


def lag_per_service(lags: Mapping[str, int], namespace: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for group, lag in lags.items():
        service = service_of_group(group, namespace)
        if service is not None:
            totals[service] = totals.get(service, 0) + lag
    return totals


def rates(before: Mapping[str, int], after: Mapping[str, int], seconds: float) -> dict[str, float]:
    """Events per second per topic from two reads of the end offsets."""
    if seconds <= 0:
        return {}
    return {
        topic: max(after[topic] - before.get(topic, after[topic]), 0) / seconds for topic in after
    }
