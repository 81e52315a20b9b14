"""The retraining policy: debounce, minimum labels, cooldown and the hourly circuit breaker."""

from __future__ import annotations

from services.monitoring.domain.policy import HOUR_S, PolicyConfig, RetrainPolicy


def policy(**overrides: float) -> RetrainPolicy:
    config = {
        "debounce_s": 60.0,
        "cooldown_s": 0.0,
        "min_labels_after_drift": 0,
        "max_retrains_per_hour": 3,
        **overrides,
    }
    return RetrainPolicy(PolicyConfig(**config))  # type: ignore[arg-type]


def test_first_drift_triggers_when_no_labels_are_required() -> None:
    decision = policy().on_drift("loans", "d1", now=0)
    assert decision.action == "trigger" and decision.drift_id == "d1"
    assert not decision.breaker_open


def test_drifts_within_the_debounce_window_make_one_trigger() -> None:
    rules = policy()
    actions = [rules.on_drift("loans", f"d{i}", now=i * 5).action for i in range(10)]
    assert actions == ["trigger"] + ["suppress"] * 9
    later = rules.on_drift("loans", "d10", now=100)
    assert later.action == "trigger" and later.drift_id == "d10"


def test_debounce_is_measured_from_the_first_signal_of_the_episode() -> None:
    rules = policy(debounce_s=10)
    assert rules.on_drift("m", "a", now=0).action == "trigger"
    assert rules.on_drift("m", "b", now=9).action == "suppress"
    assert rules.on_drift("m", "c", now=10).action == "trigger"


def test_suppressed_decisions_say_why() -> None:
    rules = policy()
    rules.on_drift("m", "a", now=0)
    assert rules.on_drift("m", "b", now=1).reason.startswith("debounced")


def test_models_are_independent() -> None:
    rules = policy()
    assert rules.on_drift("a", "1", now=0).action == "trigger"
    assert rules.on_drift("b", "2", now=0).action == "trigger"


def test_an_episode_waits_for_labels_then_triggers_once() -> None:
    rules = policy(min_labels_after_drift=3)
    first = rules.on_drift("m", "d", now=0)
    assert first.action == "wait" and "0/3" in first.reason
    assert rules.on_label("m", now=1) is None
    assert rules.on_label("m", now=2) is None
    decision = rules.on_label("m", now=3)
    assert decision is not None and decision.action == "trigger" and decision.drift_id == "d"
    assert decision.labels_after_drift == 3
    assert rules.on_label("m", now=4) is None


def test_labels_before_any_drift_do_nothing() -> None:
    rules = policy(min_labels_after_drift=1)
    assert rules.on_label("m", now=0) is None
    assert rules.on_drift("m", "d", now=1).action == "wait"


def test_cooldown_suppresses_a_new_episode_after_a_trigger() -> None:
    rules = policy(debounce_s=10, cooldown_s=100)
    assert rules.on_drift("m", "a", now=0).action == "trigger"
    cooled = rules.on_drift("m", "b", now=50)
    assert cooled.action == "suppress" and cooled.reason.startswith("cooldown")
    assert rules.on_drift("m", "c", now=101).action == "trigger"


def test_cooldown_suppressed_episode_never_triggers_on_later_labels() -> None:
    rules = policy(debounce_s=10, cooldown_s=100, min_labels_after_drift=1)
    rules.on_drift("m", "a", now=0)
    assert rules.on_label("m", now=1).action == "trigger"  # type: ignore[union-attr]
    assert rules.on_drift("m", "b", now=20).action == "suppress"
    assert rules.on_label("m", now=21) is None


def test_exceeding_the_hourly_limit_opens_the_breaker_until_the_hour_passes() -> None:
    rules = policy(debounce_s=1, max_retrains_per_hour=2)
    assert rules.on_drift("m", "a", now=0).action == "trigger"
    assert rules.on_drift("m", "b", now=10).action == "trigger"
    blocked = rules.on_drift("m", "c", now=20)
    assert blocked.action == "suppress" and blocked.reason.startswith("circuit_open")
    assert blocked.breaker_open
    assert rules.breaker("m", now=30)["open"] is True
    assert rules.breaker("m", now=HOUR_S + 11)["open"] is False
    reopened = rules.on_drift("m", "d", now=HOUR_S + 11)
    assert reopened.action == "trigger" and not reopened.breaker_open


def test_breaker_of_an_unknown_model_is_closed() -> None:
    assert policy().breaker("x", now=0) == {"open": False, "retrains_last_hour": 0}
