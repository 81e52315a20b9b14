"""Wires the console: settings, the clients of the other services, Kafka's admin API and
Jaeger's query API, the session (signed cookie) and the pages, on the shared skeleton (no
consumer loops: the console owns no state beyond a session)."""

from __future__ import annotations

import logging
import secrets

import httpx
from fastapi import FastAPI
from starlette.middleware.sessions import SessionMiddleware

from services.console.adapters.jaeger import JAEGER, Jaeger
from services.console.adapters.kafka import KafkaAdmin
from services.console.adapters.services import Services
from services.console.http import ConsoleDeps, install
from services.console.sessions import KeyStore
from services.console.settings import ConsoleSettings
from shared.http_limits import BodyLimit
from shared.kafka.config import client_config
from shared.service import ServiceRuntime, create_app, serve
from shared.settings import PlatformSettings
from shared.telemetry import configure_tracing

NAME = "console"
SESSION_COOKIE = "mlops_console"
log = logging.getLogger(__name__)


def build(
    platform: PlatformSettings,
    settings: ConsoleSettings,
    *,
    with_kafka: bool = True,
    transport: httpx.BaseTransport | None = None,
) -> FastAPI:
    """The console's app; `transport` replaces the network (unit tests)."""
    urls = {**settings.urls(), JAEGER: platform.jaeger_query_url.rstrip("/")}
    services = Services(urls, settings.http_timeout_s, transport)
    kafka = (
        KafkaAdmin(client_config(platform, NAME), platform.namespace, settings.kafka_timeout_s)
        if with_kafka
        else None
    )
    deps = ConsoleDeps(
        services=services,
        jaeger=Jaeger(services),
        kafka=kafka,
        keys=KeyStore(settings.session_max_age_s),
        namespace=platform.namespace,
        jaeger_ui_url=(settings.jaeger_ui_url or platform.jaeger_query_url).rstrip("/"),
        poll_interval_s=settings.poll_interval_s,
    )
    # Readiness is the console's own: it renders whatever the others answer, so their
    # being down is shown on its pages, not a reason to take it out of service.
    runtime = ServiceRuntime(name=NAME, settings=platform)
    app = create_app(runtime, body_limit=BodyLimit.of(settings))
    install(app, deps)
    if settings.session_secret is None:
        log.warning("no MLOPS_CONSOLE_SESSION_SECRET (local mode): sessions end at restart")
        secret = secrets.token_urlsafe(48)
    else:
        secret = settings.session_secret.get_secret_value()
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_max_age_s,
        same_site="strict",
        https_only=settings.https_only,
    )
    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    platform = PlatformSettings()
    settings = ConsoleSettings()
    configure_tracing(NAME, platform)
    serve(build(platform, settings), settings.host, settings.port)
