"""A rolling restart of every service under load (issue 15, scenario 3): the seven services
run as the local stack runs them with `MLOPS_REPLICAS`, two supervisord programs each behind
HAProxy, as a second stack beside the running one (a namespace, ports and MLOPS_HOME of its
own). Under one steady load through HAProxy's ports, every program is restarted in turn the
way a deployment does it (`supervisorctl restart`: SIGTERM, then started again), the next
only once the restarted one is ready. No /predict and no ingestion POST may fail, every
acknowledged record ends exactly once in validated or rejected with its features computed,
none is dead-lettered, and a training asked afterwards yields a new version."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from infra.demo.loop import Urls, train_first_model
from infra.processes import drop_namespace_state
from shared.settings import PlatformSettings
from tests.faults.effects import settled_row
from tests.faults.harness import Row, SteadyLoad, ask_training, read_topic, time_to_settle
from tests.integration.kafka_helpers import unique_name
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "infra" / "stack" / "stack.sh"
SERVICES = ("ingestion", "validation", "feature_store", "training", "registry", "serving")
ALL = (*SERVICES, "monitoring")
PORT_BASE = 18301  # ingestion; the others on the six ports after it, in this order
MODEL = "rolling_loans"
NOT_SERVICES = ("haproxy", "restart-counter")
# Slower feeds than the other scenarios': fourteen restarts take minutes on two cores, and
# the load's 20,000 records must last until the last one.
FEED_PAUSE_S = 0.6


@dataclass(frozen=True)
class RollingStack:
    home: Path
    namespace: str
    env: dict[str, str]

    @property
    def urls(self) -> Urls:
        port = {name: PORT_BASE + n for n, name in enumerate(ALL)}
        return Urls(**{n: f"http://127.0.0.1:{port[n]}" for n in Urls.__dataclass_fields__})

    def stack(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", str(STACK), *args], env=self.env, capture_output=True, text=True, timeout=600
        )
        assert not check or done.returncode == 0, done.stdout + done.stderr[-4000:]
        return done

    def supervisorctl(self, *args: str) -> str:
        conf = self.home / "supervisor" / "supervisord.conf"
        done = subprocess.run(
            [str(REPO / ".venv/bin/supervisorctl"), "-c", str(conf), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done.stdout + done.stderr

    def programs(self) -> list[tuple[str, int]]:
        """Every service process supervisord runs, in start order, with its port."""
        conf = (self.home / "supervisor" / "supervisord.conf").read_text()
        found: list[tuple[str, int]] = []
        for section in conf.split("[program:")[1:]:
            name = section.split("]", 1)[0]
            if name in NOT_SERVICES:
                continue
            service = name.rsplit("-", 1)[0].upper()
            port = section.split(f'MLOPS_{service}_PORT="', 1)[1].split('"', 1)[0]
            found.append((name, int(port)))
        return found

    def restart(self, program: str, port: int) -> None:
        """`supervisorctl restart`: SIGTERM and wait for the exit, start and wait for RUNNING;
        then until the new process answers /ready on its own port."""
        before = self.supervisorctl("pid", program).strip()
        answer = self.supervisorctl("restart", program)
        assert f"{program}: started" in answer, answer
        after = self.supervisorctl("pid", program).strip()
        assert after.isdigit() and after != before, f"{program}: pid {before} then {after}"
        try:
            wait_until(
                lambda: ready(f"http://127.0.0.1:{port}/ready"),
                what=f"{program} ready again on {port}",
                timeout_s=300,
                interval_s=0.2,
            )
        except AssertionError as error:
            log = (self.home / "logs" / f"svc-{program}.log").read_text()[-3000:]
            raise AssertionError(f"{error}\n{program}'s log ends:\n{log}") from None


def ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def stack_env(home: Path, namespace: str) -> dict[str, str]:
    """The second stack's settings: its own namespace, SQL schemas, ports and state; two
    processes of every service; what a short loop needs (as infra.demo.loop.start_platform)."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")},
        "MLOPS_HOME": str(home),
        "SERVICE_PORT_BASE": str(PORT_BASE),
        "CONSOLE_PORT": str(PORT_BASE - 1),
        "STACK_NAMESPACE": namespace,
        "STACK_SERVICES": " ".join(ALL),
        "MLOPS_REPLICAS": " ".join(f"{name}=2" for name in ALL),
        "SERVICE_STARTSECS": "1",
        "STACK_TIMEOUT": "480",
        "PYTHONUNBUFFERED": "1",
        "MLOPS_REGISTRY_DATABASE_SCHEMA": f"reg_{namespace}",
        "MLOPS_TRAINING_DATABASE_SCHEMA": f"train_{namespace}",
        "MLOPS_TRAINING_RETRAIN_EVERY_LABELS": "1000000",
        "MLOPS_FEATURE_STORE_OFFLINE_FLUSH_S": "1",
        "MLOPS_SERVING_MODELS": json.dumps([MODEL]),
    }


