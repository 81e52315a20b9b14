"""Acceptance of `mlops reproduce`: the drift-retrained version of the closed loop is rebuilt
from the Kafka offsets in its lineage and comes out identical; the same version rebuilt from
a lineage whose offsets were altered is reported as different, and says how. The CLI asks the
loop's training service (POST /reproductions), which asks its feature store for the set."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.closed_loop import MODEL, DriftRetrain, Loop


def mlops(
    loop: Loop, subprocess_env: dict[str, str], *arguments: str
) -> subprocess.CompletedProcess:
    env = {
        **subprocess_env,
        "MLOPS_CLI_REGISTRY_URL": loop.urls.registry,
        "MLOPS_CLI_TRAINING_URL": loop.urls.training,
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", *arguments],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    print(f"mlops {' '.join(arguments)}: {time.monotonic() - started:.1f}s")
    return result


def last_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def test_drift_retrained_version_reproduces_identically_and_altered_offsets_differ(
    loop: Loop, drift_retrain: DriftRetrain, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    target = f"{MODEL}@{drift_retrain.new_version}"
    result = mlops(loop, subprocess_env, "reproduce", target)
    assert (result.returncode, last_line(result)) == (0, "identical"), result.stdout + result.stderr
    assert "training-set hash" in result.stdout and "feature sources" in result.stdout

    lineage = mlops(loop, subprocess_env, "lineage", MODEL, str(drift_retrain.new_version))
    assert lineage.returncode == 0, lineage.stderr
    document = json.loads(lineage.stdout)
    assert document["trigger"]["kind"] == "drift"
    ranges = document["lineage"]["offsets"]
    labels = next(r for r in ranges if r["topic"].endswith(".data.labels"))
    assert labels["last_offset"] - labels["first_offset"] >= 20, labels
    labels["last_offset"] -= 20  # leaves out the newest 20 labels of one partition
    edited = tmp_path / "lineage.json"
    edited.write_text(json.dumps(document))

    altered = mlops(loop, subprocess_env, "reproduce", target, "--lineage-file", str(edited))
    verdict = last_line(altered)
    assert altered.returncode == 1, altered.stdout + altered.stderr
    assert verdict.startswith("differs: "), verdict
    assert "training-set hash" in verdict and "rows" in verdict, verdict
    assert "rows" in altered.stdout and "differs" in altered.stdout
    print(result.stdout, altered.stdout, sep="\n")
