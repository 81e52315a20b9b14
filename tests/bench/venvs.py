"""Virtualenvs for the reference tools the benchmarks compare against (Feast, MLflow): they
pin libraries this project's environment cannot share, so each gets its own under .local."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def uv() -> list[str]:
    """uv as installed for `make venv` (python3 -m uv), or on the PATH."""
    found = shutil.which("uv")
    return [found] if found else ["python3", "-m", "uv"]


def ensure_venv(directory: Path, requirements: list[str]) -> Path:
    """The venv's python, created and given `requirements` (pinned) when they are missing."""
    python = directory / "bin" / "python"
    if not python.exists():
        subprocess.run([*uv(), "venv", "-q", "-p", "3.11", str(directory)], check=True)
    subprocess.run([*uv(), "pip", "install", "-q", "-p", str(python), *requirements], check=True)
    return python
