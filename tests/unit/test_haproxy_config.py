"""HAProxy's configuration for replicas (infra/stack/haproxy.sh), as `stack.sh up` writes it:
requests go to the replicas that are ready, to those alive only when none is, one request per
server connection, and a POST is never sent twice."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def generated(state_dir: Path, replicas: str) -> str:
    script = (
        "set -euo pipefail; source infra/stack/lib.sh; source infra/stack/services.sh; "
        "source infra/stack/haproxy.sh; haproxy_config"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(state_dir), "MLOPS_HOME": str(state_dir)}
    return subprocess.run(
        ["bash", "-c", script],
        cwd=REPO,
        env={**env, "MLOPS_REPLICAS": replicas, "SERVICE_PORT_BASE": "18001"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def sections(config: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in config.splitlines():
        if re.match(r"^(global|defaults|frontend|backend)\b", line):
            current = found.setdefault(line.strip(), [])
        elif line.strip() and not line.startswith("#"):
            current.append(line.strip())
    return found


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> str:
    return generated(tmp_path_factory.mktemp("stack"), "serving=2 ingestion=3")


def test_requests_go_to_ready_replicas_and_to_alive_ones_only_when_none_is(config: str) -> None:
    parts = sections(config)
    assert parts["frontend serving"] == [
        "bind 127.0.0.1:18006",
        "use_backend serving if { nbsrv(serving) gt 0 }",
        "default_backend serving-alive",
    ]
    assert "option httpchk GET /ready" in parts["backend serving"]
    assert "option httpchk GET /live" in parts["backend serving-alive"]
    for backend in ("backend ingestion", "backend ingestion-alive"):
        servers = [line.split()[2] for line in parts[backend] if line.startswith("server ")]
        assert servers == ["127.0.0.1:28012", "127.0.0.1:28013", "127.0.0.1:28014"]
    assert "frontend validation" not in parts, "a service that runs once has no balancer"


def test_a_post_is_never_repeated_and_no_server_connection_is_reused(config: str) -> None:
    parts = sections(config)
    assert "option http-server-close" in parts["defaults"]
    for name, lines in parts.items():
        if name.startswith("backend "):
            assert "http-request disable-l7-retry if !METH_GET !METH_HEAD" in lines, name


@pytest.mark.skipif(not Path("/usr/sbin/haproxy").exists(), reason="Debian's haproxy missing")
def test_haproxy_accepts_it(config: str, tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    checked = subprocess.run(
        [shutil.which("haproxy") or "/usr/sbin/haproxy", "-c", "-f", str(path)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
