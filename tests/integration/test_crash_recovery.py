"""A consumer killed with SIGKILL mid-stream loses nothing and applies every effect once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient
from sqlalchemy import create_engine, func, select

from shared.settings import PlatformSettings
from tests.integration.kafka_helpers import committed_total, topics, unique_name
from tests.integration.procs.consume import effects_table, publish_numbered
from tests.waiting import wait_until

EVENTS = 4_000
PARTITIONS = 3


def start_consumer(
    env: dict[str, str], topic: str, group: str, dead: str, table: str
) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.procs.consume",
            "--topic",
            topic,
            "--group",
            group,
            "--dead-letter",
            dead,
            "--service",
            "crash-test",
            "--effects-table",
            table,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_sigkill_mid_stream_then_restart_processes_every_event_exactly_once(
    settings: PlatformSettings, admin: AdminClient, bootstrap: str, subprocess_env: dict[str, str]
) -> None:
    assert settings.database_url, "MLOPS_DATABASE_URL must point at the stack's PostgreSQL"
    engine = create_engine(settings.database_url.get_secret_value())
    topic, dead = unique_name("crash-in"), unique_name("crash-dlq")
    group, table_name = unique_name("crash-group"), unique_name("effects").replace("-", "_")
    table = effects_table(table_name)
    table.metadata.create_all(engine)

    def applied() -> int:
        with engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(table)).scalar_one()

    with topics(admin, topic, partitions=PARTITIONS), topics(admin, dead):
        publish_numbered(settings, topic, EVENTS, "crash-test")

        first = start_consumer(subprocess_env, topic, group, dead, table_name)
        wait_until(lambda: applied() >= EVENTS // 5, what="a fifth of the effects", timeout_s=120)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        at_kill = applied()
        assert at_kill < EVENTS, "the consumer must be killed mid-stream"

        second = start_consumer(subprocess_env, topic, group, dead, table_name)
        try:
            wait_until(lambda: applied() >= EVENTS, what="all effects after restart", timeout_s=180)
            wait_until(
                lambda: committed_total(bootstrap, group, topic, PARTITIONS) == EVENTS,
                what="the group to commit every offset",
                timeout_s=30,
                interval_s=0.5,
            )
        finally:
            second.send_signal(signal.SIGTERM)
            _, stderr = second.communicate(timeout=30)
        assert second.returncode == 0, stderr[-2000:]

    with engine.connect() as connection:
        rows = connection.execute(select(table.c.n)).scalars().all()
    table.drop(engine)
    assert len(rows) == EVENTS
    assert sorted(rows) == list(range(EVENTS))
