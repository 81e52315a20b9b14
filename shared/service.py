"""The skeleton every service runs on: one process with a FastAPI app and its consumer loops.

A service's bootstrap builds a `ServiceRuntime` (settings, producer, consumer runners,
readiness checks) and hands it to `create_app`; `python -m services.<name>` then calls `serve`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Literal, Protocol

import uvicorn
from confluent_kafka.admin import AdminClient
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.failures import TRANSIENT_EXCEPTIONS
from shared.http_limits import BodyLimit, install_http_limits
from shared.kafka.config import client_config
from shared.kafka.producer import EventProducer
from shared.settings import PlatformSettings
from shared.telemetry import flush_spans, shutdown_tracing

log = logging.getLogger(__name__)


class BackgroundLoop(Protocol):
    """What a service runs beside its HTTP app: a ConsumerRunner, or a loop of its own. A
    loop whose work has an end (a start-up task) sets `ends_by_itself = True`: its return is
    then its success, not a crash."""

    group_id: str

    def run(self, stop: threading.Event) -> None: ...


CRASH_EXIT_CODE = 70
"""EX_SOFTWARE: the process ends with this when one of its loops stopped on its own."""

ReadinessCheck = Callable[[], None]
"""Returns when a dependency is reachable, raises with a reason when it is not."""


def kafka_reachable(settings: PlatformSettings) -> ReadinessCheck:
    admin = AdminClient(client_config(settings, "readiness"))

    def check() -> None:
        admin.list_topics(timeout=2.0)

    return check


@dataclass
class ServiceRuntime:
    name: str
    settings: PlatformSettings
    producer: EventProducer | None = None
    runners: Sequence[BackgroundLoop] = ()
    readiness_checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    closing: Sequence[Callable[[], None]] = ()
    """Closes what the service opened (HTTP clients, ...), called once its loops stopped."""
    stop: threading.Event = field(default_factory=threading.Event)
    crashed: list[str] = field(default_factory=list)
    on_crash: Callable[[ServiceRuntime], None] = field(default=lambda r: exit_after_crash(r))
    """Called once a loop stopped that nobody asked to stop; by default it ends the process."""
    stopping: threading.Event = field(default_factory=threading.Event)
    """Set once the process was asked to stop: /live and /ready answer 503 from then on, so a
    load balancer sends it nothing new while it drains (settings.shutdown_drain_s)."""
    _threads: list[threading.Thread] = field(default_factory=list)
    _stopping_at: float = 0.0

    def begin_stopping(self) -> None:
        if not self.stopping.is_set():
            self._stopping_at = time.monotonic()
            self.stopping.set()

    def drain_left_s(self) -> float:
        """How long the process should still answer requests, though out of its load balancer,
        before it stops accepting: the rest of settings.shutdown_drain_s since it began stopping."""
        if not self.stopping.is_set():
            return self.settings.shutdown_drain_s
        elapsed = time.monotonic() - self._stopping_at
        return max(0.0, self.settings.shutdown_drain_s - elapsed)

    def start_consumers(self) -> None:
        for runner in self.runners:
            thread = threading.Thread(
                target=self._run_consumer, args=(runner,), name=f"consumer-{runner.group_id}"
            )
            thread.start()
            self._threads.append(thread)

    def stop_consumers(self, timeout_s: float = 30.0) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        for close in self.closing:
            try:
                close()
            except Exception:
                log.exception("closing %r at shutdown failed", close)
        if self.producer is not None:
            self.producer.close()
        shutdown_tracing()

    def _run_consumer(self, runner: BackgroundLoop) -> None:
        try:
            runner.run(self.stop)
        except Exception:
            log.exception("consumer %s stopped on an error", runner.group_id)
        else:
            if self.stop.is_set() or getattr(runner, "ends_by_itself", False):
                return
            log.error("consumer %s stopped though nobody asked it to", runner.group_id)
        self.crashed.append(runner.group_id)
        self.on_crash(self)


def exit_after_crash(runtime: ServiceRuntime, grace_s: float = 10.0) -> None:
    """Lets the other loops finish their in-flight messages, then ends the process with
    CRASH_EXIT_CODE, so its supervisor restarts it instead of it lingering half-alive."""
    runtime.stop.set()
    current = threading.current_thread()
    for thread in runtime._threads:
        if thread is not current:
            thread.join(grace_s)
    log.critical(
        "exiting with status %d: consumer loop %s stopped", CRASH_EXIT_CODE, runtime.crashed
    )
    logging.shutdown()
    flush_spans(timeout_s=5)  # os._exit skips the exporter's own shutdown: the crash's spans
    os._exit(CRASH_EXIT_CODE)


def _dependency_unavailable(_: Request, error: Exception) -> JSONResponse:
    """A database, object store, broker or service that should come back: 503 saying which
    error, where a route did not handle it itself (never a bare 500)."""
    reason = f"{type(error).__name__}: {error}"
    return JSONResponse({"detail": f"a dependency is unavailable ({reason[:500]})"}, 503)


def create_app(
    runtime: ServiceRuntime,
    routers: Sequence[APIRouter] = (),
    *,
    telemetry: TelemetryConfig | None = None,
    exclude_spans: Sequence[Literal["receive", "send"]] = (),
    body_limit: BodyLimit | None = None,
) -> FastAPI:
    """The service's app. `telemetry` is FastAPI's own (e.g. {"operation_spans": False}: no
    fastapi.dependencies/fastapi.endpoint spans); `exclude_spans` drops the ASGI instrumentation's
    'http receive'/'http send' spans. Both default to what FastAPI and OpenTelemetry do.
    `body_limit` (default 1 MiB) and the checks of shared/http_limits.py apply to every route."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtime.start_consumers()
        yield
        runtime.stop_consumers()

    app = FastAPI(title=f"mlops {runtime.name}", lifespan=lifespan, telemetry=telemetry)
    app.state.runtime = runtime
    for kind in TRANSIENT_EXCEPTIONS:
        app.add_exception_handler(kind, _dependency_unavailable)

    @app.get("/live", tags=["health"])
    def live() -> JSONResponse:
        if runtime.stopping.is_set():
            return JSONResponse({"status": "stopping"}, 503)
        if runtime.crashed:
            return JSONResponse({"status": "crashed", "consumers": runtime.crashed}, 503)
        return JSONResponse({"status": "ok"})

    @app.get("/ready", tags=["health"])
    def ready() -> JSONResponse:
        if runtime.stopping.is_set():
            return JSONResponse({"status": "stopping"}, 503)
        failures = {}
        for name, check in runtime.readiness_checks.items():
            try:
                check()
            except Exception as error:
                failures[name] = str(error) or type(error).__name__
        if failures or runtime.crashed:
            body = {"status": "not ready", "failing": failures, "crashed": runtime.crashed}
            return JSONResponse(body, 503)
        return JSONResponse({"status": "ready", "checks": sorted(runtime.readiness_checks)})

    @app.get("/metrics", tags=["health"])
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    install_http_limits(app, body_limit or BodyLimit.default(runtime.name))
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls="live,ready,metrics", exclude_spans=list(exclude_spans) or None
    )
    return app


