"""`mlops status` against fake components: exit codes and what a not-ready service says."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shared.cli import status as status_command
from shared.cli.app import main
from shared.cli.status import Check


def run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    return int(exit_.value.code or 0)


def answering(monkeypatch: pytest.MonkeyPatch, ready: dict[str, httpx.Response]) -> None:
    """Kafka is up; each /ready URL containing a key of `ready` answers that response, every
    other URL answers 200."""
    monkeypatch.setattr(
        status_command, "check_kafka", lambda settings: Check("kafka", "k:9092", True, "ok")
    )

    def get(url: str, **_: Any) -> httpx.Response:
        for part, response in ready.items():
            if part in url:
                return response
        return httpx.Response(200, json={"status": "ready", "checks": []})

    monkeypatch.setattr(status_command.httpx, "get", get)


def test_a_stack_whose_services_are_all_ready_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answering(monkeypatch, {})

    assert run(["status", "--json"]) == 0
    assert "serving" in capsys.readouterr().out


def test_a_champion_that_does_not_load_makes_status_exit_1_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = {"champions": "iris: version 2 could not load, retrying: MinIO down"}
    body = {"status": "not ready", "failing": failing, "crashed": {}}
    answering(monkeypatch, {":8006/ready": httpx.Response(503, json=body)})

    assert run(["status", "--json"]) == 1
    output = capsys.readouterr().out
    assert "503 champions: iris: version 2 could not load, retrying: MinIO down" in output


def test_a_reason_that_is_not_json_is_shown_as_text() -> None:
    response = httpx.Response(503, text="upstream " + "x" * 400)

    reason = status_command.not_ready_reason(response)

    assert reason.startswith("upstream x") and reason.endswith("...") and len(reason) == 300
