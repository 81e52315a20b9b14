"""The restart counter behind `make status`: only restarts supervisord makes count."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from infra.restart_counter import count_restart, read_counts, write_counts

AT = datetime(2026, 12, 5, 23, 3, 13, tzinfo=UTC)


def starting(from_state: str, name: str = "validation") -> str:
    return f"processname:{name} groupname:{name} from_state:{from_state} tries:0"


@pytest.mark.parametrize("from_state", ["EXITED", "BACKOFF"])
def test_a_start_after_a_death_or_a_failed_start_is_a_restart(from_state: str) -> None:
    counts: dict[str, tuple[int, str]] = {}
    assert count_restart(counts, "PROCESS_STATE_STARTING", starting(from_state), AT) == "validation"
    assert counts == {"validation": (1, "2026-12-05T23:03:13Z")}


@pytest.mark.parametrize("from_state", ["STOPPED", "FATAL"])
def test_a_start_asked_for_is_not_a_restart(from_state: str) -> None:
    counts: dict[str, tuple[int, str]] = {}
    assert count_restart(counts, "PROCESS_STATE_STARTING", starting(from_state), AT) is None
    assert counts == {}


def test_other_events_are_ignored() -> None:
    counts: dict[str, tuple[int, str]] = {}
    exited = "processname:validation groupname:validation from_state:RUNNING expected:0 pid:7"
    assert count_restart(counts, "PROCESS_STATE_EXITED", exited, AT) is None
    assert counts == {}


def test_counts_survive_the_listener_and_keep_adding_up(tmp_path: Path) -> None:
    path = tmp_path / "restarts"
    counts = read_counts(path)
    assert counts == {}
    count_restart(counts, "PROCESS_STATE_STARTING", starting("EXITED"), AT)
    count_restart(counts, "PROCESS_STATE_STARTING", starting("BACKOFF", "serving"), AT)
    write_counts(path, counts)
    again = read_counts(path)
    count_restart(again, "PROCESS_STATE_STARTING", starting("EXITED"), AT)
    assert again == {
        "serving": (1, "2026-12-05T23:03:13Z"),
        "validation": (2, "2026-12-05T23:03:13Z"),
    }
    assert path.read_text() == "serving 1 2026-12-05T23:03:13Z\nvalidation 1 2026-12-05T23:03:13Z\n"