@pytest.fixture(scope="module")
def rolling(settings: PlatformSettings, admin: AdminClient) -> Iterator[RollingStack]:
    main_home = Path(os.environ.get("MLOPS_HOME", REPO / ".local"))
    home = Path(tempfile.mkdtemp(prefix="rr", dir="/tmp"))  # a unix socket path is short
    shutil.copy(main_home / "credentials.env", home / "credentials.env")
    namespace = unique_name("rolling").replace("-", "")
    stack = RollingStack(home, namespace, stack_env(home, namespace))
    try:
        began = time.monotonic()
        stack.stack("up", "services")
        print(f"second stack up in {time.monotonic() - began:.0f} s")
        train_first_model(stack.urls, MODEL, 600, seed=93)
        print(f"first model served after {time.monotonic() - began:.0f} s")
        yield stack
    finally:
        print(stack.stack("down", "services", check=False).stderr[-2000:])
        topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(namespace)]
        if topics:
            admin.delete_topics(topics, operation_timeout=30)
        if settings.database_url is not None:
            drop_namespace_state(settings.database_url.get_secret_value(), namespace)
        shutil.rmtree(home, ignore_errors=True)


def features_by_record(bootstrap: str, namespace: str) -> dict[str, set[str]]:
    ids: dict[str, set[str]] = defaultdict(set)
    for message in read_topic(bootstrap, f"{namespace}.data.features"):
        event = json.loads(message.value())
        ids[event["data"]["record_id"]].add(event["id"])
    return ids


def versions(urls: Urls) -> list[int]:
    answer = httpx.get(f"{urls.registry}/models/{MODEL}/versions", timeout=10)
    return [int(v["version"]) for v in answer.json()] if answer.status_code == 200 else []


@pytest.mark.timeout(2400)
def test_a_rolling_restart_of_every_replica_under_load_fails_no_request_and_loses_nothing(
    rolling: RollingStack, settings: PlatformSettings, matrix: list[Row]
) -> None:
    bootstrap = settings.kafka_bootstrap_servers
    programs = rolling.programs()
    assert len(programs) == 2 * len(ALL), programs
    first_versions = versions(rolling.urls)
    urls = rolling.urls
    load = SteadyLoad(
        settings,
        rolling.namespace,
        urls.ingestion,
        urls.serving,
        MODEL,
        505,
        pause_s=FEED_PAUSE_S,
    ).start()
    try:
        wait_until(lambda: load.predict_ok > 20, what="/predict answering under load")
        for program, port in programs:
            began, acked = time.monotonic(), len(load.acked)
            rolling.restart(program, port)
            print(f"{program} restarted and ready in {time.monotonic() - began:.1f} s")
        ended = time.monotonic()
        assert len(load.acked) > acked, "records still came in during the last restart"
        answered = load.predict_ok
        wait_until(lambda: load.predict_ok > answered + 20, what="/predict after the restart")
        time_to_settle(load, bootstrap, rolling.namespace)
        recovery_s = time.monotonic() - ended
    finally:
        load.stop()
    scenario = "rolling restart of every replica (SIGTERM, one at a time)"
    settled_row(scenario, load, bootstrap, rolling.namespace, recovery_s, matrix)

    assert load.predict_ok > 0
    assert load.predict_failures == [], f"{len(load.predict_failures)} /predict failed"
    assert load.refused == [], f"{len(load.refused)} batches refused: {load.refused[:3]}"

    validated = {
        record
        for message in read_topic(bootstrap, f"{rolling.namespace}.data.validated")
        if (record := json.loads(message.value())["data"]["record_id"]) in load.acked
    }
    features: dict[str, set[str]] = {}

    def every_validated_record_has_features() -> bool:
        features.update(features_by_record(bootstrap, rolling.namespace))
        return validated <= features.keys()

    wait_until(
        every_validated_record_has_features,
        what="features of every validated record",
        timeout_s=120,
        interval_s=2,
    )
    assert all(len(features[record]) == 1 for record in validated), "features computed twice"

    ask_training(rolling.urls.training, MODEL, "loans", "after a rolling restart")
    wait_until(
        lambda: max(versions(rolling.urls), default=0) > max(first_versions, default=0),
        what="a new version trained and registered after the restart",
        timeout_s=300,
        interval_s=2,
    )
