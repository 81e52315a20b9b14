"""The supervisord configuration `make up` generates (infra/stack/supervisor.sh), read by
supervisord's own parser: every service is restarted whatever its exit, with backoff, on the
ports SERVICE_PORT_BASE gives, logging where the stack keeps its logs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from supervisor.datatypes import RestartUnconditionally
from supervisor.events import EventTypes
from supervisor.options import ServerOptions

REPO = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.parent.name for p in (REPO / "services").glob("*/__main__.py"))
PORT_ORDER = [
    "ingestion", "validation", "feature_store", "training", "registry", "serving", "monitoring"
]  # fmt: skip


def generated(state_dir: Path, **env: str) -> ServerOptions:
    (state_dir / "logs").mkdir(parents=True)
    (state_dir / "supervisor").mkdir()
    script = (
        "set -euo pipefail; source infra/stack/lib.sh; source infra/stack/services.sh; "
        "source infra/stack/supervisor.sh; supervisor_config"
    )
    config = subprocess.run(
        ["bash", "-c", script],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HOME": str(state_dir), "MLOPS_HOME": str(state_dir), **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = state_dir / "supervisor" / "supervisord.conf"
    path.write_text(config)
    options = ServerOptions()
    options.realize(args=["-c", str(path)])
    return options


@pytest.fixture(scope="module")
def options(tmp_path_factory: pytest.TempPathFactory) -> ServerOptions:
    return generated(
        tmp_path_factory.mktemp("stack"), SERVICE_PORT_BASE="18001", CONSOLE_PORT="18000"
    )


def programs(options: ServerOptions) -> dict:
    return {
        g.name: g.process_configs[0]
        for g in options.process_group_configs
        if type(g).__name__ == "ProcessGroupConfig"
    }


def test_every_service_is_a_program_restarted_whatever_its_exit(options: ServerOptions) -> None:
    found = programs(options)
    assert sorted(found) == SERVICES
    for name, program in found.items():
        assert program.autorestart is RestartUnconditionally, name
        assert program.autostart and program.killasgroup and program.stopasgroup, name
        assert (program.startsecs, program.startretries, program.stopwaitsecs) == (5, 30, 30)
        assert program.stdout_logfile.endswith(f"/logs/svc-{name}.log")
        assert program.redirect_stderr
        assert f'service-run.sh" {name} ' in program.command


def test_services_get_every_address_from_the_port_base(options: ServerOptions) -> None:
    expected = {f"MLOPS_{name.upper()}_PORT": str(18001 + i) for i, name in enumerate(PORT_ORDER)}
    expected["MLOPS_CONSOLE_PORT"] = "18000"  # CONSOLE_PORT, outside SERVICE_PORT_BASE's range
    for program in programs(options).values():
        ports = {k: v for k, v in program.environment.items() if k.endswith("_PORT")}
        assert ports == expected
        assert {v for k, v in program.environment.items() if k.endswith("_HOST")} == {"127.0.0.1"}


def test_restarts_are_counted_by_a_listener_of_starts(options: ServerOptions) -> None:
    (listener,) = [
        g for g in options.process_group_configs if type(g).__name__ == "EventListenerPoolConfig"
    ]
    assert listener.pool_events == [EventTypes.PROCESS_STATE_STARTING]
    assert "infra.restart_counter" in listener.process_configs[0].command


def test_the_backoff_is_a_setting(tmp_path: Path) -> None:
    options = generated(tmp_path, SERVICE_STARTSECS="2", SERVICE_STARTRETRIES="7")
    for program in programs(options).values():
        assert (program.startsecs, program.startretries) == (2, 7)


def test_the_socket_is_private_to_its_owner(options: ServerOptions) -> None:
    (server,) = options.server_configs
    assert server["family"].name == "AF_UNIX" and server["chmod"] == 0o700


def test_replicas_drain_before_they_stop_and_a_single_process_does_not(tmp_path: Path) -> None:
    """A replica behind HAProxy keeps serving out of rotation for a while after SIGTERM
    (shared/service.py's DrainingServer); a service that runs once has nobody to hand over to."""
    found = programs(generated(tmp_path, MLOPS_REPLICAS="serving=2", REPLICA_DRAIN_S="4"))
    for name in ("serving-1", "serving-2"):
        assert found[name].environment["MLOPS_SHUTDOWN_DRAIN_S"] == "4"
        assert found[name].stopwaitsecs > 4
    assert "MLOPS_SHUTDOWN_DRAIN_S" not in found["validation"].environment
