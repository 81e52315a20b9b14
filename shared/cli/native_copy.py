"""The native copier of `mlops replay`: shared/cli/native/replay_copy.c, built on demand.

The C program does the per-message work (consume, produce to the same partition with key,
headers and timestamp, flush, confirm); this module builds it into the cache, starts one per
group of partitions, and turns its output lines into progress and confirmed checkpoints. The
protocol is described at the top of replay_copy.c.

    python -m shared.cli.native_copy     builds it now (`make install` does), prints its path
"""

from __future__ import annotations

import hashlib
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).parent / "native" / "replay_copy.c"
COMPILER = "gcc"
CFLAGS = ("-O2", "-std=c11", "-Wall", "-Wextra")
EXIT_STOPPED = 3
# Killed by the signal before its handler was installed (it had just started): nothing written.
STOPPED_CODES = (EXIT_STOPPED, -signal.SIGTERM, -signal.SIGINT)
POLL_S = 0.2
STDERR_KEPT = 4096

Updates = dict[int, tuple[int, int]]  # partition -> (next source offset, target end offset)


class NativeUnavailable(Exception):
    """The copier cannot be built here; the message says why."""


class CopierFailed(Exception):
    """A copier ended with an error; nothing after its last `saved` line is confirmed."""


def cache_dir() -> Path:
    """Where `make install` keeps binaries (infra/stack/lib.sh CACHE_DIR)."""
    root = os.environ.get("MLOPS_CACHE_DIR") or Path.home() / ".cache" / "mlops-platform"
    return Path(root) / "bin"


def _pkg_config() -> list[str]:
    if shutil.which("pkg-config") is None:
        raise NativeUnavailable("pkg-config is not installed (`make install` installs it)")
    found = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "rdkafka"], capture_output=True, text=True
    )
    if found.returncode != 0:
        raise NativeUnavailable("librdkafka-dev is not installed (`make install` installs it)")
    return found.stdout.split()


