"""The HTTP commands against fake services: what they send, what they print, exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from shared.cli.app import main
from shared.cli.common import ServiceClient
from shared.cli.training import parse_params

KEY = "k" * 32
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_REGISTRY_API_KEYS", json.dumps({"alice": KEY}))
    monkeypatch.delenv("MLOPS_CLI_API_KEY", raising=False)
    monkeypatch.setenv("MLOPS_CLI_API_KEY_OWNER", "alice")


def serve(monkeypatch: pytest.MonkeyPatch, handler: Handler) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    monkeypatch.setattr(ServiceClient, "transport", httpx.MockTransport(record))
    return seen


def run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    return int(exit_.value.code or 0)


MODELS = [{"name": "loans", "created_at": "2026-11-21T10:00:00Z", "versions": 3,
           "latest_version": 3, "aliases": {"champion": 2}}]  # fmt: skip


def test_models_list_shows_each_model_with_its_aliases(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = serve(monkeypatch, lambda request: httpx.Response(200, json=MODELS))
    assert run(["models", "list"]) == 0
    assert seen[0].url.path == "/models"
    output = capsys.readouterr().out
    assert "loans" in output and "champion=2" in output


def test_promote_sends_the_api_key_and_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    change = {"model_name": "loans", "changed": True, "alias": "champion", "version": 3,
              "previous_version": 2, "event_id": "e-1", "event_type": "mlops.ModelPromoted"}  # fmt: skip
    seen = serve(monkeypatch, lambda request: httpx.Response(200, json=change))
    assert run(["models", "promote", "loans", "3", "--reason", "better auc"]) == 0
    request = seen[0]
    assert (request.method, request.url.path) == ("PUT", "/models/loans/aliases/champion")
    assert request.headers["X-API-Key"] == KEY
    assert json.loads(request.content) == {"version": 3, "reason": "better auc"}
    assert "champion -> version 3 (was 2)" in capsys.readouterr().out


def test_rollback_posts_to_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    change = {"model_name": "loans", "changed": True, "alias": "champion", "version": 1}
    seen = serve(monkeypatch, lambda request: httpx.Response(200, json=change))
    assert run(["models", "rollback", "loans", "--reason", "regression"]) == 0
    assert (seen[0].method, seen[0].url.path) == ("POST", "/models/loans/rollback")
    assert json.loads(seen[0].content) == {"reason": "regression", "alias": "champion"}


def test_a_change_without_an_api_key_fails_before_asking(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLOPS_CLI_API_KEY_OWNER", "nobody")
    seen = serve(monkeypatch, lambda request: httpx.Response(200, json={}))
    assert run(["models", "rollback", "loans", "--reason", "x"]) == 1
    assert not seen
    assert "API key" in capsys.readouterr().err


def test_a_refusal_is_one_line_with_the_service_s_reason_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(monkeypatch, lambda request: httpx.Response(404, json={"detail": "no model 'x'"}))
    assert run(["lineage", "x", "1"]) == 1
    error = capsys.readouterr().err
    assert error.strip() == "mlops: registry: 404 no model 'x'"


def test_an_unreachable_service_is_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    serve(monkeypatch, refuse)
    assert run(["models", "show", "loans"]) == 3
    assert "unreachable" in capsys.readouterr().err


def test_lineage_prints_the_registry_s_answer_as_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lineage = {"model_name": "loans", "version": 2, "lineage": {"topics": {"mlops.data.raw": {}}}}
    seen = serve(monkeypatch, lambda request: httpx.Response(200, json=lineage))
    assert run(["lineage", "loans@2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == lineage
    assert run(["lineage", "loans", "2"]) == 0  # the old form: the training lineage, as JSON
    assert json.loads(capsys.readouterr().out) == lineage
    assert [r.url.path for r in seen] == ["/lineage/loans/2", "/models/loans/versions/2/lineage"]
    assert run(["lineage", "loans@two"]) == 2


def test_train_posts_the_command_and_waits_for_its_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    polls = iter([404, 200])

    def training(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, json={"command_id": "c-1"})
        status = next(polls)
        return httpx.Response(status, json={"data": {"run_id": "r-1", "model_name": "loans"}})

    monkeypatch.setattr("shared.cli.training.time.sleep", lambda seconds: None)
    seen = serve(monkeypatch, training)
    argv = [
        "train",
        "loans",
        "--dataset",
        "loans",
        "--param",
        "max_depth=4",
        "--seed",
        "7",
        "--wait",
    ]
    assert run(argv) == 0
    body = json.loads(seen[0].content)
    assert body == {"model_name": "loans", "dataset": "loans", "reason": "mlops train",
                    "params": {"max_depth": 4}, "seed": 7}  # fmt: skip
    assert seen[0].headers["X-Requested-By"].startswith("cli:")
    assert [r.url.path for r in seen[1:]] == ["/runs/c-1", "/runs/c-1"]
    assert capsys.readouterr().out.startswith("c-1\n")


FAILED_RUN = {
    "type": "mlops.TrainingFailed",
    "data": {"model_name": "loans", "outcome": "failed", "error": "DataNotArrived",
             "reason": "missing ns.data.labels[0] up to offset 9 (written up to 4)"},
}  # fmt: skip


def test_train_wait_exits_1_with_the_reason_of_a_failed_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    polls = iter([(404, {}), (202, {"status": "running"}), (200, FAILED_RUN)])

    def training(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, json={"command_id": "c-1"})
        status, body = next(polls)
        return httpx.Response(status, json=body)

    monkeypatch.setattr("shared.cli.training.time.sleep", lambda seconds: None)
    seen = serve(monkeypatch, training)
    assert run(["train", "loans", "--dataset", "loans", "--wait"]) == 1
    assert len(seen) == 4
    err = capsys.readouterr().err
    assert "training of loans failed (DataNotArrived)" in err
    assert "ns.data.labels[0] up to offset 9" in err


def test_train_since_asks_for_a_window_in_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = serve(monkeypatch, lambda request: httpx.Response(202, json={"command_id": "c-2"}))
    argv = ["train", "loans", "--dataset", "loans", "--since", "2024-05-01T12:00:00"]
    assert run(argv) == 0
    assert json.loads(seen[0].content)["since"] == "2024-05-01T12:00:00+00:00"
    assert run(["train", "loans", "--dataset", "loans", "--since", "yesterday"]) == 2
    assert len(seen) == 1


def test_params_are_json_when_they_parse() -> None:
    assert parse_params(["a=4", "b=x", "c=[1, 2]", "d="]) == {
        "a": 4,
        "b": "x",
        "c": [1, 2],
        "d": "",
    }


def test_a_param_without_equals_is_a_usage_error() -> None:
    assert run(["train", "loans", "--dataset", "loans", "--param", "oops"]) == 2
