"""The reproducer's service layer over fakes: a version fitted by training's own steps comes
out identical; a changed record differs; each failure becomes a reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest

from services.feature_store.domain.rebuild import join_rows
from services.training.adapters.errors import DependencyRefused, DependencyUnavailable
from services.training.adapters.feature_store import RebuiltSet
from services.training.domain.reproduction import RecordedRun, retrain, verdict
from services.training.reproducer import (
    Job,
    Reproducer,
    ReproducerConfig,
    ReproductionFailed,
)
from shared.artifacts import ArtifactRefused
from shared.datasets.spec import VersionedSpec
from shared.events.models import ArtifactRef, TrainingLineage
from tests.unit.test_feature_store_rebuild import LOANS, rows_of

VERSIONED = VersionedSpec(version=1, fingerprint=LOANS.fingerprint(), spec=LOANS)
ARTIFACT = {"uri": "s3://models/ns/loans/run.skops", "sha256": "a" * 64, "size_bytes": 1}
RUN = {"estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
       "params": {"max_iter": 20}, "seed": 3}  # fmt: skip


def rebuilt_frame() -> pd.DataFrame:
    return join_rows(rows_of(80), [LOANS], LOANS, None)


class Specs:
    def get(self, name: str, version: int) -> VersionedSpec:
        if (name, version) != ("loans", 1):
            raise LookupError(f"dataset {name!r} has no version {version}")
        return VERSIONED


@dataclass
class Rebuilds:
    frame: pd.DataFrame
    error: Exception | None = None

    def rebuild_training_set(
        self, dataset: str, offsets: Any, cut_off: Any, timeout_s: float
    ) -> RebuiltSet:
        if self.error is not None:
            raise self.error
        summary = {"validated_records": 80, "records_with_features": 80, "mismatched": 0,
                   "undecodable": 0, "feature_events": 80, "label_events": 80, "rows": 80}  # fmt: skip
        return RebuiltSet(self.frame, summary)


@dataclass
class Artifacts:
    model: Any
    error: Exception | None = None

    def load_model(self, ref: ArtifactRef) -> Any:
        if self.error is not None:
            raise self.error
        return self.model


def registered() -> tuple[Job, Any]:
    """A version as training would have registered it: fitted on the same set."""
    lineage = TrainingLineage.model_validate(
        {"dataset": "loans", "spec_version": 1, "spec_fingerprint": LOANS.fingerprint(),
         "offsets": [{"topic": "ns.data.labels", "partition": 0, "first_offset": 0,
                      "last_offset": 79}],
         "training_set_sha256": "", "rows": 0, "holdout_rows": 0, "feature_columns": [],
         "code_version": "x", "trigger": {"kind": "manual"}, "holdout_fraction": 0.2}
    )  # fmt: skip
    run = RecordedRun(RUN["estimator"], RUN["params"], RUN["seed"], {}, "roc_auc")  # type: ignore[arg-type]
    fitted = retrain(rebuilt_frame(), VERSIONED, lineage, run, 0.2, "roc_auc")
    lineage = lineage.model_copy(
        update={
            "training_set_sha256": fitted.training.sha256,
            "rows": len(fitted.training.frame),
            "holdout_rows": len(fitted.holdout),
        }
    )
    record = {**RUN, "artifact": ARTIFACT,
              "evaluation": {"metrics": fitted.metrics, "primary_metric": "roc_auc"}}  # fmt: skip
    return Job("r-1", "loans", 1, record, lineage), fitted.model


def reproducer(rebuilds: Rebuilds, artifacts: Artifacts) -> Reproducer:
    return Reproducer(ReproducerConfig(), lambda namespace: Specs(), rebuilds, artifacts)  # type: ignore[arg-type,return-value]


def test_a_version_fitted_by_trainings_own_steps_reproduces_identically() -> None:
    job, model = registered()
    compared = reproducer(Rebuilds(rebuilt_frame()), Artifacts(model)).run(job)
    assert verdict(compared.checks) == "identical", compared.checks
    assert [c.name for c in compared.checks][:2] == ["feature sources", "spec fingerprint"]
    assert compared.summary["rows"] == 80 and "read_s" in compared.summary


def test_a_set_missing_rows_differs_and_says_what() -> None:
    job, model = registered()
    fewer = rebuilt_frame().iloc[:-10]
    compared = reproducer(Rebuilds(fewer), Artifacts(model)).run(job)
    line = verdict(compared.checks)
    assert line.startswith("differs: ") and "rows" in line and "training-set hash" in line


@pytest.mark.parametrize(
    ("rebuilds", "artifacts", "reason"),
    [
        (Rebuilds(pd.DataFrame(), DependencyUnavailable("feature store at http://x: ConnectError")),
         None, "feature store at http://x: ConnectError"),
        (Rebuilds(pd.DataFrame(), DependencyRefused("the feature store could not rebuild the set (410): no longer in Kafka")),
         None, "no longer in Kafka"),
        (None, Artifacts(None, ArtifactRefused("sha256 mismatch")), "sha256 mismatch"),
        (None, Artifacts(None, OSError("MinIO down")), "MinIO: the registered artifact"),
        (Rebuilds(rebuilt_frame().iloc[:1]), None, "cannot be trained on"),
    ],
)  # fmt: skip
def test_each_failure_is_a_reason(
    rebuilds: Rebuilds | None, artifacts: Artifacts | None, reason: str
) -> None:
    job, model = registered()
    running = reproducer(rebuilds or Rebuilds(rebuilt_frame()), artifacts or Artifacts(model))
    with pytest.raises(ReproductionFailed, match=reason):
        running.run(job)


def test_an_unknown_spec_version_or_a_broken_record_is_a_reason() -> None:
    job, model = registered()
    running = reproducer(Rebuilds(rebuilt_frame()), Artifacts(model))
    other = job.lineage.model_copy(update={"spec_version": 7})
    with pytest.raises(ReproductionFailed, match=r"namespace 'ns': .*no version 7"):
        running.run(Job(job.id, "loans", 1, job.record, other))
    with pytest.raises(ReproductionFailed, match=r"the registry's record"):
        running.run(Job(job.id, "loans", 1, {"artifact": ARTIFACT}, job.lineage))
