"""River drift detectors over one stream of numbers each, and what they saw when they fired.

A `SignalDetector` wraps one River detector (ADWIN, KSWIN, PageHinkley) for one signal: a
numeric feature, the predicted value or class, the 0/1 loss or the absolute residual, a rate
of out-of-range or rejected records. `update` feeds it one value and returns a `Drift` when
the detector says the distribution changed, with summaries of the raw values before the
change (reference) and of the latest ones (current).

A signal may be fed through a `RankTransform`: its first `reference_size` values are kept as
a reference sample (the detector sees none of them), and every later value is fed as its
mid-rank against that sample, a number in [0, 1]. Ties (integer and discrete features) and
outliers (heavy tails, spikes) cannot fool a detector whose bound assumes values in [0, 1],
and a stationary stream of any distribution gives the detector a stationary stream, while a
shift of the distribution moves the ranks' mean at once. After a drift the reference is taken
afresh from the values that follow it.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from river import drift

DetectorKind = Literal["adwin", "kswin", "page_hinkley"]
SignalKind = Literal["feature", "prediction", "error"]

_CLASSES: dict[str, type[Any]] = {
    "adwin": drift.ADWIN,
    "kswin": drift.KSWIN,
    "page_hinkley": drift.PageHinkley,
}


@dataclass(frozen=True)
class DetectorSpec:
    """Which River detector and its parameters (River's own names, e.g. delta for ADWIN)."""

    kind: DetectorKind = "adwin"
    params: dict[str, Any] = field(default_factory=dict)
    rank_reference: int | None = None
    """Feed values as mid-ranks against the first this many (None: the raw values)."""

    def build(self) -> Any:
        try:
            cls = _CLASSES[self.kind]
        except KeyError:
            raise ValueError(f"unknown detector {self.kind!r}; one of {sorted(_CLASSES)}") from None
        return cls(**self.params)


class RankTransform:
    """Values as their mid-rank in a reference sample (the first `reference_size` seen)."""

    def __init__(self, reference_size: int) -> None:
        if reference_size < 1:
            raise ValueError("reference_size must be at least 1")
        self.reference_size = reference_size
        self._pending: list[float] = []
        self._sorted: list[float] | None = None

    @property
    def ready(self) -> bool:
        return self._sorted is not None

    def update(self, value: float) -> list[float]:
        """What to feed the detector: nothing while the reference sample is being taken, the
        sample's own mid-ranks when it is complete (so a shift right after it is still a
        change within the detector's window), then each value's mid-rank in [0, 1]."""
        if self._sorted is None:
            self._pending.append(value)
            if len(self._pending) < self.reference_size:
                return []
            sample, self._pending = self._pending, []
            self._sorted = sorted(sample)
            return [self._rank(v) for v in sample]
        return [self._rank(value)]

    def _rank(self, value: float) -> float:
        assert self._sorted is not None
        below = bisect.bisect_left(self._sorted, value)
        not_above = bisect.bisect_right(self._sorted, value)
        return (below + not_above) / (2 * len(self._sorted))

    def reset(self) -> None:
        self._pending, self._sorted = [], None


class RunningStats:
    """Count, mean and standard deviation (Welford)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self._m2 = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self._m2 += delta * (value - self.mean)

    def summary(self) -> dict[str, float]:
        std = math.sqrt(self._m2 / (self.count - 1)) if self.count > 1 else 0.0
        return {"count": float(self.count), "mean": self.mean, "std": std}


@dataclass(frozen=True)
class Drift:
    signal: str
    signal_kind: SignalKind
    detector: str
    detector_params: dict[str, Any]
    position: int
    reference: dict[str, float]
    current: dict[str, float]


class SignalDetector:
    """One detector on one signal; `position` counts the values it has seen."""

    def __init__(
        self, signal: str, kind: SignalKind, spec: DetectorSpec, recent: int = 200
    ) -> None:
        self.signal = signal
        self.kind = kind
        self.spec = spec
        self._detector = spec.build()
        self._rank = RankTransform(spec.rank_reference) if spec.rank_reference else None
        self.position = 0
        self.drifts = 0
        self._reference = RunningStats()
        self._recent: deque[float] = deque(maxlen=recent)

    def skip(self) -> None:
        """A value that is counted but not fed (the signal is still calibrating)."""
        self.position += 1

    def update(self, value: float) -> Drift | None:
        if not math.isfinite(value):
            return None
        self.position += 1
        self._recent.append(value)
        fed = self._rank.update(value) if self._rank is not None else [value]
        if not self._fed_drifts(fed):
            self._reference.add(value)
            return None
        self.drifts += 1
        found = Drift(
            signal=self.signal,
            signal_kind=self.kind,
            detector=type(self._detector).__name__,
            detector_params=self._params(),
            position=self.position,
            reference=self._reference.summary(),
            current=_summary(self._recent),
        )
        # The values since the change are the new reference.
        self._reference = RunningStats()
        if self._rank is not None:
            self._rank.reset()
            self._detector = self.spec.build()
        return found

    def _fed_drifts(self, values: list[float]) -> bool:
        drifted = False
        for value in values:
            self._detector.update(value)
            drifted = drifted or bool(self._detector.drift_detected)
        return drifted

    def _params(self) -> dict[str, Any]:
        params = dict(self.spec.params)
        if self._rank is not None:
            params["rank_reference"] = self._rank.reference_size
        return params

    def state(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "kind": self.kind,
            "detector": type(self._detector).__name__,
            "params": self._params(),
            "position": self.position,
            "drifts": self.drifts,
            "reference": self._reference.summary(),
            "current": _summary(self._recent),
        }


def _summary(values: deque[float]) -> dict[str, float]:
    stats = RunningStats()
    for value in values:
        stats.add(value)
    return stats.summary()


def as_number(value: Any) -> float | None:
    """A feature value as a number, or None for categories, text and missing values."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def is_positive(prediction: Any) -> float:
    """The predicted class as 0/1: 1, '1', True, 'true', 'yes' are positive."""
    if isinstance(prediction, bool):
        return float(prediction)
    if isinstance(prediction, int | float):
        return 1.0 if prediction >= 0.5 else 0.0
    return 1.0 if str(prediction).strip().lower() in {"1", "true", "yes", "positive"} else 0.0


def same_label(prediction: Any, label: Any) -> bool:
    """Prediction and label compared as numbers when both are, else as text."""
    left, right = _numeric(prediction), _numeric(label)
    if left is not None and right is not None:
        return left == right
    return str(prediction) == str(label)


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None
