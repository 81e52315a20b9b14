"""A handler slower than max.poll.interval.ms (issue 15, scenario 7): two consumers of the
shared runner in one group apply one SQL effect per event, guarded by IdempotentEffects; one
of them takes longer than its poll interval on one event, is put out of the group, and its
partitions move to the other. The rebalance commits nothing unprocessed (the other handles
the slow event again from the last commit), the effect is applied once, every event's effect
is there, and both processes are still running."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient
from sqlalchemy import create_engine, select

from shared.settings import PlatformSettings
from tests.faults.harness import Row, read_topic
from tests.integration.kafka_helpers import committed_total, topics, unique_name
from tests.integration.procs.consume import effects_table, publish_numbered
from tests.waiting import wait_until

EVENTS = 600
PARTITIONS = 3
SLOW_N = 40
POLL_INTERVAL_MS = 8000
SLOW_S = 20.0


def consumer(
    env: dict[str, str], topic: str, group: str, dead: str, table: str, marker: Path
) -> subprocess.Popen[str]:
    tight = {"session.timeout.ms": "6000", "max.poll.interval.ms": str(POLL_INTERVAL_MS)}
    options = {
        "--topic": topic,
        "--group": group,
        "--dead-letter": dead,
        "--service": "slow-handler-test",
        "--effects-table": table,
        "--slow-n": str(SLOW_N),
        "--slow-s": str(SLOW_S),
        "--slow-marker": str(marker),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.procs.consume",
            *itertools.chain(*options.items()),
        ],
        env={**env, "MLOPS_KAFKA_CLIENT_EXTRA": json.dumps(tight)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_handler_slower_than_the_poll_interval_commits_nothing_unprocessed_and_applies_once(
    settings: PlatformSettings,
    admin: AdminClient,
    bootstrap: str,
    subprocess_env: dict[str, str],
    tmp_path: Path,
    matrix: list[Row],
) -> None:
    assert settings.database_url, "MLOPS_DATABASE_URL must point at the stack's PostgreSQL"
    engine = create_engine(settings.database_url.get_secret_value())
    topic, dead = unique_name("slow-in"), unique_name("slow-dlq")
    group, table_name = unique_name("slow-group"), unique_name("effects").replace("-", "_")
    table = effects_table(table_name)
    table.metadata.create_all(engine)
    marker = tmp_path / "slow-once"

    def applied() -> list[int]:
        with engine.connect() as connection:
            return list(connection.execute(select(table.c.n)).scalars())

    with topics(admin, topic, partitions=PARTITIONS), topics(admin, dead):
        processes = [
            consumer(subprocess_env, topic, group, dead, table_name, marker) for _ in range(2)
        ]
        try:
            publish_numbered(settings, topic, EVENTS, "slow-handler-test")
            wait_until(marker.exists, what="a handler to start its slow event", timeout_s=120)
            wait_until(
                lambda: (
                    len(applied()) >= EVENTS
                    and committed_total(bootstrap, group, topic, PARTITIONS) == EVENTS
                ),
                what="every effect applied and every offset committed",
                timeout_s=180,
                interval_s=0.5,
            )
            done_at = time.time()
            slow_until = marker.stat().st_mtime + SLOW_S
            time.sleep(max(slow_until - time.time(), 0) + 2)  # the slow one applies it too
            recovery_s = done_at - marker.stat().st_mtime  # from the slow start to all done
            rows = applied()
            alive = [p.poll() is None for p in processes]
            dead_lettered = len(read_topic(bootstrap, dead))
        finally:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            errors = [p.communicate(timeout=60)[1] for p in processes]
    table.drop(engine)
    outcome = Row(
        scenario=f"handler slower than max.poll.interval.ms ({SLOW_S:.0f} s > {POLL_INTERVAL_MS / 1000:.0f} s)",
        records_in=EVENTS,
        records_out=len(set(rows)),
        lost=EVENTS - len(set(rows)),
        twice=len(rows) - len(set(rows)),
        dead_lettered=dead_lettered,
        predict_ok=0,
        predict_failed=0,
        recovery_s=recovery_s,
    )
    matrix.append(outcome)
    assert done_at < slow_until, "the other consumer took the slow event's partition over"
    assert dead_lettered == 0
    assert sorted(set(rows)) == list(range(EVENTS)), "an effect is missing"
    assert len(rows) == EVENTS, f"{len(rows) - EVENTS} effects applied twice"
    assert all(alive), [e[-2000:] for e in errors]
