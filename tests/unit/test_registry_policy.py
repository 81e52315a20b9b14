"""The promotion policy, alone: no database, no Kafka."""

from __future__ import annotations

import math

import pytest

from services.registry.domain.policy import Outcome, PromotionPolicy, fmt
from shared.events.models import BaselineEvaluation, Evaluation


def scored(value: float, metric: str = "roc_auc", higher_is_better: bool = True) -> Evaluation:
    return Evaluation(
        metrics={metric: value, "accuracy": 0.5},
        primary_metric=metric,
        higher_is_better=higher_is_better,
        holdout="last 20% by event time",
    )


def champion_scored(version: int, value: float, metric: str = "roc_auc") -> BaselineEvaluation:
    return BaselineEvaluation(version=version, metrics={metric: value})


def test_the_first_version_is_promoted_when_there_is_no_champion() -> None:
    decision = PromotionPolicy().decide(scored(0.5), None, champion=None)
    assert decision.outcome is Outcome.PROMOTE
    assert decision.reason == "no champion yet"


def test_a_better_challenger_is_promoted_and_the_reason_gives_both_scores() -> None:
    decision = PromotionPolicy().decide(scored(0.891), champion_scored(3, 0.880), champion=3)
    assert decision.outcome is Outcome.PROMOTE
    assert decision.reason == "roc_auc 0.891 beats champion v3's 0.880 by 0.011"


def test_a_worse_challenger_is_rejected() -> None:
    decision = PromotionPolicy().decide(scored(0.871), champion_scored(3, 0.880), champion=3)
    assert decision.outcome is Outcome.REJECT
    assert decision.reason == "roc_auc 0.871 does not beat champion v3's 0.880"


def test_an_equal_score_does_not_beat_the_champion() -> None:
    decision = PromotionPolicy().decide(scored(0.88), champion_scored(3, 0.88), champion=3)
    assert decision.outcome is Outcome.REJECT


def test_a_gain_within_the_margin_is_rejected_with_the_margin_named() -> None:
    policy = PromotionPolicy(margin=0.005)
    decision = policy.decide(scored(0.883), champion_scored(3, 0.880), champion=3)
    assert decision.outcome is Outcome.REJECT
    assert decision.reason == (
        "roc_auc 0.883 does not beat champion v3's 0.880 by the required margin 0.005"
    )


def test_a_gain_of_exactly_the_margin_is_enough_despite_float_rounding() -> None:
    policy = PromotionPolicy(margin=0.005)
    decision = policy.decide(scored(0.885), champion_scored(3, 0.880), champion=3)
    assert decision.outcome is Outcome.PROMOTE
    assert decision.reason.endswith("by 0.005 (required margin 0.005)")


def test_an_evaluation_against_an_earlier_champion_is_stale() -> None:
    decision = PromotionPolicy().decide(scored(0.99), champion_scored(2, 0.80), champion=3)
    assert decision.outcome is Outcome.REJECT
    assert (
        decision.reason == "stale evaluation: it was compared with v2, but the champion is now v3"
    )


def test_no_baseline_while_a_champion_exists_is_rejected() -> None:
    decision = PromotionPolicy().decide(scored(0.99), None, champion=3)
    assert decision.outcome is Outcome.REJECT
    assert "did not score champion v3" in decision.reason


@pytest.mark.parametrize(
    ("challenger", "champion", "outcome"),
    [(0.30, 0.35, Outcome.PROMOTE), (0.36, 0.35, Outcome.REJECT), (0.35, 0.35, Outcome.REJECT)],
)
def test_lower_is_better_metrics_compare_the_other_way(
    challenger: float, champion: float, outcome: Outcome
) -> None:
    evaluation = scored(challenger, metric="log_loss", higher_is_better=False)
    decision = PromotionPolicy().decide(evaluation, champion_scored(1, champion, "log_loss"), 1)
    assert decision.outcome is outcome
    assert "(lower is better)" in decision.reason


def test_lower_is_better_respects_the_margin() -> None:
    evaluation = scored(0.34, metric="log_loss", higher_is_better=False)
    policy = PromotionPolicy(margin=0.05)
    decision = policy.decide(evaluation, champion_scored(1, 0.35, "log_loss"), champion=1)
    assert decision.outcome is Outcome.REJECT
    assert "required margin 0.050" in decision.reason


