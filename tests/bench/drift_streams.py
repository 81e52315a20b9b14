"""Concept-drift streams with known drift points, and how detections on them are scored.

A stream is River's Agrawal, SEA or Hyperplane generator (classification) or FriedmanDrift
(regression) in segments of one concept each, recurring: concept A, then B from the first
drift point, then A again from the second (an abrupt switch, i.e. River's ConceptDriftStream
with width 1). Each concept has its own generator, so a segment that returns to A draws fresh
events from A. A model is fitted on events of concept A drawn before the stream starts; its
predictions and loss (0/1, or the absolute residual for regression) on every event of the
stream are the signals a deployed model would give the monitoring service.

Scoring (`score_detections`): each drift point owns the events from it up to `tolerance`
later (or to the next drift point, if sooner). The first detection in that window gives the
drift's delay (events of the new concept seen when it fired, so 1 is the earliest possible);
later ones in the same window are repeats of the same detection. A drift without a detection
in its window is missed; a detection outside every window is a false alarm.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from river.datasets import synth
from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression

Events = Iterator[tuple[dict[str, Any], Any]]


@dataclass(frozen=True)
class StreamKind:
    """A River generator family: `concepts` (A, B) and how to draw one concept's events."""

    name: str
    concepts: tuple[int, int]
    generator: Callable[[int, int], Events]
    model: Callable[[int], BaseEstimator]
    description: str
    task: str = "classification"


def _agrawal(concept: int, seed: int) -> Events:
    return iter(synth.Agrawal(classification_function=concept, seed=seed))


def _sea(concept: int, seed: int) -> Events:
    return iter(synth.SEA(variant=concept, noise=0.1, seed=seed))


def _hyperplane(concept: int, seed: int) -> Events:
    # A Hyperplane's weights come from its seed: another seed is another concept.
    return iter(synth.Hyperplane(seed=seed + 7919 * concept, n_features=10, noise_percentage=0.05))


def _friedman(concept: int, seed: int) -> Events:
    # FriedmanDrift's global recurring abrupt drift: before its first change point the
    # Friedman #1 function (A), after it the function with the features' roles swapped (B).
    # A change point at 0 gives B from the start; one far away keeps A for good.
    far = 10**12
    position = (0, far) if concept else (far, 2 * far)
    return iter(synth.FriedmanDrift(drift_type="gra", position=position, seed=seed))


def _boosting(seed: int) -> BaseEstimator:
    return HistGradientBoostingClassifier(random_state=seed)


def _logistic(seed: int) -> BaseEstimator:
    return LogisticRegression(max_iter=1000, random_state=seed)


def _boosting_regressor(seed: int) -> BaseEstimator:
    return HistGradientBoostingRegressor(random_state=seed)


STREAM_KINDS: dict[str, StreamKind] = {
    kind.name: kind
    for kind in (
        StreamKind(
            "agrawal", (0, 2), _agrawal, _boosting, "Agrawal, classification function 0 <-> 2"
        ),
        StreamKind("sea", (0, 3), _sea, _boosting, "SEA (noise 0.1), variant 0 <-> 3"),
        StreamKind(
            "hyperplane",
            (0, 1),
            _hyperplane,
            _logistic,
            "Hyperplane (10 features, noise 0.05), hyperplane A <-> B",
        ),
        StreamKind(
            "friedman",
            (0, 1),
            _friedman,
            _boosting_regressor,
            "FriedmanDrift (regression, residual signal), Friedman #1 <-> swapped features",
            task="regression",
        ),
    )
}


@dataclass(frozen=True)
class DriftStream:
    """One stream: feature rows, labels, a pre-drift model's predictions, the drift points."""

    kind: str
    seed: int
    features: tuple[str, ...]
    rows: list[dict[str, float]]
    labels: list[Any]
    predictions: list[Any]
    drifts: tuple[int, ...]
    task: str = "classification"

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def errors(self) -> list[float]:
        """The loss per event: 0/1 (classification) or the absolute residual (regression)."""
        pairs = zip(self.predictions, self.labels, strict=True)
        if self.task == "regression":
            return [abs(p - y) for p, y in pairs]
        return [float(p != y) for p, y in pairs]


def _take(events: Events, count: int, task: str) -> tuple[list[dict[str, float]], list[Any]]:
    rows, labels = [], []
    for row, label in itertools.islice(events, count):
        rows.append({f"x{name}" if isinstance(name, int) else str(name): float(value)
                     for name, value in row.items()})  # fmt: skip
        labels.append(float(label) if task == "regression" else int(label))
    return rows, labels


def _matrix(rows: list[dict[str, float]], features: Sequence[str]) -> np.ndarray:
    return np.array([[row[name] for name in features] for row in rows], dtype=float)


def drift_stream(kind: str, seed: int, segment: int, training: int) -> DriftStream:
    """Concepts A, B, A in three segments of `segment` events; drifts at segment and 2*segment.

    The model is fitted on `training` events of concept A drawn before the stream."""
    spec = STREAM_KINDS[kind]
    first, second = spec.concepts
    generators = {concept: spec.generator(concept, seed) for concept in spec.concepts}
    training_rows, training_labels = _take(generators[first], training, spec.task)
    features = tuple(training_rows[0])
    model = spec.model(seed).fit(_matrix(training_rows, features), training_labels)
    rows: list[dict[str, float]] = []
    labels: list[int] = []
    for concept in (first, second, first):
        segment_rows, segment_labels = _take(generators[concept], segment, spec.task)
        rows.extend(segment_rows)
        labels.extend(segment_labels)
    predicted = model.predict(_matrix(rows, features))
    cast = float if spec.task == "regression" else int
    predictions = [cast(p) for p in predicted]
    drifts = (segment, 2 * segment)
    return DriftStream(kind, seed, features, rows, labels, predictions, drifts, spec.task)


@dataclass(frozen=True)
class Score:
    """Per drift point its delay in events (None: missed); detections outside every window."""

    delays: tuple[int | None, ...]
    false_alarms: int
    repeats: int

    @property
    def missed(self) -> int:
        return sum(delay is None for delay in self.delays)

    @property
    def detected(self) -> list[int]:
        return [delay for delay in self.delays if delay is not None]


def drift_windows(drifts: Sequence[int], length: int, tolerance: int) -> list[tuple[int, int]]:
    """[start, end) of the events each drift point owns."""
    if tolerance < 1:
        raise ValueError(f"tolerance must be at least 1 event, got {tolerance}")
    if list(drifts) != sorted(set(drifts)) or any(not 0 <= d < length for d in drifts):
        raise ValueError(f"drift points must be increasing positions in [0, {length}): {drifts}")
    ends = [*drifts[1:], length]
    return [(start, min(start + tolerance, end)) for start, end in zip(drifts, ends, strict=True)]


def score_detections(
    detections: Sequence[int], drifts: Sequence[int], length: int, tolerance: int
) -> Score:
    """Scores detection positions (0-based index of the event at which a detector fired)."""
    windows = drift_windows(drifts, length, tolerance)
    delays: list[int | None] = [None] * len(windows)
    false_alarms = repeats = 0
    for position in sorted(detections):
        if not 0 <= position < length:
            raise ValueError(f"detection at {position} is outside the stream [0, {length})")
        owner = next((n for n, (lo, hi) in enumerate(windows) if lo <= position < hi), None)
        if owner is None:
            false_alarms += 1
        elif delays[owner] is None:
            delays[owner] = position - windows[owner][0] + 1
        else:
            repeats += 1
    return Score(tuple(delays), false_alarms, repeats)
