"""`mlops reproduce` as a thin client of the training service: what it sends, how it waits,
what it prints and its exit codes, against a fake training service."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer

from shared.cli import reproduce as command
from shared.cli.app import main
from shared.cli.common import CliError, ServiceClient
from shared.cli.reproduce import parse_target, read_json, request_body, verdict_line

Handler = Callable[[httpx.Request], httpx.Response]
STARTED = {"id": "r-1", "model": "loans", "version": 3, "status": "running",
           "started_at": "2026-12-06T03:00:00+00:00"}  # fmt: skip
CHECKS = [
    {"name": "rows", "recorded": "10", "reproduced": "10", "same": True, "difference": ""},
    {"name": "training-set hash", "recorded": "a", "reproduced": "b", "same": False,
     "difference": "training-set hash"},
]  # fmt: skip


def outcome(status: str, reason: str | None = None, checks: Any = ()) -> dict[str, Any]:
    return {**STARTED, "status": status, "reason": reason, "checks": list(checks),
            "notes": ["a note"], "summary": {"feature_events": 10, "label_events": 10,
            "read_s": 1.0, "retrain_s": 2.0}, "finished_at": "2026-12-06T03:00:30+00:00"}  # fmt: skip


def serve(monkeypatch: pytest.MonkeyPatch, handler: Handler) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    monkeypatch.setattr(ServiceClient, "transport", httpx.MockTransport(record))
    monkeypatch.setattr(command, "POLL_S", 0.0)
    return seen


def training(final: dict[str, Any], polls_running: int = 2) -> Handler:
    """POST answers 202; GET answers running `polls_running` times, then `final`."""
    polls = {"n": 0}

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, json=STARTED)
        polls["n"] += 1
        if polls["n"] <= polls_running:
            return httpx.Response(200, json={**STARTED, "checks": [], "reason": None})
        return httpx.Response(200, json=final)

    return handle


def run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    return int(exit_.value.code or 0)


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_identical_prints_the_checks_and_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = serve(monkeypatch, training(outcome("identical", checks=CHECKS[:1])))
    assert run(["reproduce", "loans@3"]) == 0
    assert json.loads(seen[0].content) == {"model": "loans", "version": 3}
    assert seen[0].url.path == "/reproductions"
    assert [r.url.path for r in seen[1:]] == ["/reproductions/r-1"] * 3
    output = capsys.readouterr().out
    assert last_line(output) == "identical"
    assert "rows" in output and "a note" in output and "10 feature and 10 label" in output


def test_differs_says_what_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(monkeypatch, training(outcome("differs", "differs: training-set hash", CHECKS)))
    assert run(["reproduce", "loans@3"]) == 1
    output = capsys.readouterr().out
    assert last_line(output) == "differs: training-set hash"
    assert "differs" in output.splitlines()[0] or "training-set hash" in output


def test_failed_gives_the_reason_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reason = "no longer in Kafka: ns.data.labels [0] holds offsets 50..99"
    serve(monkeypatch, training(outcome("failed", reason)))
    assert run(["reproduce", "loans", "--latest"]) == 1
    assert last_line(capsys.readouterr().out) == f"failed: {reason}"


def test_latest_and_a_lineage_file_are_sent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lineage = tmp_path / "lineage.json"
    lineage.write_text(json.dumps({"lineage": {"dataset": "loans"}}))
    seen = serve(monkeypatch, training(outcome("identical"), polls_running=0))
    assert run(["reproduce", "loans", "--latest", "--lineage-file", str(lineage)]) == 0
    assert json.loads(seen[0].content) == {
        "model": "loans",
        "latest": True,
        "lineage": {"lineage": {"dataset": "loans"}},
    }


@pytest.mark.parametrize(("status", "code"), [(404, 1), (422, 1), (429, 1), (503, 3)])
def test_a_refusal_is_one_line_with_the_services_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], status: int, code: int
) -> None:
    detail = {"detail": "model 'loans' has no version 9"}
    serve(monkeypatch, lambda request: httpx.Response(status, json=detail))
    assert run(["reproduce", "loans@9"]) == code
    assert "no version 9" in capsys.readouterr().err


def test_an_unreachable_training_service_is_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    serve(monkeypatch, refuse)
    assert run(["reproduce", "loans@3"]) == 3
    assert "training" in capsys.readouterr().err


def test_waiting_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, training(outcome("identical"), polls_running=10**6))
    client = ServiceClient("training", command.cli_settings())
    with pytest.raises(CliError, match="still running after"):
        command.wait_for_outcome(client, "r-1", timeout_s=0.05, poll_s=0.0)


@pytest.mark.parametrize(
    ("answer", "line"),
    [
        ({"status": "identical"}, "identical"),
        ({"status": "differs", "reason": "differs: rows"}, "differs: rows"),
        ({"status": "failed", "reason": "timed out"}, "failed: timed out"),
        ({"status": "failed"}, "failed: no reason given"),
    ],
)
def test_the_verdict_line(answer: dict[str, Any], line: str) -> None:
    assert verdict_line(answer) == line


def test_the_body_names_a_version_or_latest() -> None:
    assert request_body("loans", 3, None) == {"model": "loans", "version": 3}
    assert request_body("loans", None, {"x": 1}) == {
        "model": "loans",
        "latest": True,
        "lineage": {"x": 1},
    }


@pytest.mark.parametrize(
    ("target", "latest", "expected"),
    [("loans@3", False, ("loans", 3)), ("loans", True, ("loans", None))],
)
def test_targets(target: str, latest: bool, expected: tuple[str, int | None]) -> None:
    assert parse_target(target, latest) == expected


@pytest.mark.parametrize(
    ("target", "latest"),
    [("loans", False), ("loans@3", True), ("Loans@1", False), ("loans@0", False)],
)
def test_bad_targets_are_usage_errors(target: str, latest: bool) -> None:
    with pytest.raises(typer.BadParameter):
        parse_target(target, latest)


def test_a_lineage_file_that_is_not_json_is_one_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "lineage.json"
    broken.write_text("{not json")
    with pytest.raises(CliError, match="not a readable JSON file"):
        read_json(broken)
