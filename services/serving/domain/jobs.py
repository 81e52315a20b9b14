"""Scoring the records of several requests together. Pure computation, no I/O.

Each request becomes a `Job` holding the model object it started with. `score_jobs` reads the
inline records against that model's input schema, then scores the jobs sharing a model in one
predict call (a DataFrame of all their rows) and splits the answers back. A job whose records
are invalid fails alone; if a shared predict call fails, each of its jobs is scored alone, so
one request's unusual values never fail another's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from services.serving.domain.answers import Answer
from services.serving.domain.records import ReadRecord, read_record
from services.serving.domain.served import Scored, ServedModel
from shared.events.records import FieldError, FieldValue


class InvalidRecords(Exception):
    """Records (or entities' stored features) that break their spec: (index, field errors)
    of each; `where` names the request's list they came in."""

    def __init__(self, errors: list[tuple[int, list[FieldError]]], where: str = "records") -> None:
        count = len(errors)
        super().__init__(f"{count} record{'s' if count > 1 else ''} failed the dataset spec")
        self.errors = errors
        self.where = where


class ScoringFailed(Exception):
    """The model could not score valid records (e.g. missing values it cannot take)."""


@dataclass(eq=False)
class Job:
    """One request's records and the model object it started with."""

    served: ServedModel
    request_id: str
    started: float
    records: Sequence[Mapping[str, FieldValue]] = ()
    found: Sequence[ReadRecord] = ()
    reads: list[ReadRecord] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.records) + len(self.found)


@dataclass(frozen=True)
class Outcome:
    """A job's answers, one per record, with what the model read."""

    reads: list[ReadRecord]
    answers: list[Answer]


def read_job(job: Job) -> list[ReadRecord]:
    """What the model reads for each record of a job; raises InvalidRecords."""
    if not job.records:
        return list(job.found)
    reads: list[ReadRecord] = []
    errors: list[tuple[int, list[FieldError]]] = []
    schema = job.served.schema
    for index, record in enumerate(job.records):
        read = read_record(schema, record)
        if isinstance(read, list):
            errors.append((index, read))
        else:
            reads.append(read)
    if errors:
        raise InvalidRecords(errors)
    return reads


def _outcome(reads: list[ReadRecord], scored: Sequence[Scored]) -> Outcome:
    answers = [
        Answer(score, read.record_id, read.entity)
        for read, score in zip(reads, scored, strict=True)
    ]
    return Outcome(reads, answers)


def _score_alone(served: ServedModel, reads: list[ReadRecord]) -> Outcome | Exception:
    try:
        return _outcome(reads, served.score([read.values for read in reads]))
    except Exception as error:
        return ScoringFailed(
            f"the model could not score these records: {type(error).__name__}: {error}"
        )


def score_jobs(jobs: Sequence[Job]) -> list[Outcome | Exception]:
    """Each job's outcome, or the exception that fails it, in the order of `jobs`."""
    outcomes: list[Outcome | Exception | None] = [None] * len(jobs)
    groups: dict[int, list[int]] = {}
    for position, job in enumerate(jobs):
        try:
            job.reads = read_job(job)
        except InvalidRecords as error:
            outcomes[position] = error
            continue
        groups.setdefault(id(job.served), []).append(position)
    for positions in groups.values():
        served = jobs[positions[0]].served
        rows = [read.values for position in positions for read in jobs[position].reads]
        try:
            scored = served.score(rows)
        except Exception:
            for position in positions:
                outcomes[position] = _score_alone(served, jobs[position].reads)
            continue
        start = 0
        for position in positions:
            count = len(jobs[position].reads)
            outcomes[position] = _outcome(jobs[position].reads, scored[start : start + count])
            start += count
    return [outcome if outcome is not None else ScoringFailed("not scored") for outcome in outcomes]
