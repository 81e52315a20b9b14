"""The mlops command line: usage errors exit 2 before anything is touched; helpers are pure."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from shared.cli.app import app
from shared.cli.topics import describe, message_for

runner = CliRunner()


@pytest.fixture(autouse=True)
def _namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_NAMESPACE", "prod")
    # An address nothing answers on: a test that got past argument checks would fail with 3.
    monkeypatch.setenv("MLOPS_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")


def test_every_command_has_help_with_the_exit_codes() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("publish", "tail", "replay"):
        assert command in result.output
        sub = runner.invoke(app, [command, "--help"])
        assert sub.exit_code == 0, sub.output
        assert "Exit codes" in sub.output


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--topic", "data.raw", "--into", "r1", "--from", "ten"], "neither an offset"),
        (["--topic", "data.raw", "--into", "r1", "--from", "9", "--to", "3"], "before"),
        (["--topic", "data.raw", "--into", "prod"], "production"),
        (["--topic", "data.raw", "--into", "Bad Name"], "not a namespace"),
        (["--topic", "data.raw"], "--into"),
        (["--topic", "data.raw", "--into", "r1", "--limit", "0"], "--limit"),
    ],
)
def test_bad_replay_arguments_are_usage_errors(arguments: list[str], complaint: str) -> None:
    result = runner.invoke(app, ["replay", *arguments])
    assert result.exit_code == 2, result.output
    assert complaint in " ".join(result.output.split())


def test_a_record_published_for_a_dataset_takes_the_raw_topic_s_bare_form() -> None:
    value, key = message_for({"applicant_id": "a-7", "salary": 1.5}, "loans", "applicant_id", None)
    assert key == b"a-7"
    assert json.loads(value) == {
        "dataset": "loans",
        "entity": "a-7",
        "values": {"applicant_id": "a-7", "salary": 1.5},
    }


def test_an_event_is_published_as_is_keyed_by_its_subject() -> None:
    event = {"specversion": "1.0", "type": "mlops.X", "subject": "loans", "data": {}}
    value, key = message_for(event, None, None, None)
    assert (json.loads(value), key) == (event, b"loans")
    assert message_for({"id": 4}, None, None, "id")[1] == b"4"
    assert message_for({"id": 4}, None, None, None)[1] is None


def test_tail_prints_events_by_type_and_subject_and_says_what_is_not_json() -> None:
    event = {"specversion": "1.0", "type": "mlops.X", "subject": "s", "time": "t", "data": {"a": 1}}
    assert describe(json.dumps(event).encode()) == 'mlops.X s t {"a":1}'
    assert describe(b'{"b": 2}') == '{"b":2}'
    assert describe(None) == "(tombstone)"
    assert describe(b"\xff\x00").startswith("(not JSON, 2 bytes)")
