"""The promotion policy: does a newly registered version become the champion?

A version judged on fewer holdout rows than its dataset spec asks for
(`Evaluation.min_rows`) is not promoted. Otherwise it is promoted when there is no champion
yet; with one, its training run must have scored the current champion on the same holdout
(`ModelTrained.baseline`), and its primary metric (the spec's, with its direction) must beat
that score by at least the margin: the spec's (`Evaluation.margin`), else the registry's. An evaluation against an earlier champion
is stale: the champion changed since, so the comparison says nothing about the current one.
With manual approval a version the policy would promote waits as "challenger" instead.

>>> policy = PromotionPolicy(margin=0.005)
>>> evaluation = Evaluation(metrics={"roc_auc": 0.871}, primary_metric="roc_auc", holdout="20%")
>>> baseline = BaselineEvaluation(version=3, metrics={"roc_auc": 0.880})
>>> policy.decide(evaluation, baseline, champion=3).reason
"roc_auc 0.871 does not beat champion v3's 0.880 by the required margin 0.005"
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from shared.events.models import BaselineEvaluation, Evaluation

TOLERANCE = 1e-12  # 0.885 - 0.880 must count as a margin of 0.005


class Outcome(StrEnum):
    PROMOTE = "promote"
    REJECT = "reject"
    AWAIT_APPROVAL = "await_approval"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str


@dataclass(frozen=True)
class PromotionPolicy:
    margin: float = 0.0
    manual_approval: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.margin) or self.margin < 0:
            raise ValueError(f"the promotion margin must be a number >= 0, not {self.margin}")

    def decide(
        self, evaluation: Evaluation, baseline: BaselineEvaluation | None, champion: int | None
    ) -> Decision:
        """What happens to a new version, given the current champion's version (or None)."""
        decision = self._judge(evaluation, baseline, champion)
        if decision.outcome is Outcome.PROMOTE and self.manual_approval:
            return Decision(Outcome.AWAIT_APPROVAL, f"{decision.reason}; waiting for approval")
        return decision

    def _judge(
        self, evaluation: Evaluation, baseline: BaselineEvaluation | None, champion: int | None
    ) -> Decision:
        if (
            evaluation.min_rows is not None
            and evaluation.rows is not None
            and evaluation.rows < evaluation.min_rows
        ):
            return _reject(
                f"evaluated on {evaluation.rows} holdout rows, fewer than the "
                f"{evaluation.min_rows} its dataset spec requires"
            )
        if champion is None:
            return Decision(Outcome.PROMOTE, "no champion yet")
        if baseline is None:
            return _reject(f"its training run did not score champion v{champion} on its holdout")
        if baseline.version != champion:
            return _reject(
                f"stale evaluation: it was compared with v{baseline.version}, "
                f"but the champion is now v{champion}"
            )
        metric = evaluation.primary_metric
        problem = _metric_problem(metric, evaluation.metrics, "this version")
        problem = problem or _metric_problem(metric, baseline.metrics, f"champion v{champion}")
        if problem:
            return _reject(problem)
        return self._compare(
            evaluation, evaluation.metrics[metric], baseline.metrics[metric], champion
        )

    def _compare(
        self, evaluation: Evaluation, challenger: float, incumbent: float, champion: int
    ) -> Decision:
        metric = evaluation.primary_metric
        required = self.margin if evaluation.margin is None else evaluation.margin
        whose = "" if evaluation.margin is None else " (the dataset's)"
        gain = challenger - incumbent if evaluation.higher_is_better else incumbent - challenger
        direction = "" if evaluation.higher_is_better else " (lower is better)"
        scores = f"{metric} {fmt(challenger)}{direction}"
        against = f"champion v{champion}'s {fmt(incumbent)}"
        if gain > 0 and gain >= required - TOLERANCE:
            margin = f" (required margin {fmt(required)}{whose})" if required else ""
            return Decision(Outcome.PROMOTE, f"{scores} beats {against} by {fmt(gain)}{margin}")
        if required:
            return _reject(
                f"{scores} does not beat {against} by the required margin {fmt(required)}{whose}"
            )
        return _reject(f"{scores} does not beat {against}")


def _reject(reason: str) -> Decision:
    return Decision(Outcome.REJECT, reason)


def _metric_problem(metric: str, metrics: dict[str, float], whose: str) -> str | None:
    if metric not in metrics:
        known = ", ".join(sorted(metrics)) or "none"
        return f"primary metric {metric} is missing from the scores of {whose} (it has: {known})"
    if not math.isfinite(metrics[metric]):
        return f"primary metric {metric} of {whose} is {metrics[metric]}, not a finite number"
    return None


def fmt(value: float) -> str:
    """A score for people: three decimals when that is exact, else six significant digits."""
    if abs(value - round(value, 3)) < TOLERANCE:
        return f"{value:.3f}"
    return f"{value:.6g}"
