"""Pure helpers of bench-scale: percentiles, ratios, /proc parsing and the table layout.
No I/O here (tests/unit/test_bench_scale.py checks them)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks (numpy's
    default); NaN for no samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ratio(value: float, reference: float) -> float:
    """value / reference; NaN when the reference is zero or missing."""
    if not reference or math.isnan(reference):
        return math.nan
    return value / reference


def format_ratio(value: float, reference: float) -> str:
    """'1.23x', or 'n/a' when there is no reference."""
    r = ratio(value, reference)
    return "n/a" if math.isnan(r) else f"{r:.2f}x"


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def weighted_mean(values: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """The mean of `values` weighted by `weights` (keys of both must match)."""
    if set(values) != set(weights):
        raise ValueError(f"values for {sorted(values)}, weights for {sorted(weights)}")
    total = sum(weights.values())
    return sum(values[key] * weights[key] for key in values) / total


def per_thousand(total: float, events: int) -> float:
    """A total (CPU ms, say) per 1,000 events."""
    return math.nan if events <= 0 else total * 1000 / events


def net_cpu_s(cpu_s: float, idle_cpu_per_s: float, elapsed_s: float) -> float:
    """CPU seconds spent on the work: what the process used minus what it uses idle over the
    same time (never below zero)."""
    return max(0.0, cpu_s - idle_cpu_per_s * elapsed_s)


def cpu_seconds_from_stat(stat: str) -> float:
    """User + system CPU seconds of a process from the text of /proc/<pid>/stat (fields 14
    and 15, counted after the parenthesised command name, which may hold spaces)."""
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def memory_from_status(status: str) -> dict[str, int]:
    """The Vm* and Rss* lines of /proc/<pid>/status, in bytes (VmRSS, VmHWM, ...)."""
    found = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if key.startswith(("Vm", "Rss")) and len(parts) == 2 and parts[1] == "kB":
            found[key] = int(parts[0]) * 1024
    return found


def mib(size_bytes: float) -> str:
    return f"{size_bytes / 1_048_576:.1f} MiB"


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """Consecutive slices of at most `size` items."""
    return [items[first : first + size] for first in range(0, len(items), size)]


def spread(count: int, over: int) -> list[int]:
    """Event index -> which of `over` items it goes to, round robin: each gets count/over."""
    return [index % over for index in range(count)]


@dataclass(frozen=True)
class Column:
    title: str
    width: int


def table(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a plain-text table: the first column left-aligned, the others right-aligned."""

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        head = f"{first:<{columns[0].width}}"
        tail = "".join(f" {c:>{col.width}}" for c, col in zip(rest, columns[1:], strict=True))
        return (head + tail).rstrip()

    header = line([c.title for c in columns])
    return [header, "-" * len(header), *(line(row) for row in rows)]