def serve(app: FastAPI, host: str, port: int) -> None:
    """Runs until SIGTERM/SIGINT, then stops gracefully (DrainingServer): out of the load
    balancer first, in-flight requests finished, then the lifespan exit (stops consumers)."""
    # uvicorn re-raises the stop signal after its graceful shutdown; a handler that only
    # logs it lets a requested stop end the process with status 0 instead of -SIGTERM.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _log_stop_signal)
    DrainingServer(server_config(app, host, port), app.state.runtime).run()


class DrainingServer(uvicorn.Server):
    """uvicorn that, asked to stop, first drains: /live and /ready answer 503 while it keeps
    serving for settings.shutdown_drain_s, long enough for a load balancer checking them to
    take it out, so no request is sent to a port about to close. Then it stops as uvicorn
    does: no new connection, idle ones closed, requests under way answered, then the
    lifespan's end (consumer loops finish their batch, commit, leave their group). A second
    signal cuts the drain short."""

    def __init__(self, config: uvicorn.Config, runtime: ServiceRuntime) -> None:
        super().__init__(config)
        self._runtime = runtime
        self._drain: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = not self._runtime.stopping.is_set()
        self._runtime.begin_stopping()
        drain_s = self._runtime.drain_left_s()
        if first and drain_s > 0:
            log.info("stopping: out of the load balancer for %.1f s, then shutting down", drain_s)
            self._drain = threading.Timer(drain_s, super().handle_exit, (sig, None))
            self._drain.daemon = True
            self._drain.start()
            return
        if self._drain is not None:
            self._drain.cancel()
        super().handle_exit(sig, frame)


GRACEFUL_SHUTDOWN_S = 15
"""How long uvicorn waits for requests under way once it stopped accepting; then it cancels
them, so the consumer loops still finish and commit within the supervisor's stop timeout."""


def server_config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    """uvicorn's settings for every service. Each request task starts from a clean context:
    otherwise a request arriving on a keep-alive connection while the previous one finishes
    (always, for bodies over 64 KiB) inherits its server span and joins its trace."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        reset_contextvars=True,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


def _log_stop_signal(signum: int, _frame: object) -> None:
    log.info("stopped by %s", signal.Signals(signum).name)
