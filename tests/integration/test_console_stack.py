"""The console `make up` runs under supervisord, on CONSOLE_PORT (8000 by default): it
answers like every service and sees the stack's services and Kafka."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx

from tests.waiting import wait_until

RECORDED = Path(__file__).resolve().parents[2] / ".local" / "run" / "services.settings"


def console_port() -> str:
    """CONSOLE_PORT as exported, else as `make up` recorded it, else the default."""
    if os.environ.get("CONSOLE_PORT"):
        return os.environ["CONSOLE_PORT"]
    if RECORDED.exists():
        for line in RECORDED.read_text().splitlines():
            if line.startswith("CONSOLE_PORT="):
                return line.split("=", 1)[1].strip()
    return "8000"


URL = f"http://127.0.0.1:{console_port()}"
SERVICES = ("ingestion", "validation", "feature_store", "training", "registry", "serving")


def test_the_stacks_console_answers_and_sees_every_service_up() -> None:
    assert httpx.get(f"{URL}/live", timeout=5).status_code == 200, f"no console at {URL}"
    assert httpx.get(f"{URL}/ready", timeout=5).status_code == 200
    assert httpx.get(f"{URL}/metrics", timeout=5).status_code == 200
    loop = wait_until(
        lambda: httpx.get(f"{URL}/api/loop", timeout=10).json(),
        what="the console's live figures",
    )
    assert loop["kafka_error"] is None and "data.raw" in loop["end_offsets"]
    assert {name: loop["health"][name] for name in SERVICES} == dict.fromkeys(SERVICES, "up")
    page = httpx.get(f"{URL}/", timeout=10)
    assert re.search(r'<main id="page" data-page="loop"', page.text)
    assert 'data-service="monitoring" data-health="up"' in page.text
    assert httpx.get(f"{URL}/favicon.ico", timeout=5).status_code == 200
    plotly = httpx.get(f"{URL}/static/plotly.min.js", timeout=10)
    assert plotly.status_code == 200 and plotly.headers["content-type"].startswith(
        "text/javascript"
    )