def binary_path(source: Path = SOURCE) -> Path:
    """Named after a hash of the source and flags, so an edited source is built again."""
    digest = hashlib.sha256(source.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()
    return cache_dir() / f"replay-copy-{digest[:12]}"


def ensure_copier(source: Path = SOURCE) -> Path:
    """The built copier, compiled first if this source has not been."""
    target = binary_path(source)
    if target.exists():
        return target
    if shutil.which(COMPILER) is None:
        raise NativeUnavailable(f"{COMPILER} is not installed (`make install` installs it)")
    flags = _pkg_config()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Built beside the target and renamed: concurrent builds never run a half-written file.
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    except OSError as error:
        raise NativeUnavailable(f"cannot write to {target.parent}: {error.strerror}") from None
    os.close(handle)
    try:
        built = subprocess.run(
            [COMPILER, *CFLAGS, "-o", temporary, str(source), *flags],
            capture_output=True,
            text=True,
        )
        if built.returncode != 0:
            first = next(iter(built.stderr.strip().splitlines()), "no output")
            raise NativeUnavailable(f"compiling {source.name} failed: {first}")
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return target


# -- the protocol ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionTask:
    """One partition for a copier: read from next_offset to end, write all but the first
    `skip` (already on the target, whose partition ends at target_end now)."""

    partition: int
    next_offset: int
    end: int
    skip: int
    target_end: int

    def argument(self) -> str:
        return f"{self.partition}:{self.next_offset}:{self.end}:{self.skip}:{self.target_end}"


@dataclass(frozen=True)
class Progress:
    copied: int


@dataclass(frozen=True)
class Saved:
    copied: int
    updates: Updates


def copier_arguments(
    binary: Path,
    source: str,
    target: str,
    tasks: list[PartitionTask],
    batch: int,
    checkpoint_every: int,
    limit: int | None,
) -> list[str]:
    return [
        str(binary),
        source,
        target,
        str(batch),
        str(checkpoint_every),
        str(limit or 0),
        *(task.argument() for task in tasks),
    ]


def _config_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def config_input(consumer: Mapping[str, Any], producer: Mapping[str, Any]) -> bytes:
    """Both clients' librdkafka settings, NUL-separated `consumer.key`/`producer.key`, value."""
    fields = []
    for prefix, config in (("consumer", consumer), ("producer", producer)):
        for key, value in config.items():
            text = _config_text(value)
            if "\0" in key or "\0" in text:
                raise ValueError(f"librdkafka setting {key!r} contains a NUL character")
            fields += [f"{prefix}.{key}", text]
    return b"".join(item.encode() + b"\0" for item in fields)


def parse_line(line: str) -> Progress | Saved:
    """`progress 120` or `saved 300 0:101:101 1:100:100`; anything else is a protocol error."""
    kind, *words = line.split()
    try:
        if kind == "progress" and len(words) == 1:
            return Progress(int(words[0]))
        if kind == "saved" and words:
            updates = {}
            for word in words[1:]:
                partition, next_offset, target_end = (int(n) for n in word.split(":"))
                updates[partition] = (next_offset, target_end)
            return Saved(int(words[0]), updates)
    except ValueError:
        pass
    raise CopierFailed(f"the native copier wrote an unexpected line: {line!r}")


# -- running copiers ------------------------------------------------------------------------


@dataclass
class _Copier:
    process: subprocess.Popen[bytes]
    partial: bytes = b""
    errors: bytes = b""
    open_streams: int = 2

    def lines(self, chunk: bytes) -> list[str]:
        """Complete lines only: a line cut off by a crash is never acted on."""
        *complete, self.partial = (self.partial + chunk).split(b"\n")
        return [line.decode() for line in complete if line.strip()]

    def keep_error_output(self, chunk: bytes) -> None:
        self.errors = (self.errors + chunk)[-STDERR_KEPT:]

    def last_error(self) -> str:
        lines = self.errors.decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit code {self.process.returncode}"


@dataclass
class CopyOutcome:
    copied: int = 0
    stopped: bool = False
    failures: list[str] = field(default_factory=list)


class NativeCopy:
    """Runs one copier per group of partitions and relays their lines: progress to
    `on_progress`, every confirmed `saved` line to `record` (which writes the checkpoint)."""

    def __init__(
        self,
        binary: Path,
        consumer_config: Mapping[str, Any],
        producer_config: Mapping[str, Any],
        record: Callable[[Updates, int], None],
    ) -> None:
        self.binary = binary
        self.config = config_input(consumer_config, producer_config)
        self.record = record

    def run(
        self,
        source: str,
        target: str,
        groups: list[list[PartitionTask]],
        batch: int,
        checkpoint_every: int,
        limit: int | None,
        on_progress: Callable[[int], None],
        should_stop: Callable[[], bool],
    ) -> CopyOutcome:
        copiers = [
            self._start(copier_arguments(self.binary, source, target, tasks, batch,
                                         checkpoint_every, limit))
            for tasks in groups
        ]  # fmt: skip
        outcome = CopyOutcome()
        try:
            self._relay(copiers, outcome, on_progress, should_stop)
        finally:
            self._stop(copiers)
            for copier in copiers:
                copier.process.wait()
        for copier in copiers:
            code = copier.process.returncode
            if code in STOPPED_CODES:
                outcome.stopped = True
            elif code != 0:
                outcome.failures.append(copier.last_error())
        return outcome

    def _start(self, arguments: list[str]) -> _Copier:
        process = subprocess.Popen(
            arguments, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert process.stdin is not None
        try:
            process.stdin.write(self.config)
            process.stdin.close()
        except BrokenPipeError:
            pass  # it ended before reading its configuration: its exit code says why
        return _Copier(process)

    def _relay(
        self,
        copiers: list[_Copier],
        outcome: CopyOutcome,
        on_progress: Callable[[int], None],
        should_stop: Callable[[], bool],
    ) -> None:
        selector = selectors.DefaultSelector()
        for copier in copiers:
            selector.register(copier.process.stdout, selectors.EVENT_READ, (copier, True))  # type: ignore[arg-type]
            selector.register(copier.process.stderr, selectors.EVENT_READ, (copier, False))  # type: ignore[arg-type]
        stopping = False
        while selector.get_map():
            try:
                if not stopping and (should_stop() or self._failed(copiers)):
                    stopping = True
                    self._stop(copiers)
                for key, _ in selector.select(timeout=POLL_S):
                    copier, is_stdout = key.data
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        selector.unregister(key.fileobj)
                        copier.open_streams -= 1
                        if copier.open_streams == 0:
                            copier.process.wait()
                    elif is_stdout:
                        for line in copier.lines(chunk):
                            self._handle(parse_line(line), outcome, on_progress)
                    else:
                        copier.keep_error_output(chunk)
            except KeyboardInterrupt:
                # The copiers got the same Ctrl-C; their last confirmed lines are still read.
                stopping = True
                self._stop(copiers)
        selector.close()

    def _handle(
        self, line: Progress | Saved, outcome: CopyOutcome, on_progress: Callable[[int], None]
    ) -> None:
        if isinstance(line, Progress):
            on_progress(line.copied)
        else:
            self.record(line.updates, line.copied)
            outcome.copied += line.copied

    @staticmethod
    def _failed(copiers: list[_Copier]) -> bool:
        """One copier failed: the others are stopped, each after a last confirmed save."""
        return any(c.process.returncode not in (None, 0, *STOPPED_CODES) for c in copiers)

    @staticmethod
    def _stop(copiers: list[_Copier]) -> None:
        for copier in copiers:
            if copier.process.poll() is None:
                copier.process.send_signal(signal.SIGTERM)


def main() -> None:
    try:
        print(ensure_copier())
    except NativeUnavailable as error:
        sys.exit(f"native copier: {error}")


if __name__ == "__main__":
    main()
