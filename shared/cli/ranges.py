"""Replay ranges: what --from/--to mean, resolved per partition, and the checkpoint of a replay.

Everything here is free of I/O except `Checkpoint.load`/`save`, so the rules can be tested
without a broker.

A range is half-open, [from, to): --from is the first message replayed, --to the first one
that is not. Each bound is an offset (applied to every partition), an ISO 8601 time (the
first message whose timestamp is at or after it, per partition), or one of the words
`earliest` and `end`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

EARLIEST = "earliest"
END = "end"
Position = int | datetime | str  # an offset, a time, or EARLIEST / END

_OFFSET = re.compile(r"^\d+$")


class RangeError(ValueError):
    """A bound that is not an offset, a time, earliest or end; or an empty or reversed range."""


def parse_position(text: str) -> Position:
    """`1200` -> offset 1200; `2026-11-21T10:00:00Z` -> that time (UTC if no zone is given)."""
    value = text.strip()
    if value.lower() in (EARLIEST, END):
        return value.lower()
    if _OFFSET.match(value):
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RangeError(
            f"{text!r} is neither an offset (a whole number >= 0), an ISO 8601 time "
            "(2026-11-21T10:00:00Z), 'earliest' nor 'end'"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def to_millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class Watermarks:
    """A partition's first offset still stored and the offset its next message will get."""

    low: int
    high: int


def resolve_offset(position: Position, marks: Watermarks, offset_for_time: int | None) -> int:
    """The concrete offset a bound means on one partition, clamped to what is stored.

    `offset_for_time` is Kafka's answer to offsets_for_times for a time bound: the first
    offset with a timestamp at or after it, or -1 / None when there is none (then: the end).
    """
    if position == EARLIEST:
        return marks.low
    if position == END:
        return marks.high
    if isinstance(position, datetime):
        if offset_for_time is None or offset_for_time < 0:
            return marks.high
        return min(max(offset_for_time, marks.low), marks.high)
    if isinstance(position, int):
        return min(max(position, marks.low), marks.high)
    raise RangeError(f"not a position: {position!r}")


def check_order(start: Position, end: Position) -> None:
    """Refuses a range whose --to is before its --from when both are of the same kind."""
    same_kind = (isinstance(start, int) and isinstance(end, int)) or (
        isinstance(start, datetime) and isinstance(end, datetime)
    )
    if same_kind and end < start:  # type: ignore[operator]
        raise RangeError(f"--to ({end}) is before --from ({start})")


@dataclass(frozen=True)
class PartitionRange:
    partition: int
    start: int
    end: int  # exclusive

    @property
    def size(self) -> int:
        return max(self.end - self.start, 0)


class PartitionProgress(BaseModel):
    """Where one partition stands: the next source offset to read and, at that point, the
    target partition's end offset (so writes confirmed after the checkpoint can be found)."""

    model_config = ConfigDict(extra="forbid")

    start: int = Field(ge=0)
    end: int = Field(ge=0)
    next_offset: int = Field(ge=0)
    target_end: int = Field(ge=0)

    @property
    def remaining(self) -> int:
        return max(self.end - self.next_offset, 0)


class Checkpoint(BaseModel):
    """A replay's progress, saved after every confirmed flush; a re-run with the same
    arguments continues from it."""

    model_config = ConfigDict(extra="forbid")

    source_topic: str
    target_topic: str
    from_position: str
    to_position: str
    partitions: dict[int, PartitionProgress]
    replayed: int = 0
    complete: bool = False

    def same_request(self, source: str, target: str, start: str, end: str) -> bool:
        return (self.source_topic, self.target_topic, self.from_position, self.to_position) == (
            source,
            target,
            start,
            end,
        )

    @property
    def remaining(self) -> int:
        return sum(progress.remaining for progress in self.partitions.values())

    def ranges(self) -> list[PartitionRange]:
        return [
            PartitionRange(partition, progress.start, progress.end)
            for partition, progress in sorted(self.partitions.items())
        ]

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        if not path.exists():
            return None
        return cls.model_validate_json(path.read_bytes())

    def save(self, path: Path) -> None:
        """Written to a temporary file and renamed, so a crash leaves the old or the new one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.model_dump(mode="json"), indent=1))
        os.replace(temporary, path)


def checkpoint_path(directory: Path, target_topic: str) -> Path:
    return directory / f"{target_topic}.json"


def unrecorded_writes(progress: PartitionProgress, target_end_now: int) -> int:
    """Messages confirmed on the target after the last checkpoint: they must be skipped.

    The target partition receives only this replay's messages, in source order, so every
    message beyond the checkpoint's target end is the next source message, already copied.
    """
    extra = target_end_now - progress.target_end
    if extra < 0:
        raise RangeError(
            f"the target partition holds fewer messages ({target_end_now}) than the checkpoint "
            f"recorded ({progress.target_end}): it was deleted or truncated; use --restart"
        )
    return min(extra, progress.remaining)


@dataclass(frozen=True)
class TopicNames:
    """The source topic in the production namespace and its copy under the replay's."""

    logical: str
    source: str
    target: str


def topic_names(topic: str, namespace: str, into: str, catalog_names: set[str]) -> TopicNames:
    """`data.raw` or `mlops.data.raw` -> mlops.data.raw replayed into `<into>.data.raw`.

    A name outside the catalog and without the namespace prefix is taken as a full topic name.
    """
    if into == namespace:
        raise RangeError(
            f"--into {into!r} is the source namespace: a replay never writes to production"
        )
    if topic in catalog_names:
        logical = topic
    elif topic.startswith(f"{namespace}."):
        logical = topic[len(namespace) + 1 :]
    else:
        return TopicNames(topic, topic, f"{into}.{topic}")
    return TopicNames(logical, f"{namespace}.{logical}", f"{into}.{logical}")
