"""When a drift becomes a retrain: debounce, minimum labels, cooldown, hourly circuit breaker.

Pure: time is passed in (seconds since the epoch). Per model:

- debounce: drift signals within `debounce_s` of an episode's first signal belong to that
  episode and are suppressed ("debounced"); one trigger per episode at most.
- minimum labels: an episode waits until `min_labels_after_drift` labelled records arrived
  after its first signal ("waiting_for_labels"), then triggers on the label that completes it.
- cooldown: a drift within `cooldown_s` of the last trigger is suppressed ("cooldown").
- circuit breaker: at most `max_retrains_per_hour` triggers in any hour; a trigger beyond that
  is suppressed ("circuit_open") and the breaker stays open until the oldest trigger of the
  hour is an hour old.
- outcomes: a retrain that failed or was refused (`on_retrain_failed`) is undone: it no longer
  counts toward the cooldown nor the breaker, and its episode is re-armed: it waits for
  `min_labels_after_drift` new labels again and triggers again, up to `max_attempts` retrains
  per episode (then "gave_up"). A retrain that produced a model (`on_retrain_done`), promoted
  or rejected, counts as a retrain.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Literal

HOUR_S = 3600.0

Action = Literal["trigger", "suppress", "wait", "ignore"]


@dataclass(frozen=True)
class PolicyConfig:
    debounce_s: float = 300.0
    cooldown_s: float = 1800.0
    min_labels_after_drift: int = 100
    max_retrains_per_hour: int = 2
    max_attempts: int = 3


@dataclass(frozen=True)
class Decision:
    model_name: str
    action: Action
    reason: str
    drift_id: str
    at: float
    breaker_open: bool
    labels_after_drift: int = 0


@dataclass
class _Episode:
    drift_id: str
    started: float
    labels: int = 0
    triggered: bool = False
    attempt: int = 1


@dataclass
class _ModelState:
    episode: _Episode | None = None
    last_trigger: float | None = None
    triggers: deque[float] = field(default_factory=deque)
    breaker_open: bool = False
    in_flight: dict[str, tuple[float, float | None, int]] = field(default_factory=dict)
    """Drift id -> (its trigger's time, the last trigger before it, the attempt)."""


class RetrainPolicy:
    def __init__(self, config: PolicyConfig) -> None:
        self.config = config
        self._models: dict[str, _ModelState] = {}

    def on_drift(self, model_name: str, drift_id: str, now: float) -> Decision:
        state = self._models.setdefault(model_name, _ModelState())
        episode = state.episode
        if episode is not None and now - episode.started < self.config.debounce_s:
            what = "already triggered" if episode.triggered else "waiting or suppressed"
            return self._decide(
                model_name,
                "suppress",
                f"debounced: episode of drift {episode.drift_id} began "
                f"{now - episode.started:.1f}s ago ({what})",
                drift_id,
                now,
                episode.labels,
            )
        state.episode = _Episode(drift_id=drift_id, started=now)
        if state.last_trigger is not None and now - state.last_trigger < self.config.cooldown_s:
            state.episode.triggered = True  # the episode is spent: no trigger when labels come
            return self._decide(
                model_name,
                "suppress",
                f"cooldown: last retrain {now - state.last_trigger:.1f}s ago "
                f"(< {self.config.cooldown_s:g}s)",
                drift_id,
                now,
            )
        return self._try_trigger(model_name, state, now)

    def on_label(self, model_name: str, now: float) -> Decision | None:
        """A labelled record of the model arrived; triggers a waiting episode once it has enough."""
        state = self._models.get(model_name)
        if state is None or state.episode is None or state.episode.triggered:
            return None
        state.episode.labels += 1
        if state.episode.labels < self.config.min_labels_after_drift:
            return None
        return self._try_trigger(model_name, state, now)

    def _try_trigger(self, model_name: str, state: _ModelState, now: float) -> Decision:
        episode = state.episode
        assert episode is not None
        needed = self.config.min_labels_after_drift
        if episode.labels < needed:
            return self._decide(
                model_name,
                "wait",
                f"waiting for labels: {episode.labels}/{needed} after the drift",
                episode.drift_id,
                now,
                episode.labels,
            )
        episode.triggered = True
        self._forget_old(state, now)
        if len(state.triggers) >= self.config.max_retrains_per_hour:
            state.breaker_open = True
            return self._decide(
                model_name,
                "suppress",
                f"circuit_open: {len(state.triggers)} retrains in the last hour "
                f"(max {self.config.max_retrains_per_hour})",
                episode.drift_id,
                now,
                episode.labels,
            )
        state.in_flight[episode.drift_id] = (now, state.last_trigger, episode.attempt)
        state.triggers.append(now)
        state.last_trigger = now
        attempt = f" (attempt {episode.attempt}/{self.config.max_attempts})"
        return self._decide(
            model_name,
            "trigger",
            f"drift {episode.drift_id}: {episode.labels} labels after it; "
            f"{len(state.triggers)}/{self.config.max_retrains_per_hour} retrains this hour"
            + (attempt if episode.attempt > 1 else ""),
            episode.drift_id,
            now,
            episode.labels,
        )

    def on_retrain_done(self, model_name: str, drift_id: str) -> None:
        """The retrain of a drift produced a model: it stays counted."""
        state = self._models.get(model_name)
        if state is not None:
            state.in_flight.pop(drift_id, None)

    def on_retrain_failed(
        self, model_name: str, drift_id: str, why: str, now: float
    ) -> Decision | None:
        """The retrain of a drift failed or was refused: it is undone (no cooldown, not
        counted by the breaker) and its episode re-armed, unless it was the last attempt or a
        later episode is under way. None when the retrain is not one in flight (an outcome
        seen twice, or from before a restart)."""
        state = self._models.get(model_name)
        if state is None or drift_id not in state.in_flight:
            return None
        triggered_at, previous, attempt = state.in_flight.pop(drift_id)
        if triggered_at in state.triggers:
            state.triggers.remove(triggered_at)
        if state.last_trigger == triggered_at:
            state.last_trigger = previous
        self._forget_old(state, now)
        failed = f"retrain of drift {drift_id} failed ({why})"
        current = state.episode
        if current is not None and current.drift_id != drift_id:
            return self._decide(
                model_name,
                "suppress",
                f"{failed}; not retried: the episode of drift {current.drift_id} followed it",
                drift_id,
                now,
            )
        if attempt >= self.config.max_attempts:
            return self._decide(
                model_name,
                "suppress",
                f"gave_up: {failed}; {attempt}/{self.config.max_attempts} attempts",
                drift_id,
                now,
            )
        state.episode = _Episode(drift_id=drift_id, started=now, attempt=attempt + 1)
        decision = self._try_trigger(model_name, state, now)
        return replace(decision, reason=f"{failed}; re-armed: {decision.reason}")

    def _forget_old(self, state: _ModelState, now: float) -> None:
        while state.triggers and now - state.triggers[0] >= HOUR_S:
            state.triggers.popleft()
        if len(state.triggers) < self.config.max_retrains_per_hour:
            state.breaker_open = False

    def _decide(
        self,
        model_name: str,
        action: Action,
        reason: str,
        drift_id: str,
        now: float,
        labels: int = 0,
    ) -> Decision:
        state = self._models[model_name]
        return Decision(model_name, action, reason, drift_id, now, state.breaker_open, labels)

    def breaker(self, model_name: str, now: float) -> dict[str, object]:
        state = self._models.get(model_name)
        if state is None:
            return {"open": False, "retrains_last_hour": 0}
        recent = [t for t in state.triggers if now - t < HOUR_S]
        return {
            "open": state.breaker_open and len(recent) >= self.config.max_retrains_per_hour,
            "retrains_last_hour": len(recent),
            "max_retrains_per_hour": self.config.max_retrains_per_hour,
            "last_trigger": state.last_trigger,
        }

    def ignore(self, model_name: str, drift_id: str, why: str, now: float) -> Decision:
        """A drift the policy does not act on (e.g. before any model of the dataset served)."""
        state = self._models.setdefault(model_name, _ModelState())
        return Decision(model_name, "ignore", f"ignored: {why}", drift_id, now, state.breaker_open)

    def models(self) -> list[str]:
        return sorted(self._models)

    def export(self, models: set[str]) -> dict[str, _ModelState]:
        """The models' episodes, triggers and retrains in flight (live objects: pickle them
        at once)."""
        return {name: state for name, state in self._models.items() if name in models}

    def forget(self, models: set[str]) -> None:
        for name in models:
            self._models.pop(name, None)

    def restore(self, states: dict[str, _ModelState]) -> None:
        self._models.update(states)
