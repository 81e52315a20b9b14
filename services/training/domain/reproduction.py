"""What a reproduction compares, and how it retrains: pure code.

A registered version is rebuilt (its training set from the Kafka ranges of its lineage, by
the feature store) and retrained with training's own steps: the sorted, typed frame and its
content hash, the window `trigger.since`, the time split, the recorded estimator fitted with
the recorded parameters and seed, the holdout metrics. Then compared: feature sources, spec
fingerprint, rows, holdout rows, training-set sha256, every metric (exactly; a difference
says by how much) and every output the registered artifact and the rebuilt model give for
the holdout rows (the probe set).

skops artifacts are zip files that carry their write time and object ids, so two fits of the
same model never have the same bytes: the artifact is compared by its predictions (every
probability, bit for bit), not by its sha256 (which is still checked when it is loaded).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from services.training.domain.fitting import evaluate, fit_pipeline, split_frame
from services.training.domain.frames import TrainingFrame
from shared.datasets.spec import ModelSpec, VersionedSpec
from shared.events.models import TrainingLineage

VALIDATED = "data.validated"
IDENTICAL = "identical"


@dataclass(frozen=True)
class Check:
    """One comparison: what the registered version recorded, what the reproduction gave."""

    name: str
    recorded: str
    reproduced: str
    same: bool
    difference: str = ""
    """How it differs, in a few words (empty when it does not)."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def compare_value(name: str, recorded: Any, reproduced: Any) -> Check:
    same = recorded == reproduced
    return Check(name, str(recorded), str(reproduced), same, "" if same else name)


def compare_metrics(recorded: dict[str, float], reproduced: dict[str, float]) -> Check:
    """Exact equality of every metric; a difference names each metric and by how much."""
    parts = []
    for name in sorted(set(recorded) | set(reproduced)):
        was, now = recorded.get(name), reproduced.get(name)
        if was is None or now is None:
            parts.append(f"{name} {'missing' if now is None else 'new'}")
        elif not _same_number(was, now):
            parts.append(f"{name} {now - was:+.6g}")
    return Check(
        "metrics",
        _metrics_text(recorded),
        _metrics_text(reproduced),
        not parts,
        f"metrics ({', '.join(parts)})" if parts else "",
    )


def compare_predictions(recorded: np.ndarray, reproduced: np.ndarray) -> Check:
    """Both models' outputs on the probe rows, compared value for value."""
    rows = len(recorded)
    label = f"{rows} probe rows"
    if recorded.shape != reproduced.shape:
        return Check(
            "predictions", str(recorded.shape), str(reproduced.shape), False,
            f"predictions (shapes {recorded.shape} and {reproduced.shape})",
        )  # fmt: skip
    equal = _equal_elements(recorded, reproduced)
    differing = int((~equal.reshape(rows, -1).all(axis=1)).sum()) if rows else 0
    if differing == 0:
        return Check("predictions", label, f"{label}, all equal", True)
    gap = _max_gap(recorded, reproduced)
    where = f"{differing} of {rows} rows differ" + (f", max |diff| {gap:.3g}" if gap else "")
    return Check("predictions", label, where, False, f"predictions ({where})")


def compare_sources(records: int, mismatched: int) -> Check:
    """The feature events must be those of the data.validated records they claim to be of."""
    recorded = f"{records} records in the {VALIDATED} ranges"
    if not mismatched:
        return Check("feature sources", recorded, "every feature event matches its record", True)
    where = f"{mismatched} feature events name another record than their source message"
    return Check("feature sources", recorded, where, False, f"feature sources ({where})")


def verdict(checks: Iterable[Check]) -> str:
    """`identical`, or `differs: ` and what differs."""
    differences = [check.difference or check.name for check in checks if not check.same]
    return IDENTICAL if not differences else "differs: " + "; ".join(differences)


