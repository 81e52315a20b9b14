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
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

HOUR_S = 3600.0

Action = Literal["trigger", "suppress", "wait"]


@dataclass(frozen=True)
class PolicyConfig:
    debounce_s: float = 300.0
    cooldown_s: float = 1800.0
    min_labels_after_drift: int = 100
    max_retrains_per_hour: int = 2


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


@dataclass
class _ModelState:
    episode: _Episode | None = None
    last_trigger: float | None = None
    triggers: deque[float] = field(default_factory=deque)
    breaker_open: bool = False


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
        state.triggers.append(now)
        state.last_trigger = now
        return self._decide(
            model_name,
            "trigger",
            f"drift {episode.drift_id}: {episode.labels} labels after it; "
            f"{len(state.triggers)}/{self.config.max_retrains_per_hour} retrains this hour",
            episode.drift_id,
            now,
            episode.labels,
        )

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

    def models(self) -> list[str]:
        return sorted(self._models)
