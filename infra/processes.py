"""Running platform services as local processes in a namespace of their own: for tests and
for `make demo`, beside (never instead of) the services `make up` started."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka.admin import AdminClient

from shared.kafka.topics import TopicCatalog, ensure_topics


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RunningService:
    name: str
    port: int
    process: subprocess.Popen[str]
    log: Path
    namespace: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def topic(self, name: str) -> str:
        """A catalog topic's full name in the service's namespace."""
        return f"{self.namespace}.{name}"

    def output(self, skip_prefix: str | None = None) -> str:
        """The end of the service's log; `skip_prefix="%"` leaves librdkafka's lines out."""
        text = self.log.read_text(errors="replace")
        if skip_prefix is not None:
            lines = text.splitlines()
            text = "\n".join(line for line in lines if not line.startswith(skip_prefix))
        return text[-4000:]

    def is_ready(self) -> bool:
        return self._answers("/ready")

    def is_live(self) -> bool:
        return self._answers("/live")

    def _answers(self, path: str) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(
                f"{self.name} exited with {self.process.returncode}:\n{self.output()}"
            )
        try:
            return httpx.get(f"{self.url}{path}", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def start_service(
    name: str,
    namespace: str,
    env: dict[str, str],
    log_dir: Path,
    timeout_s: float = 90,
    extra_env: dict[str, str] | None = None,
    wait_ready: bool = True,
    port: int | None = None,
) -> RunningService:
    """Starts `python -m services.<name>` on `port` (default a free one) and waits until
    /ready answers 200 (/live with `wait_ready=False`). A restart logs to a file of its own."""
    port = port or free_port()
    log = log_dir / f"{name}.log"
    restarts = 1
    while log.exists():
        log = log_dir / f"{name}.{restarts}.log"
        restarts += 1
    service_env = {
        **env,
        **(extra_env or {}),
        "MLOPS_NAMESPACE": namespace,
        f"MLOPS_{name.upper()}_PORT": str(port),
        f"MLOPS_{name.upper()}_HOST": "127.0.0.1",
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            env=service_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    service = RunningService(name, port, process, log, namespace)
    probe, what = (service.is_ready, "ready") if wait_ready else (service.is_live, "live")
    wait_for(probe, f"{name} to be {what}", timeout_s, interval_s=0.5)
    return service


def wait_for(probe: Callable[[], Any], what: str, timeout_s: float, interval_s: float = 1.0) -> Any:
    """Polls `probe` until it returns something truthy, and returns that."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last!r})")


@contextmanager
def namespace_topics(admin: AdminClient, namespace: str) -> Iterator[TopicCatalog]:
    """Every catalog topic under a namespace of its own, deleted afterwards."""
    catalog = TopicCatalog.load()
    ensure_topics(admin, list(catalog.specs.values()), namespace)
    try:
        yield catalog
    finally:
        names = [spec.full_name(namespace) for spec in catalog.specs.values()]
        admin.delete_topics(names, operation_timeout=10)


def drop_namespace_state(database_url: str, namespace: str) -> list[str]:
    """Drops what the services of `namespace` kept in SQL: schemas and tables named after it
    (the namespace must be unique, e.g. with a timestamp or a random suffix). Returns them."""
    from sqlalchemy import create_engine, text

    if len(namespace) < 8:
        raise ValueError(f"namespace {namespace!r} is too short to be unique")
    pattern = f"%{namespace}%"
    engine = create_engine(database_url)
    dropped: list[str] = []
    try:
        with engine.begin() as connection:
            if engine.dialect.name != "postgresql":
                return dropped
            schemas = connection.execute(
                text(
                    "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE :p"
                ),
                {"p": pattern},
            ).scalars()
            for schema in list(schemas):
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                dropped.append(schema)
            tables = connection.execute(
                text(
                    "SELECT table_schema, table_name FROM information_schema.tables "
                    "WHERE table_name LIKE :p AND table_schema = 'public'"
                ),
                {"p": pattern},
            ).all()
            for schema, table in tables:
                connection.execute(text(f'DROP TABLE IF EXISTS "{schema}"."{table}" CASCADE'))
                dropped.append(f"{schema}.{table}")
    finally:
        engine.dispose()
    return dropped