def test_manual_approval_turns_a_promotion_into_a_wait() -> None:
    policy = PromotionPolicy(manual_approval=True)
    decision = policy.decide(scored(0.9), champion_scored(1, 0.8), champion=1)
    assert decision.outcome is Outcome.AWAIT_APPROVAL
    assert (
        decision.reason == "roc_auc 0.900 beats champion v1's 0.800 by 0.100; waiting for approval"
    )


def test_manual_approval_applies_to_the_first_version_too() -> None:
    decision = PromotionPolicy(manual_approval=True).decide(scored(0.5), None, champion=None)
    assert decision.outcome is Outcome.AWAIT_APPROVAL


def test_manual_approval_does_not_save_a_worse_challenger() -> None:
    policy = PromotionPolicy(manual_approval=True)
    decision = policy.decide(scored(0.7), champion_scored(1, 0.8), champion=1)
    assert decision.outcome is Outcome.REJECT


def test_a_missing_primary_metric_is_rejected_with_what_was_there() -> None:
    baseline = BaselineEvaluation(version=1, metrics={"accuracy": 0.9})
    decision = PromotionPolicy().decide(scored(0.9), baseline, champion=1)
    assert decision.outcome is Outcome.REJECT
    assert decision.reason == (
        "primary metric roc_auc is missing from the scores of champion v1 (it has: accuracy)"
    )


def test_a_nan_score_is_never_promoted() -> None:
    decision = PromotionPolicy().decide(scored(math.nan), champion_scored(1, 0.8), champion=1)
    assert decision.outcome is Outcome.REJECT
    assert "not a finite number" in decision.reason


def test_a_negative_margin_is_refused() -> None:
    with pytest.raises(ValueError, match="margin"):
        PromotionPolicy(margin=-0.1)


def test_scores_are_written_with_three_decimals_unless_more_are_needed() -> None:
    assert [fmt(0.88), fmt(0.0004), fmt(12.5)] == ["0.880", "0.0004", "12.500"]


def with_rule(
    value: float, rows: int | None = None, margin: float | None = None, min_rows: int | None = None
) -> Evaluation:
    return scored(value).model_copy(update={"rows": rows, "margin": margin, "min_rows": min_rows})


def test_the_spec_s_margin_wins_over_the_registry_s() -> None:
    policy = PromotionPolicy(margin=0.001)
    decision = policy.decide(with_rule(0.883, margin=0.01), champion_scored(3, 0.88), champion=3)
    assert decision.outcome is Outcome.REJECT
    assert decision.reason == (
        "roc_auc 0.883 does not beat champion v3's 0.880 by the required margin 0.010 "
        "(the dataset's)"
    )
    lenient = PromotionPolicy(margin=0.05).decide(
        with_rule(0.883, margin=0.0), champion_scored(3, 0.88), champion=3
    )
    assert lenient.outcome is Outcome.PROMOTE


def test_without_a_spec_margin_the_registry_s_applies() -> None:
    decision = PromotionPolicy(margin=0.01).decide(
        with_rule(0.883), champion_scored(3, 0.88), champion=3
    )
    assert decision.outcome is Outcome.REJECT and "(the dataset's)" not in decision.reason


@pytest.mark.parametrize("champion", [None, 3])
def test_too_few_holdout_rows_are_not_promoted_with_the_reason(champion: int | None) -> None:
    evaluation = with_rule(0.99, rows=40, min_rows=50)
    decision = PromotionPolicy().decide(evaluation, champion_scored(3, 0.5), champion=champion)
    assert decision.outcome is Outcome.REJECT
    assert decision.reason == (
        "evaluated on 40 holdout rows, fewer than the 50 its dataset spec requires"
    )


def test_enough_holdout_rows_are_judged_on_the_metric() -> None:
    evaluation = with_rule(0.99, rows=50, min_rows=50)
    decision = PromotionPolicy().decide(evaluation, champion_scored(3, 0.5), champion=3)
    assert decision.outcome is Outcome.PROMOTE