def _same_number(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _metrics_text(metrics: dict[str, float]) -> str:
    return ", ".join(f"{name}={value:.6f}" for name, value in sorted(metrics.items()))


def _equal_elements(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "fc" and b.dtype.kind in "fc":
        return np.asarray((a == b) | (np.isnan(a) & np.isnan(b)))
    return np.asarray(a == b)


def _max_gap(a: np.ndarray, b: np.ndarray) -> float:
    if a.dtype.kind not in "fciu" or b.dtype.kind not in "fciu":
        return 0.0
    return float(np.nanmax(np.abs(a.astype(float) - b.astype(float))))


# -- retraining ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Retrained:
    training: TrainingFrame
    holdout: pd.DataFrame
    metrics: dict[str, float]
    model: Any


@dataclass(frozen=True)
class RecordedRun:
    """What the registry recorded of a version's run: estimator, params, seed, evaluation."""

    estimator: str
    params: dict[str, Any]
    seed: int
    metrics: dict[str, float]
    primary_metric: str | None

    @classmethod
    def of(cls, version: dict[str, Any]) -> RecordedRun:
        """A registry version document read (KeyError/TypeError/ValueError when it is not)."""
        evaluation = version["evaluation"]
        return cls(
            estimator=str(version["estimator"]),
            params=dict(version["params"]),
            seed=int(version["seed"]),
            metrics={str(k): float(v) for k, v in evaluation["metrics"].items()},
            primary_metric=evaluation.get("primary_metric"),
        )


def retrain(
    raw: pd.DataFrame,
    versioned: VersionedSpec,
    lineage: TrainingLineage,
    run: RecordedRun,
    holdout_fraction: float,
    fallback_metric: str,
) -> Retrained:
    """Training's own steps on the rebuilt set, with the version's estimator, params and seed
    (TrainingRefused when the set cannot be trained on)."""
    holdout = lineage.holdout_fraction or holdout_fraction
    cut = split_frame(raw, versioned.spec, lineage.trigger.since, 1, holdout)
    model = ModelSpec(estimator=run.estimator, params=run.params)
    fitted = fit_pipeline(model, {}, run.seed, cut.training, cut.split)
    evaluation = evaluate(
        fitted.pipeline, cut.training, cut.split, run.primary_metric or fallback_metric
    )
    return Retrained(cut.training, cut.split.holdout, evaluation.metrics, fitted.pipeline)


def outputs(model: Any, rows: pd.DataFrame) -> np.ndarray:
    """What a model says about the probe rows: probabilities when it gives them."""
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(rows))
    return np.asarray(model.predict(rows))


def checks_of(
    lineage: TrainingLineage,
    run: RecordedRun,
    versioned: VersionedSpec,
    retrained: Retrained,
    registered_model: Any,
) -> list[Check]:
    training = retrained.training
    probe = retrained.holdout[training.features]
    return [
        compare_value("spec fingerprint", lineage.spec_fingerprint, versioned.fingerprint),
        compare_value("rows", lineage.rows, len(training.frame)),
        compare_value("holdout rows", lineage.holdout_rows, len(retrained.holdout)),
        compare_value("training-set hash", lineage.training_set_sha256, training.sha256),
        compare_metrics(run.metrics, retrained.metrics),
        compare_predictions(outputs(registered_model, probe), outputs(retrained.model, probe)),
    ]


def environment_notes(
    recorded_libraries: dict[str, str],
    current_libraries: dict[str, str],
    undecodable: int,
    records_without_features: int,
) -> list[str]:
    notes = [
        "artifact: skops files hold their write time and object ids, so the bytes of two fits "
        "never match; the registered artifact (sha256 checked on load) is compared by its "
        "predictions on the holdout rows instead"
    ]
    changed = {
        name: f"{was} -> {current_libraries.get(name)}"
        for name, was in sorted(recorded_libraries.items())
        if current_libraries.get(name) != was
    }
    if changed:
        notes.append(f"libraries differ from the run's: {changed}")
    if undecodable:
        notes.append(f"{undecodable} undecodable messages in the ranges were skipped")
    if records_without_features:
        notes.append(
            f"{records_without_features} records of the {VALIDATED} ranges have no feature "
            "event: left out, as the offline store leaves them out"
        )
    return notes
