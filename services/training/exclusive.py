"""One training at a time per model, across every replica of the service.

TrainModel commands are keyed by model name, so the consumer group already hands a model's
commands to one replica at a time; but while a partition moves (a replica slower than
max.poll.interval, stopped, or cut off) its old owner can still be fitting when the new one
is handed the same or the next command. A lease per (namespace, model) in SQL closes that
gap: a run holds its model's lease while it fits, and renews it; a second run of the same
model waits until the lease is released or expires (its holder died), then starts.

A run that waited `wait_s` in vain ends in TrainingFailed ("failed", naming the holder):
never silently dropped. A run whose lease could not be renewed for a whole lease (database
unreachable) has lost it: another replica may have trained meanwhile, so its result is not
kept either (TrainingFailed, "failed", saying so).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from services.training.adapters.leases import Lease, new_token

log = logging.getLogger(__name__)


class ModelBusy(Exception):
    """Another run held the model's lease for the whole wait."""


class LeaseLost(Exception):
    """The run could not renew its model's lease in time: another may have trained."""


class Leases(Protocol):
    def acquire(self, model_name: str, token: str, command_id: str) -> Lease | None: ...
    def renew(self, model_name: str, token: str) -> bool: ...
    def release(self, model_name: str, token: str) -> None: ...


@dataclass
class Held:
    """The block's lease; `lost` is set when it could not be kept."""

    lease: Lease
    lost: threading.Event = field(default_factory=threading.Event)

    def check(self) -> None:
        """Raises LeaseLost when the lease was lost while the block ran."""
        if self.lost.is_set():
            raise LeaseLost(
                f"the training lease of {self.lease.model_name} could not be renewed "
                "(database unreachable longer than MLOPS_TRAINING_LEASE_TTL_S): another replica "
                "may have trained it meanwhile, so this run's result is not kept"
            )


@dataclass(frozen=True)
class ExclusionConfig:
    ttl_s: float = 60.0
    """A lease not renewed for this long is free (its holder died)."""
    wait_s: float = 1800.0
    """How long a run waits for its model's lease before it ends failed."""
    poll_s: float = 1.0


class ModelExclusion:
    def __init__(
        self,
        leases: Leases,
        config: ExclusionConfig,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._leases = leases
        self.config = config
        self._monotonic = monotonic
        self._sleep = sleep

    @contextmanager
    def hold(self, model_name: str, command_id: str) -> Iterator[Held]:
        """The model's lease for the block: waits for it, renews it, releases it."""
        token = new_token()
        held = Held(self._wait_for(model_name, token, command_id))
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(held, token, stop), name=f"lease-{model_name}", daemon=True
        )
        renewer.start()
        try:
            yield held
        finally:
            stop.set()
            renewer.join()
            self._release(model_name, token)

    def _release(self, model_name: str, token: str) -> None:
        try:
            self._leases.release(model_name, token)
        except Exception as error:  # the database down: the lease expires on its own
            log.warning("releasing the lease of %s: %s (it expires on its own)", model_name, error)

    def _wait_for(self, model_name: str, token: str, command_id: str) -> Lease:
        deadline = self._monotonic() + self.config.wait_s
        announced = False
        while True:
            lease = self._leases.acquire(model_name, token, command_id)
            if lease is not None and lease.holder == token:
                return lease
            if self._monotonic() >= deadline:
                raise ModelBusy(busy_reason(model_name, lease, self.config.wait_s))
            if not announced and lease is not None:
                log.info(
                    "command %s waits for %s: held by %s", command_id, model_name, lease.describe()
                )
                announced = True
            self._sleep(self.config.poll_s)

    def _renew(self, held: Held, token: str, stop: threading.Event) -> None:
        """Renews every third of the lease until stopped; sets `lost` when the lease is gone
        or was not renewed for a whole lease."""
        every = self.config.ttl_s / 3
        renewed = self._monotonic()
        while not stop.wait(every):
            try:
                if not self._leases.renew(held.lease.model_name, token):
                    held.lost.set()
                    return
                renewed = self._monotonic()
            except Exception as error:  # the database down: try again until the lease ends
                log.warning("renewing the lease of %s: %s", held.lease.model_name, error)
                if self._monotonic() - renewed >= self.config.ttl_s:
                    held.lost.set()
                    return


def busy_reason(model_name: str, lease: Lease | None, wait_s: float) -> str:
    holder = lease.describe() if lease is not None else "another run"
    return (
        f"model {model_name} was being trained by {holder} for the whole {wait_s:.0f}s this "
        "command may wait (MLOPS_TRAINING_LEASE_WAIT_S); ask again once it has finished"
    )
