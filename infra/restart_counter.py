"""Counts the restarts supervisord makes of the local stack's services, for `make status`.

Runs under supervisord as an event listener (infra/stack/supervisor.sh configures it) and
hears every PROCESS_STATE_STARTING event. A start that comes from EXITED (the process died)
or BACKOFF (it died before `startsecs`, the retry after a growing delay) is a restart made by
the supervisor and counts; a start from STOPPED or FATAL was asked for (`make up`,
`supervisorctl start`) and does not, as Kubernetes counts a container's restarts but not its
first start.

The counts are kept in a small text file, one line per program, `name count last-restart`
(UTC, ISO 8601), replaced atomically after each restart, so they survive a restart of the
listener itself and a shell script can read them. `make up` deletes the file when it starts
a new supervisord.

    python -m infra.restart_counter .local/supervisor/restarts
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from supervisor import childutils

# States a process leaves when supervisord itself starts it again.
RESTARTED_FROM = frozenset({"EXITED", "BACKOFF"})

Counts = dict[str, tuple[int, str]]


def read_counts(path: Path) -> Counts:
    counts: Counts = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit():
                counts[parts[0]] = (int(parts[1]), parts[2])
    return counts


def write_counts(path: Path, counts: Counts) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{name} {n} {last}\n" for name, (n, last) in sorted(counts.items())))
    os.replace(tmp, path)


def count_restart(counts: Counts, eventname: str, payload: str, now: datetime) -> str | None:
    """Adds one restart to `counts` if the event is one; returns the program's name if so.

    >>> counts: Counts = {}
    >>> at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    >>> event = "processname:validation groupname:validation from_state:EXITED tries:0"
    >>> count_restart(counts, "PROCESS_STATE_STARTING", event, at)
    'validation'
    >>> counts
    {'validation': (1, '2026-01-02T03:04:05Z')}
    >>> count_restart(counts, "PROCESS_STATE_STARTING", event.replace("EXITED", "STOPPED"), at)
    """
    if eventname != "PROCESS_STATE_STARTING":
        return None
    fields = childutils.get_headers(payload.strip())
    if fields.get("from_state") not in RESTARTED_FROM:
        return None
    name = fields["processname"]
    restarts, _ = counts.get(name, (0, "-"))
    counts[name] = (restarts + 1, now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return name


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit(f"usage: {argv[0]} COUNTS_FILE")
    path = Path(argv[1])
    counts = read_counts(path)
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        try:
            name = count_restart(counts, headers["eventname"], payload, datetime.now(UTC))
            if name is not None:
                write_counts(path, counts)
                print(f"{name}: restart {counts[name][0]}", file=sys.stderr, flush=True)
        finally:
            # stdout is the protocol channel: only the listener's answers go there.
            childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    main(sys.argv)
