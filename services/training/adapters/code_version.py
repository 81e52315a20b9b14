"""The version of the code that trains: the git commit, else MLOPS_CODE_VERSION, else unknown."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[3]


def code_version(repository: Path = REPOSITORY) -> str:
    try:
        answer = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repository,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        commit = answer.stdout.strip()
        if commit:
            return commit
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("MLOPS_CODE_VERSION") or "unknown"
