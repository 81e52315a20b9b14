"""The native copier's driver without Kafka: arguments, configuration, the line protocol, and
how lines from a (fake) copier become progress and confirmed checkpoints."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from shared.cli import native_copy, replay
from shared.cli.native_copy import (
    CopierFailed,
    CopyOutcome,
    NativeCopy,
    NativeUnavailable,
    PartitionTask,
    Progress,
    Saved,
    Updates,
    binary_path,
    config_input,
    copier_arguments,
    ensure_copier,
    parse_line,
)
from shared.cli.replay import Engine, Replayer, ReplayError
from shared.settings import PlatformSettings


def test_arguments_name_every_partition_with_its_range_and_skip() -> None:
    tasks = [PartitionTask(0, 100, 300, 0, 0), PartitionTask(2, 5, 9, 3, 40)]
    arguments = copier_arguments(Path("/bin/c"), "a.raw", "b.raw", tasks, 10_000, 100_000, None)
    assert arguments == ["/bin/c", "a.raw", "b.raw", "10000", "100000", "0", "0:100:300:0:0",
                         "2:5:9:3:40"]  # fmt: skip
    assert copier_arguments(Path("c"), "s", "t", tasks[:1], 1, 2, 250)[5] == "250"


def test_configuration_is_nul_separated_with_booleans_as_librdkafka_spells_them() -> None:
    data = config_input({"group.id": "g", "enable.auto.commit": False}, {"acks": "all", "x": 5})
    assert data.split(b"\0") == [b"consumer.group.id", b"g", b"consumer.enable.auto.commit",
                                 b"false", b"producer.acks", b"all", b"producer.x", b"5", b""]  # fmt: skip
    assert config_input({}, {"ssl.ca.pem": "line 1\nline 2"}).count(b"\n") == 1
    with pytest.raises(ValueError, match="NUL"):
        config_input({"sasl.password": "a\0b"}, {})


def test_lines_are_progress_or_confirmed_positions() -> None:
    assert parse_line("progress 120\n") == Progress(120)
    assert parse_line("saved 300 0:101:7 2:55:55") == Saved(300, {0: (101, 7), 2: (55, 55)})
    for junk in ("saved", "progress x", "saved 3 0:1", "hello 1"):
        with pytest.raises(CopierFailed, match="unexpected line"):
            parse_line(junk)


def test_the_binary_is_named_after_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "copy.c"
    source.write_text("int main(void) { return 0; }\n")
    first = binary_path(source)
    source.write_text("int main(void) { return 1; }\n")
    assert binary_path(source) != first
    assert binary_path(source).parent == tmp_path / "cache" / "bin"


def test_no_compiler_means_unavailable_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native_copy, "COMPILER", "no-such-compiler-here")
    with pytest.raises(NativeUnavailable, match="no-such-compiler-here is not installed"):
        ensure_copier()


# -- the driver, with a fake copier -----------------------------------------------------------

FAKE = """#!{python}
import signal, sys, time
config = sys.stdin.buffer.read()
assert config.startswith(b"consumer.bootstrap.servers\\0"), config
mode = sys.argv[6].split(":")[0]  # the first partition's number picks the behaviour
out = sys.stdout
if mode == "0":  # copies, confirms twice, done
    out.write("progress 2\\nsaved 2 0:12:2\\nprogress 1\\nsaved 1 0:13:3\\n")
elif mode == "1":  # confirms once, then fails with a line cut in half
    out.write("progress 2\\nsaved 2 1:12:2\\nprogress 3\\nsaved 3 1:1")
    out.flush()
    sys.stderr.write("some log line\\nKafka did not confirm every write (boom)\\n")
    sys.exit(1)
else:  # waits for SIGTERM, then confirms what it has and exits as stopped
    def stop(signum, frame):
        out.write("saved 4 2:14:4\\n")
        out.flush()
        sys.exit(3)
    signal.signal(signal.SIGTERM, stop)
    out.write("progress 4\\n")
    out.flush()
    while True:
        time.sleep(0.05)
"""


@pytest.fixture
def fake_copier(tmp_path: Path) -> Path:
    path = tmp_path / "fake-copier"
    path.write_text(FAKE.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


Recorded = list[tuple[Updates, int]]


def drive(
    binary: Path, groups: list[list[PartitionTask]]
) -> tuple[Recorded, list[int], CopyOutcome]:
    recorded: Recorded = []
    progress: list[int] = []
    copy = NativeCopy(
        binary, {"bootstrap.servers": "x"}, {"acks": "all"}, lambda u, n: recorded.append((u, n))
    )
    outcome = copy.run("s", "t", groups, 10, 100, None, progress.append, lambda: False)
    return recorded, progress, outcome


def test_confirmed_lines_are_recorded_and_progress_relayed(fake_copier: Path) -> None:
    recorded, progress, outcome = drive(fake_copier, [[PartitionTask(0, 10, 13, 0, 0)]])
    assert recorded == [({0: (12, 2)}, 2), ({0: (13, 3)}, 1)]
    assert progress == [2, 1]
    assert (outcome.copied, outcome.stopped, outcome.failures) == (3, False, [])


def test_a_failed_copier_stops_the_others_and_nothing_unconfirmed_is_recorded(
    fake_copier: Path,
) -> None:
    groups = [[PartitionTask(1, 10, 20, 0, 0)], [PartitionTask(2, 10, 20, 0, 0)]]
    recorded, _, outcome = drive(fake_copier, groups)
    assert ({1: (12, 2)}, 2) in recorded, "the confirmed line is kept"
    assert all(1 not in u or u[1] == (12, 2) for u, _ in recorded), "the cut line is not"
    assert outcome.stopped, "the other copier was stopped"
    assert outcome.failures == ["Kafka did not confirm every write (boom)"]


def test_a_stop_request_ends_every_copier_after_its_last_confirmed_save(
    fake_copier: Path,
) -> None:
    progress_seen: list[int] = []
    copy = NativeCopy(fake_copier, {"bootstrap.servers": "x"}, {}, lambda u, n: None)
    outcome = copy.run(
        "s", "t", [[PartitionTask(2, 10, 20, 0, 0)]], 10, 100, None, progress_seen.append,
        should_stop=lambda: bool(progress_seen),
    )  # fmt: skip
    assert outcome.stopped and not outcome.failures
    assert outcome.copied == 4


def test_an_unwritable_cache_means_unavailable_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    monkeypatch.setenv("MLOPS_CACHE_DIR", str(not_a_directory))
    monkeypatch.setattr(native_copy, "COMPILER", "true")
    monkeypatch.setattr(native_copy, "_pkg_config", lambda: [])
    with pytest.raises(NativeUnavailable, match="cannot write to"):
        ensure_copier()


@pytest.mark.parametrize("engine", ["auto", "native", "python"])
def test_without_the_copier_auto_falls_back_with_a_notice_and_native_refuses(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unavailable() -> Path:
        raise NativeUnavailable("gcc is not installed (`make install` installs it)")

    monkeypatch.setattr(replay, "ensure_copier", unavailable)
    replayer = Replayer(PlatformSettings(kafka_bootstrap_servers="127.0.0.1:1"), engine=engine)
    if engine == "native":
        with pytest.raises(ReplayError, match="gcc is not installed"):
            replayer._native_copier()
        return
    assert replayer._native_copier() is None
    notices = [r.getMessage() for r in caplog.records]
    if engine == "auto":
        assert notices == [
            "replay: native copier unavailable (gcc is not installed (`make install` installs "
            "it)); using the slower Python copy"
        ]
    else:
        assert notices == []
