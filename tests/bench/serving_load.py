"""The load generator of bench-serving: N keep-alive HTTP/1.1 connections, each sending POST
requests back to back (a closed loop), for a warm-up and then a measured period.

    python -m tests.bench.serving_load --url http://127.0.0.1:8006/predict \
        --bodies bodies.json --concurrency 16 --seconds 10 --warmup 2

`bodies.json` is a JSON list of request bodies (objects), sent in turn. Prints one JSON line:
{"requests", "seconds", "errors", "p50_ms", "p90_ms", "p99_ms", "max_ms", "status"}.

It runs in its own process on plain asyncio streams (no HTTP library): a request costs it a
few microseconds, so on a small machine the figures are the server's, not the client's, and
both servers get exactly the same client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


@dataclass
class Tally:
    measuring_from: float
    until: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


def encode_requests(url: str, bodies: list[object]) -> list[bytes]:
    parts = urlsplit(url)
    host = parts.netloc
    path = parts.path or "/"
    requests = []
    for body in bodies:
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: keep-alive\r\n\r\n"
        )
        requests.append(head.encode() + payload)
    return requests


async def read_response(reader: asyncio.StreamReader) -> int:
    """Reads one response; returns its status. Handles Content-Length and chunked bodies."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)
    }
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def connection(
    host: str, port: int, requests: list[bytes], offset: int, tally: Tally
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    sent = offset
    try:
        while (now := time.perf_counter()) < tally.until:
            writer.write(requests[sent % len(requests)])
            sent += 1
            try:
                status = await read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError) as error:
                tally.errors.append(f"{type(error).__name__}: {error}")
                return
            if now >= tally.measuring_from:
                tally.latencies_ms.append((time.perf_counter() - now) * 1000)
                tally.statuses[status] += 1
    finally:
        writer.close()


def percentile(samples: list[float], q: float) -> float:
    if len(samples) < 2:
        return samples[0] if samples else float("nan")
    return statistics.quantiles(samples, n=1000, method="inclusive")[int(q * 10) - 1]


async def run(
    url: str, bodies: list[object], concurrency: int, seconds: float, warmup: float
) -> dict[str, object]:
    parts = urlsplit(url)
    requests = encode_requests(url, bodies)
    start = time.perf_counter()
    tally = Tally(measuring_from=start + warmup, until=start + warmup + seconds)
    await asyncio.gather(
        *(
            connection(parts.hostname or "127.0.0.1", parts.port or 80, requests, n * 7, tally)
            for n in range(concurrency)
        )
    )
    ok = tally.statuses.get(200, 0)
    samples = tally.latencies_ms
    return {
        "requests": ok,
        "seconds": seconds,
        "rps": ok / seconds,
        "errors": len(tally.errors) + sum(n for s, n in tally.statuses.items() if s != 200),
        "status": dict(tally.statuses),
        "p50_ms": percentile(samples, 50),
        "p90_ms": percentile(samples, 90),
        "p99_ms": percentile(samples, 99),
        "max_ms": max(samples, default=float("nan")),
        "first_errors": tally.errors[:3],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args()
    bodies = json.loads(args.bodies.read_text())
    result = asyncio.run(run(args.url, bodies, args.concurrency, args.seconds, args.warmup))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
