"""A loop that stops on its own is a crash: the runtime says so and ends the process (here a
recorder stands in for the exit, which tests/integration/test_runner_resilience.py checks).
What the service opened is closed at shutdown, once its loops stopped. Asked to stop, a
service first drains: out of its load balancer (/live and /ready at 503), still serving."""

from __future__ import annotations

import signal
import threading

import httpx
import pytest
import urllib3
from fastapi import APIRouter
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from shared.service import DrainingServer, ServiceRuntime, create_app, server_config
from shared.settings import PlatformSettings
from tests.waiting import wait_until


class Loop:
    def __init__(self, group_id: str, behaviour: str) -> None:
        self.group_id, self.behaviour = group_id, behaviour

    def run(self, stop: threading.Event) -> None:
        if self.behaviour == "raises":
            raise RuntimeError("the loop itself broke")
        if self.behaviour == "waits":
            stop.wait()


def run_until_settled(*loops: Loop) -> tuple[ServiceRuntime, list[list[str]]]:
    calls: list[list[str]] = []
    runtime = ServiceRuntime(
        name="t",
        settings=PlatformSettings(),
        runners=loops,
        on_crash=lambda r: calls.append(list(r.crashed)),
    )
    runtime.start_consumers()
    for thread in runtime._threads:
        thread.join(0.5)
    runtime.stop_consumers(timeout_s=5)
    return runtime, calls


@pytest.mark.parametrize("behaviour", ["raises", "returns"])
def test_a_loop_that_stops_unasked_is_a_crash_that_ends_the_process(behaviour: str) -> None:
    runtime, calls = run_until_settled(Loop("fine", "waits"), Loop("broken", behaviour))
    assert runtime.crashed == ["broken"]
    assert calls == [["broken"]]


def test_loops_stopped_on_request_are_no_crash() -> None:
    runtime, calls = run_until_settled(Loop("a", "waits"), Loop("b", "waits"))
    assert runtime.crashed == [] and calls == []


class StartupTask(Loop):
    ends_by_itself = True


def test_a_task_that_ends_by_itself_is_no_crash_but_its_error_is() -> None:
    runtime, calls = run_until_settled(Loop("a", "waits"), StartupTask("lookup", "returns"))
    assert runtime.crashed == [] and calls == []
    runtime, calls = run_until_settled(StartupTask("lookup", "raises"))
    assert runtime.crashed == ["lookup"] and calls == [["lookup"]]


def test_what_the_service_opened_is_closed_once_its_loops_stopped() -> None:
    events: list[str] = []

    class Fetching(Loop):
        def run(self, stop: threading.Event) -> None:
            stop.wait()
            events.append("loop stopped")

    def broken() -> None:
        raise OSError("already gone")

    runtime = ServiceRuntime(
        name="t",
        settings=PlatformSettings(),
        runners=[Fetching("lineage-fetch", "waits")],
        closing=[broken, lambda: events.append("client closed")],
    )
    runtime.start_consumers()
    runtime.stop_consumers(timeout_s=5)
    assert events == ["loop stopped", "client closed"], "a failing close stops no other"


@pytest.mark.parametrize(
    "error",
    [
        urllib3.exceptions.MaxRetryError(urllib3.HTTPConnectionPool("127.0.0.1", 9), "/b"),
        OperationalError("SELECT 1", {}, ConnectionRefusedError()),
        httpx.ConnectError("refused"),
    ],
)
def test_a_dependency_down_in_a_route_is_503_naming_it_not_500(error: Exception) -> None:
    router = APIRouter()

    @router.get("/reads")
    def reads() -> None:
        raise error

    app = create_app(ServiceRuntime(name="example", settings=PlatformSettings()), [router])
    answer = TestClient(app, raise_server_exceptions=False).get("/reads")
    assert answer.status_code == 503
    assert type(error).__name__ in answer.json()["detail"]


def test_a_bug_in_a_route_is_still_500() -> None:
    router = APIRouter()

    @router.get("/reads")
    def reads() -> None:
        raise KeyError("a bug")

    app = create_app(ServiceRuntime(name="example", settings=PlatformSettings()), [router])
    assert TestClient(app, raise_server_exceptions=False).get("/reads").status_code == 500


def draining_server(drain_s: float) -> tuple[DrainingServer, ServiceRuntime, TestClient]:
    runtime = ServiceRuntime(name="t", settings=PlatformSettings(shutdown_drain_s=drain_s))
    app = create_app(runtime)
    return DrainingServer(server_config(app, "127.0.0.1", 1), runtime), runtime, TestClient(app)


def test_asked_to_stop_a_service_drains_first_out_of_its_load_balancer() -> None:
    """/live and /ready answer 503 at once; uvicorn is told to stop only after the drain."""
    server, runtime, client = draining_server(0.5)
    assert client.get("/live").status_code == 200
    server.handle_exit(signal.SIGTERM, None)
    assert not server.should_exit, "still serving while the load balancer takes it out"
    assert client.get("/live").json() == {"status": "stopping"}
    assert client.get("/ready").status_code == 503
    wait_until(lambda: server.should_exit, what="the drain to end", timeout_s=10)
    assert runtime.drain_left_s() == 0


def test_a_second_signal_cuts_the_drain_short() -> None:
    server, _, _ = draining_server(60)
    server.handle_exit(signal.SIGTERM, None)
    assert not server.should_exit
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit


def test_without_a_drain_the_stop_is_immediate() -> None:
    server, runtime, _ = draining_server(0)
    server.handle_exit(signal.SIGINT, None)
    assert server.should_exit and runtime.stopping.is_set()
